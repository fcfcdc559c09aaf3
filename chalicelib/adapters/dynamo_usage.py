"""UsageStore on DynamoDB (the single table; item layout in dynamo_models, "Usage")."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import cast

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.registry.errors import ConcurrentWriteError
from chalicelib.registry.records import (
    RegistryRecord,
    StorageSnapshot,
    TrafficCounts,
    UsageMonth,
)

from .dynamo_models import Item, StorageSnapshotItem, UsageMonthItem, UsageSourceItem

# A log object is delivered again (an S3 event retried, a Lambda re-run) within hours or
# days; the marker outlives any such retry and the months it could be billed in.
SOURCE_TTL = timedelta(days=400)
# Sort keys may hold 1024 bytes: a longer source (CloudWatch Logs group and stream names
# are up to 512 characters each) is named by its hash.
MAX_SOURCE = 900
# add_traffic's transaction conflicts with a concurrent one on the same month (two log
# objects of one registry metered at once): it is retried.
RETRIES = 5


def usage_pk(registry_id: str) -> str:
    return f"USAGE#{registry_id}"


def month_index(month: str) -> str:
    return f"USAGEMONTH#{month}"


def _source_sk(month: str, source: str) -> str:
    if len(source.encode()) > MAX_SOURCE:
        source = "sha256:" + hashlib.sha256(source.encode()).hexdigest()
    return f"SRC#{month}#{source}"


def _int(value: object) -> int:
    return int(cast(float, value or 0))


class DynamoUsageStore:
    def __init__(self) -> None:
        self._connection: Connection | None = None

    def _transaction(self) -> TransactWrite:
        if self._connection is None:
            self._connection = Connection(region=Item.Meta.region)
        return TransactWrite(connection=self._connection)

    def add_traffic(
        self,
        registry_id: str,
        month: str,
        source: str,
        counts: TrafficCounts,
        registry: RegistryRecord | None = None,
    ) -> bool:
        pk = usage_pk(registry_id)
        expires = datetime.now(UTC) + SOURCE_TTL
        actions: list[Action] = [
            UsageMonthItem.egress_bytes.add(counts.egress_bytes),
            UsageMonthItem.pulls.add(counts.pulls),
            UsageMonthItem.pushes.add(counts.pushes),
            UsageMonthItem.downloads.add(counts.downloads),
            UsageMonthItem.redirects.add(counts.redirects),
            UsageMonthItem.gsi1pk.set(month_index(month)),
            UsageMonthItem.gsi1sk.set(registry_id),
        ]
        if registry is not None:
            actions += [
                UsageMonthItem.registry_name.set(registry.name),
                UsageMonthItem.account_id.set(registry.account_id),
            ]
        for _ in range(RETRIES):
            try:
                # The marker and the counters at once: a crash leaves neither, a retry of
                # a counted source finds the marker and adds nothing.
                with self._transaction() as tx:
                    tx.save(
                        UsageSourceItem(pk, _source_sk(month, source), ttl=expires),
                        condition=Item.pk.does_not_exist(),
                    )
                    tx.update(UsageMonthItem(pk, f"MONTH#{month}"), actions=actions)
            except TransactWriteError as exc:
                codes = [
                    getattr(reason, "code", None)
                    for reason in getattr(exc, "cancellation_reasons", None) or []
                ]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False  # the marker exists: counted before
                if "TransactionConflict" in codes:
                    continue
                raise
            return True
        raise ConcurrentWriteError("usage counters stayed contended; retry")

    def get_usage_month(self, registry_id: str, month: str) -> UsageMonth | None:
        try:
            item = UsageMonthItem.get(usage_pk(registry_id), f"MONTH#{month}", consistent_read=True)
        except UsageMonthItem.DoesNotExist:
            return None
        return _usage_month(item)

    def put_snapshot(self, snapshot: StorageSnapshot) -> None:
        pk = usage_pk(snapshot.registry_id)
        month = snapshot.day[:7]
        with self._transaction() as tx:
            tx.save(
                StorageSnapshotItem(
                    pk,
                    f"DAY#{snapshot.day}",
                    registry_name=snapshot.registry_name,
                    account_id=snapshot.account_id,
                    plan=snapshot.plan,
                    storage_bytes=snapshot.storage_bytes,
                    repository_count=snapshot.repository_count,
                    taken_at=snapshot.taken_at,
                )
            )
            # The month is listed (billed) even without traffic; its counters are left.
            tx.update(
                UsageMonthItem(pk, f"MONTH#{month}"),
                actions=[
                    UsageMonthItem.registry_name.set(snapshot.registry_name),
                    UsageMonthItem.account_id.set(snapshot.account_id),
                    UsageMonthItem.gsi1pk.set(month_index(month)),
                    UsageMonthItem.gsi1sk.set(snapshot.registry_id),
                ],
            )

    def list_snapshots(self, registry_id: str, month: str) -> list[StorageSnapshot]:
        return [
            StorageSnapshot(
                registry_id=registry_id,
                day=item.sk.removeprefix("DAY#"),
                registry_name=item.registry_name,
                account_id=item.account_id,
                plan=item.plan,
                storage_bytes=_int(item.storage_bytes),
                repository_count=_int(item.repository_count),
                taken_at=item.taken_at,
            )
            for item in StorageSnapshotItem.query(
                usage_pk(registry_id),
                StorageSnapshotItem.sk.startswith(f"DAY#{month}-"),
                consistent_read=True,
            )
        ]

    def list_usage_months(self, month: str, after: str | None, limit: int) -> list[UsageMonth]:
        condition = UsageMonthItem.gsi1sk > after if after is not None else None
        found = UsageMonthItem.gsi1.query(month_index(month), condition, limit=limit)
        return [_usage_month(cast(UsageMonthItem, item)) for item in found]


def _usage_month(item: UsageMonthItem) -> UsageMonth:
    return UsageMonth(
        registry_id=item.pk.removeprefix("USAGE#"),
        month=item.sk.removeprefix("MONTH#"),
        registry_name=item.registry_name,
        account_id=item.account_id,
        egress_bytes=_int(item.egress_bytes),
        pulls=_int(item.pulls),
        pushes=_int(item.pushes),
        downloads=_int(item.downloads),
        redirects=_int(item.redirects),
    )
