"""Egress metering and the starter plan's transfer cap end to end (issue 11), with the real
docker daemon and the local runtime: a pull's blob downloads go to the local S3, which
writes S3 server access logs in AWS's format; the runtime delivers them to the metering
Lambda's handler, and `portside registry usage` shows the outbound bytes and the pull. Once
the month's metered transfer crosses the starter plan's 500 MiB, `docker pull` is refused
with TOOMANYREQUESTS and the message.

The registry runs in a process of this test's own (not the session's): logs are flushed
every half second and registry records are cached for one second, so that the test does
not wait out the defaults (5 s, 30 s). 500 MiB are not downloaded: the month's counter is
seeded just under the cap through the UsageStore (a made-up log source), and the next real
pull's log crosses it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from .daemons import DockerDaemon
from .images import ImageFactory
from .procs import run

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
STARTER_CAP = 500 * MIB
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def find_key(document: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document."""
    if isinstance(document, dict):
        if key in document:
            return document[key]
        document = list(document.values())
    if isinstance(document, list):
        for item in document:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


@pytest.fixture
def running(workdir: Path) -> Iterator[Any]:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.server import start_registry

    with start_registry(
        workdir / "registry",
        registry="egress-bootstrap",
        extra_env={
            "PORTSIDE_LOCAL_LOG_FLUSH_SECONDS": "0.5",
            "PORTSIDE_REGISTRY_CACHE_SECONDS": "1",
        },
    ) as registry:
        yield registry


def test_docker_pulls_are_metered_and_a_starter_registry_over_its_transfer_cap_is_refused(
    dockerd: DockerDaemon, running: Any, factory: ImageFactory, workdir: Path
) -> None:
    name = f"egress-{uuid.uuid4().hex[:8]}"
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = f"Bearer {running.token}"
    created = http.post(
        f"{running.url}/api/v1/registries",
        json={"name": name, "subscription_tier_slug": "starter"},
        timeout=30,
    )
    assert created.status_code == 201, created.text

    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"{running.token}:{running.token}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {running.host: {"auth": auth}}})
    )
    env = {**dockerd.env(), "DOCKER_CONFIG": str(docker_config)}
    ref = f"{running.host}/{name}/app:v1"

    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run([dockerd.cli, *args], env=env, timeout=300, check=check)

    image = factory.image("egress", factory.small_layers("egress", 2))
    archive = factory.docker_archive(workdir / "egress.tar", image, ["portside-e2e/egress:v1"])
    docker("load", "--input", str(archive))
    docker("tag", "portside-e2e/egress:v1", ref)
    docker("push", ref)
    docker("rmi", "--force", ref, "portside-e2e/egress:v1")
    docker("pull", ref)

    # What docker downloads: the blobs the pushed manifest names, as docker compressed them
    # (read through the management API: a /v2/ manifest GET would count as a pull).
    tags = http.get(f"{running.url}/api/v1/registries/{name}/repositories/app/tags", timeout=30)
    [tag] = tags.json()["tags"]
    compressed = tag["compressed_size_bytes"]

    cli_env = {
        **os.environ,
        "PORTSIDE_API_URL": running.url,
        "PORTSIDE_TOKEN": running.token,
        "PORTSIDE_CONFIG": str(workdir / "portside-config.json"),
        "NO_COLOR": "1",
    }

    def usage() -> dict[str, Any]:
        shown = subprocess.run(
            [sys.executable, "-m", "portside.cli", "registry", "usage", name, "--json"],
            cwd=REPO_ROOT,
            env=cli_env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr.decode(errors="replace")
        document: dict[str, Any] = json.loads(shown.stdout)
        return document

    def metered(at_least: int) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            shown = usage()
            done = (find_key(shown, "outbound_bytes") or 0) >= at_least
            return shown if done and (find_key(shown, "pulls") or 0) >= 1 else None

        return probe

    first = wait_for("the pull to be metered", metered(compressed))
    assert find_key(first, "outbound_bytes") == compressed, first
    assert find_key(first, "pulls") == 1, first
    assert find_key(first, "pushes") == 1, first

    # Log coverage: each blob docker downloaded (config and two layers) was a redirect the
    # API log shows and a presigned GET the S3 log shows.
    def covered() -> dict[str, Any] | None:
        coverage = find_key(usage(), "log_coverage") or {}
        redirects = coverage.get("blob_redirects", 0)
        return (
            coverage
            if redirects >= 3 and redirects == coverage.get("blob_downloads_logged")
            else None
        )

    assert wait_for("the redirects and downloads to be metered", covered) == {
        "blob_redirects": 3,
        "blob_downloads_logged": 3,
    }

    # Just under the cap, as if 500 MiB had been pulled earlier this month; the next real
    # pull's log crosses it, and the metering marks the registry.
    store = running._store()
    record = store.get_registry(name)
    assert record is not None
    from chalicelib.adapters.dynamo_usage import DynamoUsageStore
    from chalicelib.registry.records import TrafficCounts

    month = datetime.now(UTC).strftime("%Y-%m")
    seeded = STARTER_CAP - compressed - compressed // 2
    DynamoUsageStore().add_traffic(
        record.registry_id, month, f"e2e-seed-{uuid.uuid4().hex}", TrafficCounts(seeded), record
    )
    docker("rmi", "--force", ref)
    docker("pull", ref)
    wait_for(
        "the registry to be capped",
        lambda: ((r := store.get_registry(name)) and r.egress_capped_month == month) or None,
    )
    assert find_key(usage(), "outbound_bytes") == seeded + 2 * compressed

    time.sleep(1.5)  # the serving process's cached registry record (1 s here) expires
    docker("rmi", "--force", ref)
    refused = docker("pull", ref, check=False)
    output = (refused.stdout + refused.stderr).decode(errors="replace")
    assert refused.returncode != 0, output
    assert "toomanyrequests" in output.lower(), output
    assert (
        f"registry '{name}' has used its 500 MiB of outbound transfer for {month} "
        "on the Starter plan" in output
    ), output
