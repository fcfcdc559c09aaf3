"""Pushing tiny images over the /v2/ API with requests (HTTP Basic, token:token)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Pushed:
    digest: str
    manifest: bytes
    layer_size: int
    config_size: int


def push_blob(base_url: str, name: str, data: bytes, auth: tuple[str, str]) -> str:
    """Monolithic upload: POST a session, then PUT the bytes with ?digest=."""
    digest = sha256(data)
    started = requests.post(f"{base_url}/v2/{name}/blobs/uploads/", auth=auth, timeout=30)
    started.raise_for_status()
    location = urljoin(f"{base_url}/v2/{name}/blobs/uploads/", started.headers["Location"])
    separator = "&" if "?" in location else "?"
    done = requests.put(
        f"{location}{separator}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        auth=auth,
        timeout=30,
    )
    assert done.status_code == 201, (done.status_code, done.text)
    return digest


def push_image(
    base_url: str,
    registry: str,
    repository: str,
    tag: str,
    auth: tuple[str, str],
    layer: bytes | None = None,
) -> Pushed:
    """Push a one-layer OCI image as ``<registry>/<repository>:<tag>``; its manifest digest."""
    name = f"{registry}/{repository}"
    layer = layer if layer is not None else os.urandom(1024)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_digest = push_blob(base_url, name, config, auth)
    layer_digest = push_blob(base_url, name, layer, auth)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    ).encode()
    response = requests.put(
        f"{base_url}/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
        auth=auth,
        timeout=30,
    )
    assert response.status_code == 201, (response.status_code, response.text)
    digest = sha256(manifest)
    assert response.headers.get("Docker-Content-Digest", digest) == digest
    return Pushed(digest, manifest, len(layer), len(config))


def pull_manifest(
    base_url: str, registry: str, repository: str, reference: str, auth: tuple[str, str]
) -> requests.Response:
    return requests.get(
        f"{base_url}/v2/{registry}/{repository}/manifests/{reference}",
        headers={"Accept": OCI_MANIFEST},
        auth=auth,
        timeout=30,
    )


def try_start_upload(
    base_url: str, registry: str, repository: str, auth: tuple[str, str]
) -> requests.Response:
    return requests.post(
        f"{base_url}/v2/{registry}/{repository}/blobs/uploads/", auth=auth, timeout=30
    )
