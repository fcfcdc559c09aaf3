"""Manifest parsing: media types, the blobs and child manifests a manifest references."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .digests import Digest
from .errors import DigestInvalidError, ManifestInvalidError, ManifestTooBigError
from .untrusted_json import MAX_JSON_DEPTH, JsonTooDeepError, loads

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES | {OCI_ARTIFACT}

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SIZE = 2**63 - 1  # a descriptor's size is an int64


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: Any, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ManifestInvalidError(f"{where} is not a descriptor object")
        media_type = value.get("mediaType")
        digest = value.get("digest")
        size = value.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestInvalidError(f"{where}.mediaType is missing")
        if not isinstance(digest, str):
            raise ManifestInvalidError(f"{where}.digest is missing")
        try:
            Digest.parse(digest)
        except DigestInvalidError as exc:
            raise ManifestInvalidError(f"{where}.digest: {exc.message}") from exc
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            # The image spec types size as int64; a bigger number cannot be a real blob and
            # would not fit a DynamoDB number either.
            raise ManifestInvalidError(f"{where}.size must be an integer from 0 to {MAX_SIZE}")
        artifact_type = value.get("artifactType")
        annotations = value.get("annotations")
        urls = value.get("urls") or []
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise ManifestInvalidError(f"{where}.artifactType must be a string")
        if annotations is not None and not _is_str_map(annotations):
            raise ManifestInvalidError(f"{where}.annotations must map strings to strings")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ManifestInvalidError(f"{where}.urls must be a list of strings")
        return cls(media_type, digest, size, artifact_type, annotations, tuple(urls))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    digest: str
    size: int
    blobs: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = field(default=None)

    @property
    def required_blob_digests(self) -> list[str]:
        """Blobs that must exist in the repository. Foreign layers (with ``urls``) are
        fetched from elsewhere by clients, so they need not be present."""
        return sorted({b.digest for b in self.blobs if not b.urls})

    @property
    def child_manifest_digests(self) -> list[str]:
        return sorted({m.digest for m in self.manifests})

    def referrer_descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type, self.digest, self.size, self.artifact_type, self.annotations
        )


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate ``body`` as a manifest and extract what it references."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise ManifestTooBigError(
            f"manifest is {len(body)} bytes; the limit is {MAX_MANIFEST_BYTES}",
            detail={"size": len(body), "limit": MAX_MANIFEST_BYTES},
        )
    try:
        doc = loads(body)
    except JsonTooDeepError as exc:
        raise ManifestInvalidError(
            f"manifest nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
            detail={"limit": MAX_JSON_DEPTH},
        ) from exc
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ManifestInvalidError(f"manifest is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestInvalidError("manifest must be a JSON object")

    declared = doc.get("mediaType")
    header_type = (content_type or "").split(";")[0].strip().lower() or None
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalidError("mediaType must be a string")
    if header_type in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ManifestInvalidError("Docker schema1 manifests are not supported")
    media_type = _choose_media_type(header_type, declared, doc)
    if doc.get("schemaVersion") != 2 and media_type != OCI_ARTIFACT:
        raise ManifestInvalidError("schemaVersion must be 2")

    digest = str(Digest.of(body))
    subject = Descriptor.parse(doc["subject"], "subject") if doc.get("subject") else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalidError("artifactType must be a string")
    annotations = doc.get("annotations")
    if annotations is not None and not _is_str_map(annotations):
        raise ManifestInvalidError("annotations must map strings to strings")

    blobs: list[Descriptor] = []
    manifests: list[Descriptor] = []
    if media_type in IMAGE_TYPES:
        config = Descriptor.parse(doc.get("config"), "config")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestInvalidError("layers must be a list")
        blobs = [config] + [Descriptor.parse(x, f"layers[{i}]") for i, x in enumerate(layers)]
        # Without artifactType an image manifest is typed by its config (distribution-spec
        # 1.1, referrers: "MUST be set to the config descriptor mediaType").
        if artifact_type is None:
            artifact_type = config.media_type
    elif media_type in INDEX_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestInvalidError("manifests must be a list")
        manifests = [Descriptor.parse(x, f"manifests[{i}]") for i, x in enumerate(children)]
    else:  # OCI artifact manifest (the withdrawn 1.1 draft type), still pushed by some tools
        items = doc.get("blobs") or []
        if not isinstance(items, list):
            raise ManifestInvalidError("blobs must be a list")
        blobs = [Descriptor.parse(x, f"blobs[{i}]") for i, x in enumerate(items)]

    return ParsedManifest(
        media_type=media_type,
        digest=digest,
        size=len(body),
        blobs=tuple(blobs),
        manifests=tuple(manifests),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )


def _choose_media_type(header_type: str | None, declared: str | None, doc: dict[str, Any]) -> str:
    if header_type in MANIFEST_TYPES:
        if declared is not None and declared != header_type:
            raise ManifestInvalidError(
                f"Content-Type {header_type} does not match mediaType {declared}"
            )
        return header_type
    if declared in MANIFEST_TYPES:
        return declared
    if declared is None:
        # OCI allows mediaType to be omitted; infer it from the shape of the document.
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc and "layers" in doc:
            return OCI_MANIFEST
    raise ManifestInvalidError(
        f"unsupported manifest media type {header_type or declared!r}",
        detail={"mediaType": header_type or declared},
    )
