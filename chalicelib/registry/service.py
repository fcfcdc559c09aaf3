"""The registry's behaviour, in the distribution spec's terms, over two ports.

Consistency rules this module keeps:
- Bytes are verified before anything refers to them: a blob becomes visible only through
  ``MetadataStore.commit_blob``, which runs after the sha256 of the stored bytes matched.
- Committing a blob copies nothing: its bytes stay at the key their upload wrote (unique to
  that upload, under ``registries/<registry id>/blobs/uploads/<upload id>/``) and the blob
  record and every link name that key, so the final ``PUT ?digest=`` costs the same for
  1 KiB and 10 GiB and presigned GETs still need only the link. An upload deletes only keys it wrote
  itself: a refused upload leaves nothing, and an upload of a blob the registry already
  held deletes its own copy once the commit found the existing one. Committed bytes are
  deleted only by garbage collection.
- Upload sessions advance with a version check, so two concurrent requests cannot both
  move the same session forward, and the one that loses leaves the winner's state intact:
  * bytes a request writes outside the session's multipart upload go to keys of its own;
  * a request that would add parts to an existing multipart upload (or complete it) first
    claims the session: a conditional write that marks it held by that request for a
    lease, during which no other request may save, claim or cancel it. It writes no part
    before it holds the claim, so no other request's part can replace one it names, and it
    releases the claim when it saves (or gives up);
  * a completion ends the session in the commit transaction, conditional on the version
    it read or claimed, and a cancel deletes the session conditionally before it frees
    anything: of a completion and a cancel, or of two completions, exactly one succeeds,
    and the other answers BLOB_UPLOAD_UNKNOWN or BLOB_UPLOAD_INVALID having committed
    nothing and removed what it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import BinaryIO

from . import quotas
from .auth import utcnow
from .digests import Digest, is_digest
from .errors import (
    BlobUnknownError,
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    DigestInvalidError,
    ManifestBlobUnknownError,
    ManifestInvalidError,
    ManifestUnknownError,
    NameUnknownError,
    QuotaExceededError,
    RangeInvalidError,
    RegistryError,
    SettingsChangedError,
    SizeInvalidError,
    TagImmutableError,
)
from .manifests import Descriptor, ParsedManifest, parse_manifest
from .names import RepositoryName, is_decimal, validate_tag
from .plans import tier
from .policies import immutable_message
from .ports import BlobStore, MetadataStore
from .records import (
    BlobRecord,
    ManifestRecord,
    RegistryRecord,
    TagRecord,
    UploadPart,
    UploadSession,
)
from .rules import RegistrySettings

READ_SIZE = 1024 * 1024
# Keys, attribute names, numbers, dates and the repository's name in a manifest item.
ITEM_OVERHEAD = 4096
MAX_MEDIA_TYPE = 255
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
# How long a claimed upload session stays held if its holder never releases it (it
# crashed): longer than any request may run, short enough for a retry to proceed.
CLAIM_LEASE = timedelta(minutes=15)


@dataclass(frozen=True)
class ServiceSettings:
    part_size: int = 8 * 1024 * 1024
    upload_ttl: timedelta = timedelta(hours=1)
    presign_ttl: timedelta = timedelta(minutes=5)
    # DynamoDB items are limited to 400 KB; bigger manifests go to the blob store.
    manifest_inline_limit: int = 300 * 1024
    default_page_size: int = 1000

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}")


# The S3 layout. Everything of a registry lives under its immutable id, never its name
# (a name can be deleted and taken again; see names.RepositoryName):
#   registries/<registry id>/blobs/uploads/<upload id>/...   blob bytes, where uploads wrote
#                                                            them (committed blobs stay here)
#   registries/<registry id>/blobs/<algorithm>/<hex>         content-addressed blobs (older)
#   registries/<registry id>/manifests/<algorithm>/<hex>     manifests too large for DynamoDB
#   uploads/<registry id>/<upload id>/tail-...               scratch, expired by a lifecycle rule


def blob_key(registry_id: str, digest: Digest) -> str:
    """Where blobs committed before uploads kept their bytes in place lived; a record
    without a ``key`` still means this address."""
    return f"registries/{registry_id}/blobs/{digest.algorithm}/{digest.hex}"


def upload_data_prefix(registry_id: str, upload_id: str) -> str:
    # Bytes that become the blob are written here and stay here once committed: under
    # registries/ (never the expiring scratch prefix), and unique to the upload, so that
    # nothing another upload or request wrote can be overwritten or deleted by this one.
    return f"registries/{registry_id}/blobs/uploads/{upload_id}/"


def stored_key(registry_id: str, record: BlobRecord) -> str:
    """The S3 key of a blob's bytes."""
    return record.key or blob_key(registry_id, Digest.parse(record.digest))


