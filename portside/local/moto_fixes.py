"""Make moto behave like DynamoDB and S3 where Portside depends on it.

S3: moto answers an UploadPart or CompleteMultipartUpload for a multipart upload that was
aborted (or never was) with a 500, which botocore retries five times; S3 answers
``NoSuchUpload``, which Portside maps to BLOB_UPLOAD_UNKNOWN. ``answer_no_such_upload``
restores S3's answer.

DynamoDB:

moto applies TransactWriteItems by deep-copying every table it touches and, when a
condition fails, putting the copies back: every write another thread made in between is
lost (an upload session vanishes, a blob link disappears), and each transaction costs time
proportional to the whole table. It also runs ``ADD`` updates as unlocked
read-modify-writes. DynamoDB does none of this. Holding one lock around each write call
restores per-request atomicity (the races Portside must handle itself, between a read and a
conditional write, are untouched); under that lock a cancelled transaction only needs the
items it names put back, so the snapshot covers those items instead of whole tables.
"""

from __future__ import annotations

import threading
from typing import Any

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_applied = False


def serialize_dynamodb_writes() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    _snapshot_only_named_items(DynamoDBBackend)
    for name in _WRITES:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    _applied = True


def _snapshot_only_named_items(backend_class: Any) -> None:
    import copy as std_copy

    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    class _NoTableCopies:
        """Stands in for the ``copy`` module inside moto's backend: tables are not copied
        (their named items are, below), everything else is."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else std_copy.deepcopy(value, memo)

        copy = staticmethod(std_copy.copy)

    models.copy = _NoTableCopies  # type: ignore[assignment,attr-defined]
    original = backend_class.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            attrs = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr not in attrs:
                continue
            hash_value = DynamoType(attrs[table.hash_key_attr])
            range_value = (
                DynamoType(attrs[table.range_key_attr])
                if table.range_key_attr and table.range_key_attr in attrs
                else None
            )
            bucket = table.items.get(hash_value, {}) if range_value is not None else table.items
            present = (range_value if range_value is not None else hash_value) in bucket
            before = bucket.get(range_value if range_value is not None else hash_value)
            saved.append((table, hash_value, range_value, present, std_copy.deepcopy(before)))
        try:
            original(self, transact_items)
        except Exception:
            # Put back exactly the items the transaction named (writes are serialized by
            # the lock, so nothing else changed meanwhile).
            for table, hash_value, range_value, present, before in reversed(saved):
                if range_value is None:
                    if present:
                        table.items[hash_value] = before
                    else:
                        table.items.pop(hash_value, None)
                elif present:
                    table.items[hash_value][range_value] = before
                else:
                    table.items.get(hash_value, {}).pop(range_value, None)
                    if hash_value in table.items and not table.items[hash_value]:
                        del table.items[hash_value]
            raise

    backend_class.transact_write_items = transact_write_items


def answer_no_such_upload() -> None:
    """Patch moto's S3 backend so that a part for an unknown upload is NoSuchUpload."""
    from moto.s3.exceptions import NoSuchUpload
    from moto.s3.models import S3Backend

    if getattr(S3Backend.upload_part, "_portside_fixed", False):
        return
    original = S3Backend.upload_part

    def upload_part(
        self: Any, bucket_name: str, multipart_id: str, part_id: int, value: bytes
    ) -> Any:
        if multipart_id not in self.get_bucket(bucket_name).multiparts:
            raise NoSuchUpload(upload_id=multipart_id)
        return original(self, bucket_name, multipart_id, part_id, value)

    complete = S3Backend.complete_multipart_upload

    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        try:
            return complete(self, bucket_name, multipart_id, body)
        except KeyError:  # moto's lookup of an upload that was aborted: a 500 otherwise
            raise NoSuchUpload(upload_id=multipart_id) from None

    upload_part._portside_fixed = True  # type: ignore[attr-defined]
    S3Backend.upload_part = upload_part  # type: ignore[method-assign]
    S3Backend.complete_multipart_upload = complete_multipart_upload  # type: ignore[method-assign]


def apply_fixes() -> None:
    """Every fix, in this process (idempotent)."""
    serialize_dynamodb_writes()
    answer_no_such_upload()


def main() -> None:
    """``python -m portside.local.moto_fixes PORT``: a moto server with the fixes, for
    running the registry against an AWS stand-in in another process (benchmarks)."""
    import sys

    from moto.server import ThreadedMotoServer

    apply_fixes()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5001
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"moto (with DynamoDB write fixes) on http://127.0.0.1:{port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
