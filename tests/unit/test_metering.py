"""Egress metering (registry.metering): log objects to monthly counters, exactly once per
object; the starter plan's transfer cap flag; transfer threshold events; pulls and pushes
from API records; and the Lambda handlers that feed it."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.adapters.events import MemoryEventPublisher
from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.adapters.memory_usage import MemoryUsageStore
from chalicelib.events import handlers
from chalicelib.registry.alerts import DETAIL_TYPE
from chalicelib.registry.metering import Metering
from chalicelib.registry.plans import MIB
from chalicelib.registry.records import RegistryRecord, TrafficCounts

from .test_access_logs import api_record, cf_file, cf_line, s3_line

SOURCE = "s3://portside-blobs-logs/s3-access/2026-12-02-22-15-01-0123456789ABCDEF"


class World:
    def __init__(self) -> None:
        self.store = MemoryMetadataStore()
        self.usage = MemoryUsageStore()
        self.events = MemoryEventPublisher()
        self.metering = Metering(self.usage, self.store, self.events)

    def registry(self, name: str = "acme", plan: str = "starter") -> RegistryRecord:
        record = RegistryRecord(name=name, account_id="acct-1", plan=plan)
        self.store.put_registry(record)
        return record

    def egress(self, registry: RegistryRecord, month: str = "2026-12") -> int:
        usage = self.usage.get_usage_month(registry.registry_id, month)
        return usage.egress_bytes if usage else 0

    def capped(self, registry: RegistryRecord) -> str | None:
        record = self.store.get_registry(registry.name)
        assert record is not None
        return record.egress_capped_month


def get(registry: RegistryRecord, sent: int, time: str = "02/Dec/2026:22:10:15 +0000") -> str:
    key = f"registries/{registry.registry_id}/blobs/uploads/u1/data"
    return s3_line(key=key, sent=str(sent), size=str(sent), time=time)


def log(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@pytest.fixture
def world() -> World:
    return World()


def test_a_log_object_across_midnight_at_month_end_counts_to_both_months(world: World) -> None:
    acme = world.registry(plan="professional")
    text = log(
        get(acme, 100, "31/Dec/2026:23:59:58 +0000"),
        get(acme, 20, "31/Dec/2026:23:59:59 +0000"),
        get(acme, 3, "01/Jan/2027:00:00:00 +0000"),
    )
    outcome = world.metering.meter_s3_log(SOURCE, text)
    assert world.egress(acme, "2026-12") == 120
    assert world.egress(acme, "2027-01") == 3
    assert outcome.egress_bytes_added == 123
    month = world.usage.get_usage_month(acme.registry_id, "2027-01")
    assert month is not None and month.registry_name == "acme" and month.account_id == "acct-1"


def test_the_same_log_object_twice_counts_once(world: World) -> None:
    acme, other = world.registry(plan="basic"), world.registry("other", plan="basic")
    text = log(get(acme, 100), get(other, 7), get(acme, 5, "01/Jan/2027:00:00:01 +0000"))
    first = world.metering.meter_s3_log(SOURCE, text)
    again = world.metering.meter_s3_log(SOURCE, text)
    assert all(c.added for c in first.counted) and len(first.counted) == 3
    assert not any(c.added for c in again.counted) and again.egress_bytes_added == 0
    assert (world.egress(acme), world.egress(other), world.egress(acme, "2027-01")) == (100, 7, 5)
    # Another object with the same lines is other traffic.
    world.metering.meter_s3_log(SOURCE + "-2", text)
    assert world.egress(acme) == 200


class Crash(Exception):
    pass


class CrashingUsage(MemoryUsageStore):
    """Fails the n-th addition once, as a Lambda that dies part-way through an object."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def add_traffic(self, *args: Any, **kwargs: Any) -> bool:
        self.calls += 1
        if self.calls == self.fail_at:
            raise Crash()
        return super().add_traffic(*args, **kwargs)


def test_a_crash_after_the_first_registry_then_a_retry_counts_each_once(world: World) -> None:
    world.usage = CrashingUsage(fail_at=2)
    world.metering = Metering(world.usage, world.store, world.events)
    regs = [world.registry(f"r{i}", plan="basic") for i in range(3)]
    text = log(*(get(r, 10 * (i + 1)) for i, r in enumerate(regs)))
    with pytest.raises(Crash):
        world.metering.meter_s3_log(SOURCE, text)
    counted = [world.egress(r) for r in regs]
    assert sum(1 for c in counted if c) == 1  # the first group (in id order) only
    retry = world.metering.meter_s3_log(SOURCE, text)
    assert [world.egress(r) for r in regs] == [10, 20, 30]
    assert sum(c.added for c in retry.counted) == 2
    world.metering.meter_s3_log(SOURCE, text)
    assert [world.egress(r) for r in regs] == [10, 20, 30]


