"""Unit fixtures: the registry core over the in-memory adapters, with a fixed clock."""

from __future__ import annotations

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.service import RegistryService, ServiceSettings

from .builders import MIB, START, FakeClock

ACCOUNT = "acct-1"
OTHER_ACCOUNT = "acct-2"
REGISTRY = "acme"
SIBLING_REGISTRY = "acme-b"  # same account, sorts before "acme/" in full names
FOREIGN_REGISTRY = "globex"  # another account
PART_SIZE = 5 * MIB


def rid(registry: str) -> str:
    """The fixed id unit tests give registry ``registry`` (every incarnation made by a test
    itself gets a fresh one), so that tests can name its repositories."""
    return f"id-{registry}"


def named(registry: str, repository: str) -> RepositoryName:
    """A repository of a test registry, bound to its id as authorization binds it."""
    return RepositoryName(registry, repository, rid(registry))


def named_path(name: str) -> RepositoryName:
    parsed = RepositoryName.parse(name)
    return named(parsed.registry, parsed.repository)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store() -> MemoryMetadataStore:
    memory = MemoryMetadataStore()
    for name, account in (
        (REGISTRY, ACCOUNT),
        (SIBLING_REGISTRY, ACCOUNT),
        (FOREIGN_REGISTRY, OTHER_ACCOUNT),
    ):
        memory.put_registry(
            RegistryRecord(name=name, account_id=account, registry_id=rid(name), created_at=START)
        )
    return memory


@pytest.fixture
def blobs() -> MemoryBlobStore:
    return MemoryBlobStore()


@pytest.fixture
def settings() -> ServiceSettings:
    return ServiceSettings(part_size=PART_SIZE)


@pytest.fixture
def service(
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    settings: ServiceSettings,
    clock: FakeClock,
) -> RegistryService:
    return RegistryService(store, blobs, settings, clock=clock)


@pytest.fixture
def repo() -> RepositoryName:
    return named(REGISTRY, "team/app")
