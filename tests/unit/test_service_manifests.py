"""RegistryService manifests, tags, referrers and catalog over the in-memory stores."""

from __future__ import annotations

import json

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.registry.digests import Digest
from chalicelib.registry.errors import (
    DigestInvalidError,
    ManifestBlobUnknownError,
    ManifestInvalidError,
    ManifestUnknownError,
    NameUnknownError,
    RegistryError,
)
from chalicelib.registry.manifests import DOCKER_MANIFEST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.service import RegistryService, manifest_key

from .builders import (
    OCI_LAYER,
    START,
    descriptor,
    encode,
    image_manifest,
    index_manifest,
    push_blob,
    push_image,
    sha256,
)
from .conftest import ACCOUNT, REGISTRY, named, named_path, rid

SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"


def push_referrer(
    service: RegistryService,
    repo: RepositoryName,
    subject: bytes,
    artifact_type: str,
    payload: bytes,
) -> bytes:
    push_blob(service, repo, b"{}")
    push_blob(service, repo, payload)
    body = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(OCI_EMPTY, b"{}"),
            "layers": [descriptor("application/octet-stream", payload)],
            "subject": descriptor(OCI_MANIFEST, subject),
            "annotations": {"kind": artifact_type},
        }
    )
    service.put_manifest(repo, sha256(body), body, OCI_MANIFEST)
    return body


def tag_all(service: RegistryService, repo: RepositoryName, tags: list[str]) -> bytes:
    body = push_image(service, repo, tags[0], "tagged")
    for tag in tags[1:]:
        service.put_manifest(repo, tag, body, OCI_MANIFEST)
    return body


# ------------------------------------------------------------------ push and pull


def test_manifest_pushed_by_tag_resolves_by_tag_and_by_digest(
    service: RegistryService, repo: RepositoryName
) -> None:
    body = push_image(service, repo, "v1", "a")
    by_tag = service.resolve_manifest(repo, "v1")
    by_digest = service.resolve_manifest(repo, sha256(body))
    assert by_tag.digest == by_digest.digest == sha256(body)
    assert by_tag.media_type == OCI_MANIFEST
    assert by_tag.size == len(body)
    assert service.manifest_body(repo, by_tag) == body
    assert by_digest.created_at == START  # the tag carries only what a pull needs


def test_manifest_pushed_by_digest_has_no_tag(
    service: RegistryService, repo: RepositoryName
) -> None:
    push_blob(service, repo, b"cfg")
    body = image_manifest(b"cfg", [])
    parsed = service.put_manifest(repo, sha256(body), body, OCI_MANIFEST)
    assert parsed.digest == sha256(body)
    assert service.resolve_manifest(repo, sha256(body)).digest == sha256(body)
    assert service.list_tags(repo, None, None).items == []


