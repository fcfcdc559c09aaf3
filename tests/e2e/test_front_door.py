"""docker through the front door as deployed: API Gateway's header remapping and limits, then
the CloudFront origin-response function (portside_edge), as the local gateway runs them.

With the edge function (the default runtime) docker logs in, pushes a 100 MiB layer and pulls
it back identical. Without it (``PORTSIDE_LOCAL_EDGE_FIX=off``) the 401 of ``GET /v2/`` carries
no ``WWW-Authenticate`` and ``docker login`` fails, as it would on AWS.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .checks import assert_saved_image_matches, read_docker_archive
from .clients import RegistryApi
from .conftest import REPO_ROOT
from .daemons import DockerDaemon, RegistryTarget
from .images import ImageFactory, Layer
from .procs import run

pytestmark = pytest.mark.e2e

PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")


def _require_portside(registry: RegistryTarget) -> None:
    if registry.kind != "portside":
        pytest.skip("the front door is Portside's local gateway")


@pytest.fixture(scope="module")
def registry_without_edge_fix(e2e_dir: Path, registry: RegistryTarget) -> Iterator[RegistryTarget]:
    _require_portside(registry)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.server import start_registry

    with start_registry(
        e2e_dir / "registry-no-edge-fix", extra_env={"PORTSIDE_LOCAL_EDGE_FIX": "off"}
    ) as running:
        yield RegistryTarget(
            kind="portside",
            host=running.host,
            url=running.url,
            registry=running.registry,
            username=running.token,
            password=running.token,
        )


def _docker_login(
    dockerd: DockerDaemon, registry: RegistryTarget, config_dir: Path
) -> tuple[int, str]:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text('{"auths": {}}\n')
    env = dockerd.env()
    env["DOCKER_CONFIG"] = str(config_dir)
    proc = run(
        [dockerd.cli, "login", "--username", registry.username, "--password-stdin", registry.host],
        env=env,
        input_data=registry.password.encode(),
        check=False,
        timeout=120,
    )
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


def test_docker_pushes_and_pulls_a_100_mib_layer_through_the_deployed_front_door(
    dockerd: DockerDaemon,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    big_layer: Layer,
    workdir: Path,
) -> None:
    _require_portside(registry)
    # The answer really went through API Gateway's imitation and the edge function.
    ping = requests.get(f"{registry.url}/v2/", timeout=30)
    assert ping.status_code == 401
    assert ping.headers.get("x-amzn-RequestId"), ping.headers
    assert ping.headers["WWW-Authenticate"].startswith("Bearer realm="), ping.headers
    assert "x-amzn-Remapped-WWW-Authenticate" not in ping.headers

    returncode, out = _docker_login(dockerd, registry, dockerd.config_dir)
    assert returncode == 0 and "Login Succeeded" in out, out

    image = factory.image("front-door", [*factory.small_layers("front-door", 1), big_layer])
    archive = factory.docker_archive(workdir / "src.tar", image, ["portside-e2e/front-door:src"])
    dockerd.docker("load", "--input", str(archive), timeout=600)
    ref = registry.ref("front/door", "v1")
    dockerd.docker("tag", "portside-e2e/front-door:src", ref)
    out = dockerd.docker("push", ref, timeout=900).stdout.decode()
    match = PUSH_DIGEST.search(out)
    assert match, out
    digest, size = match.group(1), int(match.group(2))

    # HEAD through API Gateway and the edge: the length and digest docker and containerd read.
    manifest_url = f"{registry.url}/v2/{registry.name('front/door')}/manifests/v1"
    head = api.session.head(
        manifest_url,
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=60,
    )
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(size)
    assert head.headers["Docker-Content-Digest"] == digest
    manifest = api.manifest("front/door", digest)
    for layer in json.loads(manifest.body)["layers"]:
        blob_url = f"{registry.url}/v2/{registry.name('front/door')}/blobs/{layer['digest']}"
        blob_head = api.session.head(blob_url, timeout=60)
        assert blob_head.status_code == 200
        assert blob_head.headers["Content-Length"] == str(layer["size"])
        assert blob_head.headers["Docker-Content-Digest"] == layer["digest"]
        # The registry serves exactly the bytes docker pushed.
        data = api.blob("front/door", layer["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        assert len(data) == layer["size"]

    image_id = "sha256:" + image.config_descriptor.hex
    dockerd.docker("rmi", "--force", image_id)
    out = dockerd.docker("pull", ref, timeout=900).stdout.decode()
    assert digest in out, out
    saved = workdir / "pulled.tar"
    dockerd.docker("save", "--output", str(saved), ref, timeout=600)
    # Same config bytes and the same uncompressed layer tars as the image that was pushed.
    assert_saved_image_matches(read_docker_archive(saved), image)
    dockerd.docker("rmi", "--force", image_id)


def test_docker_login_fails_with_401_without_the_edge_fix(
    dockerd: DockerDaemon, registry_without_edge_fix: RegistryTarget, workdir: Path
) -> None:
    target = registry_without_edge_fix
    ping = requests.get(f"{target.url}/v2/", timeout=30)
    # What API Gateway alone hands docker: the challenge under a name no client reads.
    assert ping.status_code == 401
    assert "WWW-Authenticate" not in ping.headers
    assert ping.headers["x-amzn-Remapped-WWW-Authenticate"].startswith("Bearer realm=")

    returncode, out = _docker_login(dockerd, target, workdir / "docker-config")
    assert returncode != 0, out
    assert "401 Unauthorized" in out, out
    config = json.loads((workdir / "docker-config" / "config.json").read_text())
    assert target.host not in config.get("auths", {})
