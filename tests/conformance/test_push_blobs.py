"""Pushing blobs: upload sessions, monolithic and chunked uploads, and their failure modes."""

from __future__ import annotations

import re

import pytest

from .helpers import (
    MIB,
    RegistryClient,
    assert_error,
    chunks_of,
    random_bytes,
    resolve_location,
    sha256_digest,
)
from .targets import ORDERED_CHUNKS, SINGLE_POST_UPLOAD

OCTET = {"Content-Type": "application/octet-stream"}


def assert_blob_content(client: RegistryClient, repo: str, data: bytes) -> None:
    digest = sha256_digest(data)
    resp = client.fetch_blob(repo, digest)
    assert resp.status_code == 200, resp.text[:300]
    assert len(resp.content) == len(data)
    assert sha256_digest(resp.content) == digest


def assert_created_blob(resp_status: int, headers: dict[str, str], digest: str) -> None:
    assert resp_status == 201
    assert headers.get("Location"), "201 for a blob must carry Location"
    assert headers.get("Docker-Content-Digest") == digest


def test_post_opens_upload_session_with_location_uuid_and_range(
    client: RegistryClient, repo: str
) -> None:
    resp = client.start_upload(repo)
    assert resp.status_code == 202, resp.text
    assert resp.headers.get("Location")
    assert resp.headers.get("Docker-Upload-UUID")
    assert re.fullmatch(r"0-\d+", resp.headers.get("Range", "")), resp.headers.get("Range")


@pytest.mark.requires(SINGLE_POST_UPLOAD)
def test_single_post_with_digest_and_body_creates_blob(client: RegistryClient, repo: str) -> None:
    data = random_bytes(4096)
    digest = sha256_digest(data)
    resp = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data, headers=OCTET
    )
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    assert_blob_content(client, repo, data)


def test_single_post_with_digest_creates_blob_or_falls_back_to_upload_session(
    client: RegistryClient, repo: str
) -> None:
    data = random_bytes(4096)
    digest = sha256_digest(data)
    resp = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data, headers=OCTET
    )
    assert resp.status_code in (201, 202), resp.text
    if resp.status_code == 202:  # allowed fallback: the client continues with POST-then-PUT
        resp = client.finish_upload(resolve_location(resp), digest, data)
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    assert_blob_content(client, repo, data)


def test_post_then_put_with_whole_body_creates_blob(client: RegistryClient, repo: str) -> None:
    data = random_bytes(10_000)
    digest = sha256_digest(data)
    resp = client.finish_upload(client.new_upload(repo), digest, data)
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    # The Location of the created blob is pullable.
    pulled = client.get(resolve_location(resp))
    if pulled.is_redirect:
        pulled = client.anonymous.get(resolve_location(pulled), timeout=60)
    assert pulled.status_code == 200
    assert pulled.content == data


