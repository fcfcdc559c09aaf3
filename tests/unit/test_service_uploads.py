"""RegistryService blob uploads over the in-memory stores: sessions, parts, verification."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from datetime import timedelta

import pytest

from chalicelib.adapters.memory import MIN_PART, MemoryBlobStore, MemoryMetadataStore
from chalicelib.registry.digests import Digest
from chalicelib.registry.errors import (
    BlobUnknownError,
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    DigestInvalidError,
    RangeInvalidError,
    SizeInvalidError,
)
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import UploadSession
from chalicelib.registry.service import (
    CLAIM_LEASE,
    RegistryService,
    blob_key,
    parse_content_range,
    upload_prefix,
)

from .builders import MIB, FakeClock, push_blob, sha256
from .conftest import FOREIGN_REGISTRY, PART_SIZE, REGISTRY, SIBLING_REGISTRY, named, rid


def key_of(registry: str, digest: str) -> str:
    return blob_key(rid(registry), Digest.parse(digest))


def blob_objects(blobs: MemoryBlobStore, registry: str) -> dict[str, bytes]:
    prefix = f"registries/{rid(registry)}/"
    return {k: v for k, v in blobs.objects.items() if k.startswith(prefix)}


def stored_bytes(blobs: MemoryBlobStore, registry: str, digest: str) -> bytes:
    """The one copy of the blob the registry keeps (wherever its upload wrote it)."""
    found = [v for v in blob_objects(blobs, registry).values() if sha256(v) == digest]
    assert len(found) == 1, f"{len(found)} copies of {digest}"
    return found[0]


def scratch_keys(blobs: MemoryBlobStore, session: UploadSession) -> list[str]:
    prefix = upload_prefix(session.registry_id, session.upload_id)
    return sorted(k for k in blobs.objects if k.startswith(prefix))


def append(
    service: RegistryService,
    session: UploadSession,
    data: bytes,
    with_range: bool = True,
) -> UploadSession:
    content_range = (session.offset, session.offset + len(data) - 1) if with_range else None
    return service.append_upload(session, io.BytesIO(data), len(data), content_range)


def complete(
    service: RegistryService,
    repo: RepositoryName,
    session: UploadSession,
    digest: str,
    final: bytes | None = None,
) -> None:
    body = io.BytesIO(final) if final is not None else None
    service.complete_upload(repo, session, digest, body, len(final) if final is not None else 0)


def assert_nothing_committed(
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
    digest: str,
) -> None:
    assert store.get_blob_link(repo, digest) is None
    assert store.get_registry_blob(repo.rid, digest) is None
    # A refused upload leaves no bytes behind, under any key.
    assert blob_objects(blobs, repo.registry) == {}
    registry = store.get_registry(repo.registry)
    assert registry is not None
    assert registry.storage_bytes == 0


# ------------------------------------------------------------------ chunked uploads


def test_single_append_then_complete_commits_the_verified_blob(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    data = os.urandom(1000)
    session = service.start_upload(repo)
    session = append(service, session, data)
    assert session.offset == len(data)
    complete(service, repo, session, sha256(data))

    assert stored_bytes(blobs, REGISTRY, sha256(data)) == data
    link = store.get_blob_link(repo, sha256(data))
    assert link is not None
    assert link.size == len(data)
    assert store.get_upload(session.upload_id) is None
    assert scratch_keys(blobs, session) == []


def test_chunks_smaller_than_a_part_crossing_part_boundaries_assemble_byte_exact(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    chunks = [os.urandom(3 * MIB), os.urandom(4 * MIB), b"\x00", os.urandom(6 * MIB)]
    data = b"".join(chunks)
    session = service.start_upload(repo)
    for chunk in chunks:
        session = append(service, session, chunk)
        saved = store.get_upload(session.upload_id)
        assert saved is not None
        assert saved.offset == session.offset
        # every uploaded part is a full part; the remainder waits in the tail
        assert all(p.size == PART_SIZE for p in saved.parts)
        assert saved.tail_size == saved.offset - PART_SIZE * len(saved.parts)
    assert [p.number for p in session.parts] == [1, 2]
    assert session.offset == len(data) == 13 * MIB + 1

    # MemoryBlobStore.complete_multipart raises EntityTooSmall for a short non-final part
    complete(service, repo, session, sha256(data))

    assert stored_bytes(blobs, REGISTRY, sha256(data)) == data
    assert blobs.calls.count("upload_part") == 3  # two full parts plus the 4 MiB + 1 tail
    assert blobs.multipart == {}
    assert store.get_blob_link(repo, sha256(data)) is not None
    registry = store.get_registry(REGISTRY)
    assert registry is not None
    assert registry.storage_bytes == len(data)


def test_upload_of_exactly_two_parts_has_no_tail_and_completes(
    service: RegistryService, blobs: MemoryBlobStore, repo: RepositoryName
) -> None:
    data = os.urandom(2 * PART_SIZE)
    session = append(service, service.start_upload(repo), data, with_range=False)
    assert (len(session.parts), session.tail_size, session.tail_key) == (2, 0, None)
    complete(service, repo, session, sha256(data))
    assert stored_bytes(blobs, REGISTRY, sha256(data)) == data


def test_parts_are_never_smaller_than_s3_minimum_except_the_last(
    service: RegistryService, blobs: MemoryBlobStore, repo: RepositoryName
) -> None:
    real_complete = blobs.complete_multipart
    seen: list[list[int]] = []

    def spy(key: str, multipart_id: str, parts: list[tuple[int, str]]) -> None:
        stored = blobs.multipart[multipart_id]
        seen.append([len(stored[n]) for n, _ in parts])
        real_complete(key, multipart_id, parts)

    blobs.complete_multipart = spy  # type: ignore[method-assign]
    session = service.start_upload(repo)
    data = b""
    for size in (MIB, 2 * MIB + 7, 4 * MIB, 3 * MIB, 1):
        chunk = os.urandom(size)
        data += chunk
        session = append(service, session, chunk)
    complete(service, repo, session, sha256(data))

    assert len(seen) == 1
    assert all(size >= MIN_PART for size in seen[0][:-1])
    assert sum(seen[0]) == len(data)


def test_empty_blob_upload_commits_an_empty_object(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    session = service.start_upload(repo)
    complete(service, repo, session, sha256(b""))
    assert stored_bytes(blobs, REGISTRY, sha256(b"")) == b""
    link = store.get_blob_link(repo, sha256(b""))
    assert link is not None
    assert link.size == 0


def test_final_chunk_sent_with_complete_is_part_of_the_blob(
    service: RegistryService, blobs: MemoryBlobStore, repo: RepositoryName
) -> None:
    first, last = os.urandom(6 * MIB), os.urandom(2 * MIB)
    session = append(service, service.start_upload(repo), first)
    complete(service, repo, session, sha256(first + last), final=last)
    assert stored_bytes(blobs, REGISTRY, sha256(first + last)) == first + last
    assert blobs.multipart == {}


def test_whole_blob_in_the_completing_put_commits(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    data = os.urandom(500)
    session = service.start_upload(repo)
    complete(service, repo, session, sha256(data), final=data)
    assert store.get_blob_link(repo, sha256(data)) is not None


def test_chunk_not_starting_at_the_upload_offset_is_refused_with_range(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    session = append(service, service.start_upload(repo), b"0123456789")
    for start in (0, 5, 11):
        with pytest.raises(RangeInvalidError) as caught:
            service.append_upload(session, io.BytesIO(b"abc"), 3, (start, start + 2))
        assert caught.value.status == 416
        assert caught.value.headers == {"Range": "0-9"}
    saved = store.get_upload(session.upload_id)
    assert saved is not None
    assert saved.offset == 10


def test_content_range_disagreeing_with_content_length_is_refused(
    service: RegistryService, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    with pytest.raises(RangeInvalidError):
        service.append_upload(session, io.BytesIO(b"abcd"), 4, (0, 9))


@pytest.mark.parametrize(
    ("declared", "error"), [(10, BlobUploadInvalidError), (4, SizeInvalidError)]
)
def test_body_length_differing_from_content_length_leaves_the_session_unchanged(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
    declared: int,
    error: type[Exception],
) -> None:
    session = append(service, service.start_upload(repo), b"first")
    before = store.get_upload(session.upload_id)
    with pytest.raises(error):
        service.append_upload(session, io.BytesIO(b"12345678"), declared, None)
    assert store.get_upload(session.upload_id) == before
    assert before is not None
    assert blobs.objects[before.tail_key or ""] == b"first"


def test_digest_mismatch_commits_nothing_and_forgets_the_session(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    data = os.urandom(7 * MIB)  # a multipart upload with a tail
    claimed = sha256(b"something else")
    session = append(service, service.start_upload(repo), data)
    assert session.multipart_id is not None

    with pytest.raises(DigestInvalidError) as caught:
        complete(service, repo, session, claimed)

    assert caught.value.status == 400
    assert_nothing_committed(store, blobs, repo, claimed)
    assert store.get_upload(session.upload_id) is None
    assert blobs.multipart == {}
    assert scratch_keys(blobs, session) == []


def test_digest_mismatch_of_a_small_single_request_upload_commits_nothing(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    claimed = sha256(b"claimed")
    session = append(service, service.start_upload(repo), b"actual bytes")
    with pytest.raises(DigestInvalidError):
        complete(service, repo, session, claimed)
    assert_nothing_committed(store, blobs, repo, claimed)
    assert store.get_blob_link(repo, sha256(b"actual bytes")) is None
    assert store.get_upload(session.upload_id) is None


def test_digest_mismatch_of_a_multi_request_upload_commits_nothing(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    claimed = sha256(b"claimed")
    session = service.start_upload(repo)
    for chunk in (b"one", b"two", b"three"):
        session = append(service, session, chunk)
    with pytest.raises(DigestInvalidError):
        complete(service, repo, session, claimed)
    assert_nothing_committed(store, blobs, repo, claimed)
    assert store.get_upload(session.upload_id) is None


def test_malformed_digest_on_complete_is_digest_invalid(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    session = append(service, service.start_upload(repo), b"data")
    with pytest.raises(DigestInvalidError):
        complete(service, repo, session, "sha256:nothex")
    # the session survives a request that could not even name a digest
    assert store.get_upload(session.upload_id) is not None


def test_cancel_deletes_the_session_and_its_multipart_upload(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    session = append(service, service.start_upload(repo), os.urandom(6 * MIB))
    assert blobs.multipart
    service.cancel_upload(session)
    assert store.get_upload(session.upload_id) is None
    assert blobs.multipart == {}
    assert scratch_keys(blobs, session) == []
    with pytest.raises(BlobUploadUnknownError):
        service.get_upload(repo, session.upload_id)


def test_cancel_after_several_appends_leaves_no_scratch_objects(
    service: RegistryService, blobs: MemoryBlobStore, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    for chunk in (b"a" * 100, b"b" * 100, b"c" * 100):
        session = append(service, session, chunk)
    service.cancel_upload(session)
    assert scratch_keys(blobs, session) == []


def test_completed_chunked_upload_leaves_no_scratch_objects(
    service: RegistryService, blobs: MemoryBlobStore, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    data = b""
    for chunk in (os.urandom(3 * MIB), os.urandom(4 * MIB), os.urandom(MIB)):
        data += chunk
        session = append(service, session, chunk)
    complete(service, repo, session, sha256(data))
    assert scratch_keys(blobs, session) == []


def test_failed_first_patch_leaves_no_orphan_multipart_upload(
    service: RegistryService, blobs: MemoryBlobStore, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    with pytest.raises(BlobUploadInvalidError):
        service.append_upload(session, io.BytesIO(os.urandom(6 * MIB)), 7 * MIB, None)
    assert blobs.multipart == {}


def test_expired_session_is_unknown(
    service: RegistryService, clock: FakeClock, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    assert service.get_upload(repo, session.upload_id).upload_id == session.upload_id
    clock.advance(service.settings.upload_ttl)
    with pytest.raises(BlobUploadUnknownError) as caught:
        service.get_upload(repo, session.upload_id)
    assert caught.value.status == 404


def test_session_is_unknown_from_another_repository(
    service: RegistryService, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    with pytest.raises(BlobUploadUnknownError):
        service.get_upload(named(REGISTRY, "other"), session.upload_id)
    with pytest.raises(BlobUploadUnknownError):
        service.get_upload(repo, "no-such-upload")


def test_each_append_extends_the_session_lifetime(
    service: RegistryService, clock: FakeClock, repo: RepositoryName
) -> None:
    session = service.start_upload(repo)
    clock.advance(timedelta(minutes=50))
    session = append(service, session, b"x")
    clock.advance(timedelta(minutes=50))
    assert service.get_upload(repo, session.upload_id).offset == 1


def test_cleanup_aborts_multipart_and_deletes_only_expired_sessions(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    clock: FakeClock,
    repo: RepositoryName,
) -> None:
    stale = service.start_upload(repo)
    stale = append(service, stale, os.urandom(3 * MIB))
    stale = append(service, stale, os.urandom(3 * MIB))  # multipart + scratch tail
    assert stale.multipart_id is not None
    assert stale.tail_key is not None
    clock.advance(timedelta(minutes=61))
    fresh = service.start_upload(repo)

    assert service.cleanup_expired_uploads() == 1

    assert store.get_upload(stale.upload_id) is None
    assert stale.multipart_id not in blobs.multipart
    assert stale.tail_key not in blobs.objects
    assert store.get_upload(fresh.upload_id) is not None
    assert service.cleanup_expired_uploads() == 0


def test_second_writer_from_a_stale_read_is_refused(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    session = append(service, service.start_upload(repo), b"start")
    first = store.get_upload(session.upload_id)
    second = store.get_upload(session.upload_id)
    assert first is not None
    assert second is not None
    append(service, first, b"winner")
    with pytest.raises(BlobUploadInvalidError):
        append(service, second, b"loser!!")
    saved = store.get_upload(session.upload_id)
    assert saved is not None
    assert saved.offset == len(b"startwinner")


def test_losing_concurrent_writer_does_not_destroy_the_winners_bytes(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    session = append(service, service.start_upload(repo), b"start")
    first = store.get_upload(session.upload_id)
    second = store.get_upload(session.upload_id)
    assert first is not None
    assert second is not None
    append(service, first, b"winner")
    with pytest.raises(BlobUploadInvalidError):
        append(service, second, b"loser!")  # same length: same offset after the chunk
    saved = store.get_upload(session.upload_id)
    assert saved is not None
    assert saved.tail_key is not None
    assert blobs.objects.get(saved.tail_key) == b"startwinner"
    complete(service, repo, saved, sha256(b"startwinner"))
    assert stored_bytes(blobs, REGISTRY, sha256(b"startwinner")) == b"startwinner"


# ------------------------------------------------------------------ monolithic, mount


def test_monolithic_upload_stores_verified_blob_without_a_session(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    data = os.urandom(2048)
    record = service.upload_blob(repo, sha256(data), io.BytesIO(data), len(data))
    assert (record.digest, record.size) == (sha256(data), len(data))
    assert stored_bytes(blobs, REGISTRY, sha256(data)) == data
    assert store.uploads == {}


def test_monolithic_upload_larger_than_a_part_uses_multipart_and_cleans_up(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    data = os.urandom(12 * MIB)
    service.upload_blob(repo, sha256(data), io.BytesIO(data), None)
    assert stored_bytes(blobs, REGISTRY, sha256(data)) == data
    assert blobs.multipart == {}
    assert [k for k in blobs.objects if k.startswith("uploads/")] == []
    assert store.get_blob_link(repo, sha256(data)) is not None


def test_monolithic_upload_with_wrong_digest_commits_nothing(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    claimed = sha256(b"claimed")
    with pytest.raises(DigestInvalidError):
        service.upload_blob(repo, claimed, io.BytesIO(b"other"), 5)
    assert_nothing_committed(store, blobs, repo, claimed)


def test_blob_linked_into_two_repositories_is_stored_and_counted_once(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    data = os.urandom(6 * MIB)
    other = named(REGISTRY, "other")
    push_blob(service, repo, data)
    session = append(service, service.start_upload(other), data)
    complete(service, other, session, sha256(data))

    first = store.get_blob_link(repo, sha256(data))
    second = store.get_blob_link(other, sha256(data))
    assert first is not None and second is not None
    # Both links name the registry's one copy; the second upload's own copy is gone.
    assert first.key == second.key
    assert stored_bytes(blobs, REGISTRY, sha256(data)) == data
    registry = store.get_registry(REGISTRY)
    assert registry is not None
    assert registry.storage_bytes == len(data)


def test_committing_a_multipart_blob_copies_nothing(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    data = os.urandom(2 * PART_SIZE + 1)
    session = append(service, service.start_upload(repo), data, with_range=False)
    before = len(blobs.calls)
    complete(service, repo, session, sha256(data))
    final_put = blobs.calls[before:]
    # Upload the tail as the last part, complete: no copy, no re-read (hashed while streaming).
    assert final_put == ["get_object", "upload_part", "complete_multipart", "delete_object"]
    link = store.get_blob_link(repo, sha256(data))
    assert link is not None and link.key == session.data_key
    assert blobs.objects[session.data_key] == data


def test_repository_count_grows_on_first_push_to_a_repository_only(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_blob(service, repo, b"one")
    push_blob(service, repo, b"two")
    registry = store.get_registry(REGISTRY)
    assert registry is not None
    assert registry.repository_count == 1
    push_blob(service, named(REGISTRY, "second"), b"one")
    registry = store.get_registry(REGISTRY)
    assert registry is not None
    assert registry.repository_count == 2
    assert registry.storage_bytes == len(b"one") + len(b"two")


def test_mount_from_a_repository_of_the_same_registry_links_the_blob(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    digest = push_blob(service, repo, b"shared layer")
    target = named(REGISTRY, "target")
    record = service.mount_blob(target, digest, repo)
    assert record is not None
    assert record.size == len(b"shared layer")
    assert store.get_blob_link(target, digest) is not None
    registry = store.get_registry(REGISTRY)
    assert registry is not None
    assert registry.storage_bytes == len(b"shared layer")


def test_mount_from_another_registry_is_not_possible(
    service: RegistryService, store: MemoryMetadataStore
) -> None:
    source = named(SIBLING_REGISTRY, "app")
    digest = push_blob(service, source, b"layer in another registry")
    target = named(REGISTRY, "app")
    assert service.mount_blob(target, digest, source) is None
    assert store.get_blob_link(target, digest) is None


def test_mount_from_a_repository_without_the_blob_returns_none(
    service: RegistryService, repo: RepositoryName
) -> None:
    push_blob(service, named(REGISTRY, "holder"), b"layer")
    empty = named(REGISTRY, "empty")
    assert service.mount_blob(repo, sha256(b"layer"), empty) is None


def test_mount_without_from_uses_any_blob_of_the_registry(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    digest = push_blob(service, named(REGISTRY, "holder"), b"layer")
    assert service.mount_blob(repo, digest, None) is not None
    assert store.get_blob_link(repo, digest) is not None
    foreign = named(FOREIGN_REGISTRY, "app")
    assert service.mount_blob(foreign, digest, None) is None
    assert store.get_blob_link(foreign, digest) is None


# ------------------------------------------------------------------ pull side


def test_blob_download_url_presigns_where_the_upload_left_the_bytes_for_the_presign_ttl(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    digest = push_blob(service, repo, b"layer")
    record, url = service.blob_download_url(repo, digest)
    assert record.size == len(b"layer")
    stored = store.get_registry_blob(rid(REGISTRY), digest)
    assert stored is not None and stored.key is not None
    assert blobs.objects[stored.key] == b"layer"
    assert record.key == stored.key  # the link carries the key: one read per pull
    ttl = int(service.settings.presign_ttl.total_seconds())
    assert url == f"memory://{stored.key}?expires_in={ttl}"


def test_blob_committed_before_keys_were_recorded_is_served_from_its_content_address(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    digest = sha256(b"old layer")
    store.commit_blob(repo, digest, len(b"old layer"), service._clock())
    _, url = service.blob_download_url(repo, digest)
    assert url.startswith(f"memory://{key_of(REGISTRY, digest)}?")


def test_unlinked_blob_is_unknown_even_if_the_registry_holds_it(
    service: RegistryService, repo: RepositoryName
) -> None:
    digest = push_blob(service, repo, b"layer")
    other = named(REGISTRY, "other")
    with pytest.raises(BlobUnknownError):
        service.stat_blob(other, digest)
    service.delete_blob(repo, digest)
    with pytest.raises(BlobUnknownError):
        service.stat_blob(repo, digest)
    with pytest.raises(BlobUnknownError):
        service.delete_blob(repo, digest)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0-99", (0, 99)),
        ("bytes=100-199", (100, 199)),
        ("bytes 5-5/6", (5, 5)),
    ],
)
def test_content_range_forms_are_parsed(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize("header", ["abc", "5-3", "-3", "1-", "a-b", "10"])
def test_malformed_content_range_is_range_invalid(header: str) -> None:
    with pytest.raises(RangeInvalidError):
        parse_content_range(header)


def test_stale_copy_of_a_session_cannot_commit_twice(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    session = append(service, service.start_upload(repo), b"abc")
    stale = replace(session, parts=list(session.parts))
    complete(service, repo, session, sha256(b"abc"))
    with pytest.raises(BlobUploadInvalidError):
        store.update_upload(stale)


def test_chunked_patch_whose_content_range_does_not_match_the_bytes_is_refused_and_undone(
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    repo: RepositoryName,
) -> None:
    session = service.start_upload(repo)
    objects = set(blobs.objects)
    with pytest.raises(RangeInvalidError):
        # no Content-Length (chunked): the range claims 10 bytes, 4 arrive
        service.append_upload(session, io.BytesIO(b"four"), None, (0, 9))
    saved = store.get_upload(session.upload_id)
    assert saved is not None and saved.offset == 0
    assert set(blobs.objects) == objects


def test_a_claimed_session_can_be_neither_saved_claimed_nor_cancelled_by_another_request(
    service: RegistryService,
    store: MemoryMetadataStore,
    clock: FakeClock,
    repo: RepositoryName,
) -> None:
    data = os.urandom(PART_SIZE + 10)
    session = append(service, service.start_upload(repo), data, with_range=False)
    claimed = service._claim(session)
    after_claim = store.get_upload(session.upload_id)
    assert after_claim is not None and after_claim.version == claimed.version
    # Requests that read the session after the claim still find it held.
    with pytest.raises(BlobUploadInvalidError):
        service._claim(after_claim)
    with pytest.raises(BlobUploadUnknownError):
        service.cancel_upload(after_claim)
    with pytest.raises(BlobUploadInvalidError):
        service.append_upload(after_claim, io.BytesIO(b"more"), 4, None)
    # Once the holder releases it (as a request that gives up does), it is free again.
    service._release(session, claimed, claimed.claim_id)
    fresh = store.get_upload(session.upload_id)
    assert fresh is not None and fresh.claim_id is None and fresh.offset == session.offset
    service.complete_upload(repo, fresh, sha256(data), None, 0)
    assert store.get_blob_link(repo, sha256(data)) is not None
    assert store.get_upload(session.upload_id) is None


def test_a_claim_whose_holder_vanished_expires(
    service: RegistryService,
    store: MemoryMetadataStore,
    clock: FakeClock,
    repo: RepositoryName,
) -> None:
    data = os.urandom(PART_SIZE + 10)
    session = append(service, service.start_upload(repo), data, with_range=False)
    service._claim(session)  # and the holder never comes back
    clock.advance(CLAIM_LEASE + timedelta(seconds=1))
    stale = store.get_upload(session.upload_id)
    assert stale is not None
    stale.expires_at = clock() + timedelta(hours=1)
    service.complete_upload(repo, stale, sha256(data), None, 0)
    assert store.get_blob_link(repo, sha256(data)) is not None


def test_a_request_that_fails_after_claiming_gives_the_session_back(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    session = append(service, service.start_upload(repo), os.urandom(PART_SIZE + 10), False)
    # The body is shorter than its Content-Length: the request fails after it claimed the
    # session to add a part to its multipart upload.
    with pytest.raises(BlobUploadInvalidError):
        service.append_upload(session, io.BytesIO(os.urandom(PART_SIZE)), PART_SIZE + 1, None)
    retry = store.get_upload(session.upload_id)
    assert retry is not None and retry.claim_id is None and retry.offset == session.offset
    data = os.urandom(PART_SIZE)
    advanced = service.append_upload(retry, io.BytesIO(data), len(data), None)  # not blocked
    assert advanced.offset == session.offset + len(data)
