"""Direct uploads (docs/direct-uploads.md): the client sends a blob's parts straight to S3
through presigned URLs, and the registry completes the multipart upload and verifies the
object's size and sha256 before the blob exists.

A direct upload is an upload session (records.UploadSession) with ``direct`` set, stored,
expired and cleaned up like any other; its bytes are assembled at the session's
``data_key`` (under ``registries/<registry id>/blobs/uploads/<upload id>/``), where they
stay once committed, so committing copies nothing (service.py's layout).

Consistency rules this module keeps:
- The blob becomes visible only through ``MetadataStore.commit_blob``, after the sha256 and
  size of the assembled object matched what the client announced. A mismatch deletes the
  object (the key is the upload's own: nothing else names it) and fails the upload.
- ``uploading -> verifying`` is one conditional write on the session's version, taken
  with a claim (service.CLAIM_LEASE): of two completions, or a completion and a cancel,
  exactly one proceeds; the other answers BLOB_UPLOAD_INVALID or BLOB_UPLOAD_UNKNOWN.
- Verification holds the session with a claim before it reads the object, so a duplicate
  delivery of the background verification (asynchronous Lambda invocations are delivered
  at least once) finds it held, or no longer verifying, and does nothing.
- Scopes, quotas, read-only garbage collection and registry incarnations are enforced as
  on the standard path: authorization binds the repository to an incarnation, sessions
  belong to one repository of one incarnation, and ``commit_blob`` is conditional on the
  registry being that live, writable incarnation with room for the blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NoReturn, Protocol

from .digests import Digest
from .errors import (
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    DigestInvalidError,
    GarbageCollectionRunningError,
    RegistryError,
    SizeInvalidError,
)
from .names import RepositoryName
from .records import DirectUpload, RegistryRecord, UploadPart, UploadSession
from .service import CLAIM_LEASE, MIN_PART_SIZE, RegistryService, upload_data_prefix

MIB = 1024 * 1024
MAX_BLOB_SIZE = 5 * 1024 * 1024 * MIB  # S3's largest object: 5 TiB
MAX_PARTS = 10_000  # S3's limit for one multipart upload
MAX_PART_SIZE = 5 * 1024 * MIB  # S3's largest part
PARTS_PER_ANSWER = 100  # part URLs handed out per answer
MAX_MOUNT_SOURCES = 10
# Objects up to this size are verified within the completing request (reading 256 MiB
# from S3 takes a few seconds in Lambda, well inside API Gateway's 29 s); larger ones in
# the background, while the client polls the status.
INLINE_VERIFY_LIMIT = 256 * MIB
# A multi-GiB upload over a slow link takes hours: the session lives longer than a
# standard one (which every PATCH extends). What it holds is freed at expiry.
DIRECT_UPLOAD_TTL = timedelta(hours=24)
# Part URLs are short-lived; a client asks for more (the parts route) when they run out.
PART_URL_TTL = timedelta(minutes=15)

UPLOADING = "uploading"
VERIFYING = "verifying"
COMMITTED = "committed"
FAILED = "failed"


class VerificationQueue(Protocol):
    """Runs ``DirectUploads.verify(upload_id)`` later, elsewhere (an asynchronous Lambda
    invocation on AWS; a thread locally and in tests)."""

    def submit(self, upload_id: str) -> None: ...


@dataclass(frozen=True)
class PartUrl:
    number: int
    url: str


@dataclass(frozen=True)
class Started:
    """The answer to a start: ``status`` is ``exists``, ``mounted`` (from ``source``) or
    ``uploading`` (``session`` and the first ``parts`` URLs, valid until ``expires_at``)."""

    status: str
    digest: str
    source: RepositoryName | None = None
    session: UploadSession | None = None
    parts: tuple[PartUrl, ...] = ()
    expires_at: datetime | None = None


def choose_part_size(size: int, preferred: int) -> tuple[int, int]:
    """``(part_size, part_count)``: ``preferred`` (at least S3's 5 MiB minimum), grown in
    whole MiB when the blob would need more than S3's 10,000 parts. An empty blob is one
    empty part (S3 accepts a single-part upload whose only part is empty)."""
    part_size = max(preferred, MIN_PART_SIZE)
    if -(-size // part_size) > MAX_PARTS:
        part_size = -(-size // MAX_PARTS)
        part_size = -(-part_size // MIB) * MIB
    return part_size, max(1, -(-size // part_size))


def _etag(value: str) -> str:
    # S3 quotes ETags; clients may send them with or without the quotes.
    return value.strip().strip('"')


class DirectUploads:
    def __init__(
        self,
        service: RegistryService,
        queue: VerificationQueue | None = None,
        inline_limit: int = INLINE_VERIFY_LIMIT,
        ttl: timedelta = DIRECT_UPLOAD_TTL,
        part_url_ttl: timedelta = PART_URL_TTL,
    ) -> None:
        """Without ``queue``, every object is verified within the completing request."""
        self.service = service
        self.store = service.store
        self.blobs = service.blobs
        self.queue = queue
        self.inline_limit = inline_limit
        self.ttl = ttl
        self.part_url_ttl = part_url_ttl

    def _now(self) -> datetime:
        return self.service.now()

    # ------------------------------------------------------------------ start

    def start(
        self,
        repo: RepositoryName,
        digest: str,
        size: int,
        sources: Sequence[RepositoryName] = (),
        registry: RegistryRecord | None = None,
    ) -> Started:
        """Start a direct upload of the blob ``digest`` of ``size`` bytes into ``repo``,
        unless ``repo`` has it already or one of ``sources`` (repositories the caller may
        pull) can lend it. ``registry``: as for ``RegistryService.start_upload``."""
        expected = str(Digest.parse(digest))
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SizeInvalidError("size must be a non-negative integer", detail={"size": size})
        if size > MAX_BLOB_SIZE:
            raise SizeInvalidError(
                f"size exceeds the largest blob S3 stores ({MAX_BLOB_SIZE} bytes)",
                detail={"size": size, "limit": MAX_BLOB_SIZE},
            )
        if self.store.get_blob_link(repo, expected) is not None:
            return Started("exists", expected)
        for source in sources[:MAX_MOUNT_SOURCES]:
            # The standard mount's rules: a source of the same registry incarnation.
            record = self.service.mount_blob(repo, expected, source)
            if record is not None:
                return Started("mounted", expected, source=source)
        self.service.refuse_when_full(repo, registry, expected)
        part_size, part_count = choose_part_size(size, self.service.settings.part_size)
        now = self._now()
        upload_id = str(uuid.uuid4())
        data_key = upload_data_prefix(repo.rid, upload_id) + "data"
        multipart_id = self.blobs.create_multipart(data_key)
        session = UploadSession(
            upload_id=upload_id,
            registry=repo.registry,
            registry_id=repo.rid,
            repository=repo.repository,
            data_key=data_key,
            multipart_id=multipart_id,
            created_at=now,
            expires_at=now + self.ttl,
            direct=DirectUpload(expected, size, part_size, part_count),
        )
        try:
            # Conditional on the registry incarnation being live and writable (not in a
            # read-only collection): a refused start leaves no multipart upload behind.
            self.store.put_upload(session)
        except BaseException:
            with contextlib.suppress(Exception):
                self.blobs.abort_multipart(data_key, multipart_id)
            raise
        numbers = range(1, min(part_count, PARTS_PER_ANSWER) + 1)
        parts, expires_at = self._part_urls(session, numbers)
        return Started("uploading", expected, session=session, parts=parts, expires_at=expires_at)

    def _part_urls(
        self, session: UploadSession, numbers: Sequence[int]
    ) -> tuple[tuple[PartUrl, ...], datetime]:
        assert session.multipart_id is not None
        seconds = int(self.part_url_ttl.total_seconds())
        expires_at = self._now() + self.part_url_ttl
        urls = tuple(
            PartUrl(
                n,
                self.blobs.presign_upload_part(session.data_key, session.multipart_id, n, seconds),
            )
            for n in numbers
        )
        return urls, expires_at

    # ------------------------------------------------------------------ while uploading

    def get(self, repo: RepositoryName, upload_id: str) -> UploadSession:
        """The direct upload ``upload_id`` of ``repo``: BLOB_UPLOAD_UNKNOWN if there is none
        (unknown, expired, a standard upload, of another repository or incarnation)."""
        return self.service.get_upload(repo, upload_id, direct=True)

    def uploaded(self, session: UploadSession) -> list[UploadPart]:
        """The parts S3 holds while the upload is open (what a resuming client skips)."""
        assert session.direct is not None
        if session.direct.status != UPLOADING or session.multipart_id is None:
            return []
        try:
            return self.blobs.list_parts(session.data_key, session.multipart_id)
        except KeyError:  # aborted under us (expired and cleaned up)
            return []

    def part_urls(
        self, repo: RepositoryName, upload_id: str, numbers: Sequence[int]
    ) -> tuple[tuple[PartUrl, ...], datetime]:
        session = self.get(repo, upload_id)
        direct = _direct(session)
        if direct.status != UPLOADING:
            raise BlobUploadInvalidError(
                f"the upload is {direct.status}; it takes no more parts",
                detail={"upload": upload_id, "status": direct.status},
            )
        if len(numbers) > PARTS_PER_ANSWER:
            raise BlobUploadInvalidError(
                f"at most {PARTS_PER_ANSWER} part numbers per request",
                detail={"limit": PARTS_PER_ANSWER},
            )
        wrong = [n for n in numbers if not 1 <= n <= direct.part_count]
        if wrong:
            raise BlobUploadInvalidError(
                f"part numbers run from 1 to {direct.part_count}",
                detail={"numbers": wrong[:10], "part_count": direct.part_count},
            )
        return self._part_urls(session, list(dict.fromkeys(numbers)))

    def cancel(self, repo: RepositoryName, upload_id: str) -> None:
        """Abort an open upload; forget a finished one. One being verified cannot be
        cancelled (its object is assembled and being read)."""
        session = self.get(repo, upload_id)
        direct = _direct(session)
        if direct.status == VERIFYING:
            raise BlobUploadInvalidError(
                "the upload is being verified and cannot be cancelled",
                detail={"upload": upload_id, "status": direct.status},
            )
        # Conditional on the state read: a cancel that loses to a completion changes nothing.
        if not self.store.delete_upload(upload_id, version=session.version, now=self._now()):
            raise BlobUploadUnknownError(
                "the upload was completed or changed by a concurrent request",
                detail={"upload": upload_id},
            )
        if direct.status == UPLOADING and session.multipart_id is not None:
            self.blobs.abort_multipart(session.data_key, session.multipart_id)

    # ------------------------------------------------------------------ complete

    def complete(
        self,
        repo: RepositoryName,
        upload_id: str,
        parts: Sequence[tuple[int, str]] | None = None,
        registry: RegistryRecord | None = None,
    ) -> DirectUpload:
        """Complete the multipart upload and verify it: within the request (the result is
        ``committed``, or DIGEST_INVALID / SIZE_INVALID raised) or, for a large object with
        a queue, in the background (the result is ``verifying``). ``parts``: what the
        client says it uploaded (checked against what S3 holds); None to take S3's list.
        ``registry``: the registry's record as the caller has it (maybe cached), to refuse
        during a read-only collection before any work is done."""
        session = self.get(repo, upload_id)
        direct = _direct(session)
        if direct.status == VERIFYING and not session.held_by_other(self._now(), None):
            # A retried completion of one whose verification is queued, or stopped half-way
            # (its process died and the lease ran out): verify again. Duplicates are
            # harmless: each verification first claims the session.
            return self._verify_or_queue(repo, session, None)
        if direct.status in (COMMITTED, VERIFYING):
            return direct  # a retried completion: the first one's outcome stands
        if direct.status == FAILED:
            raise BlobUploadInvalidError(
                f"the upload failed ({direct.error_code}: {direct.error_message}); start a new one",
                detail={"upload": upload_id, "code": direct.error_code},
            )
        if (
            registry is not None
            and registry.read_only
            and registry.registry_id == repo.rid
            and registry.name == repo.registry
        ):
            raise GarbageCollectionRunningError(registry.name, registry.gc_active)
        assert session.multipart_id is not None
        held = self._held_parts(session)
        self._check_parts(session, held, parts)
        total = sum(p.size for p in held)
        if total != direct.size:
            # The client sent other bytes than it announced: nothing will match. End here.
            self._fail_open(
                session,
                SizeInvalidError(
                    f"the parts hold {total} bytes, not the {direct.size} announced",
                    detail={"size": direct.size, "received": total},
                ),
            )
        holder = uuid.uuid4().hex
        now = self._now()
        verifying = replace(
            session,
            parts=[],
            direct=replace(direct, status=VERIFYING),
            claim_id=holder,
            claimed_until=now + CLAIM_LEASE,
            expires_at=now + self.ttl,
        )
        # Raises BLOB_UPLOAD_INVALID if a concurrent request changed or holds the session.
        self.store.update_upload(verifying, now=now)
        try:
            self.blobs.complete_multipart(
                session.data_key, session.multipart_id, [(p.number, p.etag) for p in held]
            )
        except KeyError:
            with contextlib.suppress(Exception):
                self.store.delete_upload(upload_id)
            raise BlobUploadUnknownError(
                "the upload expired or was cancelled", detail={"upload": upload_id}
            ) from None
        except ValueError as exc:
            # S3 refused the parts (one replaced meanwhile, or too small but the last):
            # the upload stays open, so the client can send them again.
            reopened = replace(
                verifying,
                direct=direct,
                claim_id=None,
                claimed_until=None,
            )
            with contextlib.suppress(Exception):
                self.store.update_upload(reopened, holder=holder, now=self._now())
            raise BlobUploadInvalidError(
                f"S3 refused to complete the upload: {exc}", detail={"upload": upload_id}
            ) from exc
        return self._verify_or_queue(repo, verifying, holder)

    def _verify_or_queue(
        self, repo: RepositoryName, session: UploadSession, holder: str | None
    ) -> DirectUpload:
        """Verify ``session`` (completed, verifying) now if it is small or nothing runs
        verifications in the background; otherwise queue it and answer ``verifying``.
        ``holder``: this request's claim on the session, if it holds one."""
        direct = _direct(session)
        if self.queue is None or direct.size <= self.inline_limit:
            if holder is None:
                holder = uuid.uuid4().hex
                now = self._now()
                session = replace(session, claim_id=holder, claimed_until=now + CLAIM_LEASE)
                self.store.update_upload(session, now=now)
            return self._verify_and_commit(repo, session, holder)
        if holder is not None:
            # The verification's own claim is taken by whoever runs it: give this one back.
            session = replace(session, claim_id=None, claimed_until=None)
            self.store.update_upload(session, holder=holder, now=self._now())
        # Should the queue fail, the upload stays "verifying" without a claim: a retried
        # completion queues it again.
        self.queue.submit(session.upload_id)
        return direct

    def _held_parts(self, session: UploadSession) -> list[UploadPart]:
        assert session.multipart_id is not None
        try:
            return self.blobs.list_parts(session.data_key, session.multipart_id)
        except KeyError:
            raise BlobUploadUnknownError(
                "the upload expired or was cancelled", detail={"upload": session.upload_id}
            ) from None

    @staticmethod
    def _check_parts(
        session: UploadSession,
        held: list[UploadPart],
        claimed: Sequence[tuple[int, str]] | None,
    ) -> None:
        direct = _direct(session)
        numbers = {p.number for p in held}
        missing = [n for n in range(1, direct.part_count + 1) if n not in numbers]
        extra = sorted(n for n in numbers if n > direct.part_count)
        if missing or extra:
            raise BlobUploadInvalidError(
                f"parts missing or beyond the {direct.part_count} the upload has",
                detail={"missing": missing[:20], "unexpected": extra[:20]},
            )
        if claimed is None:
            return
        etags = {p.number: _etag(p.etag) for p in held}
        named = {n: _etag(e) for n, e in claimed}
        if set(named) != numbers or any(etags[n] != e for n, e in named.items()):
            wrong = sorted(n for n in numbers if named.get(n) != etags[n])
            raise BlobUploadInvalidError(
                "the parts listed are not the parts S3 holds (send the ETags S3 returned)",
                detail={"parts": wrong[:20]},
            )

    # ------------------------------------------------------------------ verify

    def verify(self, upload_id: str) -> DirectUpload | None:
        """The background verification of a completed upload (a Lambda invocation, or a
        thread locally): the outcome, or None if there was nothing to do (unknown, not
        verifying, or held by another verification)."""
        session = self.store.get_upload(upload_id)
        if session is None or session.direct is None or session.direct.status != VERIFYING:
            return None
        repo = RepositoryName(session.registry, session.repository, session.registry_id)
        holder = uuid.uuid4().hex
        now = self._now()
        claimed = replace(session, claim_id=holder, claimed_until=now + CLAIM_LEASE)
        try:
            self.store.update_upload(claimed, now=now)
        except BlobUploadInvalidError:
            return None  # another delivery of this verification holds it
        try:
            return self._verify_and_commit(repo, claimed, holder)
        except RegistryError:
            return _direct(self.store.get_upload(upload_id) or claimed)

    def _verify_and_commit(
        self, repo: RepositoryName, session: UploadSession, holder: str
    ) -> DirectUpload:
        direct = _direct(session)
        hasher = hashlib.sha256()
        size = 0
        try:
            for chunk in self.blobs.iter_object(session.data_key):
                hasher.update(chunk)
                size += len(chunk)
        except KeyError:
            self._fail(repo, session, holder, BlobUploadInvalidError("the object is gone"))
        if size != direct.size:
            self._fail(
                repo,
                session,
                holder,
                SizeInvalidError(
                    f"the object holds {size} bytes, not the {direct.size} announced",
                    detail={"size": direct.size, "received": size},
                ),
            )
        if "sha256:" + hasher.hexdigest() != direct.digest:
            self._fail(
                repo,
                session,
                holder,
                DigestInvalidError(
                    f"content hashes to sha256:{hasher.hexdigest()}",
                    detail={"digest": direct.digest},
                ),
            )
        try:
            # Not ending the session in the commit (no upload_id): the session stays, as
            # "committed", for the client polling it; the claim already excludes every
            # other writer. Refusals (quota, read-only collection, a deleted or re-created
            # registry) change nothing and fail the upload.
            created = self.store.commit_blob(
                repo, direct.digest, size, self._now(), key=session.data_key
            )
        except RegistryError as error:
            self._fail(repo, session, holder, error)
        if not created:
            # The registry held these bytes already and links name that copy; ours is
            # named by nothing (unless a retry of this very commit made it the copy).
            existing = self.store.get_registry_blob(repo.rid, direct.digest)
            if existing is None or existing.key != session.data_key:
                self.blobs.delete_object(session.data_key)
        return self._finish(session, holder, replace(direct, status=COMMITTED))

    def _finish(
        self, session: UploadSession, holder: str | None, outcome: DirectUpload
    ) -> DirectUpload:
        """Save the final state, kept for the client to read until it expires like a
        standard session (nothing is left for the cleanup to abort or delete)."""
        now = self._now()
        final = replace(
            session,
            direct=outcome,
            multipart_id=None,
            parts=[],
            claim_id=None,
            claimed_until=None,
            expires_at=now + self.service.settings.upload_ttl,
        )
        # Lost only if the lease ran out and another verification took over: its outcome
        # is the same, since it reads the same object.
        with contextlib.suppress(BlobUploadInvalidError):
            self.store.update_upload(final, holder=holder, now=now)
        return outcome

    def _fail(
        self,
        repo: RepositoryName,
        session: UploadSession,
        holder: str | None,
        error: RegistryError,
    ) -> NoReturn:
        """Delete the assembled object, record the failure and raise it."""
        with contextlib.suppress(Exception):
            self.blobs.delete_object(session.data_key)
        outcome = replace(
            _direct(session), status=FAILED, error_code=error.code, error_message=error.message
        )
        with contextlib.suppress(Exception):
            self._finish(session, holder, outcome)
        raise error

    def _fail_open(self, session: UploadSession, error: RegistryError) -> NoReturn:
        """Fail an upload still open (before completion): abort its multipart upload."""
        assert session.multipart_id is not None
        outcome = replace(
            _direct(session), status=FAILED, error_code=error.code, error_message=error.message
        )
        now = self._now()
        failed = replace(
            session,
            direct=outcome,
            multipart_id=None,
            expires_at=now + self.service.settings.upload_ttl,
        )
        # Conditional on the state read, like a cancel: losing to a concurrent completion
        # leaves the upload to it.
        self.store.update_upload(failed, now=now)
        self.blobs.abort_multipart(session.data_key, session.multipart_id)
        raise error


def _direct(session: UploadSession) -> DirectUpload:
    assert session.direct is not None
    return session.direct
