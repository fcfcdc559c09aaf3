"""Storage and repository quotas, held by both stores: a commit beyond the plan's hard
limit is refused whole with the message naming it (nothing half-written), a blob the
registry holds takes no room, plans change the limits at once, paid plans accept overage,
and the reconciliation corrects drifted counters without ever overwriting a commit."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

import pytest
from pynamodb.expressions.update import Action

from chalicelib.adapters.dynamo import rid_pk
from chalicelib.adapters.dynamo_models import IDENTITY, META, RegistryIdentityItem, RegistryItem
from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.registry import quotas
from chalicelib.registry.errors import DeniedError, QuotaExceededError
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.plans import GIB, MIB
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.quotas import (
    CONSISTENT,
    CORRECTED,
    SKIPPED,
    StorageReconciler,
    UsageRecords,
    count_records,
    reconcile_registry,
)
from chalicelib.registry.records import AccountRecord, RegistryRecord
from chalicelib.registry.service import RegistryService, ServiceSettings

from .helpers import LATER, START, bound, digest_of, live_registry, manifest, unique, upload

STARTER_LIMIT = 500 * MIB


def registry_on(store: MetadataStore, plan: str) -> RegistryRecord:
    record = RegistryRecord(name=unique(), account_id=unique("acct"), plan=plan, created_at=START)
    store.put_registry(record)
    return record


def set_counters(
    store: MetadataStore, name: str, storage: int | None = None, repositories: int | None = None
) -> None:
    """Drift injected behind the store's back (what a bug or a manual edit would do)."""
    if isinstance(store, MemoryMetadataStore):
        record = store.registries[name]
        if storage is not None:
            record.storage_bytes = storage
        if repositories is not None:
            record.repository_count = repositories
        return
    actions: list[Action] = []
    if storage is not None:
        actions.append(RegistryItem.storage_bytes.set(storage))
    if repositories is not None:
        actions.append(RegistryItem.repository_count.set(repositories))
    RegistryItem(f"REG#{name}", META).update(actions=actions)


def nearly_full(store: MetadataStore, room: int) -> tuple[RegistryRecord, RepositoryName]:
    """A starter registry with its one repository, ``room`` bytes under its limit."""
    registry = registry_on(store, "starter")
    repo = bound(registry, "app")
    store.commit_blob(repo, digest_of(f"{registry.name}-base"), 1000, START)
    set_counters(store, registry.name, storage=STARTER_LIMIT - room)
    return live_registry(store, registry.name), repo


def nothing_committed(
    store: MetadataStore, before: RegistryRecord, repo: RepositoryName, digest: str
) -> None:
    after = live_registry(store, before.name)
    assert (after.storage_bytes, after.repository_count) == (
        before.storage_bytes,
        before.repository_count,
    )
    assert after.storage_updated_at == before.storage_updated_at
    assert store.get_registry_blob(repo.rid, digest) is None
    assert store.get_blob_link(repo, digest) is None


# ---------------------------------------------------------------------- storage limit


def test_a_blob_beyond_the_starter_storage_limit_is_refused_with_the_message(
    store: MetadataStore,
) -> None:
    registry, repo = nearly_full(store, room=100)
    digest = digest_of("too-big")
    with pytest.raises(QuotaExceededError) as refused:
        store.commit_blob(repo, digest, 3 * MIB, LATER, key="k/too-big")
    error = refused.value
    assert isinstance(error, DeniedError) and error.code == "DENIED" and error.status == 403
    # Docker prints this: the limit, the plan, what is held (never rounded up to the
    # limit) and what the blob would add.
    assert error.message == (
        f"storage limit reached: registry {registry.name!r} on the Starter plan may hold "
        "500 MiB and holds 499.9999 MiB; this 3 MiB blob would exceed it (delete images and "
        "run garbage collection, or upgrade the plan)"
    )
    assert error.detail["limit_bytes"] == STARTER_LIMIT
    assert error.detail["used_bytes"] == STARTER_LIMIT - 100
    nothing_committed(store, registry, repo, digest)


def test_the_storage_limit_holds_exactly(store: MetadataStore) -> None:
    registry, repo = nearly_full(store, room=100)
    assert store.commit_blob(repo, digest_of("fits"), 100, LATER)
    assert live_registry(store, registry.name).storage_bytes == STARTER_LIMIT
    with pytest.raises(QuotaExceededError):
        store.commit_blob(repo, digest_of("one-byte"), 1, LATER)
    assert live_registry(store, registry.name).storage_bytes == STARTER_LIMIT


