"""Generated test images: OCI layouts and docker-save archives with random layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(size: int, name: str = "data.bin") -> bytes:
    """An uncompressed tar holding one file of ``size`` random bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = size
        archive.addfile(info, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def gzip_layer(size: int) -> bytes:
    return gzip.compress(layer_tar(size), mtime=0)


def config_for(layers: list[bytes], arch: str = "amd64") -> bytes:
    diff_ids = [sha256(gzip.decompress(x) if x[:2] == b"\x1f\x8b" else x) for x in layers]
    return json.dumps(
        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()


def _put(root: Path, data: bytes) -> dict[str, object]:
    digest = sha256(data)
    path = root / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def image_manifest(root: Path, layers: list[bytes], arch: str = "amd64") -> dict[str, object]:
    """Write the layers, config and manifest blobs; the manifest's descriptor."""
    config = config_for(layers, arch)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **_put(root, config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, **_put(root, layer)} for layer in layers],
    }
    body = json.dumps(manifest).encode()
    return {
        "mediaType": OCI_MANIFEST,
        **_put(root, body),
        "platform": {"architecture": arch, "os": "linux"},
    }


def write_layout(root: Path, descriptor: dict[str, object], tag: str) -> None:
    entry = dict(descriptor)
    entry.pop("platform", None)
    entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    )


def oci_layout(root: Path, layers: list[bytes], tag: str = "v1") -> dict[str, object]:
    root.mkdir(parents=True, exist_ok=True)
    descriptor = image_manifest(root, layers)
    write_layout(root, descriptor, tag)
    return descriptor


def oci_index_layout(root: Path, platforms: dict[str, list[bytes]], tag: str) -> str:
    """A multi-platform image; the index's digest."""
    root.mkdir(parents=True, exist_ok=True)
    children = [image_manifest(root, layers, arch) for arch, layers in platforms.items()]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    descriptor = {"mediaType": OCI_INDEX, **_put(root, index.encode())}
    write_layout(root, descriptor, tag)
    return str(descriptor["digest"])


def docker_save_archive(path: Path, layers: list[bytes], repo_tag: str) -> bytes:
    """A docker 20.10-style ``docker save`` tar: ``<id>/layer.tar``, ``<config id>.json`` and
    ``manifest.json``; the config bytes."""
    config = config_for(layers)
    config_name = sha256(config).split(":")[1] + ".json"
    members: dict[str, bytes] = {config_name: config}
    layer_paths = []
    for number, layer in enumerate(layers):
        layer_path = f"{hashlib.sha256(str(number).encode()).hexdigest()}/layer.tar"
        members[layer_path] = layer
        layer_paths.append(layer_path)
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return config


def layout_blobs(root: Path) -> dict[str, bytes]:
    return {
        f"sha256:{path.name}": path.read_bytes() for path in (root / "blobs" / "sha256").iterdir()
    }
