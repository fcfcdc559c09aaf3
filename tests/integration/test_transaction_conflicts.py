"""Transactions DynamoDB cancels for a conflict with a concurrent one are retried after a
jittered back-off (moto serializes writes and never reports a conflict, so the conflicts
are injected here, with the reasons DynamoDB gives)."""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Any

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError

import chalicelib.adapters.dynamo as dynamo
from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.service import RegistryService
from tests.unit.builders import image_manifest, sha256


class Conflict(TransactWriteError):
    def __init__(self, items: int) -> None:
        super().__init__("Transaction cancelled: TransactionConflict")
        self._reasons = [CancellationReason("TransactionConflict")] + [None] * (items - 1)

    @property
    def cancellation_reasons(self) -> list[CancellationReason | None]:  # type: ignore[override]
        return self._reasons


def _conflicting(
    store: DynamoMetadataStore, times: int, monkeypatch: pytest.MonkeyPatch
) -> list[float]:
    """The next ``times`` transactions are cancelled for a conflict; the waits slept."""
    real = store._transaction
    left = {"n": times}
    waits: list[float] = []

    @contextmanager
    def transaction() -> Any:
        with real() as tx:
            if left["n"] > 0:
                left["n"] -= 1
                yield tx
                raise Conflict(5)  # leaving the block would have committed it
            yield tx

    monkeypatch.setattr(store, "_transaction", transaction)
    monkeypatch.setattr(dynamo.time, "sleep", waits.append)
    return waits


def test_a_manifest_push_that_conflicts_twice_backs_off_and_lands(
    store: DynamoMetadataStore,
    service: RegistryService,
    repo: RepositoryName,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, layer = b'{"os":"linux"}', b"base layer shared by many images"
    for data in (config, layer):
        service.upload_blob(repo, sha256(data), io.BytesIO(data), len(data))
    body = image_manifest(config, [layer])
    waits = _conflicting(store, 2, monkeypatch)
    service.put_manifest(repo, "v1", body, "application/vnd.oci.image.manifest.v1+json")
    assert store.get_tag(repo, "v1") is not None
    assert len(waits) == 2 and all(0 <= w <= 0.02 * 2**i for i, w in enumerate(waits))


def test_a_blob_commit_that_conflicts_backs_off_and_lands(
    store: DynamoMetadataStore,
    service: RegistryService,
    repo: RepositoryName,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = b"a layer two pushes commit at once"
    waits = _conflicting(store, 1, monkeypatch)
    service.upload_blob(repo, sha256(data), io.BytesIO(data), len(data))
    assert store.get_blob_link(repo, sha256(data)) is not None
    assert len(waits) == 1