def test_a_blob_the_full_registry_holds_takes_no_room(store: MetadataStore) -> None:
    """Re-committing a held blob (a re-push, a mount) adds no storage, so a full registry
    accepts it; the DynamoDB store's first guess (a new blob) fails on both the blob and
    the registry's room, and must not be taken for a refusal."""
    registry, repo = nearly_full(store, room=0)
    held = digest_of(f"{registry.name}-base")
    store.unlink_blob(repo, held)
    assert store.commit_blob(repo, held, 1000, LATER, key="k/again") is False
    assert store.get_blob_link(repo, held) is not None
    assert live_registry(store, registry.name).storage_bytes == STARTER_LIMIT
    found = store.get_registry_blob(repo.rid, held)
    assert found is not None
    store.commit_blob(repo, held, 1000, LATER, key=found.key, exists=True)  # a mount


def test_a_blob_shared_by_repositories_counts_once(store: MetadataStore) -> None:
    registry = registry_on(store, "basic")
    digest = digest_of(f"{registry.name}-shared")
    assert store.commit_blob(bound(registry, "one"), digest, 7 * MIB, START)
    assert not store.commit_blob(bound(registry, "two"), digest, 7 * MIB, START)
    after = live_registry(store, registry.name)
    assert (after.storage_bytes, after.repository_count) == (7 * MIB, 2)


def test_a_plan_upgrade_lets_the_next_push_through(store: MetadataStore) -> None:
    registry, repo = nearly_full(store, room=10)
    digest = digest_of("after-upgrade")
    with pytest.raises(QuotaExceededError):
        store.commit_blob(repo, digest, MIB, LATER)
    assert store.update_subscription(registry, "basic", LATER)
    assert store.commit_blob(repo, digest, MIB, LATER)
    assert live_registry(store, registry.name).storage_bytes == STARTER_LIMIT - 10 + MIB


def test_a_downgrade_is_judged_on_the_counters_when_it_lands_not_when_it_was_checked(
    store: MetadataStore,
) -> None:
    registry = registry_on(store, "basic")
    repo = bound(registry, "app")
    store.commit_blob(repo, digest_of(f"{registry.name}-small"), MIB, START)
    checked = live_registry(store, registry.name)  # fits the starter plan here
    # A push commits between the check and the plan change.
    set_counters(store, registry.name, storage=STARTER_LIMIT - 10)
    assert store.commit_blob(repo, digest_of(f"{registry.name}-big"), MIB, LATER)
    assert not store.update_subscription(checked, "starter", LATER)
    after = live_registry(store, registry.name)
    assert after.plan == "basic" and after.storage_bytes > STARTER_LIMIT
    # A second repository since the check: no room for it on starter either.
    set_counters(store, registry.name, storage=MIB)
    store.commit_blob(bound(registry, "two"), digest_of(f"{registry.name}-two"), 1, LATER)
    assert not store.update_subscription(checked, "starter", LATER)
    assert live_registry(store, registry.name).plan == "basic"


def test_a_plan_change_never_reaches_a_later_registry_of_the_same_name(
    store: MetadataStore,
) -> None:
    old = registry_on(store, "starter")
    newer = replace(old, registry_id=uuid.uuid4().hex)
    assert not store.update_subscription(newer, "basic", LATER)
    assert live_registry(store, old.name).plan == "starter"


def test_a_paid_plan_accepts_storage_beyond_its_included_storage(store: MetadataStore) -> None:
    registry = registry_on(store, "basic")
    repo = bound(registry, "app")
    store.commit_blob(repo, digest_of(f"{registry.name}-a"), 10, START)
    set_counters(store, registry.name, storage=5 * GIB - 10)
    assert store.commit_blob(repo, digest_of(f"{registry.name}-b"), 100 * MIB, LATER)
    assert live_registry(store, registry.name).storage_bytes == 5 * GIB - 10 + 100 * MIB


def test_a_refused_commit_changes_nothing_the_session_included(store: MetadataStore) -> None:
    """The store's part: the refusal is the whole transaction's (the service then ends the
    session, see below)."""
    registry, repo = nearly_full(store, room=0)
    session = upload(repo)
    store.put_upload(session)
    digest = digest_of("refused-with-session")
    with pytest.raises(QuotaExceededError):
        store.commit_blob(
            repo, digest, 10, LATER, upload_id=session.upload_id, upload_version=0, key="k/x"
        )
    assert store.get_upload(session.upload_id) == session
    nothing_committed(store, registry, repo, digest)


# ---------------------------------------------------------------------- repository limit


