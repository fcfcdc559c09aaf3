"""Small builders shared by the unit and integration tests: manifests, tokens, clocks."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.http.v2 import V2Api
from chalicelib.registry.auth import (
    Authenticator,
    RegistryTokens,
    UploadCapability,
    hash_token,
    new_token_secret,
)
from chalicelib.registry.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import TokenRecord
from chalicelib.registry.service import RegistryService

MIB = 1024 * 1024
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class FakeClock:
    """A settable clock for the service: time moves only when a test says so."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def image_manifest(
    config: bytes,
    layers: list[bytes],
    media_type: str = OCI_MANIFEST,
    **extra: Any,
) -> bytes:
    docker = media_type == DOCKER_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, x) for x in layers],
        **extra,
    }
    return encode(doc)


def index_manifest(children: list[bytes], media_type: str = OCI_INDEX, **extra: Any) -> bytes:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            descriptor(child_type, c, platform={"os": "linux", "architecture": "amd64"})
            for c in children
        ],
        **extra,
    }
    return encode(doc)


def push_blob(service: RegistryService, repo: RepositoryName, data: bytes) -> str:
    digest = sha256(data)
    service.upload_blob(repo, digest, io.BytesIO(data), len(data))
    return digest


def push_image(
    service: RegistryService,
    repo: RepositoryName,
    reference: str,
    seed: str,
    **extra: Any,
) -> bytes:
    """Push a config and one layer derived from ``seed`` and a manifest naming them."""
    config = json.dumps({"seed": seed, "architecture": "amd64", "os": "linux"}).encode()
    layer = f"layer of {seed}".encode() * 10
    push_blob(service, repo, config)
    push_blob(service, repo, layer)
    body = image_manifest(config, [layer], **extra)
    service.put_manifest(repo, reference, body, OCI_MANIFEST)
    return body


def make_token(
    store: MetadataStore,
    account: str,
    scopes: set[str],
    registries: set[str] | None = None,
    expires_at: datetime | None = None,
) -> str:
    secret = new_token_secret()
    store.put_token(
        TokenRecord(
            token_id=secrets.token_hex(8),
            token_hash=hash_token(secret),
            account_id=account,
            name="test",
            scopes=frozenset(scopes),
            registries=frozenset(registries) if registries is not None else None,
            expires_at=expires_at,
            created_at=START - timedelta(days=1),
        )
    )
    return secret


# The signing secret of every unit test's V2Api (capabilities and JWTs are derived from it).
KEY = "unit-test-signing-key-of-at-least-32-bytes"


def make_v2_api(
    service: RegistryService, store: MetadataStore, authenticator: Authenticator | None = None
) -> V2Api:
    """The /v2/ dispatcher over ``service`` as unit tests use it."""
    return V2Api(
        service,
        authenticator or Authenticator(store),
        UploadCapability(KEY, timedelta(hours=1)),
        RegistryTokens(KEY, "portside", timedelta(minutes=5)),
    )
