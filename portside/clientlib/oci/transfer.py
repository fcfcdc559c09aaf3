"""``push`` and ``pull``: blobs in parallel (skipping what the registry has), manifests after
every blob, an index after its children."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import DigestMismatch
from .layout import staged_layout
from .media import check_digest, children
from .model import Blob, Image
from .reference import Reference
from .registry import RegistryClient
from .uploaders import BlobUploader

WORKERS = 4


class ProgressSink(Protocol):
    """Where transfers report (the CLI's rich display or plain lines)."""

    def begin(self, total_bytes: int) -> None: ...

    def start(self, digest: str, label: str, size: int) -> Callable[[int], None]: ...

    def finish(self, digest: str, outcome: str, size: int) -> None: ...

    def note(self, text: str) -> None: ...


class NullSink:
    def begin(self, total_bytes: int) -> None:
        pass

    def start(self, digest: str, label: str, size: int) -> Callable[[int], None]:
        return lambda _count: None

    def finish(self, digest: str, outcome: str, size: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class TransferResult:
    digest: str
    media_type: str
    outcomes: dict[str, str] = field(default_factory=dict)
    # Blob bytes put on the wire by this push (0 for a pull): what a resumed push saved.
    sent_bytes: int = 0

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)


def _parallel(items: list[Any], work: Callable[[Any], None], workers: int) -> None:
    """Run ``work`` on every item; the first error cancels what has not started and is raised."""
    if not items:
        return
    with ThreadPoolExecutor(max(1, min(workers, len(items))), thread_name_prefix="blob") as pool:
        futures = [pool.submit(work, item) for item in items]
        _done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]


def push(
    client: RegistryClient,
    ref: Reference,
    image: Image,
    uploader: BlobUploader,
    sink: ProgressSink | None = None,
    workers: int = WORKERS,
) -> TransferResult:
    sink = sink or NullSink()
    name = ref.name
    scope = f"repository:{name}:pull,push"
    blobs = sorted(image.blobs.values(), key=lambda b: b.size)
    sink.begin(sum(blob.size for blob in blobs))
    result = TransferResult(image.root.digest, image.root.media_type)

    def one(blob: Blob) -> None:
        if client.blob_exists(name, blob.digest, scope) is not None:
            uploader.forget(name, blob.digest)
            result.outcomes[blob.digest] = "exists"
            sink.finish(blob.digest, "exists", blob.size)
            return
        advance = sink.start(blob.digest, blob.media_type, blob.size)
        outcome = uploader.upload(name, blob, scope, advance)
        result.outcomes[blob.digest] = outcome
        sink.finish(blob.digest, outcome, blob.size)

    sent_before = uploader.sent.total
    try:
        _parallel(blobs, one, workers)
    finally:
        result.sent_bytes = uploader.sent.total - sent_before
    for manifest in image.manifests[:-1]:
        client.put_manifest(name, manifest.digest, manifest.body, manifest.media_type, scope)
    root = image.root
    if ref.digest and ref.digest != root.digest:
        raise DigestMismatch(f"the image's manifest is {root.digest}, not {ref.digest}")
    client.put_manifest(name, ref.tag or root.digest, root.body, root.media_type, scope)
    return result


def pull(
    client: RegistryClient,
    ref: Reference,
    dest: Path,
    sink: ProgressSink | None = None,
    workers: int = WORKERS,
) -> TransferResult:
    """Write ``ref`` (an image, or an index with every platform) as an OCI layout at
    ``dest``; every manifest and blob is verified against its digest."""
    sink = sink or NullSink()
    name = ref.name
    scope = f"repository:{name}:pull"
    body, media_type, digest = client.get_manifest(name, ref.reference, scope)
    result = TransferResult(digest, media_type)
    with staged_layout(dest) as writer:
        blobs: dict[str, dict[str, Any]] = {}
        manifests: dict[str, bool] = {}

        def collect(manifest_body: bytes, manifest_type: str, manifest_digest: str) -> None:
            if manifest_digest in manifests:
                return
            manifests[manifest_digest] = True
            writer.write_blob(manifest_digest, manifest_body)
            child_manifests, child_blobs = children(manifest_body, manifest_type)
            for child in child_manifests:
                child_digest = check_digest(str(child.get("digest")))
                child_body, child_type, _ = client.get_manifest(name, child_digest, scope)
                if child.get("size") not in (None, len(child_body)):
                    raise DigestMismatch(f"manifest {child_digest}: size differs from the index")
                collect(child_body, child_type, child_digest)
            for item in child_blobs:
                blobs.setdefault(check_digest(str(item.get("digest"))), item)

        collect(body, media_type, digest)
        items = sorted(blobs.items(), key=lambda pair: int(pair[1].get("size") or 0))
        sink.begin(sum(int(item.get("size") or 0) for _, item in items))

        def one(pair: tuple[str, dict[str, Any]]) -> None:
            blob_digest, item = pair
            size = item.get("size")
            expected = size if isinstance(size, int) else None
            advance = sink.start(blob_digest, str(item.get("mediaType", "")), expected or 0)
            client.download_blob(
                name, blob_digest, writer.blob_path(blob_digest), scope, expected, advance
            )
            result.outcomes[blob_digest] = "downloaded"
            sink.finish(blob_digest, "downloaded", expected or 0)

        _parallel(items, one, workers)
        writer.finish({"mediaType": media_type, "digest": digest, "size": len(body)}, ref.tag)
    return result