def test_a_starter_registry_over_500_mib_is_capped_for_the_month(world: World) -> None:
    acme = world.registry(plan="starter")
    world.metering.meter_s3_log(SOURCE + "-1", log(get(acme, 300 * MIB)))
    world.metering.meter_s3_log(SOURCE + "-2", log(get(acme, 200 * MIB)))
    assert world.egress(acme) == 500 * MIB
    assert world.capped(acme) is None  # exactly the allowance: not over it
    outcome = world.metering.meter_s3_log(SOURCE + "-3", log(get(acme, 1)))
    assert world.capped(acme) == "2026-12"
    assert outcome.capped == [("acme", "2026-12")]


def test_paid_plans_are_never_capped(world: World) -> None:
    basic, pro = world.registry("b", plan="basic"), world.registry("p", plan="professional")
    world.metering.meter_s3_log(SOURCE, log(get(basic, 6 * 1024 * MIB), get(pro, 200 * 1024 * MIB)))
    assert world.capped(basic) is None and world.capped(pro) is None


def test_the_cap_flag_is_set_on_a_retry_after_a_crash_before_it(world: World) -> None:
    acme = world.registry(plan="starter")
    world.usage.add_traffic(acme.registry_id, "2026-12", SOURCE, TrafficCounts(501 * MIB))
    assert world.capped(acme) is None  # counted, then the Lambda died before the flag
    world.metering.meter_s3_log(SOURCE, log(get(acme, 501 * MIB)))
    assert world.egress(acme) == 501 * MIB and world.capped(acme) == "2026-12"


def test_a_late_log_of_last_month_does_not_lift_this_months_cap(world: World) -> None:
    acme = world.registry(plan="starter")
    world.metering.meter_s3_log(SOURCE + "-dec", log(get(acme, 501 * MIB)))
    assert world.capped(acme) == "2026-12"
    late = log(get(acme, 501 * MIB, "30/Nov/2026:23:59:00 +0000"))
    world.metering.meter_s3_log(SOURCE + "-nov", late)
    assert world.capped(acme) == "2026-12"


def test_a_re_created_name_is_not_capped_for_its_predecessor(world: World) -> None:
    old = world.registry(plan="starter")
    world.store.mark_registry_deleting("acme")
    while not world.store.purge_registry("acme", 100):
        pass
    new = world.registry(plan="starter")
    world.metering.meter_s3_log(SOURCE, log(get(old, 600 * MIB)))
    assert world.egress(old) == 600 * MIB  # still counted, by id
    assert world.capped(new) is None


def transfer_events(world: World) -> list[tuple[int, int, str]]:
    return [
        (d["threshold"], d["used"], d["month"])
        for t, d in world.events.events
        if t == DETAIL_TYPE and d["resource"] == "transfer"
    ]


def test_threshold_events_are_published_once_when_an_object_crosses_them(world: World) -> None:
    acme = world.registry(plan="starter")
    world.metering.meter_s3_log(SOURCE + "-1", log(get(acme, 390 * MIB)))
    assert transfer_events(world) == []
    world.metering.meter_s3_log(SOURCE + "-2", log(get(acme, 20 * MIB)))
    assert transfer_events(world) == [(80, 410 * MIB, "2026-12")]
    world.metering.meter_s3_log(SOURCE + "-2", log(get(acme, 20 * MIB)))  # redelivered
    world.metering.meter_s3_log(SOURCE + "-3", log(get(acme, 10 * MIB)))
    assert len(transfer_events(world)) == 1
    world.metering.meter_s3_log(SOURCE + "-4", log(get(acme, 100 * MIB)))
    world.metering.meter_s3_log(SOURCE + "-4", log(get(acme, 100 * MIB)))
    world.metering.meter_s3_log(SOURCE + "-5", log(get(acme, 100 * MIB)))
    assert transfer_events(world) == [(80, 410 * MIB, "2026-12"), (100, 520 * MIB, "2026-12")]
    _, detail = world.events.events[-1]
    assert detail == {
        "registry": "acme",
        "registry_id": acme.registry_id,
        "account_id": "acct-1",
        "plan": "starter",
        "resource": "transfer",
        "threshold": 100,
        "used": 520 * MIB,
        "limit": 500 * MIB,
        "month": "2026-12",
    }


