"""Thin scheduled/event handlers; the work is in the registry service."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from chalice.app import Blueprint, Rate

from chalicelib.wiring import v2_api

logger = Logger(service="portside")


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


def events_blueprint() -> Blueprint:
    bp = Blueprint(__name__)

    @bp.schedule(Rate(15, unit=Rate.MINUTES), name="cleanup-expired-uploads")
    def cleanup_expired_uploads_schedule(event: Any) -> None:
        cleanup_expired_uploads()

    return bp
