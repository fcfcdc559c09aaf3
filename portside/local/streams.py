"""Feeds the table's DynamoDB stream to the app's stream functions, as Lambda's event source
mapping does on AWS.

moto keeps a stream for a table that has one (``get_records`` works) but runs no Lambda, so
the local runtime polls the stream itself: every shard from the position the deployed
mapping starts at (LATEST), batches of at most ``batch_size`` records, only the records the
mapping's filter lets through (the same pattern: chalicelib.adapters.dynamo_streams.
REGISTRY_FILTER), the handler found by its handler string as the Lambda runtime does
(schedules.resolve_handler), and the event Lambda delivers (``{"Records": [...]}`` with
``eventSourceARN``, images in DynamoDB JSON). A batch that raises, or reports an item
failure (ReportBatchItemFailures), is retried from the failed record, up to
``retry_attempts`` times, then skipped, as the mapping's retry limit does.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.adapters.dynamo_streams import matches_filter

from .schedules import LambdaContext, resolve_handler

log = logging.getLogger("portside.local")

STREAM_VIEW = "NEW_AND_OLD_IMAGES"
# The stream functions of the app (Chalice names) and the filter of each one's mapping
# (infra/portside_infra/stack.py STREAM_FUNCTIONS).
STREAM_FILTERS: dict[str, Callable[[Mapping[str, Any]], bool]] = {"quota-watch": matches_filter}
BATCH_SIZE = 100  # the stack's mapping
RETRY_ATTEMPTS = 10  # the stack's mapping

Handler = Callable[[dict[str, Any], Any], Any]


_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"})


def ensure_stream(dynamodb: Any, table: str) -> str:
    """Give ``table`` the stream the stack gives it (NEW_AND_OLD_IMAGES), if it has none;
    returns the stream's ARN."""
    described = dynamodb.describe_table(TableName=table)["Table"]
    spec = described.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled"):
        described = dynamodb.update_table(
            TableName=table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
        )["TableDescription"]
    elif spec.get("StreamViewType") != STREAM_VIEW:
        raise ValueError(f"table {table} streams {spec.get('StreamViewType')}, not {STREAM_VIEW}")
    return str(described["LatestStreamArn"])


# ------------------------------------------------ moto: records of cancelled transactions
# moto applies a TransactWriteItems write by write, appending a stream record for each, and
# puts the items back when a condition fails (portside/local/moto_fixes.py); the records of
# the undone writes stay in the stream. DynamoDB writes no record for a cancelled
# transaction. A push's commit is such a transaction whenever its guess was wrong (a new
# repository), so without this the registry record would seem to change twice. When moto
# runs in this process, the records a transaction appends are remembered while it runs
# (pending: a poller waits for them) and, if it is cancelled, skipped.

_transaction = threading.local()
_pending: set[str] = set()
_cancelled: set[str] = set()
_marks = threading.Lock()


def skip_cancelled_transaction_records() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent; harmless when moto runs
    elsewhere: nothing is ever marked)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard

    if getattr(StreamShard.add, "_portside_streams", False):
        return
    add = StreamShard.add

    def add_record(self: Any, old: Any, new: Any) -> None:
        add(self, old, new)
        captured = getattr(_transaction, "records", None)
        if captured is not None and self.items:
            event_id = str(self.items[-1].record["eventID"])
            captured.append(event_id)
            with _marks:
                _pending.add(event_id)

    transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(_transaction, "records", None)
        records: list[str] = []
        _transaction.records = records
        try:
            result = transact(self, *args, **kwargs)
        except Exception:
            with _marks:
                _pending.difference_update(records)
                _cancelled.update(records)
            raise
        finally:
            _transaction.records = outer
        with _marks:
            _pending.difference_update(records)
        return result

    add_record._portside_streams = True  # type: ignore[attr-defined]
    StreamShard.add = add_record  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _state(record: Mapping[str, Any]) -> str | None:
    """ "pending" (its transaction is still running), "cancelled", or None."""
    event_id = str(record.get("eventID", ""))
    with _marks:
        if event_id in _pending:
            return "pending"
        if event_id in _cancelled:
            return "cancelled"
    return None


