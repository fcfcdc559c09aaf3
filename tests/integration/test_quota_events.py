"""Quota threshold events end to end on moto: blobs committed through the DynamoDB store
change the registry record, the table's stream carries the change, the local runtime's
poller hands it to the quota-watch handler (by its handler string, in Lambda's event
shape), and the events reach EventBridge, where a rule delivers them to an SQS queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from chalicelib import wiring
from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.events import EventBridgePublisher, EventPublishError, events_client
from chalicelib.application import create_app
from chalicelib.registry.alerts import DETAIL_TYPE, SOURCE, QuotaWatch
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.plans import MIB
from chalicelib.registry.records import RegistryRecord
from portside.local.streams import StreamPoller, stream_pollers

from .conftest import REGION, TABLE, Aws

pytestmark = pytest.mark.integration

STARTER = 500 * MIB


@pytest.fixture
def bus(aws: Aws) -> Iterator[tuple[str, Any]]:
    """A bus of its own, with a rule sending the registry's quota events to a queue."""
    name = f"portside-it-{uuid.uuid4().hex[:8]}"
    events = events_client(aws.endpoint, REGION)
    sqs = boto3.client("sqs", endpoint_url=aws.endpoint, region_name=REGION)
    events.create_event_bus(Name=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="quota-events",
        EventBusName=name,
        EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]}),
    )
    events.put_targets(
        Rule="quota-events", EventBusName=name, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    yield name, (sqs, queue_url)


def received(queue: tuple[Any, str]) -> list[dict[str, Any]]:
    sqs, url = queue
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = batch.get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


class CountingPublisher(EventBridgePublisher):
    """The real publisher, failing its first ``fail`` calls as a throttled PutEvents."""

    def __init__(self, client: Any, bus: str, fail: int = 0) -> None:
        super().__init__(client, bus)
        self.fail = fail
        self.calls = 0

    def publish(self, detail_type: str, detail: Any) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise EventPublishError("ThrottlingException: rate exceeded")
        super().publish(detail_type, detail)


@pytest.fixture
def poller(aws: Aws) -> StreamPoller:
    (poller,) = stream_pollers(create_app(), aws.endpoint, TABLE, REGION)
    poller.drain()  # whatever earlier tests wrote is not this test's
    return poller


def starter_registry(store: DynamoMetadataStore) -> RegistryRecord:
    record = RegistryRecord(
        name=f"it-{uuid.uuid4().hex[:12]}",
        account_id="acct-it",
        plan="starter",
        created_at=datetime.now(UTC),
    )
    store.put_registry(record)
    return record


def commit(store: DynamoMetadataStore, repo: RepositoryName, size: int) -> None:
    digest = f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}"
    assert store.commit_blob(repo, digest, size, datetime.now(UTC))


def details(messages: list[dict[str, Any]], registry: str) -> list[tuple[str, int]]:
    return sorted(
        (m["detail"]["resource"], m["detail"]["threshold"])
        for m in messages
        if m["detail"]["registry"] == registry
    )


def test_crossing_80_percent_of_starter_storage_reaches_eventbridge_once(
    aws: Aws,
    store: DynamoMetadataStore,
    poller: StreamPoller,
    bus: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, queue = bus
    publisher = CountingPublisher(events_client(aws.endpoint, REGION), name)
    monkeypatch.setattr(wiring, "quota_watch", lambda: QuotaWatch(publisher))
    record = starter_registry(store)
    repo = RepositoryName(record.name, "app", record.registry_id)

    commit(store, repo, STARTER * 70 // 100)  # the first repository: 1 of 1
    poller.drain()
    first = received(queue)
    assert details(first, record.name) == [("repositories", 80), ("repositories", 100)]

    commit(store, repo, STARTER * 9 // 100)  # 79%
    poller.drain()
    assert received(queue) == []

    commit(store, repo, STARTER * 1 // 100 + 1)  # 80%
    poller.drain()
    (event,) = received(queue)
    assert event["source"] == "portside.registry"
    assert event["detail-type"] == "Quota Threshold Crossed"
    used = STARTER * 70 // 100 + STARTER * 9 // 100 + STARTER * 1 // 100 + 1
    assert event["detail"] == {
        "registry": record.name,
        "registry_id": record.registry_id,
        "account_id": "acct-it",
        "plan": "starter",
        "resource": "storage",
        "threshold": 80,
        "used": used,
        "limit": STARTER,
    }
    assert publisher.calls == 3
    poller.drain()
    assert received(queue) == []


def test_a_commit_moto_cancelled_and_retried_publishes_each_crossing_once(
    aws: Aws,
    store: DynamoMetadataStore,
    poller: StreamPoller,
    bus: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first blob of a new repository: the store's first transaction guesses that the
    repository exists and is cancelled; moto leaves the stream records of its undone
    writes (the registry record at 85% included), DynamoDB would not. The local poller
    skips them, so storage 80% is announced once."""
    name, queue = bus
    publisher = CountingPublisher(events_client(aws.endpoint, REGION), name)
    monkeypatch.setattr(wiring, "quota_watch", lambda: QuotaWatch(publisher))
    record = starter_registry(store)
    commit(store, RepositoryName(record.name, "app", record.registry_id), STARTER * 85 // 100)
    poller.drain()
    assert details(received(queue), record.name) == [
        ("repositories", 80),
        ("repositories", 100),
        ("storage", 80),
    ]


def test_a_throttled_publish_is_retried_from_the_failed_record(
    aws: Aws,
    store: DynamoMetadataStore,
    poller: StreamPoller,
    bus: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, queue = bus
    publisher = CountingPublisher(events_client(aws.endpoint, REGION), name, fail=2)
    monkeypatch.setattr(wiring, "quota_watch", lambda: QuotaWatch(publisher))
    record = starter_registry(store)
    repo = RepositoryName(record.name, "app", record.registry_id)

    commit(store, repo, STARTER // 2)  # repositories 80 + 100
    commit(store, repo, STARTER // 2)  # storage 80 + 100
    poller.drain()
    assert details(received(queue), record.name) == [
        ("repositories", 80),
        ("repositories", 100),
        ("storage", 80),
        ("storage", 100),
    ]
    assert publisher.calls == 4 + 2  # the two refusals, then each event once


def test_writes_other_than_registry_records_reach_no_handler(
    aws: Aws, store: DynamoMetadataStore, poller: StreamPoller
) -> None:
    seen: list[dict[str, Any]] = []
    poller.handler = lambda event, context: seen.append(event)
    record = starter_registry(store)
    repo = RepositoryName(record.name, "app", record.registry_id)
    commit(store, repo, 1)  # blob record, link, repository: and the registry record
    poller.drain()
    keys = [r["dynamodb"]["Keys"] for event in seen for r in event["Records"]]
    registry_keys = {"pk": {"S": f"REG#{record.name}"}, "sk": {"S": "#META"}}
    assert keys and all(k == registry_keys for k in keys)
    first = seen[0]["Records"][0]
    assert first["eventSource"] == "aws:dynamodb" and first["eventSourceARN"].startswith(
        "arn:aws:dynamodb:"
    )
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
