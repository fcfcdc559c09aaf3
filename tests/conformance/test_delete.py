"""Content management: deleting manifests, tags and blobs."""

from __future__ import annotations

import pytest

from .helpers import RegistryClient, assert_error, random_bytes, sha256_digest, unique
from .targets import TAG_DELETE


def test_delete_manifest_by_digest_answers_202_then_it_and_its_tags_are_gone(
    client: RegistryClient, repo: str
) -> None:
    image = client.push_oci_image(repo, "doomed")
    resp = client.delete(f"/v2/{repo}/manifests/{image.digest}")
    assert resp.status_code == 202, resp.text
    assert_error(client.get_manifest(repo, image.digest), 404, "MANIFEST_UNKNOWN")
    assert client.get_manifest(repo, image.digest, "HEAD").status_code == 404
    assert_error(client.get_manifest(repo, "doomed"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_keeps_other_manifests(client: RegistryClient, repo: str) -> None:
    keep = client.push_oci_image(repo, "keep")
    drop = client.push_oci_image(repo, "drop")
    assert client.delete(f"/v2/{repo}/manifests/{drop.digest}").status_code == 202
    assert client.get_manifest(repo, "keep").content == keep.body


@pytest.mark.requires(TAG_DELETE)
def test_delete_by_tag_removes_only_the_tag(client: RegistryClient, repo: str) -> None:
    image = client.push_oci_image(repo, "gone")
    client.push_manifest(repo, "stays", image.body, image.media_type)
    resp = client.delete(f"/v2/{repo}/manifests/gone")
    assert resp.status_code == 202, resp.text
    assert_error(client.get_manifest(repo, "gone"), 404, "MANIFEST_UNKNOWN")
    assert client.get_manifest(repo, image.digest).content == image.body
    assert client.get_manifest(repo, "stays").content == image.body
    tags = client.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert tags == ["stays"]


def test_delete_unknown_manifest_digest_answers_404(client: RegistryClient, repo: str) -> None:
    client.push_oci_image(repo, "exists")
    resp = client.delete(f"/v2/{repo}/manifests/{sha256_digest(unique().encode())}")
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_delete_blob_answers_202_then_head_404(client: RegistryClient, repo: str) -> None:
    digest = client.push_blob(repo, random_bytes(4096))
    resp = client.delete(client.blob_path(repo, digest))
    assert resp.status_code == 202, resp.text
    assert client.head(client.blob_path(repo, digest)).status_code == 404
    assert_error(client.get(client.blob_path(repo, digest)), 404, "BLOB_UNKNOWN")


def test_delete_unknown_blob_answers_404_blob_unknown(client: RegistryClient, repo: str) -> None:
    client.push_blob(repo, random_bytes(8))
    resp = client.delete(client.blob_path(repo, sha256_digest(unique().encode())))
    assert_error(resp, 404, "BLOB_UNKNOWN")


def test_deleted_blob_can_be_pushed_again(client: RegistryClient, repo: str) -> None:
    data = random_bytes(1024)
    digest = client.push_blob(repo, data)
    assert client.delete(client.blob_path(repo, digest)).status_code == 202
    assert client.push_blob(repo, data) == digest
    assert client.fetch_blob(repo, digest).content == data
