"""Fixtures for the conformance suite.

Pick the registry under test with ``PORTSIDE_CONFORMANCE_TARGET`` (``portside`` by default, or
``distribution`` for CNCF distribution 2.8).  Tests needing behaviour a target lacks are marked
``@pytest.mark.requires(<capability>)`` and skipped there.  ``PORTSIDE_CONFORMANCE_CAPABILITIES``
adjusts a target's capabilities, as a comma-separated list of ``+name``, ``-name``, ``all`` or
``none`` applied in order (e.g. ``all`` to see what distribution really fails, or
``-referrers_api`` while Portside's referrers are unfinished).

Suite-wide rules enforced for every test: no response may be a 5xx, and every 4xx response with
a JSON body must be a spec error document (see ``helpers.ProtocolObserver``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from .helpers import OBSERVER, RegistryClient, unique
from .targets import ALL_CAPABILITIES, TARGETS, Target


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(capability): skip unless the conformance target supports the capability",
    )


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    name = os.environ.get("PORTSIDE_CONFORMANCE_TARGET", "portside").strip().lower()
    if name not in TARGETS:
        raise pytest.UsageError(
            f"PORTSIDE_CONFORMANCE_TARGET={name!r}: expected one of {sorted(TARGETS)}"
        )
    adjustments = os.environ.get("PORTSIDE_CONFORMANCE_CAPABILITIES")
    with (
        tempfile.TemporaryDirectory(prefix=f"conformance-{name}-") as tmp,
        TARGETS[name](Path(tmp)) as running,
    ):
        yield adjust_capabilities(running, adjustments)


def adjust_capabilities(running: Target, spec: str | None) -> Target:
    if not spec:
        return running
    capabilities = set(running.capabilities)
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item in ("all", "none"):
            capabilities = set(ALL_CAPABILITIES) if item == "all" else set()
            continue
        name = item.lstrip("+-")
        if name not in ALL_CAPABILITIES:
            raise pytest.UsageError(
                f"PORTSIDE_CONFORMANCE_CAPABILITIES: unknown capability {name!r}; "
                f"known: {sorted(ALL_CAPABILITIES)}"
            )
        if item.startswith("-"):
            capabilities.discard(name)
        else:
            capabilities.add(name)
    return dataclasses.replace(running, capabilities=frozenset(capabilities))


@pytest.fixture(autouse=True)
def _capability_gate(request: pytest.FixtureRequest) -> None:
    markers = list(request.node.iter_markers("requires"))
    if not markers:
        return
    tgt: Target = request.getfixturevalue("target")
    for marker in markers:
        for capability in marker.args:
            assert capability in ALL_CAPABILITIES, f"unknown capability {capability!r}"
            if not tgt.supports(capability):
                pytest.skip(f"{tgt.name} does not support {capability}")


@pytest.fixture(autouse=True)
def _protocol_observer() -> Iterator[None]:
    """Start every test with a clean record of protocol problems (checked after the call)."""
    OBSERVER.reset()
    yield
    OBSERVER.reset()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail any test that saw a 5xx or a malformed JSON error document."""
    try:
        result = yield
    except BaseException as exc:
        if OBSERVER.problems:
            exc.add_note("protocol problems seen:\n  " + "\n  ".join(OBSERVER.problems))
        raise
    if OBSERVER.problems:
        pytest.fail(
            "protocol problems seen during the test:\n  " + "\n  ".join(OBSERVER.problems),
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def client(target: Target) -> RegistryClient:
    """A client authenticated with the target's full-access credentials."""
    return RegistryClient(target.url, target.auth)


@pytest.fixture
def anonymous(target: Target) -> RegistryClient:
    return RegistryClient(target.url, None)


@pytest.fixture
def repo(target: Target) -> str:
    """A fresh repository name inside the target's registry (tenant)."""
    return f"{target.registry}/{unique('repo')}"


@pytest.fixture
def other_repo(target: Target) -> str:
    return f"{target.registry}/{unique('other')}"
