"""Generate test images on disk: OCI image layouts, OCI archives and docker-archive tarballs.

Everything is produced from a seeded PRNG so a run is reproducible given its seed, while
different seeds (one per session by default) keep runs from sharing content. Blobs live once
in a session-wide content store and are hard-linked into each layout that needs them, so the
100 MiB layer is generated and hashed once per session.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_TITLE = "org.opencontainers.image.title"

EMPTY_JSON = b"{}"
FIXED_MTIME = 1_700_000_000
CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: a stable byte form for configs and manifests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: dict[str, str] | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


class BlobStore:
    """Content-addressed directory (``blobs/sha256/<hex>`` layout) shared by all images."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, hexpart = digest.split(":", 1)
        return self.root / algo / hexpart

    def put(self, data: bytes) -> str:
        digest = sha256_digest(data)
        target = self.path(digest)
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.rename(target)
        return digest

    def put_file(self, src: Path) -> str:
        """Move ``src`` into the store under its digest."""
        digest = file_digest(src)
        target = self.path(digest)
        if target.exists():
            src.unlink()
        else:
            src.rename(target)
        return digest

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()


@dataclass(frozen=True)
class Layer:
    """One filesystem layer: its uncompressed tar (diff) and the blob pushed (maybe gzipped)."""

    diff_id: str  # digest of the uncompressed tar
    tar_path: Path  # uncompressed tar inside the blob store
    descriptor: Descriptor  # the blob as referenced by the manifest
    files: dict[str, str]  # path inside the layer -> sha256 digest of the file content


@dataclass(frozen=True)
class Image:
    name: str
    platform: dict[str, str]
    layers: tuple[Layer, ...]
    config: bytes
    config_descriptor: Descriptor
    manifest: bytes
    manifest_descriptor: Descriptor

    @property
    def digest(self) -> str:
        return self.manifest_descriptor.digest

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    def blob_descriptors(self) -> list[Descriptor]:
        return [self.config_descriptor, *(layer.descriptor for layer in self.layers)]


@dataclass(frozen=True)
class Index:
    name: str
    images: tuple[Image, ...]
    manifest: bytes
    manifest_descriptor: Descriptor

    @property
    def digest(self) -> str:
        return self.manifest_descriptor.digest


@dataclass(frozen=True)
class Artifact:
    """An OCI artifact manifest (image manifest with artifactType and the empty config)."""

    name: str
    artifact_type: str
    blobs: tuple[Descriptor, ...]
    manifest: bytes
    manifest_descriptor: Descriptor
    subject: Descriptor | None = None

    @property
    def digest(self) -> str:
        return self.manifest_descriptor.digest


