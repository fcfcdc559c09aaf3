"""Pulling blobs, repository scoping of blobs, and cross-repository mounts."""

from __future__ import annotations

import pytest

from .helpers import (
    RegistryClient,
    assert_error,
    random_bytes,
    resolve_location,
    sha256_digest,
)
from .targets import BLOB_REDIRECTS, REPOSITORY_ISOLATION

REDIRECTS = (301, 302, 303, 307, 308)


def test_head_blob_answers_200_with_length_and_digest(client: RegistryClient, repo: str) -> None:
    data = random_bytes(777)
    digest = client.push_blob(repo, data)
    resp = client.head(client.blob_path(repo, digest))
    assert resp.status_code == 200, resp.headers
    assert resp.headers.get("Content-Length") == str(len(data))
    assert resp.headers.get("Docker-Content-Digest") == digest
    assert resp.content == b""


def test_get_blob_answers_content_directly_or_by_redirect_without_credentials(
    client: RegistryClient, repo: str
) -> None:
    data = random_bytes(50_000)
    digest = client.push_blob(repo, data)
    first = client.get(client.blob_path(repo, digest))
    assert first.status_code in (200, *REDIRECTS), first.text[:300]
    if first.status_code == 200:
        assert first.content == data
        assert first.headers.get("Docker-Content-Digest") == digest
    else:
        followed = client.anonymous.get(resolve_location(first), timeout=60, allow_redirects=True)
        assert "Authorization" not in followed.request.headers
        assert followed.status_code == 200
        assert followed.content == data


@pytest.mark.requires(BLOB_REDIRECTS)
def test_get_blob_redirects_307_to_a_presigned_url(client: RegistryClient, repo: str) -> None:
    data = random_bytes(4096)
    digest = client.push_blob(repo, data)
    resp = client.get(client.blob_path(repo, digest))
    assert resp.status_code == 307, resp.text[:300]
    location = resolve_location(resp)
    followed = client.anonymous.get(location, timeout=60)
    assert followed.status_code == 200
    assert followed.content == data


def test_range_get_of_blob_answers_206_with_the_requested_bytes(
    client: RegistryClient, repo: str
) -> None:
    data = random_bytes(10_000)
    digest = client.push_blob(repo, data)
    resp = client.fetch_blob(repo, digest, headers={"Range": "bytes=100-1099"})
    assert resp.status_code == 206, resp.text[:300]
    assert resp.content == data[100:1100]
    content_range = resp.headers.get("Content-Range", "")
    assert content_range.replace("bytes ", "").startswith("100-1099"), content_range


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_blob_answers_404_blob_unknown(
    client: RegistryClient, repo: str, method: str
) -> None:
    client.push_blob(repo, random_bytes(8))  # the repository exists, the blob does not
    resp = client.request(method, client.blob_path(repo, sha256_digest(random_bytes(8))))
    if method == "HEAD":
        assert resp.status_code == 404
    else:
        assert_error(resp, 404, "BLOB_UNKNOWN")


@pytest.mark.requires(REPOSITORY_ISOLATION)
def test_blob_is_not_readable_from_another_repository_until_mounted(
    client: RegistryClient, repo: str, other_repo: str
) -> None:
    client.push_blob(other_repo, random_bytes(8))  # make the other repository exist
    data = random_bytes(1000)
    digest = client.push_blob(repo, data)
    assert client.head(client.blob_path(other_repo, digest)).status_code == 404
    assert_error(client.get(client.blob_path(other_repo, digest)), 404, "BLOB_UNKNOWN")
    mounted = client.start_upload(other_repo, {"mount": digest, "from": repo})
    assert mounted.status_code == 201, mounted.text
    assert client.head(client.blob_path(other_repo, digest)).status_code == 200


def test_mount_from_repository_holding_the_blob_answers_201(
    client: RegistryClient, repo: str, other_repo: str
) -> None:
    data = random_bytes(2000)
    digest = client.push_blob(repo, data)
    resp = client.start_upload(other_repo, {"mount": digest, "from": repo})
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Location")
    assert resp.headers.get("Docker-Content-Digest") == digest
    head = client.head(client.blob_path(other_repo, digest))
    assert head.status_code == 200
    assert head.headers.get("Content-Length") == str(len(data))
    fetched = client.fetch_blob(other_repo, digest)
    assert fetched.status_code == 200
    assert fetched.content == data


def test_mount_of_blob_missing_from_source_falls_back_to_upload_session(
    client: RegistryClient, repo: str, other_repo: str
) -> None:
    client.push_blob(repo, random_bytes(8))  # the source exists but lacks the blob
    data = random_bytes(3000)
    digest = sha256_digest(data)
    resp = client.start_upload(other_repo, {"mount": digest, "from": repo})
    assert resp.status_code == 202, resp.text
    # The 202 is a real upload session: the client can push the blob through it.
    done = client.finish_upload(resolve_location(resp), digest, data)
    assert done.status_code == 201, done.text
    assert client.head(client.blob_path(other_repo, digest)).status_code == 200
