"""Integration fixtures: a moto server on loopback standing in for S3 and DynamoDB.

One server, table and bucket serve the whole session; tests isolate themselves by using a
fresh registry name (and so fresh keys and partitions) each.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.dynamo_models import bind_table, create_table
from chalicelib.adapters.s3 import S3BlobStore, s3_client
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.service import RegistryService, ServiceSettings
from portside.local.moto_fixes import apply_fixes

REGION = "us-east-1"
TABLE = "portside-it"
BUCKET = "portside-it-blobs"
PART_SIZE = 5 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Aws:
    endpoint: str
    s3: Any


@pytest.fixture(scope="session")
def aws() -> Iterator[Aws]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ENDPOINT_URL", endpoint)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", REGION)
    patch.delenv("AWS_PROFILE", raising=False)
    patch.delenv("AWS_SESSION_TOKEN", raising=False)
    # DynamoDB serializes writes; moto must too, or concurrency tests measure moto.
    apply_fixes()
    try:
        bind_table(TABLE, REGION)
        create_table()
        client = s3_client(endpoint, REGION)
        S3BlobStore(BUCKET, client).create_bucket()
        yield Aws(endpoint, client)
    finally:
        patch.undo()
        server.stop()


@pytest.fixture
def store(aws: Aws) -> DynamoMetadataStore:
    return DynamoMetadataStore()


@pytest.fixture
def blobs(aws: Aws) -> S3BlobStore:
    return S3BlobStore(BUCKET, aws.s3)


@pytest.fixture
def service(store: DynamoMetadataStore, blobs: S3BlobStore) -> RegistryService:
    return RegistryService(store, blobs, ServiceSettings(part_size=PART_SIZE))


@pytest.fixture
def registry(store: DynamoMetadataStore) -> str:
    name = f"it-{uuid.uuid4().hex[:12]}"
    store.put_registry(
        RegistryRecord(name=name, account_id="acct-it", created_at=datetime.now(UTC))
    )
    return name


@pytest.fixture
def registry_id(store: DynamoMetadataStore, registry: str) -> str:
    record = store.get_registry(registry)
    assert record is not None
    return record.registry_id


@pytest.fixture
def repo(registry: str, registry_id: str) -> RepositoryName:
    return RepositoryName(registry, "team/app", registry_id)
