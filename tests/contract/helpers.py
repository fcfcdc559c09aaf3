"""Builders for the contract suite: records as the core writes them, unique names (the
DynamoDB store's table is shared by every test), and a way to race calls."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from chalicelib.registry.manifests import OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import ManifestRecord, RegistryRecord, UploadPart, UploadSession

START = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
LATER = START + timedelta(minutes=5)

T = TypeVar("T")


def unique(prefix: str = "ct") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def digest_of(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def new_registry(
    store: MetadataStore, account_id: str | None = None, name: str | None = None
) -> RegistryRecord:
    record = RegistryRecord(
        name=name or unique(), account_id=account_id or unique("acct"), created_at=START
    )
    store.put_registry(record)
    return record


def bound(registry: RegistryRecord, repository: str) -> RepositoryName:
    """``repository`` of ``registry``, resolved to its incarnation as authorization does."""
    return RepositoryName(registry.name, repository, registry.registry_id)


def live_registry(store: MetadataStore, name: str) -> RegistryRecord:
    record = store.get_registry(name)
    assert record is not None, f"registry {name} is gone"
    return record


def manifest(
    seed: str,
    media_type: str = OCI_MANIFEST,
    subject: str | None = None,
    **fields: Any,
) -> ManifestRecord:
    body = f'{{"seed":"{seed}"}}'.encode()
    record = ManifestRecord(
        digest=digest_of(seed),
        media_type=media_type,
        size=len(body),
        body=body,
        blobs=sorted([digest_of(f"{seed}-config"), digest_of(f"{seed}-layer")]),
        subject=subject,
        blobs_size=1234,
        created_at=START,
        revision=uuid.uuid4().hex,
    )
    return replace(record, **fields)


def upload(repo: RepositoryName, **fields: Any) -> UploadSession:
    upload_id = str(uuid.uuid4())
    session = UploadSession(
        upload_id=upload_id,
        registry=repo.registry,
        registry_id=repo.rid,
        repository=repo.repository,
        data_key=f"uploads/{repo.rid}/{upload_id}/data",
        multipart_id="mp-1",
        parts=[UploadPart(1, '"etag-1"', 5 * 1024 * 1024)],
        offset=5 * 1024 * 1024 + 10,
        tail_key=f"uploads/{repo.rid}/{upload_id}/tail",
        tail_size=10,
        created_at=START,
        expires_at=START + timedelta(hours=1),
    )
    return replace(session, **fields)


def purge(store: MetadataStore, name: str, budget: int, max_calls: int = 100) -> int:
    """Call ``purge_registry`` until it is done; how many calls it took."""
    for calls in range(1, max_calls + 1):
        if store.purge_registry(name, budget):
            return calls
    raise AssertionError(f"purge of {name} did not finish in {max_calls} calls")


def race(count: int, call: Callable[[int], T]) -> list[T | Exception]:
    """Run ``call(0)`` .. ``call(count - 1)`` in threads released together; each one's
    result or exception, in order."""
    barrier = threading.Barrier(count)
    outcomes: dict[int, T | Exception] = {}

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = call(i)
        except Exception as exc:  # a refusal is an outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == count, "a racing call did not finish"
    return [outcomes[i] for i in range(count)]


def winners(outcomes: list[T | Exception]) -> list[T]:
    return [o for o in outcomes if not isinstance(o, Exception)]


def refusals(outcomes: list[T | Exception]) -> list[Exception]:
    return [o for o in outcomes if isinstance(o, Exception)]
