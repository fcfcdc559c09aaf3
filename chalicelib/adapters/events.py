"""EventPublisher adapters: EventBridge (AWS, and moto locally) and a memory fake."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

from ..registry.alerts import SOURCE


def events_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("events", endpoint_url=endpoint_url, region_name=region, config=config)


class EventPublishError(RuntimeError):
    """EventBridge refused an entry (PutEvents answers 200 with FailedEntryCount > 0)."""


class EventBridgePublisher:
    def __init__(self, client: Any, bus: str = "default", source: str = SOURCE) -> None:
        self.client = client
        self.bus = bus
        self.source = source

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        answer = self.client.put_events(
            Entries=[
                {
                    "Source": self.source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(dict(detail), sort_keys=True),
                    "EventBusName": self.bus,
                }
            ]
        )
        # PutEvents does not fail as a call when an entry fails (throttling, an internal
        # error): it says so in the answer. Raise, so that the caller's batch is retried
        # instead of losing the event.
        if answer.get("FailedEntryCount"):
            failures = [e for e in answer.get("Entries", []) if e.get("ErrorCode")]
            reason = "; ".join(f"{e['ErrorCode']}: {e.get('ErrorMessage', '')}" for e in failures)
            raise EventPublishError(
                f"EventBridge refused {detail_type!r} on bus {self.bus!r}: {reason or answer}"
            )


class MemoryEventPublisher:
    """Records what would be published (tests, the in-memory wiring)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        self.events.append((detail_type, dict(detail)))
