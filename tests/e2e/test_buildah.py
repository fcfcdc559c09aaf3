"""buildah: build from scratch, commit, push, pull back and compare the files; relay a pull."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from pathlib import Path

import pytest

from .checks import (
    assert_registry_has_equivalent,
    assert_saved_image_matches,
    read_docker_archive,
    sha256_file_tree,
)
from .clients import ContainersTools, RegistryApi, require_binaries
from .daemons import RegistryTarget
from .images import MT_OCI_MANIFEST, ImageFactory

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _need_buildah() -> None:
    require_binaries("buildah")


def _layer_files(api: RegistryApi, repository: str, desc: dict[str, str]) -> dict[str, str]:
    """Regular files in a layer blob served by the registry: path -> sha256."""
    data = api.blob(repository, desc["digest"])
    if desc["mediaType"].endswith("gzip"):
        data = zlib.decompress(data, wbits=47)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name.lstrip("./").lstrip("/")] = (
                    "sha256:" + hashlib.sha256(f.read()).hexdigest()
                )
    return out


def test_buildah_from_scratch_push_pull(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    ctx = workdir / "ctx"
    (ctx / "data").mkdir(parents=True)
    expected: dict[str, str] = {}
    for i, size in enumerate((1, 4096, 300_000, 2_000_000)):
        content = factory.random_bytes(f"buildah-{i}", size)
        (ctx / "data" / f"file{i}.bin").write_bytes(content)
        expected[f"app/data/file{i}.bin"] = "sha256:" + hashlib.sha256(content).hexdigest()

    container = containers.buildah("from", "--name", "e2e-scratch", "scratch").stdout.decode()
    container = container.strip()
    containers.buildah("copy", container, str(ctx / "data"), "/app/data/")
    containers.buildah("config", "--label", "io.portside.e2e=buildah", container)
    containers.buildah("commit", "--format", "oci", "--rm", container, "localhost/buildah-app:v1")

    ref = registry.ref("buildah/app", "v1")
    digestfile = workdir / "digest"
    containers.buildah(
        "push",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        "--digestfile",
        str(digestfile),
        "localhost/buildah-app:v1",
        f"docker://{ref}",
    )
    digest = digestfile.read_text().strip()
    manifest = api.manifest("buildah/app", "v1")
    assert manifest.digest == digest
    assert manifest.media_type == MT_OCI_MANIFEST
    doc = manifest.json()
    config = json.loads(api.blob("buildah/app", doc["config"]["digest"]))
    assert config["config"]["Labels"]["io.portside.e2e"] == "buildah"
    served: dict[str, str] = {}
    for layer in doc["layers"]:
        served.update(_layer_files(api, "buildah/app", layer))
    assert served == expected

    containers.buildah("rmi", "--all", "--force")
    containers.buildah("pull", "--tls-verify=false", "--creds", registry.creds, f"docker://{ref}")
    pulled = containers.buildah("from", "--name", "e2e-pulled", ref).stdout.decode().strip()
    mountpoint = Path(containers.buildah("mount", pulled).stdout.decode().strip())
    try:
        tree = sha256_file_tree(mountpoint)
    finally:
        containers.buildah("umount", pulled)
        containers.buildah("rm", pulled)
    assert tree == expected

    inspect = json.loads(containers.buildah("inspect", "--type", "image", ref).stdout)
    assert inspect["FromImageDigest"] == digest


def test_buildah_pull_then_push_elsewhere(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    image = factory.image("buildah-relay", factory.small_layers("buildah-relay", 3))
    archive = factory.docker_archive(workdir / "relay.tar", image, ["localhost/relay:src"])
    first = registry.ref("buildah/relay-a", "v1")
    containers.buildah("pull", f"docker-archive:{archive}")
    containers.buildah(
        "push",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        "localhost/relay:src",
        f"docker://{first}",
    )
    assert_registry_has_equivalent(api, "buildah/relay-a", "v1", image)

    containers.buildah("rmi", "--all", "--force")
    containers.buildah("pull", "--tls-verify=false", "--creds", registry.creds, f"docker://{first}")
    second = registry.ref("buildah/relay-b", "v1")
    digestfile = workdir / "digest"
    containers.buildah(
        "push",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        "--digestfile",
        str(digestfile),
        first,
        f"docker://{second}",
    )
    digest = digestfile.read_text().strip()
    assert_registry_has_equivalent(api, "buildah/relay-b", digest, image)

    saved = workdir / "saved.tar"
    containers.buildah("rmi", "--all", "--force")
    containers.buildah(
        "pull",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        f"docker://{registry.ref('buildah/relay-b', digest=digest)}",
    )
    containers.buildah(
        "push", registry.ref("buildah/relay-b", digest=digest), f"docker-archive:{saved}"
    )
    assert_saved_image_matches(read_docker_archive(saved), image)
