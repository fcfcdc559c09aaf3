"""Thin scheduled/event handlers; the work is in the registry service.

The blueprint and every handler it registers live at module level: Chalice writes the
handler string ``chalicelib.events.handlers.<function>`` into the template, and the Lambda
runtime resolves it by importing this module and reading that attribute. A handler defined
inside a factory function synthesizes fine and fails every invocation on AWS with
``Runtime.HandlerNotFound``. Chalice passes event handlers the event only (the Lambda
context is ``event.context``).
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from chalice.app import Blueprint, CloudWatchEvent, Rate

from chalicelib import wiring
from chalicelib.adapters.dynamo_streams import registry_changes
from chalicelib.registry.metering import MeteringOutcome
from chalicelib.registry.quotas import CORRECTED, SKIPPED, Reconciliation
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


@events.lambda_function(name="verify-direct-upload")
def verify_direct_upload(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Verify a completed large direct upload (registry.direct_uploads), invoked
    asynchronously with {"upload_id"} by the completing request. Duplicate deliveries do
    nothing (the verification claims the session first)."""
    upload_id = str(event.get("upload_id") or "")
    outcome = wiring.direct_uploads().verify(upload_id) if upload_id else None
    status = outcome.status if outcome is not None else "skipped"
    logger.info("direct upload verified", extra={"upload": upload_id, "status": status})
    return {"upload_id": upload_id, "status": status}


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


# ------------------------------------------------------------------ quota threshold events
# A DynamoDB stream (NEW_AND_OLD_IMAGES) of the table, filtered by the event source mapping
# to registry records (REG#<name> / #META), feeds this function; the local runtime polls
# the same stream (portside/local/streams.py). Delivery is at least once: see
# registry.alerts and docs/quota-events.md.


