"""Media types, digests and descriptors."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

REF_NAME = "org.opencontainers.image.ref.name"
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Only sha256 digests are handled (they name every file this client writes)."""
    if not _SHA256.match(digest):
        from .errors import DigestMismatch

        raise DigestMismatch(f"unsupported or malformed digest {digest!r} (sha256 only)")
    return digest


def manifest_media_type(body: bytes, declared: str | None = None) -> str:
    """The manifest's ``mediaType`` field, else the declared type, else guessed from shape."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if isinstance(data, dict) and isinstance(data.get("mediaType"), str):
        return str(data["mediaType"])
    if declared and declared.split(";")[0].strip():
        return declared.split(";")[0].strip()
    if isinstance(data, dict) and "manifests" in data:
        return OCI_INDEX
    return OCI_MANIFEST


def children(body: bytes, media_type: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(child manifests, blobs)`` a manifest refers to: an index's manifests, or an image's
    config and layers."""
    data = json.loads(body)
    if not isinstance(data, dict):
        return [], []
    if media_type in INDEX_TYPES or "manifests" in data:
        return [d for d in data.get("manifests") or [] if isinstance(d, dict)], []
    blobs: list[dict[str, Any]] = []
    if isinstance(data.get("config"), dict):
        blobs.append(data["config"])
    blobs.extend(d for d in data.get("layers") or [] if isinstance(d, dict))
    return [], blobs