def _seq(record: Mapping[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


def _forget(records: list[dict[str, Any]]) -> None:
    """Records read past (the local runtime has one stream function) need no mark."""
    with _marks:
        _cancelled.difference_update(str(r.get("eventID", "")) for r in records)


# ---------------------------------------------------------------------------- polling


def _lambda_shape(value: Any) -> Any:
    """A record as boto3 parsed it -> as Lambda delivers it: binary attribute values in
    base64 (boto3 decoded them), times in epoch seconds (boto3 made them datetimes)."""
    if isinstance(value, dict):
        return {k: _lambda_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lambda_shape(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


@dataclass
class _Shard:
    iterator: str | None
    failures: int = 0


@dataclass
class StreamPoller:
    """One event source mapping: the table's stream -> one function."""

    streams: Any  # a boto3 dynamodbstreams client
    stream_arn: str
    function_name: str
    handler: Handler
    accepts: Callable[[Mapping[str, Any]], bool]
    batch_size: int = BATCH_SIZE
    retry_attempts: int = RETRY_ATTEMPTS
    starting_position: str = "LATEST"
    _shards: dict[str, _Shard] = field(default_factory=dict)

    def _discover(self) -> None:
        """Start reading every shard not seen yet (new shards from their beginning: their
        records came after the mapping started)."""
        stream = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        fresh = bool(self._shards)
        for shard in stream.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            position = "TRIM_HORIZON" if fresh else self.starting_position
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=position
            )["ShardIterator"]
            self._shards[shard_id] = _Shard(iterator)

    def start(self) -> StreamPoller:
        """Take the starting position now (LATEST: only later writes are delivered)."""
        self._discover()
        return self

    def poll(self) -> int:
        """One round over the shards: at most one batch each. Returns the records read."""
        self._discover()
        read = 0
        for shard_id, shard in self._shards.items():
            if shard.iterator is None:
                continue  # a closed shard, read to its end
            answer = self.streams.get_records(ShardIterator=shard.iterator, Limit=self.batch_size)
            records = answer.get("Records", [])
            waiting = next((r for r in records if _state(r) == "pending"), None)
            if waiting is not None:
                # A transaction is still writing: deliver what came before it, and read
                # again from its first record once it has committed or been cancelled.
                records = records[: records.index(waiting)]
            read += len(records)
            retry_from = self._deliver(records) if records else None
            if retry_from is not None:
                shard.failures += 1
                if shard.failures <= self.retry_attempts:
                    _forget([r for r in records if _seq(r) < int(retry_from)])
                    shard.iterator = self._at(shard_id, retry_from)
                    continue
                log.error(
                    "%s: records of shard %s dropped after %d retries",
                    self.function_name,
                    shard_id,
                    self.retry_attempts,
                )
            _forget(records)
            shard.failures = 0
            if waiting is not None:
                shard.iterator = self._at(shard_id, str(_seq(waiting)))
            else:
                shard.iterator = answer.get("NextShardIterator")
        return read

    def _at(self, shard_id: str, sequence_number: str) -> str:
        answer = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn,
            ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=sequence_number,
        )
        return str(answer["ShardIterator"])

    def _deliver(self, records: list[dict[str, Any]]) -> str | None:
        """Invoke the function with the records its filter accepts; the sequence number to
        retry from, or None when the batch was handled."""
        batch = [
            {**_lambda_shape(r), "eventSourceARN": self.stream_arn}
            for r in records
            if self.accepts(r) and _state(r) != "cancelled"
        ]
        if not batch:
            return None  # filtered out: Lambda does not invoke, the position moves on
        first = str(batch[0]["dynamodb"]["SequenceNumber"])
        try:
            result = self.handler(
                {"Records": batch}, LambdaContext(function_name=self.function_name)
            )
        except Exception:
            log.exception("%s failed; the batch is retried", self.function_name)
            return first
        failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
        if not failures:
            return None
        # Lambda retries from the lowest sequence number reported.
        return str(min((f["itemIdentifier"] for f in failures), key=int))

    def drain(self, rounds: int = 1000) -> int:
        """Poll until a round reads nothing (tests; a failing batch is retried within its
        attempts). Returns the records read."""
        total = 0
        for _ in range(rounds):
            read = self.poll()
            total += read
            if not read:
                return total
        return total


def stream_pollers(
    app: Any,
    endpoint_url: str | None,
    table: str,
    region: str = "us-east-1",
    filters: Mapping[str, Callable[[Mapping[str, Any]], bool]] | None = None,
) -> list[StreamPoller]:
    """A started poller for each stream function of the app (the table's stream enabled
    if it was not), each resolved from its handler string."""
    skip_cancelled_transaction_records()
    wanted = dict(STREAM_FILTERS if filters is None else filters)
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region, config=_CONFIG
    )
    arn = ensure_stream(dynamodb, table)
    streams = boto3.client(
        "dynamodbstreams", endpoint_url=endpoint_url, region_name=region, config=_CONFIG
    )
    pollers = []
    for function in app.pure_lambda_functions:
        if function.name not in wanted:
            continue
        pollers.append(
            StreamPoller(
                streams,
                arn,
                function.name,
                resolve_handler(function.handler_string),
                wanted.pop(function.name),
            ).start()
        )
    if wanted:
        raise ValueError(f"stream functions the app does not have: {sorted(wanted)}")
    return pollers


def run_streams(stop: threading.Event, pollers: list[StreamPoller], interval: float = 1.0) -> None:
    """Poll every mapping each ``interval`` seconds until ``stop`` is set; a failing round
    is logged and polling goes on (as the mapping keeps polling)."""
    while True:
        for poller in pollers:
            try:
                poller.poll()
            except Exception:
                log.exception("polling the stream for %s failed", poller.function_name)
        if stop.wait(interval):
            return
