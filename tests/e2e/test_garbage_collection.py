"""Garbage collection end to end (issue 10's "done means"), with the real docker daemon and
the local runtime, whose Step Functions interpreter runs the deployed state machine
definition: a user deletes a tag, runs `portside registry gc start --wait`, and meanwhile a
real `docker push` is refused with the collection's message; the collection ends, the
freed bytes match the storage drop, what is still tagged pulls, and pushing works again.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from .daemons import DockerDaemon, RegistryTarget
from .images import ImageFactory
from .procs import run

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def _api(registry: RegistryTarget, method: str, path: str, **kw: Any) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.request(
        method,
        registry.url + path,
        headers={"Authorization": f"Bearer {registry.password}"},
        timeout=30,
        **kw,
    )


def test_a_user_collects_garbage_while_docker_push_is_refused_with_the_reason(
    dockerd: DockerDaemon,
    registry: RegistryTarget,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    if registry.kind != "portside":
        pytest.skip("garbage collection is Portside's")
    name = f"gc-{uuid.uuid4().hex[:8]}"
    created = _api(
        registry,
        "POST",
        "/api/v1/registries",
        json={"name": name, "subscription_tier_slug": "professional"},
    )
    assert created.status_code == 201, created.text

    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {registry.host: {"auth": auth}}})
    )
    env = {**dockerd.env(), "DOCKER_CONFIG": str(docker_config)}

    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run([dockerd.cli, *args], env=env, timeout=600, check=check)

    keep = factory.image("gc-keep", factory.small_layers("gc-keep", 2))
    doomed = factory.image("gc-doomed", factory.small_layers("gc-doomed", 3))
    later = factory.image("gc-later", factory.small_layers("gc-later", 1))
    for image, tag in ((keep, "keep"), (doomed, "doomed"), (later, "later")):
        archive = factory.docker_archive(workdir / f"{tag}.tar", image, [f"portside-e2e/gc:{tag}"])
        docker("load", "--input", str(archive))
    for tag in ("keep", "doomed"):
        docker("tag", f"portside-e2e/gc:{tag}", f"{registry.host}/{name}/app:{tag}")
        docker("push", f"{registry.host}/{name}/app:{tag}")
    deleted = _api(registry, "DELETE", f"/api/v1/registries/{name}/repositories/app/tags/doomed")
    assert deleted.status_code == 204, deleted.text
    before = _api(registry, "GET", f"/api/v1/registries/{name}").json()["registry"]

    cli_env = {
        **os.environ,
        "PORTSIDE_API_URL": registry.url,
        "PORTSIDE_TOKEN": registry.password,
        "PORTSIDE_CONFIG": str(workdir / "portside-config.json"),
        "NO_COLOR": "1",
    }
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portside.cli",
            "-o",
            "json",
            "registry",
            "gc",
            "start",
            name,
            "--wait",
        ],
        cwd=REPO_ROOT,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            active = _api(registry, "GET", f"/api/v1/registries/{name}/garbage-collection")
            if active.status_code == 200:
                break
            time.sleep(0.2)
        assert active.status_code == 200, active.text
        # A read-only collection waits out cached registry records before it scans: the
        # push below lands in that window, and is refused with the reason.
        docker("tag", "portside-e2e/gc:later", f"{registry.host}/{name}/app:later")
        refused = docker("push", f"{registry.host}/{name}/app:later", check=False)
        output = (refused.stdout + refused.stderr).decode(errors="replace")
        assert refused.returncode != 0, output
        assert "garbage collection is running" in output, output

        stdout, stderr = watcher.communicate(timeout=300)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, stderr.decode(errors="replace")
    final = json.loads(stdout)
    final = final.get("garbage_collection", final)
    assert final["status"] == "succeeded", final
    assert final["manifests_deleted"] == 1 and final["blobs_deleted"] >= 4, final
    after = _api(registry, "GET", f"/api/v1/registries/{name}").json()["registry"]
    assert final["freed_bytes"] > 0
    assert before["storage_usage_bytes"] - after["storage_usage_bytes"] == final["freed_bytes"]

    # What is still tagged pulls, byte for byte (docker verifies every digest).
    docker("rmi", "--force", f"{registry.host}/{name}/app:keep", "portside-e2e/gc:keep")
    docker("pull", f"{registry.host}/{name}/app:keep")
    # And the registry takes pushes again.
    docker("push", f"{registry.host}/{name}/app:later")
