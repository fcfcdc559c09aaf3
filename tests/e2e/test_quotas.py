"""Quotas end to end with the real docker daemon (docs/quotas.md): a starter registry at
its storage limit refuses `docker push` of new layers with the message naming the limit
and the plan, which docker prints, leaving the storage counter as it was; and a push into
a second repository (docker mounts the layers it already pushed) is refused by the
repository limit."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .daemons import DockerDaemon
from .images import ImageFactory
from .procs import run

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500 * 1024 * 1024


@pytest.fixture(scope="module")
def server(e2e_dir: Path) -> Iterator[Any]:
    """A Portside of this module's own: the test reaches its table (moto) to fill a
    registry to its limit without pushing 500 MiB."""
    if os.environ.get("PORTSIDE_E2E_TARGET", "portside") != "portside":
        pytest.skip("quotas are Portside's")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.server import start_registry

    with start_registry(e2e_dir / "quota-registry", registry="quota-e2e") as running:
        yield running


def _api(server: Any, method: str, path: str, **kw: Any) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.request(
        method,
        server.url + path,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
        **kw,
    )


def _fill(server: Any, name: str, room: int) -> None:
    """Leave ``room`` bytes under the limit: a blob record of the missing size and the
    counter raised by as much (consistent, as if a big layer had been pushed)."""
    from chalicelib.adapters.dynamo_models import META, RegistryBlobItem, RegistryItem

    store = server._store()
    record = store.get_registry(name)
    missing = LIMIT - room - record.storage_bytes
    digest = "sha256:" + uuid.uuid4().hex * 2
    RegistryBlobItem(f"RID#{record.registry_id}", f"BLOB#{digest}", size=missing).save()
    RegistryItem(f"REG#{name}", META).update(actions=[RegistryItem.storage_bytes.add(missing)])


def test_docker_push_beyond_the_starter_limits_is_refused_with_the_message(
    dockerd: DockerDaemon, server: Any, factory: ImageFactory, workdir: Path
) -> None:
    name = f"quota-{uuid.uuid4().hex[:8]}"
    created = _api(
        server,
        "POST",
        "/api/v1/registries",
        json={"name": name, "subscription_tier_slug": "starter"},
    )
    assert created.status_code == 201, created.text

    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"{server.token}:{server.token}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {server.host: {"auth": auth}}})
    )
    env = {**dockerd.env(), "DOCKER_CONFIG": str(docker_config)}

    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run([dockerd.cli, *args], env=env, timeout=600, check=check)

    first = factory.image("quota-first", factory.small_layers("quota-first", 1))
    second = factory.image("quota-second", factory.small_layers("quota-second", 2))
    for image, tag in ((first, "first"), (second, "second")):
        archive = factory.docker_archive(workdir / f"{tag}.tar", image, [f"portside-e2e/q:{tag}"])
        docker("load", "--input", str(archive))
    target = f"{server.host}/{name}/app"
    docker("tag", "portside-e2e/q:first", f"{target}:first")
    docker("push", f"{target}:first")  # creates the registry's one repository

    _fill(server, name, room=1024)
    before = _api(server, "GET", f"/api/v1/registries/{name}").json()["registry"]
    storage = before["quota"]["storage"]
    assert storage["threshold_level"] == 80 and storage["percent"] == 100.0  # 1 KiB short
    assert before["quota"]["storage"]["hard"] is True

    docker("tag", "portside-e2e/q:second", f"{target}:second")
    refused = docker("push", f"{target}:second", check=False)
    output = (refused.stdout + refused.stderr).decode(errors="replace")
    assert refused.returncode != 0, output
    assert "storage limit reached" in output, output
    assert f"registry '{name}' on the Starter plan may hold 500 MiB" in output, output
    after = _api(server, "GET", f"/api/v1/registries/{name}").json()["registry"]
    assert after["storage_usage_bytes"] == before["storage_usage_bytes"]

    # A second repository: docker mounts the layers from the first, and is refused.
    docker("tag", "portside-e2e/q:first", f"{server.host}/{name}/other:first")
    refused = docker("push", f"{server.host}/{name}/other:first", check=False)
    output = (refused.stdout + refused.stderr).decode(errors="replace")
    assert refused.returncode != 0, output
    assert "repository limit reached: the Starter plan allows 1 repository" in output, output
    final = _api(server, "GET", f"/api/v1/registries/{name}").json()["registry"]
    assert final["repository_count"] == 1
