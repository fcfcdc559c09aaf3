"""Writing an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``).

The layout is assembled in a temporary directory beside DEST and renamed into place once
every blob has verified, so a failed pull leaves nothing in DEST.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ClientError
from .media import REF_NAME, check_digest

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class LayoutWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        algorithm, _, encoded = check_digest(digest).partition(":")
        return self.root / "blobs" / algorithm / encoded

    def write_blob(self, digest: str, data: bytes) -> None:
        path = self.blob_path(digest)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def finish(self, descriptor: dict[str, Any], ref_name: str | None) -> None:
        entry = dict(descriptor)
        if ref_name:
            entry["annotations"] = {REF_NAME: ref_name}
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry],
        }
        (self.root / "oci-layout").write_text(json.dumps(LAYOUT_VERSION) + "\n", "utf-8")
        (self.root / "index.json").write_text(json.dumps(index, indent=2) + "\n", "utf-8")


@contextlib.contextmanager
def staged_layout(dest: Path) -> Iterator[LayoutWriter]:
    """A writer into a temporary sibling of ``dest``, moved to ``dest`` when the block ends
    without an error and removed otherwise. ``dest`` must not exist or be an empty directory."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ClientError(f"{dest} already exists and is not an empty directory")
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=parent))
    try:
        yield LayoutWriter(staging)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
