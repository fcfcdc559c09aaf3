"""Assertions shared by the client tests: compare what clients pulled with what was pushed."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clients import RegistryApi
from .images import (
    MT_DOCKER_MANIFEST,
    MT_OCI_MANIFEST,
    Artifact,
    Image,
    Index,
    file_digest,
)

CHUNK = 1 << 20


def layout_blob(layout: Path, digest: str) -> Path:
    algo, hexpart = digest.split(":", 1)
    return layout / "blobs" / algo / hexpart


def layout_ref(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_bytes())
    for desc in index.get("manifests", []):
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return dict(desc)
    raise AssertionError(f"{layout}: no manifest tagged {tag!r} in index.json: {index}")


def assert_layout_blob(layout: Path, digest: str, expected: bytes | Path | None = None) -> None:
    """The layout holds ``digest`` and its bytes hash to it (and equal ``expected``)."""
    path = layout_blob(layout, digest)
    assert path.is_file(), f"{layout}: blob {digest} missing"
    if isinstance(expected, bytes):
        assert path.read_bytes() == expected, f"{layout}: blob {digest} differs"
    actual = file_digest(path)
    assert actual == digest, f"{layout}: blob {digest} has content hashing to {actual}"
    if isinstance(expected, Path):
        assert path.stat().st_size == expected.stat().st_size


def assert_layout_has_image(layout: Path, image: Image, store_path: Callable[[str], Path]) -> None:
    """Every blob of ``image`` (manifest, config, layers) is present byte for byte."""
    assert_layout_blob(layout, image.digest, image.manifest)
    assert_layout_blob(layout, image.config_descriptor.digest, image.config)
    for layer in image.layers:
        assert_layout_blob(layout, layer.descriptor.digest, store_path(layer.descriptor.digest))


def assert_layout_matches(
    layout: Path, tag: str, expected: Image | Index | Artifact, store_path: Callable[[str], Path]
) -> None:
    """A layout a client pulled into: the tagged manifest and all its blobs are identical."""
    desc = layout_ref(layout, tag)
    assert desc["digest"] == expected.digest, (
        f"pulled {tag} is {desc['digest']}, pushed {expected.digest}"
    )
    if isinstance(expected, Image):
        assert_layout_has_image(layout, expected, store_path)
    elif isinstance(expected, Index):
        assert_layout_blob(layout, expected.digest, expected.manifest)
        for image in expected.images:
            assert_layout_has_image(layout, image, store_path)
    else:
        assert_layout_blob(layout, expected.digest, expected.manifest)
        for blob in expected.blobs:
            assert_layout_blob(layout, blob.digest, store_path(blob.digest))


def assert_registry_has_exact(
    api: RegistryApi, repository: str, ref: str, expected: Image | Index | Artifact
) -> None:
    """The registry serves exactly the pushed manifest bytes under ``ref``, and every blob."""
    manifest = api.manifest(repository, ref)
    assert manifest.body == expected.manifest, (
        f"{repository}:{ref} manifest bytes differ from what was pushed"
    )
    assert manifest.digest == expected.digest
    if manifest.digest_header is not None:
        assert manifest.digest_header == expected.digest
    assert manifest.media_type == expected.manifest_descriptor.media_type
    if isinstance(expected, Index):
        for image in expected.images:
            assert_registry_has_exact(api, repository, image.digest, image)
        return
    blobs = expected.blob_descriptors() if isinstance(expected, Image) else list(expected.blobs)
    for desc in blobs:
        digest, size = api.blob_sha256(repository, desc.digest)
        assert (digest, size) == (desc.digest, desc.size)


def uncompressed_digest(api: RegistryApi, repository: str, digest: str, media_type: str) -> str:
    """Fetch a layer blob and return the sha256 of its decompressed (tar) content."""
    compressed = media_type.endswith("gzip") or media_type.endswith(".gzip")
    plain = hashlib.sha256()
    raw = hashlib.sha256()
    decomp = zlib.decompressobj(wbits=47) if compressed else None
    with api.session.get(
        f"{api.target.url}/v2/{api.target.name(repository)}/blobs/{digest}",
        timeout=300,
        stream=True,
    ) as resp:
        assert resp.status_code == 200, f"GET blob {digest} -> {resp.status_code}"
        for chunk in resp.iter_content(CHUNK):
            raw.update(chunk)
            plain.update(decomp.decompress(chunk) if decomp else chunk)
    if decomp is not None:
        plain.update(decomp.flush())
        assert decomp.eof, f"layer {digest}: truncated gzip stream"
    assert "sha256:" + raw.hexdigest() == digest, f"blob {digest} content mismatch"
    return "sha256:" + plain.hexdigest()


def assert_registry_has_equivalent(
    api: RegistryApi, repository: str, ref: str, image: Image, *, same_config: bool = True
) -> dict[str, Any]:
    """For clients that recompress layers: same config, same uncompressed layer tars."""
    manifest = api.manifest(repository, ref)
    doc = manifest.json()
    assert manifest.media_type in (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST), manifest.media_type
    assert doc.get("mediaType", manifest.media_type) == manifest.media_type
    config = api.blob(repository, doc["config"]["digest"])
    if same_config:
        assert config == image.config, "config blob bytes changed"
    assert json.loads(config)["rootfs"]["diff_ids"] == image.diff_ids
    layers = doc["layers"]
    assert len(layers) == len(image.layers)
    for desc, layer in zip(layers, image.layers, strict=True):
        assert uncompressed_digest(api, repository, desc["digest"], desc["mediaType"]) == (
            layer.diff_id
        ), f"layer {desc['digest']} does not decompress to {layer.diff_id}"
    return dict(doc)


@dataclass(frozen=True)
class SavedImage:
    """Content of a ``docker save`` / ``podman save`` (docker-archive) tarball."""

    config: bytes
    layer_digests: list[str]  # sha256 of each uncompressed layer.tar, in order
    repo_tags: list[str]


def read_docker_archive(path: Path) -> SavedImage:
    with tarfile.open(path, "r:*") as tar:
        manifest_member = tar.extractfile("manifest.json")
        assert manifest_member is not None
        manifest = json.loads(manifest_member.read())
        assert len(manifest) == 1, manifest
        entry = manifest[0]
        config_member = tar.extractfile(entry["Config"])
        assert config_member is not None
        config = config_member.read()
        digests = []
        for name in entry["Layers"]:
            member = tar.extractfile(name)
            assert member is not None, name
            head = member.read(2)
            member.seek(0)
            h = hashlib.sha256()
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=member) as gz:
                    while chunk := gz.read(CHUNK):
                        h.update(chunk)
            else:
                while chunk := member.read(CHUNK):
                    h.update(chunk)
            digests.append("sha256:" + h.hexdigest())
        return SavedImage(config, digests, list(entry.get("RepoTags") or []))


def assert_saved_image_matches(
    saved: SavedImage,
    image: Image,
    *,
    same_config: bool = True,
) -> None:
    assert saved.layer_digests == image.diff_ids, "saved layer tars differ from the originals"
    if same_config:
        assert saved.config == image.config, "saved config bytes differ from the original"
    else:
        assert json.loads(saved.config)["rootfs"]["diff_ids"] == image.diff_ids


def sha256_file_tree(root: Path) -> dict[str, str]:
    """Map of relative path -> sha256 for regular files under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = file_digest(path)
    return out