@pytest.mark.parametrize("content_range", [True, False], ids=["content-range", "no-range"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_single_patch_then_empty_put_creates_blob(
    client: RegistryClient, repo: str, framing: str, content_range: bool
) -> None:
    data = random_bytes(300_000)
    digest = sha256_digest(data)
    headers = dict(OCTET)
    if content_range:
        headers["Content-Range"] = f"0-{len(data) - 1}"
    body = data if framing == "content-length" else chunks_of(data)  # generator => chunked
    resp = client.patch(client.new_upload(repo), data=body, headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.headers.get("Range") == f"0-{len(data) - 1}"
    if framing == "chunked":
        assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    resp = client.finish_upload(resolve_location(resp), digest)
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    assert_blob_content(client, repo, data)


def test_chunked_patches_in_order_assemble_a_blob_over_5mib(
    client: RegistryClient, repo: str
) -> None:
    sizes = [3 * MIB, 4 * MIB, 1]  # chunks below the 5 MiB multipart minimum, total above it
    data = random_bytes(sum(sizes))
    digest = sha256_digest(data)
    location = client.new_upload(repo)
    offset = 0
    for size in sizes:
        end = offset + size - 1
        resp = client.patch(
            location,
            data=data[offset : end + 1],
            headers={**OCTET, "Content-Range": f"{offset}-{end}"},
        )
        assert resp.status_code == 202, resp.text
        assert resp.headers.get("Range") == f"0-{end}"
        location = resolve_location(resp)
        offset = end + 1
    resp = client.finish_upload(location, digest)
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    assert_blob_content(client, repo, data)


def test_final_chunk_may_travel_in_the_closing_put(client: RegistryClient, repo: str) -> None:
    data = random_bytes(100_000)
    digest = sha256_digest(data)
    split = 60_000
    resp = client.patch(
        client.new_upload(repo),
        data=data[:split],
        headers={**OCTET, "Content-Range": f"0-{split - 1}"},
    )
    assert resp.status_code == 202, resp.text
    resp = client.finish_upload(
        resolve_location(resp),
        digest,
        data[split:],
        headers={"Content-Range": f"{split}-{len(data) - 1}"},
    )
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    assert_blob_content(client, repo, data)


@pytest.mark.requires(ORDERED_CHUNKS)
def test_out_of_order_patch_answers_416_and_keeps_the_session(
    client: RegistryClient, repo: str
) -> None:
    data = random_bytes(3000)
    resp = client.patch(
        client.new_upload(repo), data=data[:1000], headers={**OCTET, "Content-Range": "0-999"}
    )
    assert resp.status_code == 202, resp.text
    location = resolve_location(resp)
    skipped = client.patch(
        location, data=data[2000:], headers={**OCTET, "Content-Range": "2000-2999"}
    )
    assert skipped.status_code == 416, skipped.text
    # The session still reports only the bytes accepted so far, and can be completed.
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers.get("Range") == "0-999"
    resp = client.patch(
        resolve_location(status), data=data[1000:], headers={**OCTET, "Content-Range": "1000-2999"}
    )
    assert resp.status_code == 202, resp.text
    resp = client.finish_upload(resolve_location(resp), sha256_digest(data))
    assert resp.status_code == 201, resp.text
    assert_blob_content(client, repo, data)


@pytest.mark.requires(ORDERED_CHUNKS)
def test_patch_restarting_at_zero_after_data_answers_416(client: RegistryClient, repo: str) -> None:
    resp = client.patch(
        client.new_upload(repo), data=b"a" * 10, headers={**OCTET, "Content-Range": "0-9"}
    )
    assert resp.status_code == 202
    again = client.patch(
        resolve_location(resp), data=b"b" * 10, headers={**OCTET, "Content-Range": "0-9"}
    )
    assert again.status_code == 416, again.text


def test_get_upload_session_answers_204_with_range_and_uuid(
    client: RegistryClient, repo: str
) -> None:
    resp = client.patch(
        client.new_upload(repo),
        data=random_bytes(1234),
        headers={**OCTET, "Content-Range": "0-1233"},
    )
    assert resp.status_code == 202
    status = client.get(resolve_location(resp))
    assert status.status_code == 204, status.text
    assert status.headers.get("Range") == "0-1233"
    assert status.headers.get("Docker-Upload-UUID")
    assert status.headers.get("Location")
    assert status.content == b""


def test_deleting_upload_session_answers_204_then_session_is_unknown(
    client: RegistryClient, repo: str
) -> None:
    resp = client.patch(client.new_upload(repo), data=b"partial", headers=OCTET)
    assert resp.status_code == 202
    location = resolve_location(resp)
    cancelled = client.delete(location)
    assert cancelled.status_code == 204, cancelled.text
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        client.finish_upload(location, sha256_digest(b"partial")), 404, "BLOB_UPLOAD_UNKNOWN"
    )


def test_unknown_upload_session_answers_404_blob_upload_unknown(
    client: RegistryClient, repo: str
) -> None:
    # Make the repository exist, then ask for a session that was never opened.
    client.push_blob(repo, random_bytes(16))
    resp = client.get(f"/v2/{repo}/blobs/uploads/00000000-0000-4000-8000-000000000000")
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")


def test_put_with_mismatched_digest_answers_400_digest_invalid_and_stores_nothing(
    client: RegistryClient, repo: str
) -> None:
    data = random_bytes(2048)
    claimed = sha256_digest(b"something else entirely")
    resp = client.finish_upload(client.new_upload(repo), claimed, data)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert client.head(client.blob_path(repo, claimed)).status_code == 404
    assert client.head(client.blob_path(repo, sha256_digest(data))).status_code == 404


@pytest.mark.parametrize(
    "bad_digest",
    ["sha256:not-hex", "sha256:" + "a" * 10, "nodigest", "sha256:" + "A" * 64],
)
def test_put_with_malformed_digest_answers_400(
    client: RegistryClient, repo: str, bad_digest: str
) -> None:
    resp = client.finish_upload(client.new_upload(repo), bad_digest, b"payload")
    assert_error(resp, 400, "DIGEST_INVALID", "BLOB_UPLOAD_INVALID")


def test_blob_over_10mib_in_one_patch_round_trips(client: RegistryClient, repo: str) -> None:
    data = random_bytes(10 * MIB + 4321)
    digest = sha256_digest(data)
    resp = client.patch(client.new_upload(repo), data=data, headers=OCTET)
    assert resp.status_code == 202, resp.text
    assert resp.headers.get("Range") == f"0-{len(data) - 1}"
    resp = client.finish_upload(resolve_location(resp), digest)
    assert_created_blob(resp.status_code, dict(resp.headers), digest)
    assert_blob_content(client, repo, data)
