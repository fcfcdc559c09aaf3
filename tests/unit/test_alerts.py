"""Quota threshold events: which changes of a registry record cross 80% / 100% of a limit,
what is published, and how the stream records and the handler feed it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from chalicelib import wiring
from chalicelib.adapters.dynamo_streams import (
    REGISTRY_FILTER,
    matches_filter,
    registry_changes,
)
from chalicelib.adapters.events import EventBridgePublisher, EventPublishError, MemoryEventPublisher
from chalicelib.events import handlers
from chalicelib.registry.alerts import (
    DETAIL_TYPE,
    SOURCE,
    QuotaWatch,
    RegistryUsage,
    ThresholdCrossing,
    crossings,
)
from chalicelib.registry.plans import GIB, MIB

STARTER = 500 * MIB


def usage(storage: int = 0, repos: int = 0, plan: str = "starter", **kw: Any) -> RegistryUsage:
    return RegistryUsage(
        registry=kw.pop("registry", "acme"),
        registry_id=kw.pop("registry_id", "r" * 32),
        account_id="acct-1",
        plan=plan,
        storage_bytes=storage,
        repository_count=repos,
        **kw,
    )


def pct(percent: float, of: int = STARTER) -> int:
    return int(of * percent / 100)


def levels(found: list[ThresholdCrossing]) -> list[tuple[str, int]]:
    return [(c.resource, c.threshold) for c in found]


# ------------------------------------------------------------------------------ crossings


def test_storage_reaching_80_percent_crosses_80() -> None:
    found = crossings(usage(pct(79)), usage(pct(80)))
    assert levels(found) == [("storage", 80)]
    (crossing,) = found
    assert crossing.detail() == {
        "registry": "acme",
        "registry_id": "r" * 32,
        "account_id": "acct-1",
        "plan": "starter",
        "resource": "storage",
        "threshold": 80,
        "used": pct(80),
        "limit": STARTER,
    }


def test_storage_moving_within_80_to_99_percent_crosses_nothing() -> None:
    assert crossings(usage(pct(80)), usage(pct(99))) == []


def test_storage_reaching_100_percent_crosses_100_only() -> None:
    assert levels(crossings(usage(pct(99)), usage(STARTER))) == [("storage", 100)]


def test_one_change_from_70_to_100_percent_crosses_both() -> None:
    assert levels(crossings(usage(pct(70)), usage(STARTER + 1))) == [
        ("storage", 80),
        ("storage", 100),
    ]


def test_going_down_or_staying_crosses_nothing() -> None:
    assert crossings(usage(STARTER), usage(pct(50))) == []
    assert crossings(usage(STARTER), usage(STARTER)) == []


def test_falling_back_below_then_rising_again_crosses_again() -> None:
    assert crossings(usage(pct(85)), usage(pct(60))) == []
    assert levels(crossings(usage(pct(60)), usage(pct(85)))) == [("storage", 80)]


def test_repositories_reaching_the_plan_limit_cross_both_thresholds() -> None:
    # starter: 1 repository, so the first one is 100% (and past 80%).
    assert levels(crossings(usage(repos=0), usage(repos=1))) == [
        ("repositories", 80),
        ("repositories", 100),
    ]
    basic = "basic"  # 5 repositories: the 4th is 80%, the 5th 100%
    assert levels(crossings(usage(repos=3, plan=basic), usage(repos=4, plan=basic))) == [
        ("repositories", 80)
    ]
    assert levels(crossings(usage(repos=4, plan=basic), usage(repos=5, plan=basic))) == [
        ("repositories", 100)
    ]


def test_unlimited_repositories_never_cross() -> None:
    pro = "professional"
    assert crossings(usage(repos=10, plan=pro), usage(repos=10_000, plan=pro)) == []


def test_paid_plan_storage_crosses_at_the_included_storage_where_overage_begins() -> None:
    basic = 5 * GIB
    found = crossings(usage(pct(79, basic), plan="basic"), usage(pct(101, basic), plan="basic"))
    assert levels(found) == [("storage", 80), ("storage", 100)]
    assert {c.limit for c in found} == {basic}


def test_downgrade_that_leaves_the_registry_near_the_smaller_limit_crosses() -> None:
    held = pct(90)  # 450 MiB: 9% of basic's 5 GiB, 90% of starter's 500 MiB
    found = crossings(usage(held, plan="basic"), usage(held, plan="starter"))
    assert levels(found) == [("storage", 80)]
    assert found[0].plan == "starter" and found[0].limit == STARTER


def test_upgrade_crosses_nothing() -> None:
    assert crossings(usage(pct(95), repos=1), usage(pct(95), repos=1, plan="basic")) == []


def test_a_new_record_crosses_from_nothing() -> None:
    assert crossings(None, usage()) == []
    assert levels(crossings(None, usage(pct(80)))) == [("storage", 80)]


def test_deleted_or_deleting_registries_cross_nothing() -> None:
    assert crossings(usage(pct(10)), None) == []
    assert crossings(usage(pct(10)), usage(pct(90), deleting=True)) == []


def test_a_recreated_name_is_judged_from_nothing() -> None:
    old = usage(pct(90), registry_id="a" * 32)
    assert levels(crossings(old, usage(pct(85), registry_id="b" * 32))) == [("storage", 80)]


def test_storage_and_repositories_crossing_in_one_change() -> None:
    assert levels(crossings(usage(pct(10)), usage(pct(85), repos=1))) == [
        ("storage", 80),
        ("repositories", 80),
        ("repositories", 100),
    ]


# ---------------------------------------------------------------------------- the watch


class FlakyPublisher(MemoryEventPublisher):
    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on = fail_on

    def publish(self, detail_type: str, detail: Any) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise EventPublishError("throttled")
        super().publish(detail_type, detail)


def test_watch_publishes_every_crossing_of_a_batch_in_order() -> None:
    publisher = MemoryEventPublisher()
    outcome = QuotaWatch(publisher).process(
        [
            (usage(pct(10)), usage(pct(50))),
            (usage(pct(50)), usage(pct(81))),
            (usage(pct(81)), usage(STARTER, repos=1)),
        ]
    )
    assert outcome.failed_at is None
    assert [(t, d["resource"], d["threshold"]) for t, d in publisher.events] == [
        (DETAIL_TYPE, "storage", 80),
        (DETAIL_TYPE, "storage", 100),
        (DETAIL_TYPE, "repositories", 80),
        (DETAIL_TYPE, "repositories", 100),
    ]


def test_watch_stops_at_the_first_change_it_cannot_publish() -> None:
    publisher = FlakyPublisher(fail_on=2)
    outcome = QuotaWatch(publisher).process(
        [(usage(pct(10)), usage(pct(81))), (usage(pct(81)), usage(STARTER)), (None, usage())]
    )
    assert outcome.failed_at == 1 and isinstance(outcome.error, EventPublishError)
    assert len(publisher.events) == 1 and len(outcome.published) == 1


# ------------------------------------------------------------------ EventBridge publisher


class FakeEvents:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.answer


def test_eventbridge_publisher_puts_the_contract_entry() -> None:
    client = FakeEvents({"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]})
    (crossing,) = crossings(usage(pct(79)), usage(pct(80)))
    EventBridgePublisher(client, "portside-bus").publish(DETAIL_TYPE, crossing.detail())
    (call,) = client.calls
    (entry,) = call["Entries"]
    assert entry["Source"] == SOURCE == "portside.registry"
    assert entry["DetailType"] == "Quota Threshold Crossed"
    assert entry["EventBusName"] == "portside-bus"
    assert json.loads(entry["Detail"]) == crossing.detail()


def test_eventbridge_publisher_raises_on_a_failed_entry() -> None:
    client = FakeEvents(
        {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}],
        }
    )
    with pytest.raises(EventPublishError, match="ThrottlingException"):
        EventBridgePublisher(client).publish(DETAIL_TYPE, {"registry": "acme"})


# ---------------------------------------------------------------------- stream records


_ser = TypeSerializer()


def image(u: RegistryUsage) -> dict[str, Any]:
    item = {
        "pk": f"REG#{u.registry}",
        "sk": "#META",
        "registry_id": u.registry_id,
        "account_id": u.account_id,
        "plan": u.plan,
        "storage_bytes": u.storage_bytes,
        "repository_count": u.repository_count,
        "read_only": False,
        "deleting": u.deleting,
    }
    return {k: _ser.serialize(v) for k, v in item.items()}


def stream_record(
    old: RegistryUsage | None, new: RegistryUsage | None, seq: str, pk: str | None = None
) -> dict[str, Any]:
    some = new or old
    assert some is not None
    body: dict[str, Any] = {
        "Keys": {"pk": {"S": pk or f"REG#{some.registry}"}, "sk": {"S": "#META"}},
        "SequenceNumber": seq,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        body["OldImage"] = image(old)
    if new is not None:
        body["NewImage"] = image(new)
    name = "MODIFY" if old and new else ("INSERT" if new else "REMOVE")
    return {"eventID": seq, "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": body}


def test_stream_records_become_registry_changes_and_others_are_ignored() -> None:
    before, after = usage(pct(79), repos=1), usage(pct(80), repos=1)
    records = [
        stream_record(before, after, "100"),
        stream_record(before, after, "101", pk="TOKEN#abc"),  # #META, not a registry
        stream_record(None, usage(), "102"),
        stream_record(after, None, "103"),
    ]
    changes = registry_changes(records)
    assert [c.sequence_number for c in changes] == ["100", "102", "103"]
    assert changes[0].change == (before, after)
    assert changes[1].old is None and changes[2].new is None
    assert [matches_filter(r) for r in records] == [True, False, True, True]


def test_filter_pattern_names_the_registry_record_keys() -> None:
    from chalicelib.adapters.dynamo_models import RegistryItem

    keys = REGISTRY_FILTER["dynamodb"]["Keys"]
    assert set(keys) == {
        RegistryItem._hash_keyname,
        RegistryItem._range_keyname,
    }


@pytest.fixture
def memory_watch(monkeypatch: pytest.MonkeyPatch) -> MemoryEventPublisher:
    publisher = MemoryEventPublisher()
    monkeypatch.setattr(wiring, "quota_watch", lambda: QuotaWatch(publisher))
    return publisher


def test_handler_publishes_crossings_of_a_lambda_stream_batch(
    memory_watch: MemoryEventPublisher,
) -> None:
    event = {"Records": [stream_record(usage(pct(79)), usage(pct(100)), "7")]}
    assert handlers.quota_watch(event, None) == {"batchItemFailures": []}
    assert [d["threshold"] for _, d in memory_watch.events] == [80, 100]


def test_handler_reports_the_first_unpublished_record_for_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher = FlakyPublisher(fail_on=2)
    monkeypatch.setattr(wiring, "quota_watch", lambda: QuotaWatch(publisher))
    event = {
        "Records": [
            stream_record(usage(pct(79)), usage(pct(80)), "7"),
            stream_record(usage(pct(80)), usage(pct(100)), "8"),
        ]
    }
    assert handlers.quota_watch(event, None) == {"batchItemFailures": [{"itemIdentifier": "8"}]}


# ------------------------------------------------------------- local runtime's poller


class FakeStreams:
    """A one-shard stream: iterators are positions in ``records``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        kind = kwargs["ShardIteratorType"]
        if kind == "LATEST":
            return {"ShardIterator": str(len(self.records))}
        if kind == "TRIM_HORIZON":
            return {"ShardIterator": "0"}
        seqs = [r["dynamodb"]["SequenceNumber"] for r in self.records]
        return {"ShardIterator": str(seqs.index(kwargs["SequenceNumber"]))}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        start = int(ShardIterator)
        batch = self.records[start : start + Limit]
        return {"Records": batch, "NextShardIterator": str(start + len(batch))}


