"""oras-py: login, push files as an artifact (plain and with a subject), pull, referrers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from .checks import assert_registry_has_exact
from .clients import RegistryApi
from .daemons import RegistryTarget
from .images import ImageFactory

pytestmark = pytest.mark.e2e

oras_client = pytest.importorskip("oras.client", reason="oras-py (PyPI `oras`) not installed")
oras_oci = pytest.importorskip("oras.oci")


def _client(registry: RegistryTarget, workdir: Path) -> Any:
    # The default "token" backend treats the realm of a `Basic realm="..."` challenge as a
    # token-service URL and tries to fetch a token from it (a DNS lookup of the realm name,
    # then retries with backoff). Registries doing HTTP Basic need the "basic" backend.
    client = oras_client.OrasClient(hostname=registry.host, insecure=True, auth_backend="basic")
    result = client.login(
        username=registry.username,
        password=registry.password,
        hostname=registry.host,
        config_path=str(workdir / "docker-config.json"),
    )
    assert "Succeeded" in json.dumps(result), result
    return client


def _write_files(factory: ImageFactory, directory: Path, label: str) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "readme.txt": f"portside e2e {label}\n".encode(),
        "payload.bin": factory.random_bytes(f"oras-{label}", 3 * 1024 * 1024 + 17),
        "empty.dat": b"",
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def test_oras_push_pull_files(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = _client(registry, workdir)
    src = workdir / "src"
    files = _write_files(factory, src, "plain")
    monkeypatch.chdir(src)  # oras-py insists on paths relative to the working directory
    target = registry.ref("oras/files", "v1")
    resp = client.push(target=target, files=sorted(files), quiet=True)
    assert resp.status_code == 201, resp.text

    manifest = api.manifest("oras/files", "v1")
    doc = manifest.json()
    assert resp.headers.get("Docker-Content-Digest") in (None, manifest.digest)
    titles = {
        layer["annotations"]["org.opencontainers.image.title"]: layer for layer in doc["layers"]
    }
    assert set(titles) == set(files)
    for name, data in files.items():
        assert titles[name]["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert titles[name]["size"] == len(data)
        assert api.blob("oras/files", titles[name]["digest"]) == data

    out = workdir / "out"
    pulled = client.pull(target=target, outdir=str(out))
    assert {Path(p).name for p in pulled} == set(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data

    # Chunked upload path (POST, PATCHes, PUT) and pull by digest.
    chunked_target = registry.ref("oras/files-chunked", "v1")
    resp = client.push(
        target=chunked_target,
        files=sorted(files),
        do_chunked=True,
        chunk_size=1024 * 1024,
        quiet=True,
    )
    assert resp.status_code == 201, resp.text
    chunked = api.manifest("oras/files-chunked", "v1")
    out2 = workdir / "out-chunked"
    client.pull(target=registry.ref("oras/files-chunked", digest=chunked.digest), outdir=str(out2))
    for name, data in files.items():
        assert (out2 / name).read_bytes() == data
    assert sorted(os.listdir(out2)) == sorted(files)


def test_oras_artifact_with_subject_and_referrers(
    registry: RegistryTarget,
    api: RegistryApi,
    factory: ImageFactory,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = factory.image("oras-subject", factory.small_layers("oras-subject", 2))
    repo = "oras/app"
    api.push_monolithic(
        repo,
        "v1",
        image.manifest,
        image.manifest_descriptor.media_type,
        [factory.store.read(d.digest) for d in image.blob_descriptors()],
    )
    assert_registry_has_exact(api, repo, "v1", image)

    client = _client(registry, workdir)
    src = workdir / "src"
    files = _write_files(factory, src, "attached")
    monkeypatch.chdir(src)
    subject = oras_oci.Subject(
        mediaType=image.manifest_descriptor.media_type,
        digest=image.digest,
        size=len(image.manifest),
    )
    target = registry.ref(repo, "attached")
    resp = client.push(
        target=target,
        files=[f"{name}:application/vnd.portside.e2e.attachment" for name in sorted(files)],
        subject=subject,
        manifest_annotations={"io.portside.e2e": "oras-subject"},
        quiet=True,
    )
    assert resp.status_code == 201, resp.text

    manifest = api.manifest(repo, "attached")
    doc = manifest.json()
    assert doc["subject"] == {
        "mediaType": image.manifest_descriptor.media_type,
        "digest": image.digest,
        "size": len(image.manifest),
    }
    # The subject image is untouched.
    assert_registry_has_exact(api, repo, "v1", image)

    out = workdir / "out"
    client.pull(target=registry.ref(repo, digest=manifest.digest), outdir=str(out))
    for name, data in files.items():
        assert (out / name).read_bytes() == data

    if not registry.supports_referrers:
        return  # distribution 2.8 has no referrers API
    referrers = api.referrers(repo, image.digest)
    entries = {m["digest"]: m for m in referrers["manifests"]}
    assert manifest.digest in entries, referrers
    entry = entries[manifest.digest]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["size"] == len(manifest.body)
    expected_type = doc.get("artifactType") or doc["config"]["mediaType"]
    assert entry["artifactType"] == expected_type
    assert entry.get("annotations", {}).get("io.portside.e2e") == "oras-subject"
