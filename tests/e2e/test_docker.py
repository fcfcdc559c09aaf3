"""docker (the real dockerd 20.10): login, load, push, rmi, pull, save.

dockerd recompresses layers on push, so compressed digests differ from the generated ones;
the checks compare the config bytes and the uncompressed layer tars (diff_ids) instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .checks import (
    assert_registry_has_equivalent,
    assert_saved_image_matches,
    read_docker_archive,
)
from .clients import RegistryApi
from .daemons import DockerDaemon, RegistryTarget
from .images import MT_DOCKER_MANIFEST, ImageFactory, Layer
from .procs import run

pytestmark = pytest.mark.e2e

PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")


def _login(dockerd: DockerDaemon, registry: RegistryTarget) -> None:
    out = dockerd.docker(
        "login",
        "--username",
        registry.username,
        "--password-stdin",
        registry.host,
        input_data=registry.password.encode(),
    )
    assert b"Login Succeeded" in out.stdout, out.stdout
    config = json.loads((dockerd.config_dir / "config.json").read_text())
    assert registry.host in config["auths"], config


def test_docker_login_rejects_bad_password(
    dockerd: DockerDaemon, registry: RegistryTarget, workdir: Path
) -> None:
    config_dir = workdir / "docker-config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text('{"auths": {}}\n')
    env = dockerd.env()
    env["DOCKER_CONFIG"] = str(config_dir)
    proc = run(
        [dockerd.cli, "login", "--username", registry.username, "--password-stdin", registry.host],
        env=env,
        input_data=b"definitely-not-the-password",
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout
    config = json.loads((config_dir / "config.json").read_text())
    assert registry.host not in config.get("auths", {})


def test_docker_push_pull_roundtrip(
    dockerd: DockerDaemon,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    big_layer: Layer,
    workdir: Path,
) -> None:
    layers = [*factory.small_layers("docker-app", 3), big_layer]
    image = factory.image("docker-app", layers)
    archive = factory.docker_archive(workdir / "app.tar", image, ["portside-e2e/docker-app:src"])
    _login(dockerd, registry)

    dockerd.docker("load", "--input", str(archive), timeout=600)
    image_id = "sha256:" + image.config_descriptor.hex
    inspected = json.loads(dockerd.docker("image", "inspect", "portside-e2e/docker-app:src").stdout)
    assert inspected[0]["Id"] == image_id

    ref = registry.ref("docker/app", "v1")
    dockerd.docker("tag", "portside-e2e/docker-app:src", ref)
    out = dockerd.docker("push", ref, timeout=600).stdout.decode()
    match = PUSH_DIGEST.search(out)
    assert match, out
    digest, size = match.group(1), int(match.group(2))

    manifest = api.manifest("docker/app", "v1")
    assert manifest.digest == digest
    assert len(manifest.body) == size
    assert manifest.media_type == MT_DOCKER_MANIFEST
    assert_registry_has_equivalent(api, "docker/app", digest, image)

    dockerd.docker("rmi", "--force", image_id)
    images = dockerd.docker("images", "--quiet", "--no-trunc").stdout.decode().split()
    assert image_id not in images

    out = dockerd.docker("pull", ref, timeout=600).stdout.decode()
    assert digest in out, out
    saved = workdir / "saved.tar"
    dockerd.docker("save", "--output", str(saved), ref, timeout=600)
    assert_saved_image_matches(read_docker_archive(saved), image)

    # Pull by digest: the local RepoDigest must be exactly the pushed manifest digest.
    dockerd.docker("rmi", "--force", image_id)
    by_digest = registry.ref("docker/app", digest=digest)
    dockerd.docker("pull", by_digest, timeout=600)
    inspected = json.loads(dockerd.docker("image", "inspect", by_digest).stdout)
    assert inspected[0]["Id"] == image_id
    assert by_digest in inspected[0]["RepoDigests"]
    dockerd.docker("rmi", "--force", image_id)


def test_docker_pull_image_pushed_by_other_client(
    dockerd: DockerDaemon,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    """docker pulls an OCI image pushed over the plain API (as any client would have)."""
    image = factory.image("docker-oci", factory.small_layers("docker-oci", 2))
    repo = "docker/oci"
    api.push_monolithic(
        repo,
        "v1",
        image.manifest,
        image.manifest_descriptor.media_type,
        [factory.store.read(d.digest) for d in image.blob_descriptors()],
    )
    _login(dockerd, registry)
    dockerd.docker("pull", registry.ref(repo, "v1"), timeout=300)
    saved = workdir / "saved.tar"
    dockerd.docker("save", "--output", str(saved), registry.ref(repo, "v1"))
    assert_saved_image_matches(read_docker_archive(saved), image)
    inspected = json.loads(dockerd.docker("image", "inspect", registry.ref(repo, "v1")).stdout)
    assert registry.ref(repo, digest=image.digest) in inspected[0]["RepoDigests"]
    dockerd.docker("rmi", "--force", registry.ref(repo, "v1"))