def test_the_second_repository_on_starter_is_refused_for_a_blob(store: MetadataStore) -> None:
    registry = registry_on(store, "starter")
    store.commit_blob(bound(registry, "app"), digest_of(f"{registry.name}-1"), 10, START)
    before = live_registry(store, registry.name)
    other = bound(registry, "other")
    digest = digest_of(f"{registry.name}-2")
    with pytest.raises(QuotaExceededError) as refused:
        store.commit_blob(other, digest, 10, LATER)
    assert refused.value.message == (
        f"repository limit reached: the Starter plan allows 1 repository and registry "
        f"{registry.name!r} has 1 (delete a repository or upgrade the plan)"
    )
    assert not store.repository_exists(other)
    assert store.list_repositories(registry.registry_id, None, 10) == ["app"]
    nothing_committed(store, before, other, digest)
    # A blob the registry holds: refused all the same (the repository is what is new).
    with pytest.raises(QuotaExceededError):
        store.commit_blob(other, digest_of(f"{registry.name}-1"), 10, LATER)


def test_the_second_repository_on_starter_is_refused_for_a_manifest(
    store: MetadataStore,
) -> None:
    registry = registry_on(store, "starter")
    store.put_manifest(bound(registry, "app"), manifest("first"), "v1", True, START)
    before = live_registry(store, registry.name)
    assert before.repository_count == 1
    other = bound(registry, "other")
    record = manifest(f"{registry.name}-second")
    with pytest.raises(QuotaExceededError, match="repository limit reached"):
        store.put_manifest(other, record, "v1", True, LATER)
    assert not store.repository_exists(other)
    assert store.get_manifest(other, record.digest) is None
    assert store.get_tag(other, "v1") is None
    assert live_registry(store, registry.name).repository_count == 1
    # Pushing into the existing repository goes on.
    store.put_manifest(bound(registry, "app"), manifest("again"), "v2", False, LATER)


def test_an_upgrade_allows_more_repositories(store: MetadataStore) -> None:
    registry = registry_on(store, "starter")
    store.commit_blob(bound(registry, "app"), digest_of(f"{registry.name}-1"), 10, START)
    assert store.update_subscription(registry, "basic", LATER)
    store.put_manifest(bound(registry, "two"), manifest(f"{registry.name}-m"), "v1", True, LATER)
    store.commit_blob(bound(registry, "three"), digest_of(f"{registry.name}-3"), 10, LATER)
    assert live_registry(store, registry.name).repository_count == 3


# ---------------------------------------------------------------------- the service


def _service(store: MetadataStore) -> tuple[RegistryService, MemoryBlobStore]:
    blobs = MemoryBlobStore()
    return RegistryService(store, blobs, ServiceSettings(part_size=5 * MIB)), blobs


def _objects(blobs: MemoryBlobStore, registry_id: str) -> list[str]:
    return [o.key for o in blobs.list_objects(f"registries/{registry_id}/", None, 1000)]


