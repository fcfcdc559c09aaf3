"""Thin scheduled/event handlers; the work is in the registry service.

The blueprint and every handler it registers live at module level: Chalice writes the
handler string ``chalicelib.events.handlers.<function>`` into the template, and the Lambda
runtime resolves it by importing this module and reading that attribute. A handler defined
inside a factory function synthesizes fine and fails every invocation on AWS with
``Runtime.HandlerNotFound``. Chalice passes event handlers the event only (the Lambda
context is ``event.context``).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from chalice.app import Blueprint, CloudWatchEvent, Rate

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
