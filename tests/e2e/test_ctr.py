"""containerd's ctr: import an OCI archive, push, pull into another namespace, compare content.

ctr never recompresses, so every digest (manifest, config, layers) must survive unchanged.
Push and pull use separate namespaces of one private containerd whose content store is
"isolated": a namespace only sees blobs it fetched or imported itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .checks import assert_registry_has_exact
from .clients import RegistryApi
from .daemons import Containerd, RegistryTarget
from .images import Artifact, Descriptor, Image, ImageFactory, Index
from .procs import run

pytestmark = pytest.mark.e2e


def _content(containerd: Containerd, namespace: str, digest: str) -> bytes:
    data = containerd.ctr(namespace, "content", "get", digest).stdout
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def _assert_namespace_has(
    containerd: Containerd, namespace: str, factory: ImageFactory, descs: list[Descriptor]
) -> None:
    for desc in descs:
        assert _content(containerd, namespace, desc.digest) == factory.store.read(desc.digest), (
            f"{namespace}: content {desc.digest} differs"
        )


def _image_target(containerd: Containerd, namespace: str, ref: str) -> str:
    out = containerd.ctr(namespace, "images", "ls").stdout.decode().splitlines()
    for line in out[1:]:
        cols = line.split()
        if cols and cols[0] == ref:
            return next(c for c in cols if c.startswith("sha256:"))
    raise AssertionError(f"{namespace}: image {ref} not listed:\n" + "\n".join(out))


def _import(
    containerd: Containerd,
    namespace: str,
    factory: ImageFactory,
    workdir: Path,
    tag: str,
    obj: Image | Index | Artifact,
    base_name: str,
) -> None:
    archive = factory.oci_archive(workdir / f"{tag}.tar", [(tag, obj)])
    containerd.ctr(
        namespace,
        "images",
        "import",
        "--all-platforms",
        "--no-unpack",
        "--base-name",
        base_name,
        str(archive),
    )


def test_ctr_push_pull_image(
    containerd: Containerd,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    image = factory.image("ctr-app", factory.small_layers("ctr-app", 4))
    repo = "ctr/app"
    base = f"{registry.host}/{registry.name(repo)}"
    ref = registry.ref(repo, "v1")
    _import(containerd, "e2e-push", factory, workdir, "v1", image, base)
    assert _image_target(containerd, "e2e-push", ref) == image.digest

    containerd.ctr("e2e-push", "images", "push", "--plain-http", "--user", registry.creds, ref)
    assert_registry_has_exact(api, repo, "v1", image)

    containerd.ctr(
        "e2e-pull",
        "images",
        "pull",
        "--plain-http",
        "--user",
        registry.creds,
        "--snapshotter",
        "native",
        ref,
    )
    assert _image_target(containerd, "e2e-pull", ref) == image.digest
    _assert_namespace_has(
        containerd, "e2e-pull", factory, [image.manifest_descriptor, *image.blob_descriptors()]
    )

    # Pull by digest into a third namespace.
    by_digest = registry.ref(repo, digest=image.digest)
    containerd.ctr(
        "e2e-pull-digest",
        "images",
        "pull",
        "--plain-http",
        "--user",
        registry.creds,
        "--snapshotter",
        "native",
        by_digest,
    )
    assert _content(containerd, "e2e-pull-digest", image.digest) == image.manifest


def test_ctr_push_pull_multiplatform_index(
    containerd: Containerd,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    amd64 = factory.image("ctr-amd64", factory.small_layers("ctr-amd64", 2), arch="amd64")
    arm64 = factory.image("ctr-arm64", factory.small_layers("ctr-arm64", 2), arch="arm64")
    index = factory.index("ctr-multi", [amd64, arm64])
    repo = "ctr/multi"
    ref = registry.ref(repo, "v1")
    _import(
        containerd,
        "e2e-idx-push",
        factory,
        workdir,
        "v1",
        index,
        f"{registry.host}/{registry.name(repo)}",
    )
    containerd.ctr("e2e-idx-push", "images", "push", "--plain-http", "--user", registry.creds, ref)
    assert_registry_has_exact(api, repo, "v1", index)

    containerd.ctr(
        "e2e-idx-pull",
        "content",
        "fetch",
        "--plain-http",
        "--user",
        registry.creds,
        "--all-platforms",
        ref,
    )
    assert _content(containerd, "e2e-idx-pull", index.digest) == index.manifest
    for image in (amd64, arm64):
        _assert_namespace_has(
            containerd,
            "e2e-idx-pull",
            factory,
            [image.manifest_descriptor, *image.blob_descriptors()],
        )


def test_ctr_push_fetch_artifact(
    containerd: Containerd,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    """An artifact with a subject, pushed and fetched by ctr (no unpack: it's not an image)."""
    image = factory.image("ctr-subject", factory.small_layers("ctr-subject", 1))
    repo = "ctr/artifact"
    api.push_monolithic(
        repo,
        "v1",
        image.manifest,
        image.manifest_descriptor.media_type,
        [factory.store.read(d.digest) for d in image.blob_descriptors()],
    )
    artifact = factory.artifact(
        "ctr-signature",
        "application/vnd.portside.e2e.signature",
        {"signature.bin": factory.random_bytes("ctr-sig", 512)},
        subject=image.manifest_descriptor,
    )
    ref = registry.ref(repo, "sig")
    _import(
        containerd,
        "e2e-art-push",
        factory,
        workdir,
        "sig",
        artifact,
        f"{registry.host}/{registry.name(repo)}",
    )
    containerd.ctr("e2e-art-push", "images", "push", "--plain-http", "--user", registry.creds, ref)
    assert_registry_has_exact(api, repo, "sig", artifact)
    assert api.manifest(repo, "sig").json()["subject"]["digest"] == image.digest

    containerd.ctr(
        "e2e-art-pull",
        "content",
        "fetch",
        "--plain-http",
        "--user",
        registry.creds,
        ref,
    )
    assert _content(containerd, "e2e-art-pull", artifact.digest) == artifact.manifest
    _assert_namespace_has(containerd, "e2e-art-pull", factory, list(artifact.blobs))

    if registry.supports_referrers:
        referrers = api.referrers(repo, image.digest)
        assert artifact.digest in {m["digest"] for m in referrers["manifests"]}, json.dumps(
            referrers
        )


def test_ctr_push_rejected_with_wrong_credentials(
    containerd: Containerd,
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    image = factory.image("ctr-denied", factory.small_layers("ctr-denied", 1))
    repo = "ctr/denied"
    ref = registry.ref(repo, "v1")
    _import(
        containerd,
        "e2e-denied",
        factory,
        workdir,
        "v1",
        image,
        f"{registry.host}/{registry.name(repo)}",
    )
    proc = run(
        [
            "ctr",
            "--address",
            str(containerd.socket),
            "-n",
            "e2e-denied",
            "images",
            "push",
            "--plain-http",
            "--user",
            f"{registry.username}:wrong",
            ref,
        ],
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout
    resp = api.session.head(
        f"{registry.url}/v2/{registry.name(repo)}/manifests/v1",
        headers={"Accept": image.manifest_descriptor.media_type},
        timeout=30,
    )
    assert resp.status_code == 404, resp.status_code
