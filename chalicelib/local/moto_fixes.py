"""Make moto's DynamoDB behave like DynamoDB where Portside depends on it.

moto applies TransactWriteItems by deep-copying every table it touches and, when a
condition fails, putting the copies back: every write another thread made in between is
lost (an upload session vanishes, a blob link disappears). It also runs ``ADD`` updates as
unlocked read-modify-writes. DynamoDB does neither. Holding one lock around each write
call restores per-request atomicity; the races Portside must handle itself (between a
read and a conditional write) are untouched.
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
    for name in _WRITES:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    _applied = True


def main() -> None:
    """``python -m chalicelib.local.moto_fixes PORT``: a moto server with the fixes, for
    running the registry against an AWS stand-in in another process (benchmarks)."""
    import sys

    from moto.server import ThreadedMotoServer

    serialize_dynamodb_writes()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5001
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"moto (with DynamoDB write fixes) on http://127.0.0.1:{port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
