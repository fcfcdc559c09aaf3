"""The BlobStore port's contract, on the in-memory store and on S3 (moto) alike: what the
service relies on, including the errors it maps (``KeyError`` for an object or multipart
upload that is gone, ``ValueError`` for parts that do not match)."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
import requests

from chalicelib.adapters.memory import MemoryBlobStore
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.registry.ports import BlobStore
from tests.integration.conftest import BUCKET, Aws

MIB = 1024 * 1024

BLOB_STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("s3", id="s3", marks=pytest.mark.integration),
]


@pytest.fixture(params=BLOB_STORES)
def blobs(request: pytest.FixtureRequest) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore()
    aws: Aws = request.getfixturevalue("aws")
    return S3BlobStore(BUCKET, aws.s3)


@pytest.fixture
def prefix() -> str:
    return f"contract/{uuid.uuid4().hex}/"


def test_an_object_reads_back_whole_and_in_chunks(blobs: BlobStore, prefix: str) -> None:
    data = os.urandom(3 * MIB + 7)
    blobs.put_object(prefix + "a", data)
    assert blobs.get_object(prefix + "a") == data
    assert b"".join(blobs.iter_object(prefix + "a")) == data


def test_a_missing_object_is_a_key_error(blobs: BlobStore, prefix: str) -> None:
    with pytest.raises(KeyError):
        blobs.get_object(prefix + "never")
    blobs.put_object(prefix + "gone", b"x")
    blobs.delete_object(prefix + "gone")
    with pytest.raises(KeyError):
        blobs.get_object(prefix + "gone")
    blobs.delete_object(prefix + "gone")  # deleting twice is no error


def test_multipart_parts_assemble_in_order(blobs: BlobStore, prefix: str) -> None:
    key = prefix + "data"
    first, last = os.urandom(5 * MIB), os.urandom(1234)
    upload = blobs.create_multipart(key)
    parts = [(1, blobs.upload_part(key, upload, 1, first))]
    parts.append((2, blobs.upload_part(key, upload, 2, last)))
    blobs.complete_multipart(key, upload, parts)
    assert hashlib.sha256(blobs.get_object(key)).digest() == hashlib.sha256(first + last).digest()


def test_a_replaced_part_no_longer_matches_its_etag(blobs: BlobStore, prefix: str) -> None:
    key = prefix + "data"
    upload = blobs.create_multipart(key)
    etag = blobs.upload_part(key, upload, 1, os.urandom(5 * MIB))
    blobs.upload_part(key, upload, 1, os.urandom(5 * MIB))  # another request's bytes
    with pytest.raises(ValueError):
        blobs.complete_multipart(key, upload, [(1, etag)])
    blobs.abort_multipart(key, upload)


def test_a_short_part_before_the_last_is_refused(blobs: BlobStore, prefix: str) -> None:
    key = prefix + "data"
    upload = blobs.create_multipart(key)
    short = blobs.upload_part(key, upload, 1, b"too short")
    last = blobs.upload_part(key, upload, 2, b"last")
    with pytest.raises(ValueError):
        blobs.complete_multipart(key, upload, [(1, short), (2, last)])
    blobs.abort_multipart(key, upload)


def test_completing_again_is_idempotent_and_an_aborted_upload_is_a_key_error(
    blobs: BlobStore, prefix: str
) -> None:
    key = prefix + "data"
    upload = blobs.create_multipart(key)
    etag = blobs.upload_part(key, upload, 1, b"only part")
    blobs.complete_multipart(key, upload, [(1, etag)])
    # As S3 does (a client's retry of a completion that succeeded must not fail).
    blobs.complete_multipart(key, upload, [(1, etag)])
    assert blobs.get_object(key) == b"only part"
    blobs.abort_multipart(key, upload)  # aborting what is complete is no error

    aborted = blobs.create_multipart(key)
    blobs.upload_part(key, aborted, 1, b"lost")
    blobs.abort_multipart(key, aborted)
    with pytest.raises(KeyError):
        blobs.upload_part(key, aborted, 2, b"more")
    with pytest.raises(KeyError):
        blobs.complete_multipart(key, aborted, [(1, etag)])


def test_delete_prefix_stops_at_its_budget_and_finishes_later(
    blobs: BlobStore, prefix: str
) -> None:
    for i in range(5):
        blobs.put_object(f"{prefix}x/{i}", b"x")
    blobs.put_object(prefix + "kept", b"k")
    assert blobs.delete_prefix(prefix + "x/", 3) is False
    assert blobs.delete_prefix(prefix + "x/", 3) is True
    for i in range(5):
        with pytest.raises(KeyError):
            blobs.get_object(f"{prefix}x/{i}")
    assert blobs.get_object(prefix + "kept") == b"k"


def test_a_presigned_get_serves_the_object(blobs: BlobStore, prefix: str) -> None:
    blobs.put_object(prefix + "p", b"presigned bytes")
    url = blobs.presign_get(prefix + "p", 60)
    if isinstance(blobs, MemoryBlobStore):
        assert url.startswith(f"memory://{prefix}p?")
        return
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200 and answer.content == b"presigned bytes"
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url


def test_parts_put_to_presigned_urls_are_listed_and_assemble(blobs: BlobStore, prefix: str) -> None:
    """Direct uploads: the client PUTs each part to its presigned URL with no headers of its
    own; ``list_parts`` reports what arrived; a completed upload is a KeyError to list."""
    key = prefix + "direct"
    first, last = os.urandom(5 * MIB), os.urandom(10)
    upload = blobs.create_multipart(key)
    assert blobs.list_parts(key, upload) == []
    etags = []
    for number, data in ((1, first), (2, last)):
        url = blobs.presign_upload_part(key, upload, number, 300)
        if isinstance(blobs, MemoryBlobStore):
            etags.append(blobs.upload_part(key, upload, number, data))
            continue
        assert "X-Amz-Signature=" in url and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
        answer = requests.put(url, data=data, timeout=30)
        assert answer.status_code == 200, answer.text
        etags.append(answer.headers["ETag"])
    listed = blobs.list_parts(key, upload)
    assert [(p.number, p.size) for p in listed] == [(1, 5 * MIB), (2, 10)]
    assert [p.etag.strip('"') for p in listed] == [e.strip('"') for e in etags]
    blobs.complete_multipart(key, upload, [(p.number, p.etag) for p in listed])
    assert hashlib.sha256(b"".join(blobs.iter_object(key))).digest() == (
        hashlib.sha256(first + last).digest()
    )
    with pytest.raises(KeyError):
        blobs.list_parts(key, upload)


def test_a_single_empty_part_completes_an_empty_object(blobs: BlobStore, prefix: str) -> None:
    key = prefix + "empty"
    upload = blobs.create_multipart(key)
    blobs.upload_part(key, upload, 1, b"")
    blobs.complete_multipart(
        key, upload, [(p.number, p.etag) for p in blobs.list_parts(key, upload)]
    )
    assert blobs.get_object(key) == b""
