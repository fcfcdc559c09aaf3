"""What moves: blobs (known digest and size, re-openable bytes) and manifests."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Blob:
    """``opener`` returns a new seekable stream positioned at the blob's first byte, so
    parallel transfers (and parts of one blob) each read their own."""

    digest: str
    size: int
    media_type: str
    opener: Callable[[], IO[bytes]] = field(repr=False, compare=False)

    def open_at(self, offset: int) -> IO[bytes]:
        stream = self.opener()
        if offset:
            stream.seek(offset)
        return stream


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes = field(repr=False)


@dataclass
class Image:
    """Everything to push: ``manifests`` children first, the root last; ``blobs`` by digest."""

    manifests: list[Manifest]
    blobs: dict[str, Blob]
    tag: str | None = None

    @property
    def root(self) -> Manifest:
        return self.manifests[-1]


class FileSlice(io.RawIOBase):
    """``length`` bytes of a file from ``offset`` (a member of an uncompressed tar)."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._handle = path.open("rb")
        self._start = offset
        self._length = length
        self._position = 0
        self._handle.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, min(self._length, base + offset))
        self._handle.seek(self._start + self._position)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        left = self._length - self._position
        if left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), left)]
        count = self._handle.readinto(view)
        self._position += count or 0
        return count or 0

    def close(self) -> None:
        self._handle.close()
        super().close()


def file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def slice_opener(path: Path, offset: int, length: int) -> Callable[[], IO[bytes]]:
    return lambda: io.BufferedReader(FileSlice(path, offset, length))


def bytes_opener(data: bytes) -> Callable[[], IO[bytes]]:
    return lambda: io.BytesIO(data)


def file_size(path: Path) -> int:
    return os.stat(path).st_size
