"""Count AWS API calls made by this process, by hooking botocore's events.

``install()`` wraps ``botocore.session.Session.create_client`` so that every client created
afterwards (boto3's, PynamoDB's, powertools') registers a ``before-call`` handler. The handler
records the service, the operation and what it costs in DynamoDB request units (items per
call, consistency), so that call counts turn into a cost model. Presigning an S3 URL is not
an API call and fires no ``before-call``: it is not counted.

Install the hook before the registry creates its clients (``wiring`` builds them lazily, on
the first request), and count with ``measure()``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

DYNAMO_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
DYNAMO_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)


@dataclass(frozen=True)
class Call:
    service: str  # "dynamodb", "s3", ...
    operation: str  # "GetItem", "UploadPart", ...
    items: int  # items a DynamoDB call names (keys of a batch, actions of a transaction)
    consistent: bool  # strongly consistent DynamoDB read


@dataclass
class Tally:
    calls: list[Call] = field(default_factory=list)

    @property
    def dynamodb_reads(self) -> int:
        return sum(1 for c in self.calls if c.service == "dynamodb" and c.operation in DYNAMO_READS)

    @property
    def dynamodb_writes(self) -> int:
        return sum(
            1 for c in self.calls if c.service == "dynamodb" and c.operation in DYNAMO_WRITES
        )

    @property
    def s3(self) -> int:
        return sum(1 for c in self.calls if c.service == "s3")

    @property
    def total(self) -> int:
        return len(self.calls)

    def breakdown(self) -> dict[str, int]:
        """``{"dynamodb.GetItem": 2, "s3.PutObject": 1, ...}`` in first-seen order."""
        counts = Counter(f"{c.service}.{c.operation}" for c in self.calls)
        order = dict.fromkeys(f"{c.service}.{c.operation}" for c in self.calls)
        return {k: counts[k] for k in order}

    def request_units(self) -> dict[str, float]:
        """DynamoDB on-demand request units, assuming items of at most 4 KB read / 1 KB
        written: an eventually consistent read is 0.5 RRU per item, a strongly consistent one
        1, a transactional one 2; a write is 1 WRU per item, 2 in a transaction. A Query is
        counted as one 4 KB page (0.5 RRU)."""
        rru = wru = 0.0
        for c in self.calls:
            if c.service != "dynamodb":
                continue
            if c.operation == "TransactGetItems":
                rru += 2.0 * c.items
            elif c.operation in ("GetItem", "BatchGetItem"):
                rru += (1.0 if c.consistent else 0.5) * c.items
            elif c.operation in ("Query", "Scan"):
                rru += 1.0 if c.consistent else 0.5
            elif c.operation == "TransactWriteItems":
                # A ConditionCheck is charged like a write in a transaction.
                wru += 2.0 * c.items
            elif c.operation in DYNAMO_WRITES:
                wru += 1.0 * c.items
        return {"rru": rru, "wru": wru}

    def summary(self) -> dict[str, Any]:
        return {
            "dynamodb_reads": self.dynamodb_reads,
            "dynamodb_writes": self.dynamodb_writes,
            "s3_calls": self.s3,
            "total_calls": self.total,
            "breakdown": self.breakdown(),
            **self.request_units(),
        }


_lock = threading.Lock()
_active: list[Tally] = []
_installed = False


def _items(operation: str, params: dict[str, Any]) -> tuple[int, bool]:
    if operation == "BatchGetItem":
        tables = params.get("RequestItems") or {}
        keys = sum(len(t.get("Keys") or []) for t in tables.values())
        consistent = any(t.get("ConsistentRead") for t in tables.values())
        return keys, consistent
    if operation == "BatchWriteItem":
        tables = params.get("RequestItems") or {}
        return sum(len(v) for v in tables.values()), False
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return len(params.get("TransactItems") or []), True
    return 1, bool(params.get("ConsistentRead"))


def _before_call(model: Any = None, params: Any = None, **_: Any) -> None:
    if model is None:
        return
    service = model.service_model.endpoint_prefix
    operation = model.name
    api_params: dict[str, Any] = {}
    if service == "dynamodb" and isinstance(params, dict):
        body = params.get("body")
        if isinstance(body, bytes | str) and body:
            # The JSON protocol's body is serialized by now.
            api_params = json.loads(body)
        elif isinstance(body, dict):
            api_params = body
    items, consistent = _items(operation, api_params)
    call = Call(service, operation, items, consistent)
    with _lock:
        for tally in _active:
            tally.calls.append(call)


def install() -> None:
    """Hook every botocore client created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    import botocore.session

    original = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-call.*.*", _before_call)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    _installed = True


@contextmanager
def measure() -> Iterator[Tally]:
    """Collect every AWS call made (by any thread of this process) inside the block."""
    tally = Tally()
    with _lock:
        _active.append(tally)
    try:
        yield tally
    finally:
        with _lock:
            _active.remove(tally)
