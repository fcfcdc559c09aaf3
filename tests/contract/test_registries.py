"""Registries: names are unique aliases of immutable ids; deletion hides a registry at once,
purges it resumably and frees the name last; a name taken again is a new incarnation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.registry.errors import NameUnknownError
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import RegistryRecord

from .helpers import (
    LATER,
    START,
    bound,
    digest_of,
    live_registry,
    manifest,
    new_registry,
    purge,
    race,
    refusals,
    unique,
    upload,
    winners,
)


def fill(store: MetadataStore, registry: RegistryRecord) -> list[RepositoryName]:
    """Two repositories with a shared blob, a tagged manifest and a referrer each."""
    repos = [bound(registry, "team/app"), bound(registry, "tools")]
    for repo in repos:
        store.commit_blob(repo, digest_of("layer"), 100, START, key="blobs/layer")
        subject = manifest(f"{repo.repository}-image")
        store.put_manifest(repo, subject, "v1", True, START)
        store.put_manifest(
            repo, manifest(f"{repo.repository}-sig", subject=subject.digest), None, False, START
        )
    return repos


def test_a_new_registry_reads_back_with_its_times_starting_at_its_creation(
    store: MetadataStore,
) -> None:
    record = RegistryRecord(
        name=unique(), account_id=unique("acct"), plan="basic", created_at=START
    )
    store.put_registry(record)
    assert store.get_registry(record.name) == replace(
        record,
        storage_updated_at=START,
        subscription_created_at=START,
        subscription_updated_at=START,
    )
    assert store.get_registry(unique()) is None


def test_create_refuses_a_taken_name_and_keeps_the_first_incarnation(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    with pytest.raises(ValueError):
        store.put_registry(RegistryRecord(name=registry.name, account_id=unique("acct")))
    found = live_registry(store, registry.name)
    assert (found.account_id, found.registry_id) == (registry.account_id, registry.registry_id)


def test_concurrent_creates_of_one_name_exactly_one_wins(store: MetadataStore) -> None:
    name = unique()
    contenders = [RegistryRecord(name=name, account_id=unique("acct")) for _ in range(6)]
    outcomes = race(len(contenders), lambda i: store.put_registry(contenders[i]))
    assert len(winners(outcomes)) == 1
    assert all(isinstance(e, ValueError) for e in refusals(outcomes))
    [winner] = [c for c, o in zip(contenders, outcomes, strict=True) if o is None]
    assert live_registry(store, name).registry_id == winner.registry_id


def test_list_registries_gives_the_accounts_live_registries_in_name_order(
    store: MetadataStore,
) -> None:
    account = unique("acct")
    prefix = unique()
    for suffix in ("b", "a", "c"):
        new_registry(store, account, f"{prefix}-{suffix}")
    other = new_registry(store)
    assert store.mark_registry_deleting(f"{prefix}-c")

    listed = store.list_registries(account)
    assert [r.name for r in listed] == [f"{prefix}-a", f"{prefix}-b"]
    assert all(r.account_id == account and not r.deleting for r in listed)
    assert [r.name for r in store.list_registries(other.account_id)] == [other.name]
    assert store.list_registries(unique("acct")) == []


def test_mark_deleting_succeeds_once_and_keeps_the_name_taken(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    assert store.mark_registry_deleting(registry.name)
    assert not store.mark_registry_deleting(registry.name)
    assert not store.mark_registry_deleting(unique())
    found = live_registry(store, registry.name)
    assert found.deleting
    assert found.registry_id == registry.registry_id
    assert registry.name in store.list_deleting_registries(1000)
    with pytest.raises(ValueError):
        store.put_registry(RegistryRecord(name=registry.name, account_id=unique("acct")))


def test_list_deleting_registries_gives_names_only_of_deleting_ones(
    store: MetadataStore,
) -> None:
    doomed = [new_registry(store).name for _ in range(3)]
    kept = new_registry(store)
    for name in doomed:
        store.mark_registry_deleting(name)
    listed = store.list_deleting_registries(1000)
    assert set(doomed) <= set(listed)
    assert kept.name not in listed
    assert listed == sorted(listed)
    assert len(store.list_deleting_registries(2)) == 2


def test_purge_refuses_a_live_registry_and_deletes_nothing(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    repos = fill(store, registry)
    assert not store.purge_registry(registry.name, 1000)
    assert store.list_repositories(registry.registry_id, None, 100) == ["team/app", "tools"]
    assert store.count_repository(repos[0]) == (1, 2)
    assert live_registry(store, registry.name).storage_bytes == 100


def test_purge_of_a_name_nobody_holds_is_done(store: MetadataStore) -> None:
    assert store.purge_registry(unique(), 10)


def test_purge_is_resumable_within_its_budget_and_frees_the_name_last(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    repos = fill(store, registry)
    assert store.mark_registry_deleting(registry.name)

    calls = 0
    while not store.purge_registry(registry.name, 2):
        calls += 1
        assert calls < 50
        # Until the last call the name stays taken by the deleting incarnation.
        assert live_registry(store, registry.name).deleting
        with pytest.raises(ValueError):
            store.put_registry(RegistryRecord(name=registry.name, account_id=unique("acct")))
    # 2 repositories, 2 links, 4 manifests, 2 tags, 2 referrer entries, 1 blob: 13 items.
    assert calls >= 6

    assert store.get_registry(registry.name) is None
    assert registry.name not in store.list_deleting_registries(1000)
    assert store.list_repositories(registry.registry_id, None, 100) == []
    assert store.get_registry_blob(registry.registry_id, digest_of("layer")) is None
    for repo in repos:
        assert not store.repository_exists(repo)
        assert store.get_blob_link(repo, digest_of("layer")) is None
        assert store.get_tag(repo, "v1") is None
        assert store.list_manifests(repo, None, 100) == []
        assert store.list_referrers(repo, digest_of(f"{repo.repository}-image")) == []
    assert store.purge_registry(registry.name, 2)  # nothing left: done at once


def test_a_recreated_name_gets_a_new_id_and_sees_none_of_the_old_content(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    repos = fill(store, registry)
    store.mark_registry_deleting(registry.name)
    purge(store, registry.name, 1000)

    reborn = new_registry(store, unique("acct"), registry.name)
    found = live_registry(store, registry.name)
    assert found.registry_id == reborn.registry_id != registry.registry_id
    assert (found.storage_bytes, found.repository_count, found.deleting) == (0, 0, False)
    assert store.list_repositories(reborn.registry_id, None, 100) == []
    for old in repos:
        new = old.bound(reborn.registry_id)
        assert not store.repository_exists(new)
        assert store.get_blob_link(new, digest_of("layer")) is None
        assert store.get_tag(new, "v1") is None
        assert store.count_repository(new) == (0, 0)
    assert store.get_registry_blob(reborn.registry_id, digest_of("layer")) is None


def test_writes_for_the_old_incarnation_of_a_recreated_name_change_nothing(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    old = bound(registry, "team/app")
    store.mark_registry_deleting(registry.name)
    purge(store, registry.name, 1000)
    reborn = new_registry(store, unique("acct"), registry.name)

    with pytest.raises(NameUnknownError):
        store.commit_blob(old, digest_of("late"), 5, LATER)
    with pytest.raises(NameUnknownError):
        store.put_manifest(old, manifest("late"), "v1", True, LATER)
    with pytest.raises(NameUnknownError):
        store.put_upload(upload(old))

    assert live_registry(store, registry.name) == replace(
        reborn,
        storage_updated_at=START,
        subscription_created_at=START,
        subscription_updated_at=START,
    )
    for registry_id in (registry.registry_id, reborn.registry_id):
        assert store.list_repositories(registry_id, None, 100) == []
        assert store.get_registry_blob(registry_id, digest_of("late")) is None
    assert store.get_manifest(old, digest_of("late")) is None


def test_update_subscription_changes_the_plan_and_its_time(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    assert store.update_subscription(registry, "starter", LATER)
    found = live_registry(store, registry.name)
    assert (found.plan, found.subscription_updated_at) == ("starter", LATER)
    assert found.subscription_created_at == START


def race_pushes_with_the_deletion_of_their_registry(store: MetadataStore) -> None:
    registry = new_registry(store)
    repos = [bound(registry, f"repo-{i}") for i in range(4)]
    layer, image = digest_of(f"{registry.name}-layer"), manifest(f"{registry.name}-image")

    def act(i: int) -> object:
        if i == len(repos):
            return store.mark_registry_deleting(registry.name)
        if i % 2:
            store.put_manifest(repos[i], image, "v1", True, START)
            return None
        return store.commit_blob(repos[i], layer, 10, START)

    outcomes = race(len(repos) + 1, act)
    assert outcomes[-1] is True
    # Each push either landed before the deletion began (and is purged) or was refused.
    assert all(isinstance(e, NameUnknownError) for e in refusals(outcomes))
    purge(store, registry.name, 1000)
    assert store.get_registry(registry.name) is None
    assert store.list_repositories(registry.registry_id, None, 100) == []
    assert store.get_registry_blob(registry.registry_id, layer) is None
    for repo in repos:
        assert store.get_blob_link(repo, layer) is None
        assert store.get_manifest(repo, image.digest) is None
        assert store.get_tag(repo, "v1") is None


def test_pushes_racing_the_deletion_of_their_registry_leave_nothing_behind(
    store: MetadataStore,
) -> None:
    for _ in range(3):
        race_pushes_with_the_deletion_of_their_registry(store)


def test_records_read_and_written_are_snapshots(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    # DynamoDB hands out copies: changing what a call returned, or what it was given,
    # changes nothing stored.
    record = manifest("image")
    store.commit_blob(repo, digest_of("layer"), 10, START)
    store.put_manifest(repo, record, "v1", True, START)
    record.blobs.append(digest_of("written later"))
    registry.plan = "changed by the caller"

    read = store.get_registry(registry.name)
    stored = store.get_manifest(repo, record.digest)
    tag = store.get_tag(repo, "v1")
    link = store.get_blob_link(repo, digest_of("layer"))
    assert read is not None and stored is not None and tag is not None and link is not None
    read.storage_bytes = 999
    stored.blobs.clear()
    tag.digest = digest_of("elsewhere")
    link.size = 999

    assert live_registry(store, registry.name).storage_bytes == 10
    assert live_registry(store, registry.name).plan == "professional"
    again = store.get_manifest(repo, record.digest)
    assert again is not None and digest_of("written later") not in again.blobs
    assert again.blobs != []
    again_tag = store.get_tag(repo, "v1")
    assert again_tag is not None and again_tag.digest == record.digest
    again_link = store.get_blob_link(repo, digest_of("layer"))
    assert again_link is not None and again_link.size == 10
