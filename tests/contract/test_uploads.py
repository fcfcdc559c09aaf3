"""Upload sessions: started only in a live incarnation, saved only by whoever read the
current version, ended conditionally, and listed for cleanup by expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from chalicelib.registry.errors import (
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    NameUnknownError,
)
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import RegistryRecord, UploadPart, UploadSession

from .helpers import START, digest_of, new_registry, purge, race, refusals, upload, winners


def read(store: MetadataStore, session: UploadSession) -> UploadSession:
    found = store.get_upload(session.upload_id)
    assert found is not None, f"upload {session.upload_id} is gone"
    return found


def test_a_session_reads_back_as_it_was_started(store: MetadataStore, repo: RepositoryName) -> None:
    session = upload(repo)
    store.put_upload(session)
    assert store.get_upload(session.upload_id) == session
    assert store.get_upload("no-such-upload") is None


def test_no_session_starts_in_a_deleting_registry(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.mark_registry_deleting(registry.name)
    session = upload(repo)
    with pytest.raises(NameUnknownError):
        store.put_upload(session)
    assert store.get_upload(session.upload_id) is None


def test_no_session_starts_for_another_incarnation_of_the_name(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    store.mark_registry_deleting(registry.name)
    purge(store, registry.name, 1000)
    reborn = new_registry(store, name=registry.name)
    stale = upload(repo)
    with pytest.raises(NameUnknownError):
        store.put_upload(stale)
    assert store.get_upload(stale.upload_id) is None
    current = upload(repo.bound(reborn.registry_id))
    store.put_upload(current)
    assert store.get_upload(current.upload_id) == current


def test_an_update_saves_the_session_and_moves_its_version_on(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    advanced = read(store, session)
    advanced.parts.append(UploadPart(2, '"etag-2"', 5 * 1024 * 1024))
    advanced.offset += 5 * 1024 * 1024
    advanced.tail_key, advanced.tail_size, advanced.sha256 = None, 0, None
    advanced.expires_at = START + timedelta(hours=2)
    store.update_upload(advanced)
    assert advanced.version == 1
    assert read(store, session) == advanced
    store.update_upload(advanced)  # the saver's copy is current: it may save again
    assert read(store, session).version == 2


def test_an_update_from_a_stale_read_is_refused_and_changes_nothing(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    first, second = read(store, session), read(store, session)
    first.offset = 10
    store.update_upload(first)
    second.offset = 20
    with pytest.raises(BlobUploadInvalidError):
        store.update_upload(second)
    assert read(store, session) == first
    assert second.version == 0  # the refused copy is left as it was read


def test_two_updates_from_the_same_read_exactly_one_wins(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    copies = [read(store, session) for _ in range(4)]
    for i, copy in enumerate(copies):
        copy.offset = 100 + i
    outcomes = race(len(copies), lambda i: store.update_upload(copies[i]))
    assert len(winners(outcomes)) == 1
    assert all(isinstance(e, BlobUploadInvalidError) for e in refusals(outcomes))
    [winner] = [c for c, o in zip(copies, outcomes, strict=True) if o is None]
    assert read(store, session) == winner
    assert winner.version == 1


def test_a_session_of_a_deleted_registry_may_advance_but_never_commit(
    store: MetadataStore, registry: RegistryRecord, repo: RepositoryName
) -> None:
    # Starting a session and committing its blob are where a deleted registry refuses
    # writes; advancing one does not re-read the registry (port: update_upload).
    session = upload(repo)
    store.put_upload(session)
    store.mark_registry_deleting(registry.name)
    advanced = replace(read(store, session), offset=99)
    store.update_upload(advanced)
    assert read(store, session) == advanced
    with pytest.raises(NameUnknownError):
        store.commit_blob(
            repo, digest_of("late"), 99, START, upload_id=session.upload_id, upload_version=1
        )
    assert store.get_registry_blob(repo.rid, digest_of("late")) is None
    assert store.get_blob_link(repo, digest_of("late")) is None


def test_an_update_of_an_ended_session_is_refused_and_does_not_bring_it_back(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    copy = read(store, session)
    assert store.delete_upload(session.upload_id)
    with pytest.raises((BlobUploadInvalidError, BlobUploadUnknownError)):
        store.update_upload(copy)
    assert store.get_upload(session.upload_id) is None


def test_delete_ends_a_session_once(store: MetadataStore, repo: RepositoryName) -> None:
    session = upload(repo)
    store.put_upload(session)
    assert store.delete_upload(session.upload_id)
    assert not store.delete_upload(session.upload_id)
    assert store.get_upload(session.upload_id) is None


def test_delete_at_a_version_ends_only_that_state_of_the_session(
    store: MetadataStore, repo: RepositoryName
) -> None:
    session = upload(repo)
    store.put_upload(session)
    store.update_upload(read(store, session))  # version 1
    assert not store.delete_upload(session.upload_id, version=0)
    assert read(store, session).version == 1
    assert store.delete_upload(session.upload_id, version=1)
    assert store.get_upload(session.upload_id) is None
    assert not store.delete_upload(session.upload_id, version=1)


def test_expired_sessions_are_listed_by_expiry_up_to_the_limit(
    store: MetadataStore, repo: RepositoryName
) -> None:
    # The DynamoDB store lists expired sessions of every registry from one index: far
    # past times keep other tests' sessions out of this one's window.
    now = START.replace(year=2001)
    sessions = {
        name: upload(repo, expires_at=now + delta)
        for name, delta in (
            ("old", -timedelta(minutes=1)),
            ("older", -timedelta(hours=2)),
            ("live", timedelta(hours=1)),
            ("oldest", -timedelta(days=1)),
        )
    }
    for session in sessions.values():
        store.put_upload(session)
    expired = [s for s in store.list_expired_uploads(now, 1000) if s.registry == repo.registry]
    assert expired == [sessions[n] for n in ("oldest", "older", "old")]
    assert store.list_expired_uploads(now, 2) == [sessions["oldest"], sessions["older"]]


def test_a_session_is_expired_from_its_expiry_time_on(
    store: MetadataStore, repo: RepositoryName
) -> None:
    # RegistryService.get_upload refuses a session once expires_at <= now.
    at = START.replace(year=2002)
    session = upload(repo, expires_at=at)
    store.put_upload(session)
    listed = [s.upload_id for s in store.list_expired_uploads(at, 1000)]
    assert session.upload_id in listed


def test_a_direct_upload_reads_back_with_its_announced_blob_and_status(
    store: MetadataStore, repo: RepositoryName
) -> None:
    from chalicelib.registry.records import DirectUpload

    announced = DirectUpload(digest_of("direct"), 6, 8 * 1024 * 1024, 1)
    session = replace(upload(repo), direct=announced)
    store.put_upload(session)
    assert read(store, session) == session
    failed = replace(
        read(store, session),
        direct=replace(announced, status="failed", error_code="DIGEST_INVALID", error_message="x"),
    )
    store.update_upload(failed)
    assert read(store, session).direct == failed.direct