def manifest_key(registry_id: str, digest: Digest, revision: str | None = None) -> str:
    """Where a manifest too large for its item keeps its body: a key of that push's own
    (its revision), so a push of the same manifest never rewrites an object another push
    wrote, and one that no manifest item's revision names is garbage (registry.gc).
    Without a revision: where bodies lived before they had revisions."""
    base = f"registries/{registry_id}/manifests/{digest.algorithm}/{digest.hex}"
    return f"{base}/{revision}" if revision is not None else base


def upload_prefix(registry_id: str, upload_id: str) -> str:
    # Scratch lives outside registries/ under one top-level prefix, so that an S3 lifecycle
    # rule (prefix filters only) can expire whatever an interrupted upload leaves behind.
    return f"uploads/{registry_id}/{upload_id}/"


def _is_scratch(key: str | None) -> bool:
    return key is not None and key.startswith("uploads/")


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool


class RegistryService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        settings: ServiceSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.settings = settings or ServiceSettings()
        self._clock = clock

    # ------------------------------------------------------------------ blobs (pull)

    def stat_blob(self, repo: RepositoryName, digest: str) -> BlobRecord:
        parsed = Digest.parse(digest)
        record = self.store.get_blob_link(repo, str(parsed))
        if record is None:
            raise BlobUnknownError(detail={"digest": digest})
        return record

    def blob_download_url(self, repo: RepositoryName, digest: str) -> tuple[BlobRecord, str]:
        record = self.stat_blob(repo, digest)
        url = self.blobs.presign_get(
            stored_key(repo.rid, record), int(self.settings.presign_ttl.total_seconds())
        )
        return record, url

    def delete_blob(self, repo: RepositoryName, digest: str) -> None:
        parsed = Digest.parse(digest)
        if not self.store.unlink_blob(repo, str(parsed)):
            raise BlobUnknownError(detail={"digest": digest})

    # ------------------------------------------------------------------ blobs (push)

    def _new_session(self, repo: RepositoryName) -> UploadSession:
        now = self._clock()
        upload_id = str(uuid.uuid4())
        return UploadSession(
            upload_id=upload_id,
            registry=repo.registry,
            registry_id=repo.rid,
            repository=repo.repository,
            data_key=upload_data_prefix(repo.rid, upload_id) + "data",
            created_at=now,
            expires_at=now + self.settings.upload_ttl,
        )

    def start_upload(
        self, repo: RepositoryName, registry: RegistryRecord | None = None
    ) -> UploadSession:
        """POST: a new session. ``registry`` is the registry's record as the caller has it
        (maybe cached): one already full under its plan's hard limits refuses here, before
        the client sends any bytes (the commit is what enforces the limits exactly)."""
        self._refuse_when_full(repo, registry)
        session = self._new_session(repo)
        self.store.put_upload(session)
        return session

    def now(self) -> datetime:
        """The service's clock (a fixed one in tests)."""
        return self._clock()

    def refuse_when_full(
        self, repo: RepositoryName, registry: RegistryRecord | None, digest: str | None = None
    ) -> None:
        """The early quota refusal of a start (see ``_refuse_when_full``); the direct
        uploads' start uses it too."""
        self._refuse_when_full(repo, registry, digest)

    def _refuse_when_full(
        self, repo: RepositoryName, registry: RegistryRecord | None, digest: str | None = None
    ) -> None:
        """QuotaExceededError if ``registry`` (a possibly cached record) shows storage at or
        over a hard limit, or the repository limit reached while ``repo`` does not exist
        yet; reads only in those cases (a blob the registry holds already takes no room)."""
        if registry is None or registry.registry_id != repo.rid:
            return
        if not self._full(registry, repo, digest):
            return
        # A cached record may be from before an upgrade, a collection or a deleted
        # repository: refuse only on what the record says now.
        current = self.store.get_registry(repo.registry)
        if current is None or current.registry_id != repo.rid:
            return
        refusal = self._full(current, repo, digest)
        if refusal is not None:
            raise refusal

    def _full(
        self, registry: RegistryRecord, repo: RepositoryName, digest: str | None
    ) -> QuotaExceededError | None:
        limit = tier(registry.plan).storage_limit
        if (
            limit is not None
            and registry.storage_bytes >= limit
            and (digest is None or self.store.get_registry_blob(repo.rid, digest) is None)
        ):
            return quotas.storage_refusal(registry, None)
        if quotas.repositories_exceeded(registry) and not self.store.repository_exists(repo):
            return quotas.repository_refusal(registry)
        return None

    def get_upload(
        self, repo: RepositoryName, upload_id: str, direct: bool = False
    ) -> UploadSession:
        """The live session ``upload_id`` of ``repo`` (this incarnation of its registry);
        ``direct`` picks the kind: a direct upload (registry.direct_uploads) is unknown to
        the standard routes and a standard one to the direct routes."""
        session = self.store.get_upload(upload_id)
        if (
            session is None
            or not session.belongs_to(repo)
            or (session.direct is not None) != direct
            or (session.expires_at is not None and session.expires_at <= self._clock())
        ):
            raise BlobUploadUnknownError(detail={"upload": upload_id})
        return session

    def append_upload(
        self,
        session: UploadSession,
        body: BinaryIO,
        content_length: int | None,
        content_range: tuple[int, int] | None,
    ) -> UploadSession:
        """PATCH: add bytes at the session's current offset."""
        if content_range is not None:
            start, end = content_range
            if start != session.offset:
                raise RangeInvalidError(
                    f"chunk starts at {start} but the upload has {session.offset} bytes",
                    headers=range_header(session.offset),
                )
            if content_length is not None and end - start + 1 != content_length:
                raise RangeInvalidError("Content-Range does not match Content-Length")
        advanced = self._receive(session, body, content_length)
        holder = _holder(session, advanced)
        if content_range is not None:
            start, end = content_range
            if advanced.offset - session.offset != end - start + 1:
                # Without Content-Length (a chunked body) only the bytes themselves can be
                # compared with the range the client announced.
                self._undo_receive(session, advanced)
                self._release(session, advanced, holder)
                raise RangeInvalidError(
                    f"Content-Range announced {end - start + 1} bytes but "
                    f"{advanced.offset - session.offset} arrived",
                    headers=range_header(session.offset),
                )
        advanced.expires_at = self._clock() + self.settings.upload_ttl
        if holder is not None:  # saving the advanced state releases the claim
            advanced.claim_id, advanced.claimed_until = None, None
        try:
            self.store.update_upload(advanced, holder=holder, now=self._clock())
        except Exception:
            # Lost to a concurrent writer (or the save failed): undo only what this request
            # created; the saved session still points at the previous state.
            self._undo_receive(session, advanced)
            self._release(session, advanced, holder)
            raise
        self._delete_owned(session, session.tail_key, keep=advanced.tail_key)
        return advanced

    def complete_upload(
        self,
        repo: RepositoryName,
        session: UploadSession,
        digest: str,
        body: BinaryIO | None,
        content_length: int | None,
        persisted: bool = True,
    ) -> BlobRecord:
        """PUT ?digest=: take an optional last chunk, verify, and commit the blob."""
        expected = Digest.parse(digest)
        saved = session
        if body is not None and content_length != 0:
            session = self._receive(session, body, content_length, claim=persisted)
        if persisted and session.multipart_id is not None and session.version == saved.version:
            # Completing touches the multipart upload (the tail becomes its last part):
            # hold the session first, so that a concurrent completion or append cannot.
            try:
                session = self._claim(session)
            except RegistryError:
                self._undo_receive(saved, session)
                raise
        try:
            key = self._store_verified(repo, session, expected)
        except DigestInvalidError:
            self._discard(session, persisted)
            self._delete_owned(saved, saved.tail_key, keep=session.tail_key)
            raise
        except Exception:
            if persisted:  # give back a claim this request took (a no-op without one)
                self._release(saved, session, _holder(saved, session))
            raise
        # The commit also ends a saved session, if nobody changed it since this request
        # read or claimed it: blob visible and session gone, together, or neither.
        try:
            created = self.store.commit_blob(
                repo,
                str(expected),
                session.offset,
                self._clock(),
                upload_id=session.upload_id if persisted else None,
                upload_version=session.version,
                key=key,
            )
        except (NameUnknownError, BlobUploadUnknownError):
            # The registry went away, or a concurrent request completed or cancelled the
            # session: nothing names these bytes. Only such a definite refusal frees them;
            # after an error that leaves the outcome unknown, the bytes stay for garbage
            # collection to judge.
            self._delete_owned(session, key)
            self._delete_owned(session, session.tail_key, keep=key)
            raise
        except QuotaExceededError:
            # Refused whole by the plan's limit (the transaction changed nothing, the
            # session included): the client cannot complete this upload any more, so it
            # ends here with every object it wrote.
            self._abandon_refused(saved, session, key, persisted)
            raise
        if not created:
            # The registry already held these bytes and the link names that copy: ours is
            # unreferenced (the key is this upload's own, so nothing else can name it).
            self.blobs.delete_object(key)
        self._delete_owned(session, session.tail_key, keep=key)
        if saved.tail_key != session.tail_key:  # the final chunk replaced the saved tail
            self._delete_owned(saved, saved.tail_key, keep=key)
        return BlobRecord(str(expected), session.offset, key=key if created else None)

    def upload_blob(
        self,
        repo: RepositoryName,
        digest: str,
        body: BinaryIO,
        content_length: int | None,
        registry: RegistryRecord | None = None,
    ) -> BlobRecord:
        """Monolithic ``POST ?digest=``: the same path as a session that is never saved
        (``registry``: as for ``start_upload``)."""
        parsed = Digest.parse(digest)
        self._refuse_when_full(repo, registry, str(parsed))
        session = self._new_session(repo)
        return self.complete_upload(repo, session, digest, body, content_length, persisted=False)

    def _abandon_refused(
        self, saved: UploadSession, session: UploadSession, key: str, persisted: bool
    ) -> None:
        """After a quota refusal: end the session and delete the verified bytes and tails.
        Best effort, so that the client sees the refusal: an object left by a failed delete
        is named by no record and its session is gone, so garbage collection's orphan
        sweep removes it (scratch tails expire under their lifecycle rule)."""
        with contextlib.suppress(Exception):
            if persisted:
                if _holder(saved, session) is not None:
                    # Held by this request (a claim): nobody else can have changed it.
                    self.store.delete_upload(session.upload_id)
                else:  # only the state this request read; a concurrent append keeps it
                    self.store.delete_upload(
                        session.upload_id, version=session.version, now=self._clock()
                    )
        for owner, owned in ((session, key), (session, session.tail_key), (saved, saved.tail_key)):
            with contextlib.suppress(Exception):
                self._delete_owned(owner, owned)

    def cancel_upload(self, session: UploadSession) -> None:
        """DELETE: end the session if nobody changed it since it was read, then free what
        it holds. A cancel that loses to a completion or an append changes nothing."""
        if not self.store.delete_upload(
            session.upload_id, version=session.version, now=self._clock()
        ):
            raise BlobUploadUnknownError(
                "the upload was completed or changed by a concurrent request",
                detail={"upload": session.upload_id},
            )
        self._discard(session, persisted=False)

    def _claim(self, session: UploadSession) -> UploadSession:
        """Hold the session for this request before touching its multipart upload; raises
        BlobUploadInvalidError if another request holds or changed it."""
        claimed = replace(
            session,
            parts=list(session.parts),
            claim_id=uuid.uuid4().hex,
            claimed_until=self._clock() + CLAIM_LEASE,
        )
        self.store.update_upload(claimed, now=self._clock())
        return claimed

    def _release(self, saved: UploadSession, claimed: UploadSession, holder: str | None) -> None:
        """Give up a claim without advancing: the session as it was, free again (parts this
        request uploaded are named by nothing, and the next request's replace them)."""
        if holder is None:
            return
        state = replace(
            saved,
            parts=list(saved.parts),
            version=claimed.version,
            claim_id=None,
            claimed_until=None,
        )
        # Best effort, after a failure that is what the request reports: it is lost only if
        # the lease ran out and another request took the session (then it is that
        # request's to save), or if the store failed again (then the lease frees it).
        with contextlib.suppress(Exception):
            self.store.update_upload(state, holder=holder, now=self._clock())

    def mount_blob(
        self, repo: RepositoryName, digest: str, source: RepositoryName | None
    ) -> BlobRecord | None:
        """Link an existing blob of the same registry into ``repo``; None if not possible.

        Blobs are stored per registry, so only a source in the same registry can be mounted.
        Without ``source`` the blob must already belong to the registry: the caller holds a
        token for this registry, so it could pull the blob from wherever it is linked.
        """
        parsed = str(Digest.parse(digest))
        if source is not None:
            if source.rid != repo.rid:
                return None
            record = self.store.get_blob_link(source, parsed)
        else:
            record = self.store.get_registry_blob(repo.rid, parsed)
        if record is None:
            return None
        self.store.commit_blob(
            repo, parsed, record.size, self._clock(), key=record.key, exists=True
        )
        return record

    def _receive(
        self,
        session: UploadSession,
        body: BinaryIO,
        content_length: int | None,
        claim: bool = True,
    ) -> UploadSession:
        """Stream ``body`` into S3 parts with memory bounded by one part.

        Returns the advanced session without saving it. Nothing it writes is visible: parts
        belong to an incomplete multipart upload, the remainder goes to a scratch tail under
        the session's prefix with a key unique to this request (so neither a failed request
        nor a concurrent one can change what the saved session points at), and a small
        single-request blob is written, under a key of this request's own, where it stays
        if its digest is confirmed.
        """
        part_size = self.settings.part_size
        buffer = bytearray()
        if session.tail_size and session.tail_key:
            try:
                buffer += self.blobs.get_object(session.tail_key)
            except KeyError:
                # A concurrent request advanced the session and freed the tail this request
                # read about: it lost the race, as its version check would tell it later.
                raise BlobUploadInvalidError(
                    "the upload was changed by a concurrent request"
                ) from None
            if len(buffer) != session.tail_size:
                raise BlobUploadInvalidError("upload state is inconsistent; restart the upload")
        hasher = hashlib.sha256() if session.offset == 0 else None
        parts = list(session.parts)
        multipart_id = session.multipart_id
        version, claim_id, claimed_until = session.version, session.claim_id, session.claimed_until
        received = 0
        try:
            while True:
                chunk = body.read(READ_SIZE)
                if not chunk:
                    break
                received += len(chunk)
                if content_length is not None and received > content_length:
                    raise SizeInvalidError("body is longer than Content-Length")
                if hasher is not None:
                    hasher.update(chunk)
                buffer += chunk
                while len(buffer) >= part_size:
                    if multipart_id is None:
                        multipart_id = self.blobs.create_multipart(session.data_key)
                    elif claim and version == session.version:
                        # Parts of an existing multipart upload are shared with any other
                        # request on the session: write none before holding the session.
                        claimed = self._claim(session)
                        version, claim_id, claimed_until = (
                            claimed.version,
                            claimed.claim_id,
                            claimed.claimed_until,
                        )
                    number = len(parts) + 1
                    etag = self._upload_part(
                        session.data_key, multipart_id, number, bytes(buffer[:part_size])
                    )
                    parts.append(UploadPart(number, etag, part_size))
                    del buffer[:part_size]
            if content_length is not None and received != content_length:
                raise BlobUploadInvalidError(
                    f"received {received} bytes but Content-Length was {content_length}"
                )
        except BaseException:
            # A multipart upload this request started is recorded nowhere: free it now.
            if session.multipart_id is None and multipart_id is not None:
                self.blobs.abort_multipart(session.data_key, multipart_id)
            # A claim this request took is given back, so that the client's retry of the
            # chunk need not wait for the lease to run out.
            if version != session.version:
                self._release(session, replace(session, version=version), claim_id)
            raise
        offset = session.offset + received
        sha256 = hasher.hexdigest() if hasher is not None else None
        tail_key: str | None = None
        if buffer:
            if multipart_id is None and sha256 is not None:
                # The whole blob arrived in this request and is smaller than a part: store it
                # where it will stay if its digest is confirmed (a key of this request's
                # own, so a concurrent request on the session cannot overwrite it).
                prefix = upload_data_prefix(session.registry_id, session.upload_id)
                tail_key = f"{prefix}{uuid.uuid4().hex}"
            else:
                prefix = upload_prefix(session.registry_id, session.upload_id)
                tail_key = f"{prefix}tail-{offset}-{uuid.uuid4().hex}"
            self.blobs.put_object(tail_key, bytes(buffer))
        return replace(
            session,
            multipart_id=multipart_id,
            parts=parts,
            offset=offset,
            tail_key=tail_key,
            tail_size=len(buffer),
            sha256=sha256,
            version=version,
            claim_id=claim_id,
            claimed_until=claimed_until,
        )

    def _store_verified(
        self, repo: RepositoryName, session: UploadSession, expected: Digest
    ) -> str:
        """Check that the session's bytes hash to ``expected`` and return the key that holds
        them; no copy is made, so the cost does not grow with the blob's size (except that
        an upload spread over several requests is re-read once to hash it)."""
        actual: str | None
        if session.multipart_id is None:
            if session.sha256 is not None and self._is_data_key(session, session.tail_key):
                # Streamed in one request and already stored where it stays: comparing
                # digests is all that is left.
                if session.sha256 != expected.hex:
                    raise DigestInvalidError(
                        f"content hashes to sha256:{session.sha256}",
                        detail={"digest": str(expected)},
                    )
                assert session.tail_key is not None
                return session.tail_key
            data = self.blobs.get_object(session.tail_key) if session.tail_key else b""
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected.hex:
                raise DigestInvalidError(
                    f"content hashes to sha256:{actual}", detail={"digest": str(expected)}
                )
            # A key of this request's own: a concurrent completion writes elsewhere.
            key = upload_data_prefix(session.registry_id, session.upload_id) + uuid.uuid4().hex
            self.blobs.put_object(key, data)
            return key
        parts = [(p.number, p.etag) for p in session.parts]
        if session.tail_size and session.tail_key:
            number = len(parts) + 1
            etag = self._upload_part(
                session.data_key,
                session.multipart_id,
                number,
                self.blobs.get_object(session.tail_key),
            )
            parts.append((number, etag))
        try:
            self.blobs.complete_multipart(session.data_key, session.multipart_id, parts)
        except KeyError:
            raise BlobUploadUnknownError(
                "the upload was completed or cancelled by a concurrent request"
            ) from None
        except ValueError as exc:
            # Parts that do not match what the session recorded: the session is damaged
            # (it can only happen if S3 lost a part); the client must start again.
            raise BlobUploadInvalidError(f"the upload's parts are inconsistent: {exc}") from exc
        actual = session.sha256
        if actual is None:
            hasher = hashlib.sha256()
            for chunk in self.blobs.iter_object(session.data_key):
                hasher.update(chunk)
            actual = hasher.hexdigest()
        if actual != expected.hex:
            self.blobs.delete_object(session.data_key)
            raise DigestInvalidError(
                f"content hashes to sha256:{actual}", detail={"digest": str(expected)}
            )
        return session.data_key

    def _upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        try:
            return self.blobs.upload_part(key, multipart_id, number, data)
        except KeyError:
            # Aborted under this request (the session expired and was cleaned up).
            raise BlobUploadUnknownError("the upload expired or was cancelled") from None

    @staticmethod
    def _is_data_key(session: UploadSession, key: str | None) -> bool:
        return key is not None and key.startswith(
            upload_data_prefix(session.registry_id, session.upload_id)
        )

    def _discard(self, session: UploadSession, persisted: bool) -> None:
        """Forget an upload that will not commit, with every object it wrote."""
        if session.multipart_id is not None:
            self.blobs.abort_multipart(session.data_key, session.multipart_id)
        self._delete_owned(session, session.tail_key)
        if persisted:
            self.store.delete_upload(session.upload_id)

    def _undo_receive(self, saved: UploadSession, unsaved: UploadSession) -> None:
        if saved.multipart_id is None and unsaved.multipart_id is not None:
            self.blobs.abort_multipart(unsaved.data_key, unsaved.multipart_id)
        self._delete_owned(unsaved, unsaved.tail_key, keep=saved.tail_key)

    def _delete_owned(
        self, session: UploadSession, key: str | None, keep: str | None = None
    ) -> None:
        """Delete an object the session wrote (a scratch tail, or bytes under its data
        prefix that were not committed); never a committed blob of another upload."""
        if key is None or key == keep:
            return
        if _is_scratch(key) or self._is_data_key(session, key):
            self.blobs.delete_object(key)

    def cleanup_expired_uploads(self, limit: int = 100) -> int:
        """Abort the multipart uploads and scratch objects of expired sessions."""
        count = 0
        for session in self.store.list_expired_uploads(self._clock(), limit):
            try:
                if session.multipart_id is not None:
                    self.blobs.abort_multipart(session.data_key, session.multipart_id)
            finally:
                self._delete_owned(session, session.tail_key)
                self.store.delete_upload(session.upload_id)
            count += 1
        return count

    # ------------------------------------------------------------------ manifests

    def resolve_manifest(self, repo: RepositoryName, reference: str) -> ManifestRecord:
        if is_digest(reference):
            digest = str(Digest.parse(reference))
        else:
            tag = self.store.get_tag(repo, validate_tag(reference))
            if tag is None:
                raise ManifestUnknownError(detail={"tag": reference})
            if tag.manifest is not None:
                return tag.manifest  # copied into the tag on push: one read per pull
            digest = tag.digest
        record = self.store.get_manifest(repo, digest)
        if record is None:
            raise ManifestUnknownError(detail={"digest": digest})
        return record

    def manifest_body(self, repo: RepositoryName, record: ManifestRecord) -> bytes:
        if record.body is not None:
            return record.body
        revision = record.revision
        if revision is None:  # a tag's copy of a large manifest: the manifest names its key
            full = self.store.get_manifest(repo, record.digest)
            if full is None:
                raise ManifestUnknownError(detail={"digest": record.digest})
            revision = full.revision
        return self.blobs.get_object(manifest_key(repo.rid, Digest.parse(record.digest), revision))

    def put_manifest(
        self,
        repo: RepositoryName,
        reference: str,
        body: bytes,
        content_type: str | None,
        registry: RegistryRecord | None = None,
    ) -> ParsedManifest:
        """``registry`` is the registry's record as the caller has it (maybe cached): its
        immutability rules decide whether the tag may move, and the push is conditional
        on their version; without it, the record is read."""
        tag: str | None = None
        wanted: Digest | None = None
        if is_digest(reference):
            wanted = Digest.parse(reference)
        else:
            tag = validate_tag(reference)
        parsed = parse_manifest(body, content_type)
        if wanted is not None and parsed.digest != str(wanted):
            raise DigestInvalidError(
                f"manifest hashes to {parsed.digest}", detail={"digest": reference}
            )
        refs = self.store.check_references(
            repo, parsed.required_blob_digests, parsed.child_manifest_digests
        )
        if refs.missing_blobs or refs.missing_manifests:
            raise ManifestBlobUnknownError(
                detail={"blobs": refs.missing_blobs, "manifests": refs.missing_manifests}
            )
        # A DynamoDB item holds at most 400 KB, counting every attribute written. Media types
        # are short by RFC 6838 (127 characters for each of type and subtype); one longer
        # than that is refused rather than stored beside the body (and in the referrer
        # entry, where it could not be left out).
        for what, value in (
            ("mediaType", parsed.media_type),
            ("artifactType", parsed.artifact_type),
        ):
            if value is not None and len(value.encode()) > MAX_MEDIA_TYPE:
                raise ManifestInvalidError(
                    f"{what} is longer than a media type may be ({MAX_MEDIA_TYPE} bytes)",
                    detail={"limit": MAX_MEDIA_TYPE},
                )
        # The digest lists go in the item unless they alone would crowd it (then readers
        # such as GC parse the body instead), and the body goes in only if the whole item
        # (and the tag item, which carries a copy) stays under the limit.
        limit = self.settings.manifest_inline_limit
        references = parsed.required_blob_digests + parsed.child_manifest_digests
        references_size = sum(len(d) + 8 for d in references)
        references_inline = references_size <= limit // 2
        attributes_size = sum(
            len(v.encode())
            for v in (
                parsed.media_type,
                parsed.artifact_type,
                parsed.subject and parsed.subject.digest,
            )
            if v
        )
        item_size = (
            len(body)
            + (references_size if references_inline else 0)
            + attributes_size
            + ITEM_OVERHEAD
        )
        inline = item_size <= limit
        revision = uuid.uuid4().hex
        if not inline:
            key = manifest_key(repo.rid, Digest.parse(parsed.digest), revision)
            self.blobs.put_object(key, body)
        record = ManifestRecord(
            digest=parsed.digest,
            media_type=parsed.media_type,
            size=parsed.size,
            body=body if inline else None,
            blobs=parsed.required_blob_digests if references_inline else [],
            manifests=parsed.child_manifest_digests if references_inline else [],
            references_in_body=not references_inline,
            blobs_size=sum(b.size for b in parsed.blobs if not b.urls)
            + sum(refs.manifest_blob_sizes.get(d, 0) for d in parsed.child_manifest_digests),
            subject=parsed.subject.digest if parsed.subject else None,
            artifact_type=parsed.artifact_type,
            annotations=parsed.annotations,
            created_at=self._clock(),
            revision=revision,
        )
        try:
            self._save_manifest(repo, record, tag, not refs.repository_exists, registry)
        except QuotaExceededError:
            if not inline:  # the body this push stored is named by nothing
                with contextlib.suppress(Exception):
                    self.blobs.delete_object(key)
            raise
        return parsed

    def _save_manifest(
        self,
        repo: RepositoryName,
        record: ManifestRecord,
        tag: str | None,
        create_repository: bool,
        registry: RegistryRecord | None,
    ) -> None:
        """Save under the registry's tag immutability rules. The rules may come from a
        cached record: the save is conditional on their version, and when they changed it
        reads them again and tries once more (registry.policies)."""
        for attempt in (1, 2):
            if registry is None or registry.registry_id != repo.rid:
                registry = self.store.get_registry(repo.registry)
            rule = (
                registry.settings.immutable_rule(repo.repository, tag)
                if registry is not None and tag is not None
                else None
            )
            try:
                self.store.put_manifest(
                    repo,
                    record,
                    tag,
                    create_repository=create_repository,
                    now=self._clock(),
                    tag_immutable=rule is not None,
                    settings_version=registry.settings_version if registry is not None else None,
                )
            except SettingsChangedError:
                if attempt == 2:
                    raise
                registry = None  # the cached rules are stale: read them again
                continue
            except TagImmutableError as exc:
                assert rule is not None and tag is not None
                raise TagImmutableError(
                    immutable_message(repo, tag, *rule),
                    detail={"tag": tag, "digest": record.digest},
                ) from exc
            return

    def delete_manifest(self, repo: RepositoryName, reference: str) -> None:
        """Delete a manifest (with its tags) or one tag, unless an immutability rule
        protects the tag, or a tag naming the manifest: DENIED, naming the rule. The rules
        are read fresh (deletes are rare; a cached copy could be minutes old), and the
        deletion is conditional on them being unchanged; the tags a manifest deletion
        removes are judged by the store as it reads them, so a protected tag set on the
        manifest meanwhile stops it."""
        for attempt in range(2):
            registry = self.store.get_registry(repo.registry)
            if registry is None:
                raise NameUnknownError(detail={"name": str(repo)})
            try:
                self._delete_reference(
                    repo, reference, registry.settings, registry.settings_version
                )
                return
            except SettingsChangedError:
                if attempt:
                    raise

    def _delete_reference(
        self, repo: RepositoryName, reference: str, settings: RegistrySettings, version: int
    ) -> None:
        if is_digest(reference):
            digest = str(Digest.parse(reference))

            guard = _immutability_guard(repo, settings, f"manifest {digest}")
            if not self.store.delete_manifest(repo, digest, guard, version):
                raise ManifestUnknownError(detail={"digest": digest})
            return
        tag = validate_tag(reference)
        rule = settings.immutable_rule(repo.repository, tag)
        if rule is not None:
            # Never deleted, so nothing can slip in between a look and a delete.
            if self.store.get_tag(repo, tag) is not None:
                raise TagImmutableError(immutable_message(repo, tag, *rule), detail={"tag": tag})
            raise ManifestUnknownError(detail={"tag": reference})
        if not self.store.delete_tag(repo, tag, version):
            raise ManifestUnknownError(detail={"tag": reference})

    def delete_repository(self, repo: RepositoryName) -> bool:
        """Delete the repository and everything in it, unless a tag in it is protected by
        an immutability rule (DENIED naming it). The store judges the tags once the
        repository is marked for deletion, when no push can add one any more."""
        registry = self.store.get_registry(repo.registry)
        guard = (
            _immutability_guard(repo, registry.settings, f"repository {repo}") if registry else None
        )
        return self.store.delete_repository(repo, guard)

    # ------------------------------------------------------------------ discovery

    def list_tags(self, repo: RepositoryName, n: int | None, last: str | None) -> Page:
        limit = self.settings.default_page_size if n is None else min(n, 10000)
        tags: list[TagRecord] = self.store.list_tags(repo, last, limit + 1) if limit > 0 else []
        # Only an empty page needs to know whether the repository exists at all.
        if not tags and not self.store.repository_exists(repo):
            raise NameUnknownError(detail={"name": str(repo)})
        return Page([t.tag for t in tags[:limit]], len(tags) > limit)

    def list_referrers(
        self, repo: RepositoryName, subject: str, artifact_type: str | None
    ) -> list[Descriptor]:
        digest = str(Digest.parse(subject))
        found = []
        for record in self.store.list_referrers(repo, digest):
            if artifact_type is not None and record.artifact_type != artifact_type:
                continue
            found.append(
                Descriptor(
                    record.media_type,
                    record.digest,
                    record.size,
                    record.artifact_type,
                    record.annotations,
                )
            )
        return found

    def catalog(self, registries: list[RegistryRecord], n: int | None, last: str | None) -> Page:
        """Repositories of ``registries`` in lexical order of their full names."""
        limit = self.settings.default_page_size if n is None else min(n, 10000)
        if limit <= 0:
            return Page([], False)
        names: list[str] = []
        # Sorting by "<registry>/" keeps full names in lexical order: "a-b/x" < "a/x".
        for registry in sorted(registries, key=lambda r: r.name + "/"):
            prefix = registry.name + "/"
            after: str | None = None
            if last is not None:
                if last.startswith(prefix):
                    after = last[len(prefix) :]
                elif not (prefix.startswith(last) or prefix > last):
                    continue  # every name in this registry sorts before ``last``
            found = self.store.list_repositories(
                registry.registry_id, after, limit + 1 - len(names)
            )
            for repo in found:
                names.append(prefix + repo)
            if len(names) > limit:
                break
        return Page(names[:limit], len(names) > limit)