@pytest.mark.parametrize("chunked", [False, True], ids=["one-request", "multipart"])
def test_a_refused_upload_leaves_nothing_half_written(store: MetadataStore, chunked: bool) -> None:
    """The bytes were verified and stored when the commit is refused: the service deletes
    them and ends the session (the client cannot complete it any more)."""
    registry, repo = nearly_full(store, room=MIB)
    service, blobs = _service(store)
    data = b"q" * (6 * MIB if chunked else 2 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    session = service.start_upload(repo, registry)
    if chunked:  # a PATCH of more than a part, then the final PUT (claims the session)
        session = service.append_upload(session, io.BytesIO(data), len(data), None)
        body: io.BytesIO | None = None
    else:
        body = io.BytesIO(data)
    with pytest.raises(QuotaExceededError, match="storage limit reached"):
        service.complete_upload(repo, session, digest, body, None if body is None else len(data))
    assert store.get_upload(session.upload_id) is None
    assert _objects(blobs, repo.rid) == []
    assert blobs.list_multipart_uploads(f"registries/{repo.rid}/", 10) == []
    nothing_committed(store, registry, repo, digest)


def test_a_full_registry_refuses_at_upload_start(store: MetadataStore) -> None:
    registry, repo = nearly_full(store, room=0)
    service, _ = _service(store)
    with pytest.raises(QuotaExceededError) as refused:
        service.start_upload(repo, registry)
    assert refused.value.message.startswith(
        f"storage limit reached: registry {registry.name!r} on the Starter plan may hold "
        "500 MiB and holds 500 MiB (delete images"
    )
    held = b"held"
    digest = "sha256:" + hashlib.sha256(held).hexdigest()
    with pytest.raises(QuotaExceededError):
        service.upload_blob(repo, digest, io.BytesIO(held), 4, registry)
    # A monolithic upload of a blob the registry holds takes no room: accepted.
    set_counters(store, registry.name, storage=STARTER_LIMIT - 4)
    service.upload_blob(repo, digest, io.BytesIO(held), 4, live_registry(store, registry.name))
    full = live_registry(store, registry.name)
    assert full.storage_bytes == STARTER_LIMIT
    store.unlink_blob(repo, digest)
    assert service.upload_blob(repo, digest, io.BytesIO(held), 4, full).digest == digest


def test_a_new_repository_beyond_the_limit_refuses_at_upload_start(
    store: MetadataStore,
) -> None:
    registry = registry_on(store, "starter")
    service, _ = _service(store)
    store.commit_blob(bound(registry, "app"), digest_of(f"{registry.name}-1"), 10, START)
    cached = live_registry(store, registry.name)
    with pytest.raises(QuotaExceededError, match="repository limit reached"):
        service.start_upload(bound(registry, "other"), cached)
    service.start_upload(bound(registry, "app"), cached)  # its one repository: fine


def test_a_cached_record_from_before_an_upgrade_refuses_no_upload(store: MetadataStore) -> None:
    registry, repo = nearly_full(store, room=0)
    service, _ = _service(store)
    cached = live_registry(store, registry.name)  # full, and its one repository used
    assert store.update_subscription(cached, "basic", LATER)
    service.start_upload(repo, cached)
    service.start_upload(bound(registry, "other"), cached)


def test_a_paid_registry_over_its_included_storage_takes_uploads(store: MetadataStore) -> None:
    registry = registry_on(store, "basic")
    set_counters(store, registry.name, storage=6 * GIB)
    service, _ = _service(store)
    repo = bound(registry, "app")
    data = b"overage"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    session = service.start_upload(repo, live_registry(store, registry.name))
    service.complete_upload(repo, session, digest, io.BytesIO(data), len(data))
    assert live_registry(store, registry.name).storage_bytes == 6 * GIB + len(data)


# ---------------------------------------------------------------------- reconciliation


def records(store: MetadataStore) -> UsageRecords:
    """The store as reconciliation sees it (both stores are CollectionStores too)."""
    return cast(UsageRecords, store)


def _pushed(store: MetadataStore) -> RegistryRecord:
    """A registry with two repositories sharing a blob, and one blob of its own each."""
    registry = registry_on(store, "basic")
    one, two = bound(registry, "one"), bound(registry, "two")
    shared = digest_of(f"{registry.name}-shared")
    store.commit_blob(one, shared, 1000, START)
    store.commit_blob(two, shared, 1000, START)
    store.commit_blob(one, digest_of(f"{registry.name}-a"), 200, START)
    store.commit_blob(two, digest_of(f"{registry.name}-b"), 30, START)
    return live_registry(store, registry.name)


def test_reconciliation_finds_consistent_counters_consistent(store: MetadataStore) -> None:
    registry = _pushed(store)
    assert count_records(records(store), registry.registry_id) == (1230, 2)
    result = reconcile_registry(records(store), registry.name, LATER)
    assert result is not None and result.outcome == CONSISTENT
    assert (result.storage_drift, result.repository_drift) == (0, 0)
    assert reconcile_registry(records(store), unique("gone"), LATER) is None


def test_reconciliation_backfills_the_identity_the_metering_finds_a_registry_by(
    store: MetadataStore,
) -> None:
    """A registry created before identity items existed is found by id after a run."""
    registry = _pushed(store)
    if not isinstance(store, MemoryMetadataStore):
        RegistryIdentityItem(rid_pk(registry.registry_id), IDENTITY).delete()
        assert store.get_registry_by_id(registry.registry_id) is None
    reconcile_registry(records(store), registry.name, LATER)
    found = store.get_registry_by_id(registry.registry_id)
    assert found is not None and found.name == registry.name


def test_reconciliation_corrects_an_injected_drift_and_reports_it(
    store: MetadataStore,
) -> None:
    registry = _pushed(store)
    set_counters(store, registry.name, storage=1230 + 12345, repositories=5)
    result = reconcile_registry(records(store), registry.name, LATER)
    assert result is not None and result.outcome == CORRECTED
    assert result.storage_before == 1230 + 12345 and result.storage_after == 1230
    assert (result.storage_drift, result.repository_drift) == (-12345, -3)
    after = live_registry(store, registry.name)
    assert (after.storage_bytes, after.repository_count) == (1230, 2)
    assert after.storage_updated_at == LATER
    again = reconcile_registry(records(store), registry.name, LATER + timedelta(hours=1))
    assert again is not None and again.outcome == CONSISTENT


@dataclass
class _Interleaved:
    """A store whose ``hook`` runs once, just before the named call: a commit landing in
    the middle of a reconciliation."""

    inner: Any
    at: str
    hook: Callable[[], None]
    skip: int = 0  # calls of ``at`` let through before the hook runs
    fired: bool = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name != self.at:
            return method

        def interleaved(*args: Any, **kwargs: Any) -> Any:
            if self.skip > 0:
                self.skip -= 1
            elif not self.fired:
                self.fired = True
                self.hook()
            return method(*args, **kwargs)

        return interleaved


@pytest.mark.parametrize("at", ["list_registry_blobs", "correct_usage"])
def test_reconciliation_does_not_clobber_a_concurrent_commit(store: MetadataStore, at: str) -> None:
    """A commit during the recount, or between the recount and the correction: the
    correction is not written (the commit's bytes stay counted), and the next run
    corrects the drift that was there before."""
    registry = _pushed(store)
    set_counters(store, registry.name, storage=1230 + 500)
    late = digest_of(f"{registry.name}-late")

    def commit() -> None:
        store.commit_blob(bound(registry, "one"), late, 77, LATER)

    result = reconcile_registry(_Interleaved(store, at, commit), registry.name, LATER)
    assert result is not None and result.outcome == SKIPPED
    assert live_registry(store, registry.name).storage_bytes == 1230 + 500 + 77
    fixed = reconcile_registry(records(store), registry.name, LATER)
    assert fixed is not None and fixed.outcome == CORRECTED and fixed.storage_drift == -500
    assert live_registry(store, registry.name).storage_bytes == 1230 + 77


def test_reconciliation_skips_a_repository_created_and_another_deleted_during_its_count(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count changes by +1 and -1 while the recount pages through the repositories:
    the counters read before and after are equal, and the recount (which saw neither the
    new repository, sorted before its page, nor the deleted one, after it) is one short.
    The usage version, bumped by both writes, stops the correction."""
    monkeypatch.setattr(quotas, "PAGE", 1)
    registry = _pushed(store)  # repositories "one" and "two"
    shared = digest_of(f"{registry.name}-shared")

    def create_and_delete() -> None:
        store.commit_blob(bound(registry, "aaa"), shared, 1000, LATER)  # no new bytes
        assert store.delete_repository(bound(registry, "two"))

    interleaved = _Interleaved(store, "list_repositories", create_and_delete, skip=1)
    result = reconcile_registry(interleaved, registry.name, LATER)
    assert result is not None and result.repositories_after == 1  # the torn recount
    assert result.outcome == SKIPPED
    assert live_registry(store, registry.name).repository_count == 2  # "aaa" and "one"
    again = reconcile_registry(records(store), registry.name, LATER)
    assert again is not None and again.outcome == CONSISTENT


class _OneAccount:
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    def list_accounts(self, after: str | None, limit: int) -> list[AccountRecord]:
        return [] if after is not None else [AccountRecord(self.account_id, "a")][:limit]


def test_the_scheduled_reconciliation_logs_and_measures_the_drift(
    store: MetadataStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from chalicelib import wiring
    from chalicelib.events import handlers

    registry = _pushed(store)
    set_counters(store, registry.name, storage=1230 - 4000)
    reconciler = StorageReconciler(records(store), _OneAccount(registry.account_id), lambda: LATER)
    monkeypatch.setattr(wiring, "storage_reconciler", lambda: reconciler)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    found = handlers.reconcile_storage()
    assert [(r.registry, r.outcome, r.storage_drift) for r in found] == [
        (registry.name, CORRECTED, 4000)
    ]
    (drift,) = [r for r in caplog.records if r.getMessage().startswith("storage counters")]
    assert drift.levelname == "WARNING"
    logged = vars(drift)
    assert logged["registry"] == registry.name and logged["storage_before"] == 1230 - 4000
    assert logged["storage_after"] == 1230 and logged["storage_drift"] == 4000
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (emf,) = [line for line in lines if "_aws" in line]
    assert emf["StorageDriftBytes"] == [4000.0] and emf["RegistriesCorrected"] == [1.0]
    assert live_registry(store, registry.name).storage_bytes == 1230