@events.lambda_function(name="quota-watch")
def quota_watch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish the thresholds each registry record change crossed. A change whose events
    cannot be published is reported as the batch's first failure (ReportBatchItemFailures):
    Lambda retries from it, and the changes before it are not published again."""
    changes = registry_changes(event.get("Records") or [])
    outcome = wiring.quota_watch().process([c.change for c in changes])
    for crossing in outcome.published:
        logger.info("quota threshold crossed", extra=crossing.detail())
    if outcome.failed_at is None:
        return {"batchItemFailures": []}
    failed = changes[outcome.failed_at]
    logger.error(
        "quota events not published; the batch is retried from this record",
        extra={"sequence_number": failed.sequence_number, "error": str(outcome.error)},
    )
    return {"batchItemFailures": [{"itemIdentifier": failed.sequence_number}]}


# ------------------------------------------------------------------ usage and billing
# registry.billing, docs/billing.md.


@events.schedule(Rate(1, unit=Rate.HOURS), name="snapshot-storage")
def snapshot_storage_schedule(event: CloudWatchEvent) -> None:
    """Today's storage snapshot of every live registry. Hourly: each run overwrites the
    day's earlier one, so a day is priced by its last snapshot and a missed run is
    harmless."""
    count = wiring.storage_snapshots().run(datetime.now(UTC))
    logger.info("storage snapshots taken", extra={"registries": count})


@events.schedule(Rate(1, unit=Rate.DAYS), name="export-billing")
def export_billing_schedule(event: CloudWatchEvent) -> None:
    """Export the previous month once it is final (its end plus the log delay), once."""
    result = wiring.billing_export().run_due(datetime.now(UTC))
    if result is not None:
        logger.info("billing export written", extra=result.to_json())


# ------------------------------------------------------------------ storage reconciliation
# registry.quotas, docs/quotas.md. The counters the hard limits are enforced on change only
# in the transactions that change what they count; this recount is the check that they
# still add up (and the repair, conditional on no commit having moved them meanwhile).

reconcile_metrics = Metrics(namespace="Portside", service="portside")


def reconcile_storage() -> list[Reconciliation]:
    """Recount every registry and correct drifted counters; log and measure the drift."""
    found = wiring.storage_reconciler().run()
    corrected = [r for r in found if r.outcome == CORRECTED]
    for result in corrected:
        logger.warning("storage counters drifted and were corrected", extra=result.to_log())
    for result in found:
        if result.outcome == SKIPPED:
            logger.info("storage counters changed during the recount", extra=result.to_log())
    reconcile_metrics.add_metric(
        name="StorageDriftBytes",
        unit=MetricUnit.Bytes,
        value=sum(abs(r.storage_drift) for r in corrected),
    )
    reconcile_metrics.add_metric(
        name="RepositoryCountDrift",
        unit=MetricUnit.Count,
        value=sum(abs(r.repository_drift) for r in corrected),
    )
    reconcile_metrics.add_metric(
        name="RegistriesCorrected", unit=MetricUnit.Count, value=len(corrected)
    )
    # Chalice passes scheduled handlers the event only, so powertools' decorator cannot
    # flush: flush here.
    reconcile_metrics.flush_metrics()
    logger.info(
        "storage reconciled",
        extra={
            "registries": len(found),
            "corrected": len(corrected),
            "skipped": sum(1 for r in found if r.outcome == SKIPPED),
        },
    )
    return found


@events.schedule(Rate(1, unit=Rate.HOURS), name="reconcile-storage")
def reconcile_storage_schedule(event: CloudWatchEvent) -> None:
    reconcile_storage()


# ------------------------------------------------------------------ egress metering
# The blob bucket's S3 server access logs (s3-access/) and CloudFront's standard logs
# (cloudfront/) land in the log bucket, whose EventBridge "Object Created" events invoke
# meter-access-logs; API Gateway's access-log group is subscribed to meter-api-logs. Both
# run beside the pull path (docs/metering.md). A failure raises and the invocation is
# retried: what was counted before it is not counted again (registry.metering).

ACCESS_LOG_PREFIX = "s3-access/"
CLOUDFRONT_LOG_PREFIX = "cloudfront/"


def _metered(outcome: MeteringOutcome, kind: str) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "source": outcome.source,
        "lines": outcome.lines,
        "skipped_lines": outcome.skipped,
        "egress_bytes": outcome.egress_bytes_added,
        "unattributed_bytes": outcome.unattributed_bytes,
        "registries": len({c.registry_id for c in outcome.counted}),
        "already_counted": sum(1 for c in outcome.counted if not c.added),
        "capped": [f"{name} {month}" for name, month in outcome.capped],
        "events": len(outcome.events),
    }
    if outcome.unknown_registries:
        summary["unknown_registries"] = outcome.unknown_registries[:20]
    logger.info("log metered", extra={"kind": kind, **summary})
    dimensions = {"service": "metering", "log": kind}
    for name, unit, value in (
        ("EgressBytesMetered", MetricUnit.Bytes, outcome.egress_bytes_added),
        ("UnattributedEgressBytes", MetricUnit.Bytes, outcome.unattributed_bytes),
        ("LogLinesSkipped", MetricUnit.Count, outcome.skipped),
    ):
        with single_metric(
            name=name, unit=unit, value=value, namespace="Portside", default_dimensions=dimensions
        ):
            pass
    return summary


@events.lambda_function(name="meter-access-logs")
def meter_access_logs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Meter one new log object of the log bucket (an EventBridge S3 "Object Created")."""
    detail = event.get("detail") or {}
    bucket = str((detail.get("bucket") or {}).get("name") or "")
    # Log keys hold no characters that encode; decoding is for S3 notifications, which
    # send keys quote_plus-encoded.
    key = unquote_plus(str((detail.get("object") or {}).get("key") or ""))
    source = f"s3://{bucket}/{key}"
    if not key.startswith((ACCESS_LOG_PREFIX, CLOUDFRONT_LOG_PREFIX)):
        logger.warning("not a log object; ignored", extra={"source": source})
        return {"source": source, "skipped": True}
    try:
        data = wiring.log_reader().get_object(key)
    except KeyError:
        logger.warning("log object gone before it was metered", extra={"source": source})
        return {"source": source, "skipped": True}
    if key.startswith(ACCESS_LOG_PREFIX):
        text = data.decode("utf-8", errors="replace")
        return _metered(wiring.metering().meter_s3_log(source, text), "s3")
    return _metered(wiring.metering().meter_cloudfront_log(source, data), "cloudfront")


@events.lambda_function(name="meter-api-logs")
def meter_api_logs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Meter one CloudWatch Logs subscription batch of API Gateway access-log records."""
    batch = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    log_events = batch.get("logEvents") or []
    if batch.get("messageType") == "CONTROL_MESSAGE" or not log_events:
        return {"records": 0}
    # A redelivered batch has the same group, stream and event ids: the same source.
    source = (
        f"cwl:{batch.get('logGroup')}/{batch.get('logStream')}"
        f"#{log_events[0].get('id')}-{log_events[-1].get('id')}"
    )
    messages = [str(e.get("message") or "") for e in log_events]
    summary = _metered(wiring.metering().meter_api_records(source, messages), "api")
    return {"records": len(messages), **summary}
