"""Fixtures for the end-to-end suite: a registry under test, private daemons, test images.

Target selection: ``PORTSIDE_E2E_TARGET=distribution`` runs the suite against the reference
registry (Debian's docker-registry) started here; unset or ``portside`` (the default) uses
``tests.support.server.start_registry``. Any other value is a usage error.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from .clients import ContainersTools, RegistryApi, require_binaries
from .daemons import (
    Containerd,
    DockerDaemon,
    RegistryTarget,
    distribution_registry,
    docker_cli,
    private_containerd,
    private_dockerd,
)
from .images import ImageFactory, Layer
from .procs import (
    ACTIVE_DAEMONS,
    WATCHED_LOGS,
    CommandLog,
    mounts_under,
    remove_tree,
    set_command_log,
    tail_file,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG_LAYER_SIZE = 100 * 1024 * 1024 + 4096
BIG_FILE = 8 * 1024 * 1024
CALL_PASSED = pytest.StashKey[bool]()


def _target_kind() -> str:
    return os.environ.get("PORTSIDE_E2E_TARGET", "portside").strip().lower() or "portside"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[CALL_PASSED] = report.passed
    if report.failed:
        for daemon in list(ACTIVE_DAEMONS):
            report.sections.append((f"{daemon.name} log", daemon.log_tail(80)))
        for title, path in list(WATCHED_LOGS):
            report.sections.append((f"{title} (last lines of {path})", tail_file(path, 80)))
        log = getattr(item.config, "_portside_e2e_command_log", None)
        if isinstance(log, Path):
            report.sections.append(("e2e command log (tail)", tail_file(log, 40)))


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    base = tmp_path_factory.mktemp("e2e")
    log = base / "commands.log"
    set_command_log(CommandLog(log))
    pytestconfig._portside_e2e_command_log = log  # type: ignore[attr-defined]
    return base


@pytest.fixture(scope="session")
def registry(e2e_dir: Path) -> Iterator[RegistryTarget]:
    kind = _target_kind()
    workdir = e2e_dir / "registry"
    workdir.mkdir()
    if kind == "distribution":
        with distribution_registry(workdir) as target:
            yield target
        return
    if kind != "portside":
        raise pytest.UsageError(f"unknown PORTSIDE_E2E_TARGET={kind!r}")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.server import start_registry

    with start_registry(workdir) as running:
        log_path = getattr(running, "log_path", None)
        watched = ("portside log", Path(log_path)) if log_path is not None else None
        if watched is not None:
            WATCHED_LOGS.append(watched)
        try:
            yield RegistryTarget(
                kind="portside",
                host=running.host,
                url=running.url,
                registry=running.registry,
                username=running.token,
                password=running.token,
            )
        finally:
            if watched is not None:
                WATCHED_LOGS.remove(watched)


@pytest.fixture(scope="session")
def api(registry: RegistryTarget) -> RegistryApi:
    return RegistryApi(registry)


@pytest.fixture(scope="session")
def factory(e2e_dir: Path) -> Iterator[ImageFactory]:
    """Generated images for the session (reproducible with PORTSIDE_E2E_SEED)."""
    seed_env = os.environ.get("PORTSIDE_E2E_SEED")
    seed = int(seed_env) if seed_env else random.SystemRandom().randrange(1 << 32)
    print(f"portside e2e image seed: {seed} (set PORTSIDE_E2E_SEED to reproduce)")
    (e2e_dir / "seed").write_text(f"{seed}\n")
    yield ImageFactory(e2e_dir / "images", seed)
    remove_tree(e2e_dir / "images")


@pytest.fixture(scope="session")
def big_layer(factory: ImageFactory) -> Layer:
    """A single layer of just over 100 MiB of incompressible data, built once per session."""
    return factory.layer("big", {"big/random.bin": BIG_LAYER_SIZE}, gzip_level=1)


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[ContainersTools]:
    """Fresh storage, blob-info cache, auth file and tmp dir for each test."""
    require_binaries("unshare", "mount")
    short = Path(tempfile.mkdtemp(prefix="pse2e-", dir="/tmp"))
    try:
        yield ContainersTools(tmp_path / "containers", short / "runroot")
    finally:
        remove_tree(short)


@pytest.fixture(scope="session")
def dockerd(e2e_dir: Path) -> Iterator[DockerDaemon]:
    require_binaries("dockerd", "containerd")
    if docker_cli() is None:
        pytest.skip("client binary not installed: docker")
    with private_dockerd(e2e_dir / "docker") as daemon:
        yield daemon


@pytest.fixture(scope="session")
def containerd(e2e_dir: Path) -> Iterator[Containerd]:
    require_binaries("containerd", "ctr")
    with private_containerd(e2e_dir / "containerd") as daemon:
        yield daemon


@pytest.fixture
def workdir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The test's tmp dir; large files in it are deleted after a passing test."""
    yield tmp_path
    if request.node.stash.get(CALL_PASSED, False) and not mounts_under(tmp_path):
        for path in tmp_path.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size > BIG_FILE:
                path.unlink()
