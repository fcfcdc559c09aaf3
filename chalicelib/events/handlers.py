"""Thin scheduled/event handlers; the work is in the registry service.

The blueprint and every handler it registers live at module level: Chalice writes the
handler string ``chalicelib.events.handlers.<function>`` into the template, and the Lambda
runtime resolves it by importing this module and reading that attribute. A handler defined
inside a factory function synthesizes fine and fails every invocation on AWS with
``Runtime.HandlerNotFound``. Chalice passes event handlers the event only (the Lambda
context is ``event.context``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from chalice.app import Blueprint, CloudWatchEvent, Rate

from chalicelib import wiring
from chalicelib.wiring import management_api, v2_api

logger = Logger(service="portside")

events = Blueprint(__name__)


def cleanup_expired_uploads() -> int:
    """Abort the multipart uploads and scratch objects of expired upload sessions."""
    total = 0
    while True:
        count = v2_api().service.cleanup_expired_uploads(limit=100)
        total += count
        if count < 100:
            break
    logger.info("expired uploads cleaned", extra={"sessions": total})
    return total


def purge_deleted_registries() -> int:
    """Remove the content of deleted registries; each run does a bounded amount of work
    and the next run resumes where it stopped."""
    finished = management_api().service.purge_deleted_registries()
    if finished:
        logger.info("deleted registries purged", extra={"registries": finished})
    return finished


@events.schedule(Rate(15, unit=Rate.MINUTES), name="cleanup-expired-uploads")
def cleanup_expired_uploads_schedule(event: CloudWatchEvent) -> None:
    cleanup_expired_uploads()


@events.schedule(Rate(1, unit=Rate.MINUTES), name="purge-deleted-registries")
def purge_deleted_registries_schedule(event: CloudWatchEvent) -> None:
    purge_deleted_registries()


# ------------------------------------------------------------------ garbage collection
# Driven by the state machine infra/state_machines/garbage_collection.asl.json (on AWS) or
# its interpreter in the local runtime. The collector is looked up on `wiring` at call time
# so that tests can replace it.

# Steps per execution before it continues as a new one: each loop costs about 5 history
# events (more with waits and retries), and a Standard workflow stops at 25,000.
STEPS_PER_EXECUTION = 400
# The failure reason stored on the collection (and shown to users): bounded.
ERROR_TEXT_LIMIT = 500


@events.lambda_function(name="gc-step")
def gc_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One bounded step of a collection. Input {registry_id, gc_uuid, iterations?,
    generation?}; the answer tells the state machine whether to stop, wait or go on, and
    whether to continue in a fresh execution (restart)."""
    registry_id = str(event["registry_id"])
    gc_uuid = str(event["gc_uuid"])
    iterations = int(event.get("iterations") or 0) + 1
    outcome = wiring.garbage_collector().step(registry_id, gc_uuid)
    done = bool(outcome.done)
    return {
        "registry_id": registry_id,
        "gc_uuid": gc_uuid,
        "done": done,
        "wait_seconds": 0 if done else max(int(outcome.wait_seconds), 0),
        "iterations": iterations,
        "restart": not done and iterations >= STEPS_PER_EXECUTION,
        # Which continuation of the collection this is: names the next execution.
        "generation": int(event.get("generation") or 0),
    }


def error_text(error: Any) -> str:
    """A short reason from a Step Functions Catch output ({"Error", "Cause"}); for a
    Lambda failure the Cause is the function's JSON error ({"errorType", "errorMessage"})."""
    if not isinstance(error, dict):
        return str(error)[:ERROR_TEXT_LIMIT]
    name = str(error.get("Error") or "Error")
    cause: Any = error.get("Cause") or ""
    try:
        parsed = json.loads(cause) if isinstance(cause, str) and cause.startswith("{") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        name = str(parsed.get("errorType") or name)
        cause = parsed["errorMessage"]
    text = f"{name}: {cause}" if cause else name
    return text[:ERROR_TEXT_LIMIT]


@events.lambda_function(name="gc-failed")
def gc_failed(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The state machine gave up on a step: mark the collection failed and release the
    registry (it must not stay read-only)."""
    registry_id = str(event["registry_id"])
    gc_uuid = str(event["gc_uuid"])
    reason = error_text(event.get("error"))
    logger.error("garbage collection failed", extra={"gc_uuid": gc_uuid, "error": reason})
    wiring.garbage_collector().fail(registry_id, gc_uuid, reason)
    return {"registry_id": registry_id, "gc_uuid": gc_uuid, "error": reason}


@events.schedule(Rate(15, unit=Rate.MINUTES), name="scheduled-collections")
def run_scheduled_collections_schedule(event: CloudWatchEvent) -> None:
    """Start the collections that registries' schedules say are due."""
    wiring.scheduled_collections().run(datetime.now(UTC))