@dataclass
class ImageFactory:
    """Builds deterministic (per seed) images into a shared blob store."""

    workdir: Path
    seed: int
    store: BlobStore = field(init=False)
    _counter: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store = BlobStore(self.workdir / "store" / "blobs")

    def _rng(self, label: str) -> random.Random:
        return random.Random(f"{self.seed}:{label}")

    # -- layers -------------------------------------------------------------------------

    def layer(
        self,
        label: str,
        files: dict[str, int],
        *,
        compress: bool = True,
        gzip_level: int = 6,
    ) -> Layer:
        """Build a layer holding ``files`` (path -> size) of pseudo-random, incompressible bytes."""
        rng = self._rng(f"layer:{label}")
        tmp_tar = self.workdir / f"tmp-{label}.tar"
        file_digests: dict[str, str] = {}
        with (
            tmp_tar.open("wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            dirs: set[str] = set()
            for path in sorted(files):
                parts = path.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        info = tarfile.TarInfo(d)
                        info.type = tarfile.DIRTYPE
                        info.mode = 0o755
                        info.mtime = FIXED_MTIME
                        tar.addfile(info)
                size = files[path]
                info = tarfile.TarInfo(path)
                info.size = size
                info.mode = 0o644
                info.mtime = FIXED_MTIME
                h = hashlib.sha256()
                stream = _RandomStream(rng, size, h)
                tar.addfile(info, stream)
                file_digests[path] = "sha256:" + h.hexdigest()
        diff_id = self.store.put_file(tmp_tar)
        tar_path = self.store.path(diff_id)
        if not compress:
            desc = Descriptor(MT_OCI_LAYER_TAR, diff_id, tar_path.stat().st_size)
            return Layer(diff_id, tar_path, desc, file_digests)
        tmp_gz = self.workdir / f"tmp-{label}.tar.gz"
        with (
            tar_path.open("rb") as src,
            tmp_gz.open("wb") as dst,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=dst, compresslevel=gzip_level, mtime=0
            ) as gz,
        ):
            shutil.copyfileobj(src, gz, CHUNK)
        gz_digest = self.store.put_file(tmp_gz)
        desc = Descriptor(MT_OCI_LAYER_GZIP, gz_digest, self.store.path(gz_digest).stat().st_size)
        return Layer(diff_id, tar_path, desc, file_digests)

    def small_layers(self, label: str, count: int, *, max_size: int = 256 * 1024) -> list[Layer]:
        rng = self._rng(f"small:{label}")
        layers = []
        for i in range(count):
            files = {
                f"{label}/layer{i}/file{j}.bin": rng.randint(1, max_size)
                for j in range(rng.randint(1, 4))
            }
            layers.append(self.layer(f"{label}-{i}", files))
        return layers

    # -- images -------------------------------------------------------------------------

    def image(
        self,
        name: str,
        layers: Sequence[Layer],
        *,
        os_name: str = "linux",
        arch: str = "amd64",
        labels: dict[str, str] | None = None,
    ) -> Image:
        config_obj: dict[str, Any] = {
            "architecture": arch,
            "os": os_name,
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Labels": {"io.portside.e2e.name": name, **(labels or {})},
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": f"portside-e2e layer {i}"}
                for i in range(len(layers))
            ],
        }
        config = canonical_json(config_obj)
        config_desc = Descriptor(MT_OCI_CONFIG, self.store.put(config), len(config))
        manifest_obj = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [layer.descriptor.to_json() for layer in layers],
            "annotations": {"io.portside.e2e.name": name},
        }
        manifest = canonical_json(manifest_obj)
        platform = {"architecture": arch, "os": os_name}
        manifest_desc = Descriptor(
            MT_OCI_MANIFEST, self.store.put(manifest), len(manifest), platform=platform
        )
        return Image(name, platform, tuple(layers), config, config_desc, manifest, manifest_desc)

    def index(self, name: str, images: Sequence[Image]) -> Index:
        manifest_obj = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [img.manifest_descriptor.to_json() for img in images],
        }
        manifest = canonical_json(manifest_obj)
        desc = Descriptor(MT_OCI_INDEX, self.store.put(manifest), len(manifest))
        return Index(name, tuple(images), manifest, desc)

    def artifact(
        self,
        name: str,
        artifact_type: str,
        files: dict[str, bytes],
        *,
        subject: Descriptor | None = None,
        blob_media_type: str = "application/vnd.portside.e2e.blob",
    ) -> Artifact:
        empty_desc = Descriptor(MT_OCI_EMPTY, self.store.put(EMPTY_JSON), len(EMPTY_JSON))
        blobs = tuple(
            Descriptor(
                blob_media_type,
                self.store.put(data),
                len(data),
                annotations={ANNOTATION_TITLE: fname},
            )
            for fname, data in sorted(files.items())
        )
        manifest_obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty_desc.to_json(),
            "layers": [b.to_json() for b in blobs],
            "annotations": {"io.portside.e2e.name": name},
        }
        if subject is not None:
            manifest_obj["subject"] = Descriptor(
                subject.media_type, subject.digest, subject.size
            ).to_json()
        manifest = canonical_json(manifest_obj)
        desc = Descriptor(
            MT_OCI_MANIFEST, self.store.put(manifest), len(manifest), artifact_type=artifact_type
        )
        return Artifact(name, artifact_type, (empty_desc, *blobs), manifest, desc, subject)

    def random_bytes(self, label: str, size: int) -> bytes:
        return self._rng(f"bytes:{label}").randbytes(size)

    # -- on-disk formats ----------------------------------------------------------------

    def oci_layout(
        self,
        dest: Path,
        entries: Iterable[tuple[str, Image | Index | Artifact]],
    ) -> Path:
        """Write an OCI image layout at ``dest``; each entry is (tag, object)."""
        dest.mkdir(parents=True, exist_ok=True)
        blob_dir = dest / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        manifests = []
        for tag, obj in entries:
            for digest in _closure(obj):
                _link(self.store.path(digest), blob_dir / digest.split(":", 1)[1])
            d = obj.manifest_descriptor
            annotations = {ANNOTATION_REF_NAME: tag}
            manifests.append(
                Descriptor(
                    d.media_type,
                    d.digest,
                    d.size,
                    annotations=annotations,
                    platform=d.platform,
                    artifact_type=d.artifact_type,
                ).to_json()
            )
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}
        (dest / "index.json").write_bytes(canonical_json(index))
        return dest

    def oci_archive(
        self,
        dest: Path,
        entries: Iterable[tuple[str, Image | Index | Artifact]],
    ) -> Path:
        """An OCI layout packed as an (uncompressed) tarball, as ``ctr images import`` reads."""
        layout = self.oci_layout(dest.with_suffix(".layout"), entries)
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(layout.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
        return dest

    def docker_archive(self, dest: Path, image: Image, repo_tags: Sequence[str]) -> Path:
        """A ``docker save`` style tarball (manifest.json, config, uncompressed layer tars)."""
        manifest = [
            {
                "Config": f"{image.config_descriptor.hex}.json",
                "RepoTags": list(repo_tags),
                "Layers": [f"{layer.diff_id.split(':', 1)[1]}/layer.tar" for layer in image.layers],
            }
        ]
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, f"{image.config_descriptor.hex}.json", image.config)
            for layer in image.layers:
                hexpart = layer.diff_id.split(":", 1)[1]
                info = tarfile.TarInfo(hexpart)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = FIXED_MTIME
                tar.addfile(info)
                _add_bytes(tar, f"{hexpart}/VERSION", b"1.0")
                info = tar.gettarinfo(str(layer.tar_path), arcname=f"{hexpart}/layer.tar")
                info.mtime = FIXED_MTIME
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with layer.tar_path.open("rb") as f:
                    tar.addfile(info, f)
            _add_bytes(tar, "manifest.json", canonical_json(manifest))
        return dest


class _RandomStream(io.RawIOBase):
    """File-like object producing ``size`` PRNG bytes while hashing them."""

    def __init__(self, rng: random.Random, size: int, hasher: Any) -> None:
        self._rng = rng
        self._left = size
        self._hasher = hasher

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        n = min(n, 4 * CHUNK)
        data = self._rng.randbytes(n) if n else b""
        self._left -= n
        self._hasher.update(data)
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = FIXED_MTIME
    tar.addfile(info, io.BytesIO(data))


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _closure(obj: Image | Index | Artifact) -> list[str]:
    """Every blob digest (manifests included) reachable from ``obj``."""
    if isinstance(obj, Image):
        return [obj.digest, *(d.digest for d in obj.blob_descriptors())]
    if isinstance(obj, Index):
        out = [obj.digest]
        for img in obj.images:
            out.extend(_closure(img))
        return out
    return [obj.digest, *(d.digest for d in obj.blobs)]
