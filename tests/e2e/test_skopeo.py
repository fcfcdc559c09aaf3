"""skopeo: OCI layout -> registry -> OCI layout, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from .checks import (
    assert_layout_blob,
    assert_layout_matches,
    assert_registry_has_exact,
    layout_ref,
)
from .clients import ContainersTools, RegistryApi, require_binaries
from .daemons import RegistryTarget
from .images import MT_OCI_EMPTY, ImageFactory, Layer
from .procs import run

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _need_skopeo() -> None:
    require_binaries("skopeo")


def push(
    containers: ContainersTools, registry: RegistryTarget, src: str, dest: str, *extra: str
) -> str:
    digestfile = containers.tmp / "digest"
    digestfile.unlink(missing_ok=True)
    containers.skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        registry.creds,
        "--digestfile",
        str(digestfile),
        *extra,
        src,
        dest,
    )
    return digestfile.read_text().strip()


def pull(
    containers: ContainersTools, registry: RegistryTarget, src: str, dest: str, *extra: str
) -> None:
    containers.skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        registry.creds,
        *extra,
        src,
        dest,
    )


def test_skopeo_multi_layer_push_pull(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    image = factory.image("skopeo-multi", factory.small_layers("skopeo-multi", 5))
    src = factory.oci_layout(workdir / "src", [("v1", image)])
    ref = registry.ref("skopeo/multi", "v1")

    digest = push(containers, registry, f"oci:{src}:v1", f"docker://{ref}")
    assert digest == image.digest
    assert_registry_has_exact(api, "skopeo/multi", "v1", image)
    assert_registry_has_exact(api, "skopeo/multi", image.digest, image)

    raw = containers.skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", registry.creds, f"docker://{ref}"
    ).stdout
    assert raw == image.manifest

    tags = json.loads(
        containers.skopeo(
            "list-tags",
            "--tls-verify=false",
            "--creds",
            registry.creds,
            f"docker://{registry.host}/{registry.name('skopeo/multi')}",
        ).stdout
    )
    assert "v1" in tags["Tags"]

    # Pull by tag and by digest back into fresh layouts.
    by_tag = workdir / "pulled-tag"
    pull(containers, registry, f"docker://{ref}", f"oci:{by_tag}:v1")
    assert_layout_matches(by_tag, "v1", image, factory.store.path)

    by_digest = workdir / "pulled-digest"
    pull(
        containers,
        registry,
        f"docker://{registry.ref('skopeo/multi', digest=image.digest)}",
        f"oci:{by_digest}:pinned",
    )
    assert_layout_matches(by_digest, "pinned", image, factory.store.path)


def test_skopeo_copy_between_repositories_and_delete(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    """Registry-to-registry copy (blob mounts / re-uploads), then manifest deletion."""
    image = factory.image("skopeo-copy", factory.small_layers("skopeo-copy", 3))
    src = factory.oci_layout(workdir / "src", [("v1", image)])
    push(containers, registry, f"oci:{src}:v1", f"docker://{registry.ref('skopeo/copy-a', 'v1')}")

    containers.skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        registry.creds,
        "--dest-tls-verify=false",
        "--dest-creds",
        registry.creds,
        f"docker://{registry.ref('skopeo/copy-a', 'v1')}",
        f"docker://{registry.ref('skopeo/copy-b', 'v2')}",
    )
    assert_registry_has_exact(api, "skopeo/copy-b", "v2", image)
    assert_registry_has_exact(api, "skopeo/copy-a", "v1", image)
    # The blob-info cache that drives cross-repository mounts lives in the test's dir.
    assert any(p.name.startswith("blob-info-cache") for p in containers.cache_files())

    containers.skopeo(
        "delete",
        "--tls-verify=false",
        "--creds",
        registry.creds,
        f"docker://{registry.ref('skopeo/copy-b', digest=image.digest)}",
    )
    resp = api.session.get(
        f"{registry.url}/v2/{registry.name('skopeo/copy-b')}/manifests/{image.digest}",
        headers={"Accept": image.manifest_descriptor.media_type},
        timeout=30,
    )
    assert resp.status_code == 404, resp.status_code
    # The source repository is unaffected.
    assert_registry_has_exact(api, "skopeo/copy-a", "v1", image)


def test_skopeo_big_layer_push_pull(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    big_layer: Layer,
    workdir: Path,
) -> None:
    small = factory.small_layers("skopeo-big", 1)
    image = factory.image("skopeo-big", [*small, big_layer])
    src = factory.oci_layout(workdir / "src", [("big", image)])
    ref = registry.ref("skopeo/big", "big")

    assert push(containers, registry, f"oci:{src}:big", f"docker://{ref}") == image.digest
    assert_registry_has_exact(api, "skopeo/big", "big", image)

    dest = workdir / "pulled"
    pull(containers, registry, f"docker://{ref}", f"oci:{dest}:big")
    assert_layout_matches(dest, "big", image, factory.store.path)


def test_skopeo_multiplatform_index_all(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    amd64 = factory.image("multi-amd64", factory.small_layers("multi-amd64", 2), arch="amd64")
    arm64 = factory.image("multi-arm64", factory.small_layers("multi-arm64", 2), arch="arm64")
    index = factory.index("multi", [amd64, arm64])
    src = factory.oci_layout(workdir / "src", [("v1", index)])
    ref = registry.ref("skopeo/multiarch", "v1")

    assert push(containers, registry, f"oci:{src}:v1", f"docker://{ref}", "--all") == index.digest
    assert_registry_has_exact(api, "skopeo/multiarch", "v1", index)

    everything = workdir / "pulled-all"
    pull(containers, registry, f"docker://{ref}", f"oci:{everything}:v1", "--all")
    assert_layout_matches(everything, "v1", index, factory.store.path)

    # Without --all, skopeo resolves the index to the requested platform.
    containers.skopeo(
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        registry.creds,
        f"docker://{ref}",
        f"oci:{workdir / 'pulled-arm64'}:arm",
    )
    assert_layout_matches(workdir / "pulled-arm64", "arm", arm64, factory.store.path)


def test_skopeo_artifact_with_subject(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    """An artifact manifest (artifactType, empty config, subject) pushed from an OCI layout."""
    image = factory.image("skopeo-subject", factory.small_layers("skopeo-subject", 1))
    artifact = factory.artifact(
        "skopeo-sbom",
        "application/vnd.portside.e2e.sbom+json",
        {"sbom.json": json.dumps({"name": "skopeo-subject"}).encode()},
        subject=image.manifest_descriptor,
    )
    src = factory.oci_layout(workdir / "src", [("v1", image), ("sbom", artifact)])
    repo = "skopeo/with-referrer"
    push(containers, registry, f"oci:{src}:v1", f"docker://{registry.ref(repo, 'v1')}")
    digest = push(containers, registry, f"oci:{src}:sbom", f"docker://{registry.ref(repo, 'sbom')}")
    assert digest == artifact.digest
    assert_registry_has_exact(api, repo, "sbom", artifact)
    doc = api.manifest(repo, artifact.digest).json()
    assert doc["subject"]["digest"] == image.digest
    assert doc["config"]["mediaType"] == MT_OCI_EMPTY

    dest = workdir / "pulled"
    pull(
        containers,
        registry,
        f"docker://{registry.ref(repo, digest=artifact.digest)}",
        f"oci:{dest}:sbom",
    )
    assert layout_ref(dest, "sbom")["digest"] == artifact.digest
    assert_layout_blob(dest, artifact.digest, artifact.manifest)
    for blob in artifact.blobs:
        assert_layout_blob(dest, blob.digest, factory.store.read(blob.digest))

    if not registry.supports_referrers:
        return  # distribution 2.8 has no referrers API
    referrers = api.referrers(repo, image.digest)
    entries = {m["digest"]: m for m in referrers["manifests"]}
    assert artifact.digest in entries, referrers
    assert entries[artifact.digest]["artifactType"] == artifact.artifact_type
    assert entries[artifact.digest]["size"] == len(artifact.manifest)
    filtered = api.referrers(repo, image.digest, artifact_type="application/x-none")
    assert artifact.digest not in {m["digest"] for m in filtered["manifests"]}


def test_skopeo_rejected_with_wrong_credentials(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    image = factory.image("skopeo-denied", factory.small_layers("skopeo-denied", 1))
    src = factory.oci_layout(workdir / "src", [("v1", image)])
    ref = registry.ref("skopeo/denied", "v1")
    proc = run(
        containers.wrap(
            [
                "skopeo",
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"{registry.username}:wrong-{registry.password}",
                f"oci:{src}:v1",
                f"docker://{ref}",
            ]
        ),
        env=containers.env(),
        check=False,
    )
    assert proc.returncode != 0, proc.stderr
    stderr = proc.stderr.decode(errors="replace").lower()
    assert "unauthorized" in stderr or "authentication required" in stderr, stderr
    resp = api.session.get(
        f"{registry.url}/v2/{registry.name('skopeo/denied')}/manifests/v1",
        headers={"Accept": image.manifest_descriptor.media_type},
        timeout=30,
    )
    assert resp.status_code == 404, resp.status_code
    # Anonymous reads are refused with a challenge: Portside speaks the Docker token-auth
    # protocol (Bearer), the reference registry with htpasswd asks for Basic.
    anon = requests.get(f"{registry.url}/v2/", timeout=30)
    assert anon.status_code == 401
    scheme = "bearer" if registry.kind == "portside" else "basic"
    assert anon.headers.get("WWW-Authenticate", "").lower().startswith(scheme)
