"""Repositories: created by the first push, listed per registry id in byte order, counted,
and deleted with everything in them (the registry's blobs stay until garbage collection)."""

from __future__ import annotations

import pytest

from chalicelib.registry.errors import NameUnknownError
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import RegistryRecord

from .helpers import START, bound, digest_of, live_registry, manifest, new_registry


def test_a_repository_exists_from_its_first_push_in_its_registry_only(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    assert not store.repository_exists(repo)
    store.commit_blob(repo, digest_of("layer"), 1, START)
    assert store.repository_exists(repo)
    assert not store.repository_exists(bound(registry, "team"))  # a prefix is no repository
    other = new_registry(store)
    assert not store.repository_exists(bound(other, repo.repository))


def test_repositories_list_in_byte_order_and_page_after_a_name(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    names = ["team/app", "a", "a/b", "a-b", "a.b", "b", "team/app/x", "z__z"]
    for name in names:
        store.commit_blob(bound(registry, name), digest_of("layer"), 1, START)
    expected = sorted(names)
    assert store.list_repositories(registry.registry_id, None, 100) == expected
    seen: list[str] = []
    after: str | None = None
    while page := store.list_repositories(registry.registry_id, after, 3):
        assert len(page) <= 3
        seen += page
        after = page[-1]
    assert seen == expected
    assert store.list_repositories(registry.registry_id, "a", 2) == ["a-b", "a.b"]
    assert store.list_repositories(registry.registry_id, "team/app", 100) == [
        "team/app/x",
        "z__z",
    ]
    assert store.list_repositories(new_registry(store).registry_id, None, 100) == []


def test_count_gives_tags_and_manifests(store: MetadataStore, repo: RepositoryName) -> None:
    assert store.count_repository(repo) == (0, 0)
    store.put_manifest(repo, manifest("a"), "v1", True, START)
    store.put_manifest(repo, manifest("a"), "latest", False, START)
    store.put_manifest(repo, manifest("b"), None, False, START)
    assert store.count_repository(repo) == (2, 2)


def test_deleting_a_repository_removes_everything_in_it_and_counts_it_out(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    kept = bound(registry, "kept")
    subject = manifest("subject")
    for target in (repo, kept):
        store.commit_blob(target, digest_of("layer"), 10, START)
        store.put_manifest(target, subject, "v1", False, START)
        store.put_manifest(target, manifest("sig", subject=subject.digest), None, False, START)

    assert store.delete_repository(repo)
    assert not store.delete_repository(repo)
    assert not store.delete_repository(bound(registry, "never"))

    assert not store.repository_exists(repo)
    assert store.count_repository(repo) == (0, 0)
    assert store.get_blob_link(repo, digest_of("layer")) is None
    assert store.get_tag(repo, "v1") is None
    assert store.list_manifests(repo, None, 10) == []
    assert store.list_referrers(repo, subject.digest) == []
    assert store.list_repositories(registry.registry_id, None, 10) == ["kept"]
    found = live_registry(store, registry.name)
    # The blob stays in the registry (and counted) until garbage collection.
    assert (found.repository_count, found.storage_bytes) == (1, 10)
    assert store.get_registry_blob(registry.registry_id, digest_of("layer")) is not None
    assert store.count_repository(kept) == (1, 2)
    assert store.get_blob_link(kept, digest_of("layer")) is not None


def test_a_deleted_repository_is_created_again_by_the_next_push(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.put_manifest(repo, manifest("a"), "v1", True, START)
    store.delete_repository(repo)
    store.put_manifest(repo, manifest("b"), "v2", True, START)
    assert store.repository_exists(repo)
    assert store.count_repository(repo) == (1, 1)
    assert live_registry(store, registry.name).repository_count == 1


def test_deleting_a_repository_of_a_deleting_registry_is_refused_and_changes_nothing(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.commit_blob(repo, digest_of("layer"), 10, START)
    store.put_manifest(repo, manifest("a"), "v1", False, START)
    store.mark_registry_deleting(registry.name)
    with pytest.raises(NameUnknownError):
        store.delete_repository(repo)
    assert store.repository_exists(repo)
    assert store.count_repository(repo) == (1, 1)
    assert store.get_blob_link(repo, digest_of("layer")) is not None
    assert live_registry(store, registry.name).repository_count == 1
