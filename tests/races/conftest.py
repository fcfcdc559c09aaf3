"""One real local registry (``portside serve`` over moto, as users run it) for the race
suite, with 5 MiB upload parts so that multipart sessions stay small and fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.helpers import V2, Api, unique
from tests.support.server import RunningRegistry, start_registry

from .invariants import PART_SIZE, Registry


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with start_registry(
        tmp_path_factory.mktemp("race-server"),
        registry="race-bootstrap",
        extra_env={
            "PORTSIDE_PART_SIZE": str(PART_SIZE),
            # Garbage collection at its most aggressive (test_gc_stress): read-only
            # collections wait 1 s for cached records, online ones keep nothing for its
            # youth. Objects without a record still get a grace: a single-request upload
            # writes its bytes before the commit that names them.
            "PORTSIDE_REGISTRY_CACHE_SECONDS": "1",
            "PORTSIDE_GC_ONLINE_GRACE_SECONDS": "0",
            "PORTSIDE_GC_CLOCK_MARGIN_SECONDS": "0",
            "PORTSIDE_GC_ORPHAN_GRACE_SECONDS": "30",
        },
    ) as running:
        yield running


@pytest.fixture(scope="session")
def admin(server: RunningRegistry) -> Api:
    return Api(server.url, server.token)


@pytest.fixture
def registry(server: RunningRegistry, admin: Api) -> Registry:
    """A registry of its own for each test, so that its counters are the test's alone."""
    name = unique("race")
    admin.create_registry(name)
    return Registry(server, name)


@pytest.fixture
def v2(server: RunningRegistry) -> V2:
    return V2.basic(server.url, server.token)
