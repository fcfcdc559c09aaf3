"""In-memory UsageStore with the DynamoDB adapter's semantics (dynamo_usage), for unit tests
of metering and billing and for the local runtime's tests.

Usage is kept apart from the registries (its own dicts, as its own partitions in DynamoDB):
purging a deleted registry leaves its usage, which is still billed."""

from __future__ import annotations

import threading
from dataclasses import replace

from chalicelib.registry.records import (
    RegistryRecord,
    StorageSnapshot,
    TrafficCounts,
    UsageMonth,
)


class MemoryUsageStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.months: dict[tuple[str, str], UsageMonth] = {}  # (registry id, month)
        self.snapshots: dict[tuple[str, str], StorageSnapshot] = {}  # (registry id, day)
        # What add_traffic counted: (registry id, month, source). A log object may hold
        # lines of two months (around midnight UTC on a month's last day): each month of
        # each registry counts it once.
        self.sources: set[tuple[str, str, str]] = set()

    def _month(self, registry_id: str, month: str) -> UsageMonth:
        usage = self.months.get((registry_id, month))
        if usage is None:
            usage = self.months[(registry_id, month)] = UsageMonth(registry_id, month)
        return usage

    def add_traffic(
        self,
        registry_id: str,
        month: str,
        source: str,
        counts: TrafficCounts,
        registry: RegistryRecord | None = None,
    ) -> bool:
        with self._lock:
            marker = (registry_id, month, source)
            if marker in self.sources:
                return False
            self.sources.add(marker)
            usage = self._month(registry_id, month)
            usage.egress_bytes += counts.egress_bytes
            usage.pulls += counts.pulls
            usage.pushes += counts.pushes
            usage.downloads += counts.downloads
            usage.redirects += counts.redirects
            if registry is not None:
                usage.registry_name = registry.name
                usage.account_id = registry.account_id
            return True

    def get_usage_month(self, registry_id: str, month: str) -> UsageMonth | None:
        with self._lock:
            usage = self.months.get((registry_id, month))
            return replace(usage) if usage else None

    def put_snapshot(self, snapshot: StorageSnapshot) -> None:
        with self._lock:
            self.snapshots[(snapshot.registry_id, snapshot.day)] = snapshot
            usage = self._month(snapshot.registry_id, snapshot.day[:7])
            usage.registry_name = snapshot.registry_name
            usage.account_id = snapshot.account_id

    def list_snapshots(self, registry_id: str, month: str) -> list[StorageSnapshot]:
        with self._lock:
            return [
                self.snapshots[key]
                for key in sorted(self.snapshots)
                if key[0] == registry_id and key[1][:7] == month
            ]

    def list_usage_months(self, month: str, after: str | None, limit: int) -> list[UsageMonth]:
        with self._lock:
            ids = sorted(
                rid for rid, m in self.months if m == month and (after is None or rid > after)
            )
            return [replace(self.months[(rid, month)]) for rid in ids[:limit]]
