"""Manifests and tags: a push writes manifest, tag and referrer entry together into a live
incarnation; a manifest keeps the media type it was first pushed as; deleting a manifest
takes its tags and referrer entry with it; tags list in byte order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.adapters.dynamo import MAX_REFERRER_ANNOTATIONS
from chalicelib.registry.errors import (
    ManifestInvalidError,
    NameUnknownError,
    SettingsChangedError,
    TagImmutableError,
)
from chalicelib.registry.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import ManifestRecord, RegistryRecord, TagRecord

from .helpers import (
    LATER,
    START,
    bound,
    digest_of,
    live_registry,
    manifest,
    purge,
    race,
    refusals,
)

ARTIFACT = "application/vnd.example.signature"


def summary(record: ManifestRecord) -> ManifestRecord:
    """What a tag carries of its manifest: what a pull by tag serves, no more."""
    return ManifestRecord(
        digest=record.digest,
        media_type=record.media_type,
        size=record.size,
        body=record.body,
        blobs_size=record.blobs_size,
    )


def test_a_tagged_push_stores_the_manifest_and_a_tag_carrying_its_summary(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    record = manifest("image", annotations={"org.example": "kept in the body"})
    store.put_manifest(repo, record, "v1", True, LATER)

    # Annotations live in the body (and in referrer entries), not in the stored record.
    assert store.get_manifest(repo, record.digest) == replace(record, annotations=None)
    assert store.get_tag(repo, "v1") == TagRecord("v1", record.digest, LATER, summary(record))
    assert store.repository_exists(repo)
    assert live_registry(store, registry.name).repository_count == 1
    assert store.count_repository(repo) == (1, 1)


def test_an_index_keeps_its_child_manifests_and_a_large_one_no_body(
    store: MetadataStore, repo: RepositoryName
) -> None:
    children = sorted([digest_of("amd64"), digest_of("arm64")])
    index = manifest("index", OCI_INDEX, blobs=[], manifests=children, blobs_size=99)
    large = manifest("large", body=None, blobs=[], references_in_body=True)
    # An index's children exist before it (its push touches each of them).
    for platform in ("amd64", "arm64"):
        store.put_manifest(repo, manifest(platform), None, True, START)
    store.put_manifest(repo, index, "multi", True, START)
    store.put_manifest(repo, large, "big", False, START)
    assert store.get_manifest(repo, index.digest) == index
    assert store.get_manifest(repo, large.digest) == large
    tag = store.get_tag(repo, "big")
    assert tag is not None and tag.manifest == summary(large)


def test_a_push_by_digest_writes_no_tag(store: MetadataStore, repo: RepositoryName) -> None:
    record = manifest("untagged")
    store.put_manifest(repo, record, None, True, START)
    assert store.get_manifest(repo, record.digest) is not None
    assert store.list_tags(repo, None, 100) == []
    assert store.count_repository(repo) == (0, 1)


def test_a_repository_read_as_missing_but_created_since_is_created_once(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    # ``create_repository`` is what the caller read; a concurrent first push created it.
    existing = bound(registry, "existing")
    store.put_manifest(existing, manifest("b"), "v1", True, START)
    store.put_manifest(existing, manifest("c"), "v2", True, START)
    assert store.repository_exists(existing)
    assert live_registry(store, registry.name).repository_count == 1
    assert store.list_repositories(registry.registry_id, None, 10) == ["existing"]


def test_a_repository_read_as_existing_but_gone_since_is_not_recreated(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    # The caller read the references (blob links) in a repository that existed; if it is
    # gone now, it was deleted with its links: re-creating it would serve a manifest whose
    # blobs are unknown there.
    gone = bound(registry, "gone")
    with pytest.raises(NameUnknownError):
        store.put_manifest(gone, manifest("a"), "v1", False, START)
    assert not store.repository_exists(gone)
    assert store.get_manifest(gone, manifest("a").digest) is None
    assert live_registry(store, registry.name).repository_count == 0


def test_pushing_a_manifest_again_adds_its_tag_and_keeps_one_manifest(
    store: MetadataStore, repo: RepositoryName
) -> None:
    record = manifest("image")
    store.put_manifest(repo, record, "v1", True, START)
    again = replace(record, revision="second push")
    store.put_manifest(repo, again, "latest", False, LATER)
    assert [t.tag for t in store.list_tags(repo, None, 10)] == ["latest", "v1"]
    assert store.count_repository(repo) == (2, 1)
    stored = store.get_manifest(repo, record.digest)
    assert stored is not None and stored.revision == "second push"


def test_a_manifest_cannot_be_pushed_again_as_another_media_type(
    store: MetadataStore, repo: RepositoryName
) -> None:
    record = manifest("image", OCI_MANIFEST)
    store.put_manifest(repo, record, "v1", True, START)
    with pytest.raises(ManifestInvalidError):
        store.put_manifest(repo, replace(record, media_type=DOCKER_MANIFEST), "v2", False, LATER)
    stored = store.get_manifest(repo, record.digest)
    assert stored is not None and stored.media_type == OCI_MANIFEST
    assert store.get_tag(repo, "v2") is None


def test_a_tag_moves_to_the_manifest_pushed_last(
    store: MetadataStore, repo: RepositoryName
) -> None:
    old, new = manifest("old"), manifest("new")
    store.put_manifest(repo, old, "latest", True, START)
    store.put_manifest(repo, new, "latest", False, LATER)
    assert store.get_tag(repo, "latest") == TagRecord("latest", new.digest, LATER, summary(new))
    assert store.get_manifest(repo, old.digest) is not None
    assert store.count_repository(repo) == (1, 2)


def test_referrers_are_listed_by_subject_as_descriptors_in_digest_order(
    store: MetadataStore, repo: RepositoryName
) -> None:
    subject, other = manifest("subject"), manifest("other")
    referrers = [
        manifest(
            f"sig-{i}",
            subject=subject.digest,
            artifact_type=ARTIFACT,
            annotations={"n": str(i)},
        )
        for i in range(3)
    ]
    for record in (subject, other, *referrers):
        store.put_manifest(repo, record, None, True, START)
    store.put_manifest(repo, manifest("other-sig", subject=other.digest), None, False, START)

    found = store.list_referrers(repo, subject.digest)
    assert found == [
        ManifestRecord(
            digest=r.digest,
            media_type=r.media_type,
            size=r.size,
            body=None,
            subject=subject.digest,
            artifact_type=ARTIFACT,
            annotations=r.annotations,
        )
        for r in sorted(referrers, key=lambda r: r.digest)
    ]
    assert [r.digest for r in store.list_referrers(repo, other.digest)] == [digest_of("other-sig")]
    assert store.list_referrers(repo, digest_of("nothing refers to this")) == []
    assert store.list_referrers(bound_elsewhere(repo), subject.digest) == []


def bound_elsewhere(repo: RepositoryName) -> RepositoryName:
    return RepositoryName(repo.registry, repo.repository + "-other", repo.rid)


def test_a_referrers_annotations_too_large_for_an_item_are_left_out_of_its_entry(
    store: MetadataStore, repo: RepositoryName
) -> None:
    subject = manifest("subject")
    big = {"pad": "x" * MAX_REFERRER_ANNOTATIONS}
    referrer = manifest("sig", subject=subject.digest, annotations=big, body=None)
    store.put_manifest(repo, subject, None, True, START)
    store.put_manifest(repo, referrer, None, False, START)
    [entry] = store.list_referrers(repo, subject.digest)
    assert entry.digest == referrer.digest
    assert entry.annotations is None


def test_deleting_a_manifest_removes_its_tags_and_referrer_entry_only(
    store: MetadataStore, repo: RepositoryName
) -> None:
    subject, doomed, kept = manifest("subject"), manifest("doomed"), manifest("kept")
    doomed = replace(doomed, subject=subject.digest)
    store.put_manifest(repo, subject, "base", True, START)
    store.put_manifest(repo, doomed, "v1", False, START)
    store.put_manifest(repo, doomed, "stable", False, START)
    store.put_manifest(repo, kept, "v2", False, START)

    assert store.delete_manifest(repo, doomed.digest)
    assert not store.delete_manifest(repo, doomed.digest)
    assert store.get_manifest(repo, doomed.digest) is None
    assert store.get_tag(repo, "v1") is None and store.get_tag(repo, "stable") is None
    assert store.list_referrers(repo, subject.digest) == []
    assert [t.tag for t in store.list_tags(repo, None, 10)] == ["base", "v2"]
    assert store.count_repository(repo) == (2, 2)


def test_deleting_a_tag_keeps_its_manifest(store: MetadataStore, repo: RepositoryName) -> None:
    record = manifest("image")
    store.put_manifest(repo, record, "v1", True, START)
    assert store.delete_tag(repo, "v1")
    assert not store.delete_tag(repo, "v1")
    assert not store.delete_tag(repo, "never")
    assert store.get_tag(repo, "v1") is None
    assert store.get_manifest(repo, record.digest) is not None


def test_tags_list_in_byte_order_and_page_after_a_tag(
    store: MetadataStore, repo: RepositoryName
) -> None:
    record = manifest("image")
    for tag in ("v9", "v10", "a", "B", "latest", "_x", "a.b", "a-b"):
        store.put_manifest(repo, record, tag, True, START)
    expected = ["B", "_x", "a", "a-b", "a.b", "latest", "v10", "v9"]
    assert [t.tag for t in store.list_tags(repo, None, 100)] == expected
    seen: list[str] = []
    after: str | None = None
    while page := store.list_tags(repo, after, 3):
        assert len(page) <= 3
        seen += [t.tag for t in page]
        after = page[-1].tag
    assert seen == expected
    assert [t.tag for t in store.list_tags(repo, "a", 2)] == ["a-b", "a.b"]
    assert [t.tag for t in store.list_tags(repo, "b", 100)] == ["latest", "v10", "v9"]
    assert store.list_tags(repo, "v9", 100) == []
    # ``after`` comes from clients: anything, not only a tag.
    assert [t.tag for t in store.list_tags(repo, "a\u00e9", 100)] == ["latest", "v10", "v9"]
    assert [t.tag for t in store.list_tags(repo, "a" * 2000, 100)] == ["latest", "v10", "v9"]
    assert store.list_tags(repo, "\U0001f600", 100) == []


def test_manifests_list_in_digest_order_and_page_after_a_digest(
    store: MetadataStore, repo: RepositoryName
) -> None:
    records = [manifest(f"m{i}") for i in range(5)]
    for record in records:
        store.put_manifest(repo, record, None, True, START)
    digests = sorted(r.digest for r in records)
    assert [m.digest for m in store.list_manifests(repo, None, 100)] == digests
    assert [m.digest for m in store.list_manifests(repo, None, 2)] == digests[:2]
    assert [m.digest for m in store.list_manifests(repo, digests[1], 2)] == digests[2:4]
    assert store.list_manifests(repo, digests[-1], 2) == []
    listed = store.list_manifests(repo, None, 100)[0]
    assert listed == next(r for r in records if r.digest == digests[0])


def test_get_manifests_returns_those_found(store: MetadataStore, repo: RepositoryName) -> None:
    a, b = manifest("a"), manifest("b")
    store.put_manifest(repo, a, None, True, START)
    store.put_manifest(repo, b, None, False, START)
    found = store.get_manifests(repo, [a.digest, digest_of("missing"), b.digest])
    assert found == {a.digest: a, b.digest: b}
    assert store.get_manifests(repo, []) == {}
    assert store.get_manifests(bound_elsewhere(repo), [a.digest]) == {}


def test_check_references_reports_the_repository_and_what_is_missing(
    store: MetadataStore, repo: RepositoryName
) -> None:
    fresh = store.check_references(repo, [digest_of("x")], [digest_of("y")])
    assert not fresh.repository_exists
    assert (fresh.missing_blobs, fresh.missing_manifests) == ([digest_of("x")], [digest_of("y")])

    store.commit_blob(repo, digest_of("layer"), 10, START)
    child = manifest("child", blobs_size=4321)
    store.put_manifest(repo, child, None, False, START)
    missing_blobs = sorted([digest_of("gone-1"), digest_of("gone-2")])
    refs = store.check_references(
        repo,
        [digest_of("gone-2"), digest_of("layer"), digest_of("gone-1")],
        [child.digest, digest_of("no-child")],
    )
    assert refs.repository_exists
    assert refs.missing_blobs == missing_blobs
    assert refs.missing_manifests == [digest_of("no-child")]
    assert refs.manifest_blob_sizes == {child.digest: 4321}


def test_a_push_into_a_deleting_registry_is_refused_and_writes_nothing(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.put_manifest(repo, manifest("before"), "v1", True, START)
    store.mark_registry_deleting(registry.name)
    record = manifest("after", subject=digest_of("before"))
    with pytest.raises(NameUnknownError):
        store.put_manifest(repo, record, "v2", False, LATER)
    with pytest.raises(NameUnknownError):
        store.put_manifest(bound(registry, "new"), manifest("new"), "v1", True, LATER)
    assert store.get_manifest(repo, record.digest) is None
    assert store.get_tag(repo, "v2") is None
    assert store.list_referrers(repo, digest_of("before")) == []
    assert store.list_repositories(registry.registry_id, None, 10) == ["team/app"]


def test_a_push_with_the_id_of_a_purged_incarnation_writes_nothing(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.mark_registry_deleting(registry.name)
    purge(store, registry.name, 1000)
    store.put_registry(RegistryRecord(name=registry.name, account_id="someone-else"))
    with pytest.raises(NameUnknownError):
        store.put_manifest(repo, manifest("late"), "v1", True, LATER)
    assert store.get_manifest(repo, digest_of("late")) is None
    assert not store.repository_exists(repo)
    assert live_registry(store, registry.name).repository_count == 0


def test_concurrent_first_pushes_into_a_repository_count_it_once(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    records = [manifest(f"m{i}") for i in range(5)]
    outcomes = race(
        len(records),
        lambda i: store.put_manifest(repo, records[i], f"t{i}", True, START),
    )
    assert outcomes == [None] * len(records)
    assert live_registry(store, registry.name).repository_count == 1
    assert store.count_repository(repo) == (5, 5)


def race_delete_with_push(store: MetadataStore, repo: RepositoryName, seed: str) -> None:
    record = manifest(seed)
    store.put_manifest(repo, record, f"{seed}-old", True, START)
    again = replace(record, revision=f"{seed}-again")

    def act(i: int) -> object:
        if i == 0:
            return store.delete_manifest(repo, record.digest)
        store.put_manifest(repo, again, f"{seed}-new", False, LATER)
        return None

    assert refusals(race(2, act)) == []
    # The delete read the tags before it deleted: a tag the push added meanwhile must go
    # with the manifest, or the push must come after the delete (and re-create both).
    for tag in store.list_tags(repo, None, 100):
        assert store.get_manifest(repo, tag.digest) is not None, tag.tag


def test_a_delete_racing_a_push_of_the_same_manifest_leaves_no_tag_without_its_manifest(
    store: MetadataStore, repo: RepositoryName
) -> None:
    for attempt in range(4):
        race_delete_with_push(store, repo, f"raced-{attempt}")


def race_repository_delete_with_push(store: MetadataStore, repo: RepositoryName, seed: str) -> None:
    store.put_manifest(repo, manifest(f"{seed}-first"), "first", True, START)

    def act(i: int) -> object:
        if i == 0:
            return store.delete_repository(repo)
        if i == 1:
            return store.commit_blob(repo, digest_of(f"{seed}-layer"), 10, LATER)
        store.put_manifest(repo, manifest(f"{seed}-pushed"), "pushed", False, LATER)
        return None

    outcomes = race(3, act)
    assert outcomes[0] is True
    # A push racing the deletion either lands before it (and is deleted with the rest),
    # after it (and creates the repository again), or is refused: never an item in a
    # repository that no listing shows.
    assert all(isinstance(e, NameUnknownError) for e in refusals(outcomes))
    holds_items = (
        store.list_tags(repo, None, 10) != []
        or store.list_manifests(repo, None, 10) != []
        or store.get_blob_link(repo, digest_of(f"{seed}-layer")) is not None
    )
    listed = repo.repository in store.list_repositories(repo.rid, None, 100)
    assert holds_items == listed == store.repository_exists(repo)


def test_a_repository_delete_racing_pushes_into_it_leaves_no_unlisted_items(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    for attempt in range(4):
        repo = bound(registry, f"raced-{attempt}")
        race_repository_delete_with_push(store, repo, f"{registry.name}-{attempt}")
    registered = store.list_repositories(registry.registry_id, None, 100)
    assert live_registry(store, registry.name).repository_count == len(registered)


def test_deleting_a_manifest_with_more_tags_than_a_transaction_holds_removes_them_all(
    store: MetadataStore, repo: RepositoryName
) -> None:
    # A DynamoDB transaction holds at most 100 items.
    record, kept = manifest("popular"), manifest("kept")
    store.put_manifest(repo, kept, "kept", True, START)
    for n in range(101):
        store.put_manifest(repo, record, f"t{n:03}", False, START)
    assert store.count_repository(repo) == (102, 2)
    assert store.delete_manifest(repo, record.digest)
    assert [t.tag for t in store.list_tags(repo, None, 1000)] == ["kept"]
    assert store.count_repository(repo) == (1, 1)


def test_reference_checks_and_batch_reads_take_more_keys_than_one_batch_read_holds(
    store: MetadataStore, repo: RepositoryName
) -> None:
    # A DynamoDB BatchGetItem holds at most 100 keys.
    linked = [digest_of(f"layer-{n}") for n in range(3)]
    for digest in linked:
        store.commit_blob(repo, digest, 1, START)
    children = [manifest(f"child-{n}") for n in range(3)]
    for child in children:
        store.put_manifest(repo, child, None, False, START)
    wanted_blobs = sorted(linked + [digest_of(f"missing-{n}") for n in range(120)])
    wanted_manifests = sorted(
        [c.digest for c in children] + [digest_of(f"no-child-{n}") for n in range(90)]
    )
    refs = store.check_references(repo, wanted_blobs, wanted_manifests)
    assert refs.missing_blobs == sorted(set(wanted_blobs) - set(linked))
    assert refs.missing_manifests == sorted(set(wanted_manifests) - {c.digest for c in children})
    assert set(store.get_manifests(repo, wanted_manifests)) == {c.digest for c in children}


def test_a_manifest_deletion_is_stopped_by_a_protected_tag_it_would_remove(
    store: MetadataStore, repo: RepositoryName
) -> None:
    record = manifest("guarded")
    store.put_manifest(repo, record, "v1", True, START)
    # The caller looked before a tag was set; the store judges the tags it deletes.
    with pytest.raises(TagImmutableError, match="v1 is pinned"):
        store.delete_manifest(
            repo, record.digest, lambda tag: f"{tag} is pinned" if tag == "v1" else None
        )
    assert store.get_manifest(repo, record.digest) is not None
    assert store.get_tag(repo, "v1") is not None


def test_deletes_judged_by_stale_rules_are_refused(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    record = manifest("rules")
    store.put_manifest(repo, record, "v1", True, START)
    version = live_registry(store, registry.name).settings_version
    store.update_registry_settings(
        registry.name,
        registry.registry_id,
        live_registry(store, registry.name).settings,
        version,
        START,
    )
    with pytest.raises(SettingsChangedError):
        store.delete_tag(repo, "v1", settings_version=version)
    with pytest.raises(SettingsChangedError):
        store.delete_manifest(repo, record.digest, settings_version=version)
    assert store.get_tag(repo, "v1") is not None
    assert store.delete_tag(repo, "v1", settings_version=version + 1)


def test_a_repository_holding_a_protected_tag_is_not_deleted_and_stays_open(
    store: MetadataStore, repo: RepositoryName
) -> None:
    store.put_manifest(repo, manifest("kept"), "v1", True, START)
    with pytest.raises(TagImmutableError, match="v1 is pinned"):
        store.delete_repository(repo, lambda tag: f"{tag} is pinned" if tag == "v1" else None)
    assert store.repository_exists(repo)
    assert store.get_tag(repo, "v1") is not None
    store.put_manifest(repo, manifest("after"), "v2", False, START)  # not left marked
    assert store.delete_repository(repo, lambda tag: None)
    assert not store.repository_exists(repo)
