"""podman: login, load a docker-archive, push, remove, pull, save; pull/push across repos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .checks import (
    assert_registry_has_equivalent,
    assert_saved_image_matches,
    read_docker_archive,
)
from .clients import ContainersTools, RegistryApi, require_binaries
from .daemons import RegistryTarget
from .images import ImageFactory

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _need_podman() -> None:
    require_binaries("podman")


def _login(containers: ContainersTools, registry: RegistryTarget) -> None:
    containers.podman(
        "login",
        "--tls-verify=false",
        "--username",
        registry.username,
        "--password-stdin",
        registry.host,
        input_data=registry.password.encode(),
    )
    auth = json.loads(containers.auth_file.read_text())
    assert registry.host in auth["auths"], auth


def _image_ids(containers: ContainersTools) -> set[str]:
    out = containers.podman("images", "--all", "--quiet", "--no-trunc").stdout.decode()
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_podman_login_push_pull_roundtrip(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    image = factory.image("podman-app", factory.small_layers("podman-app", 4))
    archive = factory.docker_archive(workdir / "app.tar", image, ["localhost/podman-app:src"])
    _login(containers, registry)

    containers.podman("load", "--input", str(archive))
    ref = registry.ref("podman/app", "v1")
    digestfile = workdir / "digest"
    # Credentials come from `podman login` (REGISTRY_AUTH_FILE), not --creds.
    containers.podman(
        "push",
        "--tls-verify=false",
        "--digestfile",
        str(digestfile),
        "localhost/podman-app:src",
        ref,
    )
    pushed_digest = digestfile.read_text().strip()
    manifest = api.manifest("podman/app", "v1")
    assert manifest.digest == pushed_digest
    assert_registry_has_equivalent(api, "podman/app", pushed_digest, image)

    # Remove everything locally, then pull by tag and by digest.
    containers.podman("rmi", "--force", "--all")
    assert _image_ids(containers) == set()
    containers.podman("pull", "--tls-verify=false", ref)
    saved = workdir / "saved.tar"
    containers.podman("save", "--format", "docker-archive", "--output", str(saved), ref)
    assert_saved_image_matches(read_docker_archive(saved), image)

    containers.podman("rmi", "--force", "--all")
    by_digest = registry.ref("podman/app", digest=pushed_digest)
    containers.podman("pull", "--tls-verify=false", by_digest)
    inspect = json.loads(containers.podman("image", "inspect", by_digest).stdout)
    assert inspect[0]["Digest"] == pushed_digest
    # podman keeps the manifest it pulled: it must be exactly what the registry served.
    saved2 = workdir / "saved2.tar"
    containers.podman("save", "--format", "docker-archive", "--output", str(saved2), by_digest)
    assert_saved_image_matches(read_docker_archive(saved2), image)


def test_podman_pull_then_push_to_another_repository(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    image = factory.image("podman-relay", factory.small_layers("podman-relay", 3))
    archive = factory.docker_archive(workdir / "relay.tar", image, ["localhost/relay:src"])
    containers.podman("load", "--input", str(archive))
    first = registry.ref("podman/relay-a", "v1")
    containers.podman(
        "push", "--tls-verify=false", "--creds", registry.creds, "localhost/relay:src", first
    )
    containers.podman("rmi", "--force", "--all")

    containers.podman("pull", "--tls-verify=false", "--creds", registry.creds, first)
    second = registry.ref("podman/relay-b", "v2")
    digestfile = workdir / "digest"
    containers.podman(
        "push",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        "--format",
        "oci",
        "--digestfile",
        str(digestfile),
        first,
        second,
    )
    digest = digestfile.read_text().strip()
    doc = assert_registry_has_equivalent(api, "podman/relay-b", digest, image, same_config=False)
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"

    containers.podman("rmi", "--force", "--all")
    containers.podman(
        "pull",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        registry.ref("podman/relay-b", digest=digest),
    )
    saved = workdir / "saved.tar"
    containers.podman(
        "save",
        "--format",
        "docker-archive",
        "--output",
        str(saved),
        registry.ref("podman/relay-b", digest=digest),
    )
    assert_saved_image_matches(read_docker_archive(saved), image, same_config=False)
