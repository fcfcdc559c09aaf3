"""The referrers API of distribution-spec 1.1: ``GET /v2/<name>/referrers/<digest>``."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    Pushed,
    RegistryClient,
    manifest_bytes,
    sha256_digest,
    unique,
)
from .targets import REFERRERS_API

pytestmark = pytest.mark.requires(REFERRERS_API)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


def get_referrers(client: RegistryClient, repo: str, digest: str, **params: str) -> Any:
    resp = client.get(f"/v2/{repo}/referrers/{digest}", params=params or None)
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == OCI_INDEX
    return resp


def index_of(resp: requests.Response) -> dict[str, Any]:
    doc: dict[str, Any] = resp.json()
    assert doc.get("schemaVersion") == 2
    assert doc.get("mediaType") == OCI_INDEX
    assert isinstance(doc.get("manifests"), list)
    return doc


def by_digest(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["digest"]: d for d in doc["manifests"]}


def test_referrers_lists_manifests_whose_subject_is_the_digest(
    client: RegistryClient, repo: str
) -> None:
    subject = client.push_oci_image(repo, "app")
    sbom = client.push_artifact(
        repo, artifact_type=SBOM, subject=subject, annotations={"org.example.format": "spdx"}
    )
    signature = client.push_artifact(
        repo, artifact_type=SIGNATURE, subject=subject, annotations={"org.example.key": "k1"}
    )
    unrelated = client.push_artifact(repo, artifact_type=SBOM)  # no subject
    listed = by_digest(index_of(get_referrers(client, repo, subject.digest)))
    assert set(listed) == {sbom.digest, signature.digest}
    assert unrelated.digest not in listed
    for pushed, kind, expected_annotations in (
        (sbom, SBOM, {"org.example.format": "spdx"}),
        (signature, SIGNATURE, {"org.example.key": "k1"}),
    ):
        entry = listed[pushed.digest]
        assert entry["mediaType"] == pushed.media_type
        assert entry["size"] == pushed.size
        assert entry["artifactType"] == kind
        assert entry.get("annotations") == expected_annotations


def test_referrer_image_without_artifact_type_is_listed_with_its_config_media_type(
    client: RegistryClient, repo: str
) -> None:
    subject = client.push_oci_image(repo)
    referrer = client.push_oci_image(repo, subject=subject)
    listed = by_digest(index_of(get_referrers(client, repo, subject.digest)))
    assert listed[referrer.digest]["artifactType"] == OCI_CONFIG


def test_referrer_index_without_artifact_type_is_listed_without_one(
    client: RegistryClient, repo: str
) -> None:
    subject = client.push_oci_image(repo)
    child = client.push_oci_image(repo)
    doc = client.index_doc([child])
    doc["subject"] = subject.descriptor()
    index = client.push_doc(repo, None, doc)
    entry = by_digest(index_of(get_referrers(client, repo, subject.digest)))[index.digest]
    assert entry["mediaType"] == OCI_INDEX
    assert "artifactType" not in entry


def test_referrers_artifact_type_filter_is_applied_and_announced(
    client: RegistryClient, repo: str
) -> None:
    subject = client.push_oci_image(repo)
    sbom = client.push_artifact(repo, artifact_type=SBOM, subject=subject)
    client.push_artifact(repo, artifact_type=SIGNATURE, subject=subject)
    resp = get_referrers(client, repo, subject.digest, artifactType=SBOM)
    applied = [f.strip() for f in resp.headers.get("OCI-Filters-Applied", "").split(",")]
    assert "artifactType" in applied
    assert list(by_digest(index_of(resp))) == [sbom.digest]


def test_referrers_of_a_subject_pushed_after_its_referrer(
    client: RegistryClient, repo: str
) -> None:
    # Push the referrer first (subject missing), then the subject itself.
    doc = client.oci_image_doc(repo)
    body = manifest_bytes(doc)
    subject = Pushed(body=body, digest=sha256_digest(body), media_type=doc["mediaType"])
    referrer = client.push_artifact(repo, artifact_type=SBOM, subject=subject)
    client.push_manifest(repo, subject.digest, subject.body, subject.media_type)
    listed = by_digest(index_of(get_referrers(client, repo, subject.digest)))
    assert referrer.digest in listed


def test_referrers_of_unknown_subject_answers_an_empty_index(
    client: RegistryClient, repo: str
) -> None:
    client.push_oci_image(repo)  # the repository exists
    doc = index_of(get_referrers(client, repo, sha256_digest(unique().encode())))
    assert doc["manifests"] == []


def test_referrers_with_malformed_digest_answers_400(client: RegistryClient, repo: str) -> None:
    client.push_oci_image(repo)
    resp = client.get(f"/v2/{repo}/referrers/sha256:not-a-digest")
    assert resp.status_code == 400, resp.text


def test_deleted_referrer_is_no_longer_listed(client: RegistryClient, repo: str) -> None:
    subject = client.push_oci_image(repo)
    keep = client.push_artifact(repo, artifact_type=SBOM, subject=subject)
    drop = client.push_artifact(repo, artifact_type=SIGNATURE, subject=subject)
    assert client.delete(f"/v2/{repo}/manifests/{drop.digest}").status_code == 202
    listed = by_digest(index_of(get_referrers(client, repo, subject.digest)))
    assert set(listed) == {keep.digest}