def local_poller(streams: FakeStreams, handler: Any, retry_attempts: int = 10) -> Any:
    from portside.local.streams import StreamPoller

    return StreamPoller(
        streams,
        "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x",
        "quota-watch",
        handler,
        matches_filter,
        retry_attempts=retry_attempts,
    ).start()


def test_local_poller_delivers_only_later_registry_records_in_lambdas_shape() -> None:
    streams = FakeStreams()
    streams.records.append(stream_record(usage(1), usage(2), "1"))  # before: not delivered
    seen: list[dict[str, Any]] = []
    poller = local_poller(streams, lambda event, context: seen.append(event))
    streams.records += [
        stream_record(usage(2), usage(3), "2", pk="TOKEN#x"),
        stream_record(usage(3), usage(4), "3"),
    ]
    assert poller.drain() == 2
    (event,) = seen
    (record,) = event["Records"]
    assert record["dynamodb"]["SequenceNumber"] == "3"
    assert record["eventSourceARN"].endswith("/stream/x")


def test_local_poller_retries_from_the_reported_record_then_gives_up() -> None:
    streams = FakeStreams()
    calls: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seqs = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        calls.append(seqs)
        return {"batchItemFailures": [{"itemIdentifier": "6"}] if "6" in seqs else []}

    poller = local_poller(streams, handler, retry_attempts=2)
    streams.records += [stream_record(usage(1), usage(2), s) for s in ("5", "6", "7")]
    poller.drain()
    # The first batch, then from "6" twice more (the retries), then dropped.
    assert calls == [["5", "6", "7"], ["6", "7"], ["6", "7"]]
    streams.records.append(stream_record(usage(1), usage(2), "8"))
    poller.drain()
    assert calls[-1] == ["8"]
