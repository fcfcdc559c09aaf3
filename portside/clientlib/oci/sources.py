"""Images to push: an OCI image layout, a ``docker save`` archive, or the docker daemon.

SOURCE syntax: ``oci:DIR[:TAG]``, ``docker-archive:FILE``, ``docker-daemon:IMAGE``, ``-`` (a
docker archive on stdin), or a plain path (a directory is an OCI layout, a file a docker
archive). A docker archive may be gzip-compressed (``docker save IMAGE | gzip``), whatever its
file name says: it is decompressed once into a temporary file, since reading members of a
gzip stream at random offsets would mean decompressing it again for every read. An archive
on stdin is spooled to a temporary file the same way. Temporary files are removed when the
image is no longer used, on errors too.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ClientError
from .media import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    REF_NAME,
    check_digest,
    children,
    manifest_media_type,
    sha256_digest,
)
from .model import Blob, Image, Manifest, file_opener, slice_opener

Reader = Callable[[str], tuple[int, Callable[[], IO[bytes]]] | None]
"""A content store: ``digest or path -> (size, opener)``, None when absent."""

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


@contextlib.contextmanager
def open_source(source: str, stdin: IO[bytes] | None = None) -> Iterator[Image]:
    """The image ``source`` names (a temporary file lives while in use: the output of
    ``docker save``, a decompressed archive, or what ``stdin`` held for ``-``)."""
    kind, _, rest = source.partition(":")
    if source == STDIN or (kind == "docker-archive" and rest == STDIN):
        stream = stdin if stdin is not None else sys.stdin.buffer
        with _spooled(stream, "stdin") as archive:
            yield read_docker_archive(archive, "stdin")
    elif kind == "oci" and rest:
        directory, tag = _split_tag(rest)
        yield read_oci_layout(Path(directory), tag)
    elif kind == "docker-archive" and rest:
        with _uncompressed(Path(rest)) as archive:
            yield read_docker_archive(archive, rest)
    elif kind == "docker-daemon" and rest:
        with _docker_save(rest) as archive:
            yield read_docker_archive(archive, f"docker save {rest}")
    else:
        path = Path(source)
        if path.is_dir():
            yield read_oci_layout(path, None)
        elif path.is_file():
            with _uncompressed(path) as archive:
                yield read_docker_archive(archive, source)
        else:
            raise ClientError(
                f"no image at {source!r}: expected a directory (OCI layout), a file (docker "
                "save archive, plain or gzip), - (an archive on stdin), oci:DIR[:TAG], "
                "docker-archive:FILE or docker-daemon:IMAGE"
            )


def _split_tag(rest: str) -> tuple[str, str | None]:
    directory, colon, tag = rest.rpartition(":")
    if colon and "/" not in tag and directory:
        return directory, tag
    return rest, None


# ---------------------------------------------------------------- OCI layout


def read_oci_layout(directory: Path, tag: str | None) -> Image:
    if not (directory / "index.json").is_file():
        raise ClientError(f"{directory} is not an OCI image layout (no index.json)")

    def read(key: str) -> tuple[int, Callable[[], IO[bytes]]] | None:
        path = directory / "blobs" / key.replace(":", "/", 1) if ":" in key else directory / key
        if not path.is_file():
            return None
        return path.stat().st_size, file_opener(path)

    return _from_index(read, _read_json_bytes(read, "index.json"), tag, str(directory))


def _read_json_bytes(read: Reader, key: str) -> bytes:
    found = read(key)
    if found is None:
        raise ClientError(f"missing {key}")
    with found[1]() as handle:
        return handle.read()


def _from_index(read: Reader, index_body: bytes, tag: str | None, where: str) -> Image:
    try:
        index = json.loads(index_body)
    except ValueError as exc:
        raise ClientError(f"{where}: index.json is not JSON ({exc})") from exc
    descriptors = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if tag is not None:
        chosen = [d for d in descriptors if (d.get("annotations") or {}).get(REF_NAME) == tag]
        if not chosen:
            chosen = [
                d
                for d in descriptors
                if str((d.get("annotations") or {}).get("io.containerd.image.name", "")).endswith(
                    f":{tag}"
                )
            ]
        if not chosen:
            raise ClientError(f"{where}: no image tagged {tag!r} in index.json")
    else:
        chosen = descriptors
    if len(chosen) != 1:
        names = [str((d.get("annotations") or {}).get(REF_NAME, d.get("digest"))) for d in chosen]
        raise ClientError(
            f"{where}: index.json lists {len(chosen)} images ({', '.join(names)}); "
            "choose one with oci:DIR:TAG"
        )
    descriptor = chosen[0]
    image = Image(manifests=[], blobs={}, tag=(descriptor.get("annotations") or {}).get(REF_NAME))
    _walk(read, descriptor, image, where, set())
    return image


def _walk(
    read: Reader, descriptor: dict[str, Any], image: Image, where: str, seen: set[str]
) -> None:
    digest = check_digest(str(descriptor.get("digest")))
    if digest in seen:
        return
    seen.add(digest)
    body = _read_json_bytes(read, digest)
    if sha256_digest(body) != digest:
        raise ClientError(f"{where}: manifest {digest} does not match its digest")
    media_type = manifest_media_type(body, descriptor.get("mediaType"))
    manifests, blobs = children(body, media_type)
    for child in manifests:
        _walk(read, child, image, where, seen)
    for item in blobs:
        blob_digest = check_digest(str(item.get("digest")))
        found = read(blob_digest)
        if found is None:
            raise ClientError(f"{where}: blob {blob_digest} is missing")
        size, opener = found
        if size != item.get("size"):
            raise ClientError(
                f"{where}: blob {blob_digest} is {size} bytes, not {item.get('size')}"
            )
        image.blobs[blob_digest] = Blob(blob_digest, size, str(item.get("mediaType", "")), opener)
    image.manifests.append(Manifest(digest, media_type, body))


# ---------------------------------------------------------------- docker save archives


def read_docker_archive(path: Path, where: str | None = None) -> Image:
    """A ``docker save`` tar (uncompressed): its OCI layout when it has one (docker 25+),
    else its ``manifest.json``, from which a Docker schema 2 manifest is built. ``where``
    names the archive in messages (``path`` may be a temporary file)."""
    where = str(path) if where is None else where
    try:
        with tarfile.open(path, "r:") as archive:
            members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
            links = {
                m.name.removeprefix("./"): m.linkname for m in archive.getmembers() if m.issym()
            }
    except (tarfile.TarError, OSError) as exc:
        raise ClientError(f"{where} is not a tar archive ({exc})") from exc

    def resolve(name: str) -> tarfile.TarInfo | None:
        for _ in range(8):
            if name in members:
                return members[name]
            if name not in links:
                return None
            target = links[name]
            base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
            name = (
                str(Path(base + target)).removeprefix("./")
                if not target.startswith("/")
                else target.lstrip("/")
            )
        return None

    def read(key: str) -> tuple[int, Callable[[], IO[bytes]]] | None:
        name = "blobs/" + key.replace(":", "/", 1) if key.startswith("sha256:") else key
        member = resolve(name)
        if member is None:
            return None
        return member.size, slice_opener(path, member.offset_data, member.size)

    if "index.json" in members and ("oci-layout" in members or "manifest.json" not in members):
        return _from_index(read, _read_json_bytes(read, "index.json"), None, where)
    if "manifest.json" not in members:
        raise ClientError(f"{where} is not a docker save archive (no manifest.json)")
    entries = json.loads(_read_json_bytes(read, "manifest.json"))
    if not isinstance(entries, list) or len(entries) != 1:
        count = len(entries) if isinstance(entries, list) else 0
        raise ClientError(f"{where}: manifest.json lists {count} images; save exactly one")
    entry = entries[0]
    tags = entry.get("RepoTags") or []
    tag = str(tags[0]).rpartition(":")[2] if tags else None
    config_found = read(str(entry.get("Config")))
    if config_found is None:
        raise ClientError(f"{where}: missing the config {entry.get('Config')}")
    config = _hash(config_found[1])
    blobs = {config[0]: Blob(config[0], config_found[0], DOCKER_CONFIG, config_found[1])}
    layers = []
    for layer_path in entry.get("Layers") or []:
        found = read(str(layer_path))
        if found is None:
            raise ClientError(f"{where}: missing the layer {layer_path}")
        digest, gzipped = _hash(found[1])
        media_type = DOCKER_LAYER_GZIP if gzipped else DOCKER_LAYER
        blobs[digest] = Blob(digest, found[0], media_type, found[1])
        layers.append({"mediaType": media_type, "size": found[0], "digest": digest})
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config_found[0], "digest": config[0]},
        "layers": layers,
    }
    body = json.dumps(manifest, indent=3).encode()
    return Image([Manifest(sha256_digest(body), DOCKER_MANIFEST, body)], blobs, tag)


def _hash(opener: Callable[[], IO[bytes]]) -> tuple[str, bool]:
    """The digest of the bytes, and whether they are gzip."""
    hasher = hashlib.sha256()
    with opener() as handle:
        head = handle.read(1 << 20)
        gzipped = head[:2] == b"\x1f\x8b"
        while head:
            hasher.update(head)
            head = handle.read(1 << 20)
    return "sha256:" + hasher.hexdigest(), gzipped


@contextlib.contextmanager
def _uncompressed(path: Path) -> Iterator[Path]:
    """``path`` itself, or a temporary decompressed copy when it is gzip (by its content)."""
    try:
        with path.open("rb") as handle:
            gzipped = _read_head(handle) == GZIP_MAGIC
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not gzipped:
        yield path
        return
    with path.open("rb") as handle, _spooled(handle, str(path)) as plain:
        yield plain


@contextlib.contextmanager
def _spooled(stream: IO[bytes], where: str) -> Iterator[Path]:
    """A temporary file (in the system's temporary directory) holding the tar ``stream``
    carries, decompressed when it is gzip; removed on leaving, errors included."""
    head = _read_head(stream)
    if not head:
        raise ClientError(f"{where} is empty: expected a docker save archive (plain or gzip)")
    source = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    fd, name = tempfile.mkstemp(prefix="portside-archive-", suffix=".tar")
    spool = Path(name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                if head == GZIP_MAGIC:
                    with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
                        shutil.copyfileobj(unzipped, out, CHUNK)
                else:
                    shutil.copyfileobj(source, out, CHUNK)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ClientError(f"{where} is not a valid gzip stream ({exc})") from exc
        except OSError as exc:
            raise ClientError(
                f"cannot copy {where} into a temporary file in {spool.parent} "
                f"({exc.strerror or exc})"
            ) from exc
        yield spool
    finally:
        spool.unlink(missing_ok=True)


def _read_head(stream: IO[bytes]) -> bytes:
    """The first two bytes (fewer only at the end of the stream)."""
    head = b""
    while len(head) < 2:
        data = stream.read(2 - len(head))
        if not data:
            break
        head += data
    return head


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read from ``rest``), then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _docker_save(image: str) -> Iterator[Path]:
    docker = shutil.which("docker")
    if docker is None:
        raise ClientError("docker-daemon: the docker command is not installed")
    with tempfile.TemporaryDirectory(prefix="portside-save-") as directory:
        target = Path(directory) / "image.tar"
        done = subprocess.run(
            [docker, "save", "-o", str(target), image], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise ClientError(f"docker save {image} failed: {reason[0]}")
        yield target
