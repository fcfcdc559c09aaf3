"""Direct uploads check the registry's part layout against S3's multipart limits (parts of
5 MiB to 5 GiB, only the last one smaller, at most 10,000 parts, covering the blob exactly)
before any part is sent, and cancel an upload session they refuse. Against the fake
direct-uploads registry of test_registry_client, with S3's real limits."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from portside.clientlib.oci import RegistryError
from portside.clientlib.oci.model import Blob
from portside.clientlib.oci.registry import RegistryClient
from portside.clientlib.oci.uploaders import DirectUploader, _part_layout_problem

from .fake_http import serve
from .test_registry_client import CREDS, SCOPE, Counter, FakeDirect, _blob

MIB = 1 << 20
GIB = 1 << 30


@pytest.fixture
def real_limits() -> Iterator[tuple[FakeDirect, RegistryClient]]:
    fake = FakeDirect(part_size=5 * MIB)
    with serve(fake) as url:
        fake.base = url
        yield fake, RegistryClient(url.removeprefix("http://"), CREDS)


def _unreadable(size: int) -> Blob:
    """A blob of ``size`` bytes whose bytes must never be read."""

    def never() -> IO[bytes]:
        raise AssertionError("a part was read although the upload was refused")

    digest = "sha256:" + hashlib.sha256(str(size).encode()).hexdigest()
    return Blob(digest, size, "application/octet-stream", never)


@pytest.mark.parametrize(
    ("size", "part_size", "part_count", "reason"),
    [
        pytest.param(3 * MIB, MIB, 3, "under 5 MiB", id="parts-under-5-MiB"),
        pytest.param(100, 6 * GIB, 1, "over S3's 5 GiB", id="part-over-5-GiB"),
        pytest.param(10_001 * 5 * MIB, 5 * MIB, 10_001, "10,000 parts", id="over-10000-parts"),
        pytest.param(10 * MIB + 1, 5 * MIB, 2, "are 3 parts, not 2", id="too-few-parts"),
        pytest.param(10 * MIB, 5 * MIB, 3, "are 2 parts, not 3", id="too-many-parts"),
        pytest.param(0, 8 * MIB, 0, "at least 1", id="no-part-for-an-empty-blob"),
        pytest.param(100, 0, 1, "at least 1", id="zero-part-size"),
        pytest.param(100, str(8 * MIB), 1, "not two integers", id="part-size-not-an-integer"),
        pytest.param(100, 8 * MIB, 1.0, "not two integers", id="part-count-not-an-integer"),
    ],
)
def test_direct_upload_refuses_a_part_layout_s3_cannot_take_and_cancels_the_session(
    real_limits: tuple[FakeDirect, RegistryClient],
    tmp_path: Path,
    size: int,
    part_size: Any,
    part_count: Any,
    reason: str,
) -> None:
    fake, client = real_limits
    fake.claimed_part_size = part_size
    fake.claimed_part_count = part_count
    blob = _unreadable(size)
    state = tmp_path / "state"
    uploader = DirectUploader(client, state, poll_interval=0.01)
    with pytest.raises(RegistryError) as raised:
        uploader.upload("reg/app", blob, SCOPE, Counter())
    message = str(raised.value)
    assert reason in message
    assert f"part_size={part_size!r}" in message and blob.digest in message
    assert "cancelled" in message
    assert fake.deleted == ["up1"] and fake.uploads == {}
    assert fake.part_puts == []
    assert list(state.iterdir()) == []


def test_a_resumed_direct_upload_whose_status_breaks_the_limits_is_refused_and_cancelled(
    real_limits: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = real_limits
    fake.fail_parts = {1: 2}  # the first run fails: its upload id stays in the state file
    data = os.urandom(100)
    state = tmp_path / "state"
    with pytest.raises(RegistryError, match="part 1"):
        DirectUploader(client, state, poll_interval=0.01).upload(
            "reg/app", _blob(data), SCOPE, Counter()
        )
    assert len(list(state.iterdir())) == 1
    fake.part_puts.clear()
    fake.claimed_part_count = 2  # the status route now claims two parts for 100 bytes

    with pytest.raises(RegistryError, match=r"part_count=2.*are 1 part, not 2"):
        DirectUploader(client, state, poll_interval=0.01).upload(
            "reg/app", _blob(data), SCOPE, Counter()
        )
    assert fake.deleted == ["up1"] and fake.uploads == {}
    assert fake.part_puts == []
    assert list(state.iterdir()) == []


def test_part_layout_limits_at_their_boundaries() -> None:
    assert _part_layout_problem(100, MIB, 1) is None  # one part may be small
    assert _part_layout_problem(0, 8 * MIB, 1) is None  # an empty blob is one empty part
    assert _part_layout_problem(5 * MIB + 10, 5 * MIB, 2) is None  # the last part is small
    assert _part_layout_problem(5 * MIB + 10, MIB, 6) is not None
    assert _part_layout_problem(10_000 * 5 * MIB, 5 * MIB, 10_000) is None
    assert _part_layout_problem(10_000 * 5 * MIB + 1, 5 * MIB, 10_001) is not None
    assert _part_layout_problem(5 * MIB * 3, 5 * MIB, 3) is None
    assert _part_layout_problem(5 * MIB * 3, 5 * MIB - 1, 4) is not None
    assert _part_layout_problem(5 * GIB * 2, 5 * GIB, 2) is None
    assert _part_layout_problem(5 * GIB * 2, 5 * GIB + 1, 2) is not None
    assert _part_layout_problem(10, True, 1) is not None  # a JSON true is not a size
