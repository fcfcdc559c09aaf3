"""Blobs: a registry holds each blob once (stored and counted once) and links it into
repositories; a commit ends its upload session only at the version it verified, and
nothing lands in a registry incarnation that is not live."""

from __future__ import annotations

import pytest

from chalicelib.registry.errors import BlobUploadUnknownError, NameUnknownError
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import BlobRecord, RegistryRecord

from .helpers import (
    LATER,
    START,
    bound,
    digest_of,
    live_registry,
    new_registry,
    purge,
    race,
    refusals,
    upload,
    winners,
)

LAYER = digest_of("layer")


def assert_untouched(store: MetadataStore, repo: RepositoryName, digest: str) -> None:
    """Nothing of ``digest`` in ``repo``'s registry: no record, no link, no repository."""
    assert store.get_registry_blob(repo.rid, digest) is None
    assert store.get_blob_link(repo, digest) is None
    assert not store.repository_exists(repo)


def test_first_commit_records_links_and_counts_the_blob_and_creates_the_repository(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    assert store.commit_blob(repo, LAYER, 1000, START, key="uploads/x/data")

    assert store.get_registry_blob(repo.rid, LAYER) == BlobRecord(
        LAYER, 1000, START, "uploads/x/data"
    )
    assert store.get_blob_link(repo, LAYER) == BlobRecord(LAYER, 1000, START, "uploads/x/data")
    assert store.repository_exists(repo)
    found = live_registry(store, registry.name)
    assert (found.storage_bytes, found.repository_count) == (1000, 1)
    assert found.storage_updated_at == START


def test_a_blob_is_stored_and_counted_once_and_linked_into_each_repository(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    first, second = bound(registry, "a"), bound(registry, "b")
    assert store.commit_blob(first, LAYER, 1000, START, key="k1")
    assert not store.commit_blob(second, LAYER, 1000, LATER, key="k2")
    assert not store.commit_blob(first, LAYER, 1000, LATER, key="k3")  # committed again

    found = live_registry(store, registry.name)
    assert (found.storage_bytes, found.repository_count) == (1000, 2)
    # Committed again, the record is touched (what an online collection respects).
    assert store.get_registry_blob(registry.registry_id, LAYER) == BlobRecord(
        LAYER, 1000, START, "k1", touched_at=LATER
    )
    # Every link names the one copy the registry accounts for.
    for repo in (first, second):
        link = store.get_blob_link(repo, LAYER)
        assert link is not None
        assert (link.size, link.key) == (1000, "k1")


def test_a_blob_stored_at_its_content_address_keeps_no_key(
    store: MetadataStore, repo: RepositoryName
) -> None:
    store.commit_blob(repo, LAYER, 10, START)
    assert store.get_blob_link(repo, LAYER) == BlobRecord(LAYER, 10, START, None)
    other = RepositoryName(repo.registry, "other", repo.rid)
    assert not store.commit_blob(other, LAYER, 10, START, key="uploads/other/data")
    link = store.get_blob_link(other, LAYER)
    assert link is not None and link.key is None


def test_a_mount_hint_links_the_registrys_copy(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    source, target = bound(registry, "src"), bound(registry, "dst")
    store.commit_blob(source, LAYER, 50, START, key="k1")
    assert not store.commit_blob(target, LAYER, 50, LATER, key="k1", exists=True)
    link = store.get_blob_link(target, LAYER)
    assert link is not None and link.key == "k1"
    assert live_registry(store, registry.name).storage_bytes == 50


def test_a_mount_hint_with_another_key_still_links_the_registrys_copy(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    source, target = bound(registry, "src"), bound(registry, "dst")
    store.commit_blob(source, LAYER, 50, START, key="k1")
    assert not store.commit_blob(target, LAYER, 50, LATER, key="stale", exists=True)
    link = store.get_blob_link(target, LAYER)
    assert link is not None and link.key == "k1"


def test_a_wrong_mount_hint_records_the_blob_as_new(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    # The caller read the record, then it went away (garbage collection): the hint is a
    # guess, never a reason to link a blob the registry does not hold.
    assert store.commit_blob(repo, LAYER, 70, START, key="k9", exists=True)
    assert store.get_registry_blob(repo.rid, LAYER) == BlobRecord(LAYER, 70, START, "k9")
    assert live_registry(store, registry.name).storage_bytes == 70


def test_commit_into_a_deleting_registry_is_refused_and_changes_nothing(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    store.mark_registry_deleting(registry.name)
    with pytest.raises(NameUnknownError):
        store.commit_blob(repo, LAYER, 10, START, upload_id=session.upload_id, key="k")
    assert_untouched(store, repo, LAYER)
    assert live_registry(store, registry.name).storage_bytes == 0
    assert store.get_upload(session.upload_id) == session


def test_commit_with_the_id_of_a_purged_incarnation_is_refused_and_changes_nothing(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.mark_registry_deleting(registry.name)
    purge(store, registry.name, 1000)
    reborn = new_registry(store, name=registry.name)
    with pytest.raises(NameUnknownError):
        store.commit_blob(repo, LAYER, 10, START, key="k")
    assert_untouched(store, repo, LAYER)
    assert_untouched(store, repo.bound(reborn.registry_id), LAYER)
    found = live_registry(store, registry.name)
    assert (found.storage_bytes, found.repository_count) == (0, 0)


def test_commit_ends_its_upload_session_at_the_verified_version(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    store.update_upload(session)  # version 1
    assert store.commit_blob(repo, LAYER, 10, START, upload_id=session.upload_id, upload_version=1)
    assert store.get_upload(session.upload_id) is None
    assert store.get_blob_link(repo, LAYER) is not None


def test_commit_at_a_stale_upload_version_is_refused_and_changes_nothing(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    store.update_upload(session)  # a concurrent PATCH moved it to version 1
    with pytest.raises(BlobUploadUnknownError):
        store.commit_blob(repo, LAYER, 10, START, upload_id=session.upload_id, upload_version=0)
    assert_untouched(store, repo, LAYER)
    assert live_registry(store, registry.name).storage_bytes == 0
    saved = store.get_upload(session.upload_id)
    assert saved is not None and saved.version == 1


def test_commit_of_an_ended_upload_session_is_refused(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    assert store.delete_upload(session.upload_id)  # cancelled
    with pytest.raises(BlobUploadUnknownError):
        store.commit_blob(repo, LAYER, 10, START, upload_id=session.upload_id)
    assert_untouched(store, repo, LAYER)


def test_unlink_removes_only_the_link(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.commit_blob(repo, LAYER, 10, START)
    assert store.unlink_blob(repo, LAYER)
    assert not store.unlink_blob(repo, LAYER)
    assert store.get_blob_link(repo, LAYER) is None
    # The registry keeps the blob (and its storage) until garbage collection.
    assert store.get_registry_blob(repo.rid, LAYER) is not None
    assert live_registry(store, registry.name).storage_bytes == 10
    assert store.repository_exists(repo)


def test_blobs_of_one_registry_are_invisible_to_another(
    store: MetadataStore, repo: RepositoryName
) -> None:
    other = new_registry(store)
    store.commit_blob(repo, LAYER, 10, START)
    assert store.get_registry_blob(other.registry_id, LAYER) is None
    assert store.get_blob_link(bound(other, repo.repository), LAYER) is None


def test_concurrent_commits_of_one_blob_count_storage_once(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    repos = [bound(registry, f"repo-{i}") for i in range(6)]
    outcomes = race(len(repos), lambda i: store.commit_blob(repos[i], LAYER, 777, START))
    assert refusals(outcomes) == []
    assert sorted(winners(outcomes)) == [False] * (len(repos) - 1) + [True]
    found = live_registry(store, registry.name)
    assert (found.storage_bytes, found.repository_count) == (777, len(repos))
    assert all(store.get_blob_link(r, LAYER) is not None for r in repos)
    assert store.list_repositories(registry.registry_id, None, 100) == sorted(
        r.repository for r in repos
    )


def test_concurrent_completions_of_one_upload_session_commit_exactly_one_blob(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    digests = [digest_of(f"final chunk {i}") for i in range(4)]
    outcomes = race(
        len(digests),
        lambda i: store.commit_blob(repo, digests[i], 10, START, upload_id=session.upload_id),
    )
    assert winners(outcomes) == [True]
    assert all(isinstance(e, BlobUploadUnknownError) for e in refusals(outcomes))
    committed = [d for d in digests if store.get_registry_blob(repo.rid, d) is not None]
    assert len(committed) == 1
    assert [d for d in digests if store.get_blob_link(repo, d) is not None] == committed
    assert live_registry(store, registry.name).storage_bytes == 10


def test_a_completion_racing_a_cancel_exactly_one_wins(
    store: MetadataStore, repo: RepositoryName
) -> None:
    for _ in range(3):
        session = upload(repo)
        store.put_upload(session)
        digest = digest_of(session.upload_id)

        def act(i: int, upload_id: str = session.upload_id, digest: str = digest) -> bool:
            if i == 0:
                return store.commit_blob(repo, digest, 10, START, upload_id=upload_id)
            return store.delete_upload(upload_id, version=0)

        committed, cancelled = race(2, act)
        linked = store.get_blob_link(repo, digest) is not None
        if committed is True:
            assert cancelled is False and linked
        else:
            assert isinstance(committed, BlobUploadUnknownError)
            assert cancelled is True and not linked
        assert store.get_upload(session.upload_id) is None