def _immutability_guard(
    repo: RepositoryName, settings: RegistrySettings, what: str
) -> Callable[[str], str | None] | None:
    """For a store deleting tags along with ``what``: the refusal for a tag an
    immutability rule protects (None for the others); None when no rule covers ``repo``."""
    if not any(r.matches_repository(repo.repository) for r in settings.immutability_rules):
        return None

    def protected(tag: str) -> str | None:
        rule = settings.immutable_rule(repo.repository, tag)
        if rule is None:
            return None
        return f"{what} is tagged {tag}: " + immutable_message(repo, tag, *rule)

    return protected


def _holder(read: UploadSession, advanced: UploadSession) -> str | None:
    """The claim a request took on the session while advancing it, if it took one."""
    return advanced.claim_id if advanced.version != read.version else None


def range_header(offset: int) -> dict[str, str]:
    # The spec's Range is inclusive; an empty upload reports "0-0" as registries do.
    return {"Range": f"0-{max(offset - 1, 0)}"}


def parse_content_range(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    text = value.strip()
    for prefix in ("bytes=", "bytes "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    start_s, sep, end_s = text.partition("-")
    end_s = end_s.split("/")[0]
    if not sep or not is_decimal(start_s) or not is_decimal(end_s) or int(end_s) < int(start_s):
        raise RangeInvalidError(f"invalid Content-Range {value!r}")
    return int(start_s), int(end_s)