def test_one_object_crossing_both_thresholds_publishes_both(world: World) -> None:
    acme = world.registry(plan="basic")
    world.metering.meter_s3_log(SOURCE, log(get(acme, 6 * 1024 * MIB)))
    world.metering.meter_s3_log(SOURCE, log(get(acme, 6 * 1024 * MIB)))
    assert [t for t, _, _ in transfer_events(world)] == [80, 100]


def test_cloudfront_logs_are_metered_like_s3_logs(world: World) -> None:
    acme = world.registry(plan="basic")
    stem = f"/registries/{acme.registry_id}/blobs/uploads/u1/data"
    data = cf_file([cf_line(stem=stem, sent="1000"), cf_line(stem=stem, status="206", sent="24")])
    source = "s3://portside-blobs-logs/cloudfront/E2EXAMPLE.2026-12-02-22.abcd1234.gz"
    world.metering.meter_cloudfront_log(source, data)
    world.metering.meter_cloudfront_log(source, data)
    assert world.egress(acme) == 1024


def test_pulls_and_pushes_are_counted_from_api_records(world: World) -> None:
    acme = world.registry(plan="basic")
    messages = [
        api_record(),
        api_record(path="/v2/acme/app/manifests/sha256:abc"),
        api_record(method="HEAD"),
        api_record(method="PUT", status="201"),
        api_record(path="/v2/ghost/app/manifests/latest"),
    ]
    source = "cwl:/aws/apigateway/portside/abc#1-5"
    outcome = world.metering.meter_api_records(source, messages)
    world.metering.meter_api_records(source, messages)
    usage = world.usage.get_usage_month(acme.registry_id, "2026-12")
    assert usage is not None and (usage.pulls, usage.pushes, usage.egress_bytes) == (2, 1, 0)
    assert outcome.unknown_registries == ["ghost"]


# ------------------------------------------------------------------ handlers


@pytest.fixture
def wired(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[World, MemoryBlobStore]:
    logs = MemoryBlobStore()
    monkeypatch.setattr(wiring, "metering", lambda: world.metering)
    monkeypatch.setattr(wiring, "log_reader", lambda: logs)
    return world, logs


def object_created(key: str, bucket: str = "portside-blobs-logs") -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}},
    }


def test_meter_access_logs_reads_the_object_and_meters_it_once(
    wired: tuple[World, MemoryBlobStore],
) -> None:
    world, logs = wired
    acme = world.registry(plan="basic")
    key = "s3-access/2026-12-02-22-15-01-0123456789ABCDEF"
    logs.put_object(key, log(get(acme, 4096)).encode())
    answer = handlers.meter_access_logs(object_created(key), None)
    handlers.meter_access_logs(object_created(key), None)
    assert world.egress(acme) == 4096
    assert answer["egress_bytes"] == 4096


def test_meter_access_logs_takes_cloudfront_logs_and_ignores_other_keys(
    wired: tuple[World, MemoryBlobStore],
) -> None:
    world, logs = wired
    acme = world.registry(plan="basic")
    key = "cloudfront/E2EXAMPLE.2026-12-02-22.abcd1234.gz"
    stem = f"/registries/{acme.registry_id}/blobs/x"
    logs.put_object(key, cf_file([cf_line(stem=stem, sent="77")]))
    handlers.meter_access_logs(object_created(key), None)
    assert world.egress(acme) == 77
    assert handlers.meter_access_logs(object_created("elsewhere/x"), None)["skipped"]


def test_meter_api_logs_decodes_a_cloudwatch_logs_subscription_batch(
    wired: tuple[World, MemoryBlobStore],
) -> None:
    world, _ = wired
    acme = world.registry(plan="basic")
    batch = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "/aws/apigateway/portside-access",
        "logStream": "0123abcd",
        "logEvents": [
            {"id": "3611", "timestamp": 1796249415000, "message": api_record()},
            {"id": "3612", "timestamp": 1796249416000, "message": api_record(method="HEAD")},
            {"id": "3613", "timestamp": 1796249417000, "message": api_record()},
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()
    handlers.meter_api_logs({"awslogs": {"data": data}}, None)
    handlers.meter_api_logs({"awslogs": {"data": data}}, None)
    usage = world.usage.get_usage_month(acme.registry_id, "2026-12")
    assert usage is not None and usage.pulls == 2
    control = {"messageType": "CONTROL_MESSAGE", "logGroup": "", "logStream": "", "logEvents": []}
    data = base64.b64encode(gzip.compress(json.dumps(control).encode())).decode()
    assert handlers.meter_api_logs({"awslogs": {"data": data}}, None)["records"] == 0
