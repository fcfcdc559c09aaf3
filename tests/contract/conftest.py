"""One contract suite for every MetadataStore (like distribution's storage-driver
testsuites): each test runs against the in-memory store the unit tests use and against the
DynamoDB store on a moto server, so that the unit tests cannot pass on semantics DynamoDB
does not have.

The DynamoDB store shares the integration tests' moto server fixture (``aws``) and table,
so every test isolates itself with fresh registry names, account ids and upload ids.

A test that proves one store wrong until it is fixed carries
``@pytest.mark.xfail_on("dynamo", reason=...)``: strict, for that store only.
"""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import RegistryRecord

# The integration tests' moto server (session-scoped), started only for the dynamo store.
from tests.integration.conftest import aws  # noqa: F401

from .helpers import bound, new_registry

STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("dynamo", id="dynamo", marks=pytest.mark.integration),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "xfail_on(store, reason): a known bug of one MetadataStore (strict xfail there only)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        for marker in item.iter_markers("xfail_on"):
            if callspec.params.get("store") == marker.args[0]:
                reason = marker.kwargs["reason"]
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> MetadataStore:
    if request.param == "memory":
        return MemoryMetadataStore()
    request.getfixturevalue("aws")
    return DynamoMetadataStore()


@pytest.fixture
def registry(store: MetadataStore) -> RegistryRecord:
    return new_registry(store)


@pytest.fixture
def repo(registry: RegistryRecord) -> RepositoryName:
    return bound(registry, "team/app")
