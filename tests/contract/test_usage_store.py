"""UsageStore contract: the in-memory store and the DynamoDB one (on moto) behave alike.

The DynamoDB table is shared by the whole suite: every test uses fresh registry ids, and
tests that list a month use a month of their own (a random far-future one)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.dynamo_usage import DynamoUsageStore
from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.adapters.memory_usage import MemoryUsageStore
from chalicelib.registry.ports import MetadataStore, UsageStore
from chalicelib.registry.records import (
    RegistryRecord,
    StorageSnapshot,
    TrafficCounts,
    new_registry_id,
)

from .conftest import STORES
from .helpers import START, new_registry, unique


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest) -> tuple[UsageStore, MetadataStore]:
    if request.param == "memory":
        return MemoryUsageStore(), MemoryMetadataStore()
    request.getfixturevalue("aws")
    return DynamoUsageStore(), DynamoMetadataStore()


@pytest.fixture
def usage(stores: tuple[UsageStore, MetadataStore]) -> UsageStore:
    return stores[0]


def own_month() -> str:
    return f"{random.randint(2100, 9999)}-{random.randint(1, 12):02d}"


def snapshot(rid: str, day: str, storage: int, plan: str = "starter") -> StorageSnapshot:
    return StorageSnapshot(
        registry_id=rid,
        day=day,
        registry_name="reg",
        account_id="acct",
        plan=plan,
        storage_bytes=storage,
        repository_count=1,
        taken_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def test_add_traffic_counts_a_source_once_per_month(usage: UsageStore) -> None:
    rid = new_registry_id()
    counts = TrafficCounts(egress_bytes=1000, pulls=2, pushes=1)
    assert usage.add_traffic(rid, "2026-03", "s3://logs/a", counts) is True
    assert usage.add_traffic(rid, "2026-03", "s3://logs/a", counts) is False
    month = usage.get_usage_month(rid, "2026-03")
    assert month is not None
    assert (month.egress_bytes, month.pulls, month.pushes) == (1000, 2, 1)
    # The same log object may hold lines of the next month too: that month counts it once.
    assert usage.add_traffic(rid, "2026-04", "s3://logs/a", counts) is True
    assert usage.add_traffic(rid, "2026-04", "s3://logs/a", counts) is False


def test_counters_add_up_over_sources(usage: UsageStore) -> None:
    rid = new_registry_id()
    for i in range(3):
        counts = TrafficCounts(10 + i, i, 1, downloads=i + 1, redirects=2)
        usage.add_traffic(rid, "2026-03", f"s3://logs/{i}", counts)
    month = usage.get_usage_month(rid, "2026-03")
    assert month is not None
    assert (month.egress_bytes, month.pulls, month.pushes) == (33, 3, 3)
    assert (month.downloads, month.redirects) == (6, 6)


def test_months_and_registries_are_counted_apart(usage: UsageStore) -> None:
    rid, other = new_registry_id(), new_registry_id()
    usage.add_traffic(rid, "2026-03", "s3://logs/x", TrafficCounts(5))
    usage.add_traffic(rid, "2026-04", "s3://logs/y", TrafficCounts(7))
    usage.add_traffic(other, "2026-03", "s3://logs/x", TrafficCounts(11))
    march, april = usage.get_usage_month(rid, "2026-03"), usage.get_usage_month(rid, "2026-04")
    assert march is not None and april is not None
    assert (march.egress_bytes, april.egress_bytes) == (5, 7)
    assert usage.get_usage_month(rid, "2026-05") is None
    assert usage.get_usage_month(other, "2026-03").egress_bytes == 11  # type: ignore[union-attr]


def test_add_traffic_names_the_month_after_the_registry(usage: UsageStore) -> None:
    registry = RegistryRecord(name=unique(), account_id=unique("acct"))
    usage.add_traffic(registry.registry_id, "2026-03", "s3://logs/a", TrafficCounts(1))
    usage.add_traffic(registry.registry_id, "2026-03", "s3://logs/b", TrafficCounts(1), registry)
    month = usage.get_usage_month(registry.registry_id, "2026-03")
    assert month is not None
    assert (month.registry_name, month.account_id) == (registry.name, registry.account_id)
    assert month.egress_bytes == 2


def test_long_sources_are_told_apart(usage: UsageStore) -> None:
    # CloudWatch Logs group and stream names may be long; the marker must still tell them.
    rid = new_registry_id()
    base = "/aws/apigateway/" + "x" * 1000
    assert usage.add_traffic(rid, "2026-03", base + "#1", TrafficCounts(1))
    assert usage.add_traffic(rid, "2026-03", base + "#2", TrafficCounts(1))
    assert not usage.add_traffic(rid, "2026-03", base + "#1", TrafficCounts(1))
    assert usage.get_usage_month(rid, "2026-03").egress_bytes == 2  # type: ignore[union-attr]


def test_a_snapshot_per_day_the_latest_wins(usage: UsageStore) -> None:
    rid = new_registry_id()
    usage.put_snapshot(snapshot(rid, "2026-03-02", 100))
    usage.put_snapshot(snapshot(rid, "2026-03-01", 50))
    usage.put_snapshot(replace(snapshot(rid, "2026-03-02", 300), plan="basic"))
    usage.put_snapshot(snapshot(rid, "2026-04-01", 70))
    usage.put_snapshot(snapshot(rid, "2026-02-28", 10))
    march = usage.list_snapshots(rid, "2026-03")
    assert [(s.day, s.storage_bytes, s.plan) for s in march] == [
        ("2026-03-01", 50, "starter"),
        ("2026-03-02", 300, "basic"),
    ]
    assert march[0] == snapshot(rid, "2026-03-01", 50)
    assert [s.day for s in usage.list_snapshots(rid, "2026-04")] == ["2026-04-01"]
    assert usage.list_snapshots(rid, "2026-05") == []


def test_a_snapshot_lists_the_month_without_traffic_and_keeps_counters(
    usage: UsageStore,
) -> None:
    month = own_month()
    quiet, busy = new_registry_id(), new_registry_id()
    usage.put_snapshot(snapshot(quiet, f"{month}-03", 100))
    usage.add_traffic(busy, month, "s3://logs/a", TrafficCounts(9, 1))
    usage.put_snapshot(snapshot(busy, f"{month}-04", 100))
    listed = {u.registry_id: u for u in usage.list_usage_months(month, None, 10)}
    assert set(listed) == {quiet, busy}
    assert (listed[quiet].egress_bytes, listed[quiet].registry_name) == (0, "reg")
    assert (listed[busy].egress_bytes, listed[busy].pulls, listed[busy].account_id) == (
        9,
        1,
        "acct",
    )


def test_list_usage_months_pages_by_registry_id(usage: UsageStore) -> None:
    month = own_month()
    rids = sorted(new_registry_id() for _ in range(5))
    for rid in rids:
        usage.add_traffic(rid, month, "s3://logs/a", TrafficCounts(1))
    usage.add_traffic(new_registry_id(), own_month(), "s3://logs/a", TrafficCounts(1))
    pages, after = [], None
    while True:
        page = usage.list_usage_months(month, after, 2)
        if not page:
            break
        pages.append([u.registry_id for u in page])
        after = page[-1].registry_id
    assert pages == [rids[0:2], rids[2:4], rids[4:5]]
    assert all(u.month == month for u in usage.list_usage_months(month, None, 10))


def test_usage_survives_the_registrys_purge(
    stores: tuple[UsageStore, MetadataStore],
) -> None:
    usage, metadata = stores
    registry = new_registry(metadata)
    usage.add_traffic(registry.registry_id, "2026-03", "s3://logs/a", TrafficCounts(5), registry)
    usage.put_snapshot(snapshot(registry.registry_id, "2026-03-01", 100))
    assert metadata.mark_registry_deleting(registry.name)
    while not metadata.purge_registry(registry.name, 100):
        pass
    assert metadata.get_registry(registry.name) is None
    month = usage.get_usage_month(registry.registry_id, "2026-03")
    assert month is not None and month.egress_bytes == 5
    assert len(usage.list_snapshots(registry.registry_id, "2026-03")) == 1


# ------------------------------------------------ MetadataStore additions for metering


def test_get_registry_by_id_finds_the_incarnation_only(
    stores: tuple[UsageStore, MetadataStore],
) -> None:
    _, metadata = stores
    registry = new_registry(metadata)
    found = metadata.get_registry_by_id(registry.registry_id)
    assert found is not None and found.name == registry.name
    assert metadata.get_registry_by_id(new_registry_id()) is None
    # Deleted and taken again: the old id finds nothing, the new one its record.
    assert metadata.mark_registry_deleting(registry.name)
    while not metadata.purge_registry(registry.name, 100):
        pass
    again = new_registry(metadata, name=registry.name)
    assert metadata.get_registry_by_id(registry.registry_id) is None
    assert metadata.get_registry_by_id(again.registry_id).name == registry.name  # type: ignore[union-attr]


def test_set_egress_capped_marks_only_its_incarnation(
    stores: tuple[UsageStore, MetadataStore],
) -> None:
    _, metadata = stores
    registry = new_registry(metadata)
    metadata.set_egress_capped(registry.name, new_registry_id(), "2026-03")
    assert metadata.get_registry(registry.name).egress_capped_month is None  # type: ignore[union-attr]
    metadata.set_egress_capped(registry.name, registry.registry_id, "2026-03")
    assert metadata.get_registry(registry.name).egress_capped_month == "2026-03"  # type: ignore[union-attr]
    metadata.set_egress_capped(unique(), registry.registry_id, "2026-03")  # gone: no-op


def test_a_late_earlier_month_never_replaces_a_later_months_cap(
    stores: tuple[UsageStore, MetadataStore],
) -> None:
    """Two log objects metered at once, a late one of March and one of April, both read
    the registry before either writes: whichever writes last, April stays."""
    _, metadata = stores
    registry = new_registry(metadata)
    metadata.set_egress_capped(registry.name, registry.registry_id, "2026-04")
    metadata.set_egress_capped(registry.name, registry.registry_id, "2026-03")
    assert metadata.get_registry(registry.name).egress_capped_month == "2026-04"  # type: ignore[union-attr]
    metadata.set_egress_capped(registry.name, registry.registry_id, "2026-05")
    assert metadata.get_registry(registry.name).egress_capped_month == "2026-05"  # type: ignore[union-attr]


def test_put_registry_still_refuses_a_taken_name(
    stores: tuple[UsageStore, MetadataStore],
) -> None:
    _, metadata = stores
    registry = new_registry(metadata)
    with pytest.raises(ValueError):
        metadata.put_registry(RegistryRecord(name=registry.name, account_id="x", created_at=START))