def test_manifest_pushed_under_a_digest_it_does_not_hash_to_is_refused(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_blob(service, repo, b"cfg")
    body = image_manifest(b"cfg", [])
    with pytest.raises(DigestInvalidError):
        service.put_manifest(repo, sha256(b"not the body"), body, OCI_MANIFEST)
    assert store.get_manifest(repo, sha256(body)) is None


def test_manifest_referencing_missing_blobs_lists_them(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_blob(service, repo, b"cfg")
    body = image_manifest(b"cfg", [b"present?", b"missing"])
    push_blob(service, repo, b"present?")
    with pytest.raises(ManifestBlobUnknownError) as caught:
        service.put_manifest(repo, "v1", body, OCI_MANIFEST)
    assert caught.value.status == 400
    assert caught.value.detail == {"blobs": [sha256(b"missing")], "manifests": []}
    assert store.get_tag(repo, "v1") is None


def test_blob_of_another_repository_does_not_satisfy_a_manifest(
    service: RegistryService, repo: RepositoryName
) -> None:
    push_blob(service, named(REGISTRY, "elsewhere"), b"cfg")
    with pytest.raises(ManifestBlobUnknownError):
        service.put_manifest(repo, "v1", image_manifest(b"cfg", []), OCI_MANIFEST)


def test_index_with_a_missing_child_manifest_lists_it(
    service: RegistryService, repo: RepositoryName
) -> None:
    present = push_image(service, repo, "amd64", "amd64")
    absent = image_manifest(b"never pushed", [])
    body = index_manifest([present, absent])
    with pytest.raises(ManifestBlobUnknownError) as caught:
        service.put_manifest(repo, "multi", body, OCI_INDEX)
    assert caught.value.detail == {"blobs": [], "manifests": [sha256(absent)]}


def test_index_whose_children_exist_is_stored_with_them(
    service: RegistryService, repo: RepositoryName
) -> None:
    a = push_image(service, repo, "amd64", "amd64")
    b = push_image(service, repo, "arm64", "arm64")
    service.put_manifest(repo, "multi", index_manifest([a, b]), OCI_INDEX)
    record = service.resolve_manifest(repo, "multi")
    assert record.media_type == OCI_INDEX
    stored = service.resolve_manifest(repo, record.digest)  # the tag carries a summary
    assert stored.manifests == sorted([sha256(a), sha256(b)])


def test_tag_moves_to_the_newly_pushed_manifest(
    service: RegistryService, repo: RepositoryName
) -> None:
    old = push_image(service, repo, "latest", "old")
    new = push_image(service, repo, "latest", "new")
    assert service.resolve_manifest(repo, "latest").digest == sha256(new)
    assert service.resolve_manifest(repo, sha256(old)).digest == sha256(old)
    assert service.list_tags(repo, None, None).items == ["latest"]


def test_unknown_tag_digest_and_malformed_tag_are_errors(
    service: RegistryService, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "a")
    with pytest.raises(ManifestUnknownError):
        service.resolve_manifest(repo, "v2")
    with pytest.raises(ManifestUnknownError):
        service.resolve_manifest(repo, sha256(b"nothing"))
    with pytest.raises(DigestInvalidError):
        service.resolve_manifest(repo, "sha256:zz")
    with pytest.raises(RegistryError) as caught:
        service.resolve_manifest(repo, "-bad-tag")
    assert caught.value.status == 400


def test_delete_by_tag_removes_only_the_tag(service: RegistryService, repo: RepositoryName) -> None:
    body = push_image(service, repo, "v1", "a")
    service.delete_manifest(repo, "v1")
    with pytest.raises(ManifestUnknownError):
        service.resolve_manifest(repo, "v1")
    assert service.resolve_manifest(repo, sha256(body)).digest == sha256(body)
    with pytest.raises(ManifestUnknownError):
        service.delete_manifest(repo, "v1")


def test_delete_by_digest_removes_the_manifest_and_every_tag_naming_it(
    service: RegistryService, repo: RepositoryName
) -> None:
    body = tag_all(service, repo, ["v1", "stable"])
    other = push_image(service, repo, "v2", "other")
    service.delete_manifest(repo, sha256(body))
    for reference in ("v1", "stable", sha256(body)):
        with pytest.raises(ManifestUnknownError):
            service.resolve_manifest(repo, reference)
    assert service.resolve_manifest(repo, "v2").digest == sha256(other)
    assert service.list_tags(repo, None, None).items == ["v2"]
    with pytest.raises(ManifestUnknownError):
        service.delete_manifest(repo, sha256(body))


def test_manifest_above_the_inline_limit_lives_in_the_blob_store_byte_exact(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    limit = service.settings.manifest_inline_limit
    body = push_image(service, repo, "big", "big", annotations={"pad": "p" * (limit + 10)})
    assert len(body) > limit
    record = store.get_manifest(repo, sha256(body))
    assert record is not None
    assert record.body is None
    key = manifest_key(rid(REGISTRY), Digest.parse(sha256(body)), record.revision)
    assert blobs.objects[key] == body
    resolved = service.resolve_manifest(repo, "big")
    assert service.manifest_body(repo, resolved) == body


def test_manifest_whose_item_fits_under_the_inline_limit_stays_inline(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    limit = service.settings.manifest_inline_limit
    probe = push_image(service, repo, "probe", "s", annotations={"pad": ""})
    # The item also holds the digest lists and other attributes: leave room for them.
    pad = "p" * (limit - len(probe) - 8192)
    body = push_image(service, repo, "edge", "s", annotations={"pad": pad})
    assert len(body) == limit - 8192
    record = store.get_manifest(repo, sha256(body))
    assert record is not None
    assert record.body == body
    assert not [k for k in blobs.objects if "/manifests/" in k]


def test_pushing_a_manifest_creates_the_repository_once(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "a")
    push_image(service, repo, "v2", "b")
    registry = store.get_registry(REGISTRY)
    assert registry is not None
    assert registry.repository_count == 1
    assert store.repository_exists(repo)


# ------------------------------------------------------------------ referrers


def test_referrers_list_manifests_whose_subject_is_the_digest(
    service: RegistryService, repo: RepositoryName
) -> None:
    subject = push_image(service, repo, "v1", "subject")
    signature = push_referrer(service, repo, subject, SIGNATURE, b"sig")
    sbom = push_referrer(service, repo, subject, SBOM, b"sbom")

    found = service.list_referrers(repo, sha256(subject), None)
    assert sorted(d.digest for d in found) == sorted([sha256(signature), sha256(sbom)])
    by_digest = {d.digest: d for d in found}
    assert by_digest[sha256(signature)].artifact_type == SIGNATURE
    assert by_digest[sha256(signature)].size == len(signature)
    assert by_digest[sha256(signature)].media_type == OCI_MANIFEST
    assert by_digest[sha256(signature)].annotations == {"kind": SIGNATURE}


def test_referrers_filtered_by_artifact_type(
    service: RegistryService, repo: RepositoryName
) -> None:
    subject = push_image(service, repo, "v1", "subject")
    signature = push_referrer(service, repo, subject, SIGNATURE, b"sig")
    push_referrer(service, repo, subject, SBOM, b"sbom")
    only = service.list_referrers(repo, sha256(subject), SIGNATURE)
    assert [d.digest for d in only] == [sha256(signature)]
    assert service.list_referrers(repo, sha256(subject), "application/none") == []


def test_referrers_of_an_unknown_subject_are_empty_and_bad_digest_is_invalid(
    service: RegistryService, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "a")
    assert service.list_referrers(repo, sha256(b"nothing refers"), None) == []
    with pytest.raises(DigestInvalidError):
        service.list_referrers(repo, "sha256:short", None)


def test_referrer_pushed_before_its_subject_is_listed(
    service: RegistryService, repo: RepositoryName
) -> None:
    subject = image_manifest(b"cfg of absent", [b"layer"], media_type=OCI_MANIFEST)
    signature = push_referrer(service, repo, subject, SIGNATURE, b"sig")
    found = service.list_referrers(repo, sha256(subject), None)
    assert [d.digest for d in found] == [sha256(signature)]


# ------------------------------------------------------------------ tags list


def test_tags_are_listed_in_lexical_order(service: RegistryService, repo: RepositoryName) -> None:
    tag_all(service, repo, ["v9", "v10", "B", "a", "_x", "1.0"])
    assert service.list_tags(repo, None, None).items == ["1.0", "B", "_x", "a", "v10", "v9"]


def test_tags_page_through_with_n_and_last(service: RegistryService, repo: RepositoryName) -> None:
    tag_all(service, repo, ["a", "b", "c", "d", "e"])
    first = service.list_tags(repo, 2, None)
    assert (first.items, first.more) == (["a", "b"], True)
    second = service.list_tags(repo, 2, "b")
    assert (second.items, second.more) == (["c", "d"], True)
    third = service.list_tags(repo, 2, "d")
    assert (third.items, third.more) == (["e"], False)
    exact = service.list_tags(repo, 5, None)
    assert (exact.items, exact.more) == (["a", "b", "c", "d", "e"], False)
    between = service.list_tags(repo, None, "bb")
    assert between.items == ["c", "d", "e"]
    assert service.list_tags(repo, 3, "e").items == []


def test_tags_with_n_zero_are_an_empty_page(service: RegistryService, repo: RepositoryName) -> None:
    tag_all(service, repo, ["a"])
    page = service.list_tags(repo, 0, None)
    assert (page.items, page.more) == ([], False)


def test_tags_of_an_unknown_repository_are_name_unknown(service: RegistryService) -> None:
    with pytest.raises(NameUnknownError):
        service.list_tags(named(REGISTRY, "nope"), None, None)


# ------------------------------------------------------------------ catalog


@pytest.fixture
def catalog_service(service: RegistryService, store: MemoryMetadataStore) -> RegistryService:
    for name in ("a", "a-b", "a0"):
        store.put_registry(RegistryRecord(name=name, account_id=ACCOUNT, registry_id=rid(name)))
    for full in ("a/x", "a/a-b", "a/a/b", "a-b/x", "a-b/y", "a0/z"):
        push_blob(service, named_path(full), b"layer")
    return service


def records(service: RegistryService, names: list[str]) -> list[RegistryRecord]:
    found = [service.store.get_registry(name) for name in names]
    return [r for r in found if r is not None]


EXPECTED_CATALOG = ["a-b/x", "a-b/y", "a/a-b", "a/a/b", "a/x", "a0/z"]


def test_catalog_is_in_lexical_order_of_full_names_across_registries(
    catalog_service: RegistryService,
) -> None:
    page = catalog_service.catalog(records(catalog_service, ["a0", "a", "a-b"]), None, None)
    assert page.items == EXPECTED_CATALOG == sorted(EXPECTED_CATALOG)
    assert page.more is False


def test_catalog_pages_with_last_across_registries(catalog_service: RegistryService) -> None:
    seen: list[str] = []
    last: str | None = None
    for _ in range(10):
        page = catalog_service.catalog(records(catalog_service, ["a", "a-b", "a0"]), 2, last)
        seen += page.items
        if not page.more:
            break
        last = page.items[-1]
    assert seen == EXPECTED_CATALOG


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("a-b/y", ["a/a-b", "a/a/b", "a/x", "a0/z"]),
        ("a/x", ["a0/z"]),
        ("a/a-b", ["a/a/b", "a/x", "a0/z"]),
        ("a-a", EXPECTED_CATALOG),
        ("a0/z", []),
    ],
)
def test_catalog_last_starts_after_that_name(
    catalog_service: RegistryService, last: str, expected: list[str]
) -> None:
    assert (
        catalog_service.catalog(records(catalog_service, ["a", "a-b", "a0"]), None, last).items
        == expected
    )


def test_catalog_only_lists_the_given_registries_and_n_zero_is_empty(
    catalog_service: RegistryService,
) -> None:
    assert catalog_service.catalog(records(catalog_service, ["a-b"]), None, None).items == [
        "a-b/x",
        "a-b/y",
    ]
    page = catalog_service.catalog(records(catalog_service, ["a"]), 0, None)
    assert (page.items, page.more) == ([], False)


def test_manifest_annotations_survive_the_round_trip(
    service: RegistryService, repo: RepositoryName
) -> None:
    body = push_image(service, repo, "v1", "a", annotations={"org.example": "yes"})
    # The stored record (a tag carries a summary); annotations live in the body.
    record = service.resolve_manifest(repo, sha256(body))
    assert json.loads(service.manifest_body(repo, record))["annotations"] == {"org.example": "yes"}
    assert record.blobs == sorted(
        d["digest"] for d in [json.loads(body)["config"], *json.loads(body)["layers"]]
    )
    assert OCI_LAYER in body.decode()


def test_a_media_type_longer_than_rfc_6838_allows_is_refused_and_nothing_is_stored(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    config, layer = b"{}", b"layer"
    push_blob(service, repo, config)
    push_blob(service, repo, layer)
    doc = json.loads(image_manifest(config, [layer]))
    doc["config"]["mediaType"] = "application/" + "x" * 120_000
    doc["annotations"] = {"pad": "p" * 130_000}  # 250 KB in all: it used to crowd the item
    body = json.dumps(doc).encode()
    objects = set(blobs.objects)
    with pytest.raises(ManifestInvalidError):
        service.put_manifest(repo, "long", body, OCI_MANIFEST)
    assert store.get_manifest(repo, sha256(body)) is None
    assert store.get_tag(repo, "long") is None
    assert set(blobs.objects) == objects


def test_every_attribute_counts_toward_the_inline_limit(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    limit = service.settings.manifest_inline_limit
    artifact = "application/vnd.example." + "a" * 200
    probe = push_image(service, repo, "probe", "t", annotations={"pad": ""}, artifactType=artifact)
    # Body + digest lists + a 2 KB allowance fit the limit (what used to be counted); with
    # the media and artifact types and the keys counted too, the item does not.
    digest_lists = 2 * (len(sha256(b"")) + 8)
    pad = "p" * (limit - len(probe) - 2048 - digest_lists - 10)
    body = push_image(service, repo, "edge", "t", annotations={"pad": pad}, artifactType=artifact)
    record = store.get_manifest(repo, sha256(body))
    assert record is not None and record.body is None  # kept in the blob store instead
    assert service.manifest_body(repo, record) == body


def test_the_same_manifest_is_served_with_the_media_type_it_was_first_pushed_as(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    config, layer = b"{}", b"layer"
    push_blob(service, repo, config)
    push_blob(service, repo, layer)
    doc = json.loads(image_manifest(config, [layer]))
    doc.pop("mediaType", None)  # the header decides
    body = json.dumps(doc).encode()
    service.put_manifest(repo, "oci", body, OCI_MANIFEST)
    with pytest.raises(ManifestInvalidError):
        service.put_manifest(repo, "docker", body, DOCKER_MANIFEST)
    assert store.get_tag(repo, "docker") is None
    assert service.resolve_manifest(repo, "oci").media_type == OCI_MANIFEST
    assert service.resolve_manifest(repo, sha256(body)).media_type == OCI_MANIFEST
