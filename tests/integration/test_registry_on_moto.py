"""DynamoMetadataStore + S3BlobStore through RegistryService against a moto server."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.adapters.dynamo import DynamoMetadataStore, _after, repo_pk
from chalicelib.adapters.dynamo_models import BlobLinkItem
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.registry.digests import Digest
from chalicelib.registry.errors import DigestInvalidError
from chalicelib.registry.manifests import OCI_EMPTY, OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import UploadSession
from chalicelib.registry.service import (
    RegistryService,
    ServiceSettings,
    blob_key,
    manifest_key,
    upload_data_prefix,
    upload_prefix,
)
from tests.unit.builders import MIB, descriptor, encode, image_manifest, push_blob, sha256

from .conftest import BUCKET, PART_SIZE, Aws

pytestmark = pytest.mark.integration


def append(service: RegistryService, session: UploadSession, data: bytes) -> UploadSession:
    content_range = (session.offset, session.offset + len(data) - 1)
    return service.append_upload(session, io.BytesIO(data), len(data), content_range)


def keys_under(aws: Aws, prefix: str) -> list[str]:
    listing = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def open_multiparts(aws: Aws, prefix: str) -> list[dict[str, Any]]:
    listing = aws.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return list(listing.get("Uploads", []))


def push_image(service: RegistryService, repo: RepositoryName, tag: str, seed: str) -> bytes:
    config, layer = f"config {seed}".encode(), f"layer {seed}".encode()
    push_blob(service, repo, config)
    push_blob(service, repo, layer)
    body = image_manifest(config, [layer])
    service.put_manifest(repo, tag, body, OCI_MANIFEST)
    return body


def test_chunked_12_mib_upload_is_byte_identical_through_a_presigned_get(
    aws: Aws, service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    chunks = [os.urandom(3 * MIB), os.urandom(4 * MIB), os.urandom(5 * MIB)]
    data = b"".join(chunks)
    session = service.start_upload(repo)
    for chunk in chunks:
        session = append(service, session, chunk)
        saved = store.get_upload(session.upload_id)
        assert saved is not None
        assert (saved.offset, saved.version) == (session.offset, session.version)
    service.complete_upload(repo, session, sha256(data), None, 0)

    record, url = service.blob_download_url(repo, sha256(data))
    assert record.size == len(data)
    full = requests.get(url, timeout=30)
    assert full.status_code == 200
    assert full.content == data
    partial = requests.get(url, headers={"Range": "bytes=5242870-5242889"}, timeout=30)
    assert partial.status_code == 206
    assert partial.content == data[5242870:5242890]

    assert open_multiparts(aws, upload_data_prefix(repo.rid, session.upload_id)) == []
    assert keys_under(aws, upload_prefix(repo.rid, session.upload_id)) == []
    assert store.get_upload(session.upload_id) is None
    registry = store.get_registry(repo.registry)
    assert registry is not None
    assert (registry.storage_bytes, registry.repository_count) == (len(data), 1)


def test_presigned_url_is_sigv4_with_the_presign_ttl(
    aws: Aws, service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    digest = push_blob(service, repo, b"tiny layer")
    _, url = service.blob_download_url(repo, digest)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}" == aws.endpoint
    stored = store.get_registry_blob(repo.rid, digest)
    assert stored is not None and stored.key is not None
    assert parts.path == f"/{BUCKET}/{stored.key}"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == str(int(service.settings.presign_ttl.total_seconds()))
    assert query["X-Amz-Credential"].endswith("/us-east-1/s3/aws4_request")
    assert query["X-Amz-SignedHeaders"] == "host"
    assert len(query["X-Amz-Signature"]) == 64
    assert "Signature" not in query and "AWSAccessKeyId" not in query  # not SigV2


def test_digest_mismatch_leaves_no_object_and_no_link(
    aws: Aws, service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    claimed = sha256(b"what the client claimed")
    data = os.urandom(7 * MIB)
    session = append(service, service.start_upload(repo), data)
    with pytest.raises(DigestInvalidError):
        service.complete_upload(repo, session, claimed, None, 0)

    claimed_key = blob_key(repo.rid, Digest.parse(claimed))
    assert keys_under(aws, claimed_key) == []
    assert keys_under(aws, f"registries/{repo.rid}/blobs/") == []
    assert keys_under(aws, upload_prefix(repo.rid, session.upload_id)) == []
    assert open_multiparts(aws, f"registries/{repo.rid}/") == []
    assert store.get_blob_link(repo, claimed) is None
    assert store.get_registry_blob(repo.rid, claimed) is None
    assert store.get_upload(session.upload_id) is None


def test_second_upload_of_a_blob_links_the_registrys_copy_and_deletes_its_own(
    aws: Aws, service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    data = os.urandom(7 * MIB)  # multipart: the bytes stay where the upload wrote them
    other = RepositoryName(repo.registry, "other", repo.rid)
    service.complete_upload(
        repo, append(service, service.start_upload(repo), data), sha256(data), None, 0
    )
    second = append(service, service.start_upload(other), data)
    service.complete_upload(other, second, sha256(data), None, 0)

    first_link = store.get_blob_link(repo, sha256(data))
    second_link = store.get_blob_link(other, sha256(data))
    record = store.get_registry_blob(repo.rid, sha256(data))
    assert first_link is not None and second_link is not None and record is not None
    assert first_link.key == second_link.key == record.key
    assert keys_under(aws, f"registries/{repo.rid}/blobs/") == [record.key]
    _, url = service.blob_download_url(other, sha256(data))
    assert requests.get(url, timeout=30).content == data
    registry = store.get_registry(repo.registry)
    assert registry is not None and registry.storage_bytes == len(data)


def test_manifest_push_writes_manifest_tag_and_referrer_together(
    service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    subject = push_image(service, repo, "v1", "subject")
    push_blob(service, repo, b"{}")
    push_blob(service, repo, b"signature")
    referrer = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": descriptor(OCI_EMPTY, b"{}"),
            "layers": [descriptor("application/octet-stream", b"signature")],
            "subject": descriptor(OCI_MANIFEST, subject),
            "annotations": {"signed-by": "ci"},
        }
    )
    service.put_manifest(repo, "sig", referrer, OCI_MANIFEST)

    manifest = store.get_manifest(repo, sha256(referrer))
    assert manifest is not None
    assert manifest.body == referrer
    assert manifest.subject == sha256(subject)
    tag = store.get_tag(repo, "sig")
    assert tag is not None
    assert tag.digest == sha256(referrer)
    found = service.list_referrers(repo, sha256(subject), None)
    assert [(d.digest, d.artifact_type, d.annotations) for d in found] == [
        (sha256(referrer), "application/vnd.example.sig", {"signed-by": "ci"})
    ]
    assert service.list_referrers(repo, sha256(subject), "application/other") == []
    assert service.manifest_body(repo, service.resolve_manifest(repo, "v1")) == subject


def test_tags_list_in_lexical_order_and_page_with_last(
    service: RegistryService, repo: RepositoryName
) -> None:
    body = push_image(service, repo, "v9", "tags")
    for tag in ("v10", "a", "B", "latest", "_x"):
        service.put_manifest(repo, tag, body, OCI_MANIFEST)
    expected = ["B", "_x", "a", "latest", "v10", "v9"]
    assert service.list_tags(repo, None, None).items == expected
    seen: list[str] = []
    last: str | None = None
    while True:
        page = service.list_tags(repo, 4 if last is None else 1, last)
        seen += page.items
        if not page.more:
            break
        last = page.items[-1]
    assert seen == expected
    assert service.list_tags(repo, 10, "latest").items == ["v10", "v9"]
    assert service.list_tags(repo, 10, "v9").items == []


def test_delete_manifest_removes_its_tags_but_not_other_tags(
    service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    doomed = push_image(service, repo, "v1", "doomed")
    service.put_manifest(repo, "stable", doomed, OCI_MANIFEST)
    kept = push_image(service, repo, "v2", "kept")
    service.delete_manifest(repo, sha256(doomed))
    assert store.get_manifest(repo, sha256(doomed)) is None
    assert store.get_tag(repo, "v1") is None
    assert store.get_tag(repo, "stable") is None
    tag = store.get_tag(repo, "v2")
    assert tag is not None
    assert tag.digest == sha256(kept)
    assert service.list_tags(repo, None, None).items == ["v2"]


def test_cleanup_aborts_the_multipart_upload_of_an_expired_session(
    aws: Aws, store: DynamoMetadataStore, blobs: S3BlobStore, repo: RepositoryName
) -> None:
    moments = [datetime.now(UTC)]
    settings = ServiceSettings(part_size=PART_SIZE)
    service = RegistryService(store, blobs, settings, clock=lambda: moments[0])
    session = append(service, service.start_upload(repo), os.urandom(6 * MIB))
    data_prefix = upload_data_prefix(repo.rid, session.upload_id)
    scratch = upload_prefix(repo.rid, session.upload_id)
    assert len(open_multiparts(aws, data_prefix)) == 1
    assert len(keys_under(aws, scratch)) == 1  # the tail
    moments[0] += timedelta(hours=2)
    assert service.cleanup_expired_uploads(limit=1000) >= 1
    assert open_multiparts(aws, data_prefix) == []
    assert keys_under(aws, scratch) == [] and keys_under(aws, data_prefix) == []
    assert store.get_upload(session.upload_id) is None


def test_manifest_larger_than_300_kb_round_trips_through_s3(
    aws: Aws, service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    push_blob(service, repo, b"cfg")
    body = image_manifest(b"cfg", [], annotations={"pad": "z" * (400 * 1024)})
    assert len(body) > service.settings.manifest_inline_limit
    service.put_manifest(repo, "big", body, OCI_MANIFEST)

    record = store.get_manifest(repo, sha256(body))
    assert record is not None
    assert record.body is None
    key = manifest_key(repo.rid, Digest.parse(sha256(body)), record.revision)
    assert aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    resolved = service.resolve_manifest(repo, "big")
    assert service.manifest_body(repo, resolved) == body


def test_many_layer_manifest_under_the_inline_limit_can_be_pushed(
    service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName
) -> None:
    layers = [os.urandom(16) for _ in range(2250)]
    body = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_EMPTY, b"{}"),
            "layers": [descriptor("application/octet-stream", x) for x in layers],
        }
    )
    assert len(body) <= service.settings.manifest_inline_limit
    # Link every layer directly (a commit per blob would take most of a minute on moto).
    push_blob(service, repo, b"{}")
    with BlobLinkItem.batch_write() as batch:
        for layer in layers:
            batch.save(BlobLinkItem(repo_pk(repo), f"LINK#{sha256(layer)}", size=len(layer)))

    service.put_manifest(repo, "wide", body, OCI_MANIFEST)
    resolved = service.resolve_manifest(repo, "wide")
    assert service.manifest_body(repo, resolved) == body
    # 2251 references do not fit beside the body: GC and listings parse the body instead.
    stored = store.get_manifest(repo, sha256(body))
    assert stored is not None
    assert stored.references_in_body
    assert stored.blobs == []


@pytest.mark.parametrize("after", ["\U0010ffff", "\U0010ffff" * 3, "z" * 2000])
def test_listings_after_any_key_a_client_sends_are_valid_queries(
    service: RegistryService, store: DynamoMetadataStore, repo: RepositoryName, after: str
) -> None:
    push_image(service, repo, "v1", "a")
    # On DynamoDB a range whose low end passes its high end, or a sort key over 1 KB, is
    # a ValidationException (moto checks neither): these must be empty pages instead.
    assert store.list_tags(repo, after, 10) == []
    assert store.list_manifests(repo, after, 10) == []
    assert store.list_repositories(repo.rid, after, 10) == []
    assert [t.tag for t in store.list_tags(repo, "a" * 200, 10)] == ["v1"]


def test_a_listing_range_is_never_inverted_nor_over_the_sort_key_limit() -> None:
    """What moto does not check, DynamoDB refuses: prove the queries are valid by shape."""
    for prefix, longest in (("TAG#", 128), ("REPO#", 255), ("MANIFEST#", 255)):
        condition = _after(prefix, "\U0010fffe" * 2000, longest)
        assert condition is not None
        low, high = (v.value["S"] for v in condition.values[1:])
        assert low < high
        assert len(low.encode()) <= 1024 and len(high.encode()) <= 1024
