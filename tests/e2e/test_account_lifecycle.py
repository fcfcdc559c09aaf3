"""Issue 13's "done means", end to end with the real docker daemon.

On the local runtime, the operator (the bootstrap token) runs `portside account create`,
which prints a new tenant's admin token; the tenant creates a registry and pushes with
docker; the operator suspends the account and docker's pull is refused with the message;
after a resume the pull works; after a delete the account's registry is purged (its name is
free again and its storage gone). No table is touched by hand.
"""

from __future__ import annotations

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


def _api(registry: RegistryTarget, token: str, method: str, path: str, **kw: Any) -> Any:
    session = requests.Session()
    session.trust_env = False
    return session.request(
        method, registry.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw
    )


def _portside(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return run([sys.executable, "-m", "portside.cli", *args], env=env, timeout=120, cwd=REPO_ROOT)


def test_operator_onboards_suspends_resumes_and_deletes_a_tenant_that_pushes_with_docker(
    dockerd: DockerDaemon,
    registry: RegistryTarget,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    if registry.kind != "portside":
        pytest.skip("accounts are Portside's")
    base_env = {
        **os.environ,
        "PORTSIDE_API_URL": registry.url,
        "PORTSIDE_CONFIG": str(workdir / "portside-config.json"),
        "NO_COLOR": "1",
    }
    operator_env = {**base_env, "PORTSIDE_TOKEN": registry.password}

    # The operator onboards a tenant; the CLI prints its first admin token once.
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    created = json.loads(_portside(operator_env, "-o", "json", "account", "create", tenant).stdout)
    account_id = created["account"]["id"]
    tenant_token = created["token"]["token"]
    human = _portside(operator_env, "account", "get", account_id).stdout.decode()
    assert tenant in human and "active" in human

    # The tenant creates a registry, logs docker in and pushes.
    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    tenant_env = {**base_env, "PORTSIDE_TOKEN": tenant_token, "DOCKER_CONFIG": str(docker_config)}
    name = f"acme-{uuid.uuid4().hex[:8]}"
    _portside(tenant_env, "registry", "create", name, "--tier", "basic")
    _portside(tenant_env, "login", name, "--read-write")
    image = factory.image("tenant", factory.small_layers("tenant", 2))
    archive = factory.docker_archive(workdir / "image.tar", image, ["portside-e2e/tenant:src"])
    env = {**dockerd.env(), "DOCKER_CONFIG": str(docker_config)}

    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run([dockerd.cli, *args], env=env, timeout=600, check=check)

    docker("load", "--input", str(archive))
    ref = f"{registry.host}/{name}/app:v1"
    docker("tag", "portside-e2e/tenant:src", ref)
    docker("push", ref)
    image_id = "sha256:" + image.config_descriptor.hex
    docker("rmi", "--force", image_id)
    stored = _api(registry, tenant_token, "GET", f"/api/v1/registries/{name}").json()
    assert stored["registry"]["storage_usage_bytes"] > 0

    # Suspended: docker's pull is refused and says why; the images stay stored.
    _portside(operator_env, "account", "suspend", account_id)
    refused = docker("pull", ref, check=False)
    assert refused.returncode != 0
    said = (refused.stdout + refused.stderr).decode()
    assert "suspended" in said, said
    answer = _api(registry, tenant_token, "GET", f"/api/v1/registries/{name}")
    assert answer.status_code == 403 and "suspended" in answer.text, answer.text

    # Resumed: the same credentials pull again.
    _portside(operator_env, "account", "resume", account_id)
    docker("pull", ref)
    inspected = json.loads(docker("image", "inspect", ref).stdout)
    assert inspected[0]["Id"] == image_id

    # Deleted: its tokens stop at once, and its registry is purged (the name frees up).
    _portside(operator_env, "account", "delete", account_id, "--force")
    assert _api(registry, tenant_token, "GET", "/api/v1/registries").status_code == 401
    deadline = time.monotonic() + 60
    while True:
        free = _api(
            registry,
            registry.password,
            "POST",
            "/api/v1/registries/validate-name",
            json={"name": name},
        )
        if free.status_code in (200, 204):
            break
        assert time.monotonic() < deadline, f"{name} still taken: {free.text}"
        time.sleep(1)
    audit = json.loads(_portside(operator_env, "-o", "json", "account", "audit", account_id).stdout)
    actions = [entry["action"] for entry in audit]
    assert {"create", "suspend", "resume", "delete"} <= set(actions), audit
