"""The new-user flow of issue 3, end to end with the real docker daemon.

A new account-admin token creates a registry with the `portside` CLI, `portside login
--read-write` writes docker credentials into a private DOCKER_CONFIG, docker pushes and pulls
through the Bearer flow (the registry answers an anonymous ping with a Bearer challenge, and
the minted token's `last_used_at`, which only the token endpoint and the management API
update, becomes set), then tags are listed and one is deleted through the API, after which
that tag no longer pulls while the other still does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    answer = session.request(
        method,
        registry.url + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kw,
    )
    return answer


def _portside(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return run([sys.executable, "-m", "portside.cli", *args], env=env, timeout=120, cwd=REPO_ROOT)


def test_new_user_creates_a_registry_logs_in_pushes_pulls_and_deletes_a_tag(
    dockerd: DockerDaemon,
    registry: RegistryTarget,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    if registry.kind != "portside":
        pytest.skip("the management API and CLI are Portside's")

    # An account admin hands a new user an admin token of their own.
    created = _api(
        registry,
        registry.password,
        "POST",
        "/api/v1/tokens",
        json={"name": "new-user", "scopes": ["admin"]},
    )
    assert created.status_code == 201, created.text
    user_token = created.json()["token"]["token"]

    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    cli_env = {
        **os.environ,
        "PORTSIDE_API_URL": registry.url,
        "PORTSIDE_TOKEN": user_token,
        "PORTSIDE_CONFIG": str(workdir / "portside-config.json"),
        "DOCKER_CONFIG": str(docker_config),
        "NO_COLOR": "1",
    }
    name = f"newuser-{uuid.uuid4().hex[:8]}"
    out = _portside(cli_env, "-o", "json", "registry", "create", name, "--tier", "basic")
    shown = json.loads(out.stdout)
    assert shown.get("name", shown.get("registry", {}).get("name")) == name, shown
    _portside(cli_env, "login", name, "--read-write")
    config = json.loads((docker_config / "config.json").read_text())
    assert registry.host in config["auths"], config

    minted = [
        t
        for t in _api(
            registry, user_token, "GET", "/api/v1/tokens", params={"per_page": 200}
        ).json()["tokens"]
        if t["registries"] == [name]
    ]
    assert len(minted) == 1 and sorted(minted[0]["scopes"]) == ["pull", "push"], minted
    assert minted[0]["last_used_at"] is None

    # The registry asks anonymous clients to use the token flow.
    ping = requests.get(f"{registry.url}/v2/", timeout=30)
    assert ping.status_code == 401
    assert ping.headers["WWW-Authenticate"].startswith(f'Bearer realm="{registry.url}/v2/token"'), (
        ping.headers
    )

    image = factory.image("new-user", factory.small_layers("new-user", 2))
    archive = factory.docker_archive(workdir / "image.tar", image, ["portside-e2e/new-user:src"])
    env = dockerd.env()
    env["DOCKER_CONFIG"] = str(docker_config)

    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run([dockerd.cli, *args], env=env, timeout=600, check=check)

    docker("load", "--input", str(archive))
    stable = f"{registry.host}/{name}/app:stable"
    doomed = f"{registry.host}/{name}/app:doomed"
    for ref in (stable, doomed):
        docker("tag", "portside-e2e/new-user:src", ref)
        docker("push", ref)

    used = [
        t
        for t in _api(registry, user_token, "GET", "/api/v1/tokens").json()["tokens"]
        if t["id"] == minted[0]["id"]
    ]
    assert used[0]["last_used_at"] is not None, "docker did not go through the token endpoint"

    image_id = "sha256:" + image.config_descriptor.hex
    docker("rmi", "--force", image_id)
    docker("pull", doomed)
    docker("rmi", "--force", image_id)

    tags_path = f"/api/v1/registries/{name}/repositories/app/tags"
    tags = _api(registry, user_token, "GET", tags_path).json()["tags"]
    assert [t["tag"] for t in tags] == ["doomed", "stable"], tags
    assert tags[0]["manifest_digest"] == tags[1]["manifest_digest"]
    deleted = _api(registry, user_token, "DELETE", f"{tags_path}/doomed")
    assert deleted.status_code == 204, deleted.text
    tags = _api(registry, user_token, "GET", tags_path).json()["tags"]
    assert [t["tag"] for t in tags] == ["stable"]

    refused = docker("pull", doomed, check=False)
    assert refused.returncode != 0, refused.stdout
    docker("pull", stable)
    inspected = json.loads(docker("image", "inspect", stable).stdout)
    assert inspected[0]["Id"] == image_id
    docker("rmi", "--force", image_id)
