"""A session-wide Portside (``portside serve`` in a subprocess) for the management API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import RunningRegistry, start_registry

from .helpers import V2, Api


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from .test_fuzz import KNOWN_BUGS

    for item in items:
        if not item.nodeid.startswith("tests/api/test_fuzz.py::"):
            continue
        for label, reason in KNOWN_BUGS.items():
            if item.name.endswith(f"[{label}]"):
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with start_registry(tmp_path_factory.mktemp("api-server"), registry="bootstrap") as running:
        yield running


@pytest.fixture(scope="session")
def admin(server: RunningRegistry) -> Api:
    """The bootstrap admin token (every scope, every registry of the ``local`` account)."""
    return Api(server.url, server.token)


@pytest.fixture(scope="session")
def v2(server: RunningRegistry) -> V2:
    return V2.basic(server.url, server.token)
