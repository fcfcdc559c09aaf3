"""The interfaces the core needs from storage. Adapters implement them for S3/DynamoDB and
in memory; the core never imports an AWS library."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from .names import RepositoryName
from .records import (
    AccountRecord,
    AuditRecord,
    BlobRecord,
    Collection,
    ManifestRecord,
    PendingMultipart,
    RegistryRecord,
    StorageSnapshot,
    StoredObject,
    TagRecord,
    TokenRecord,
    TrafficCounts,
    UploadPart,
    UploadSession,
    UsageMonth,
)
from .rules import DueSchedule, RegistrySettings


class BlobStore(Protocol):
    def presign_get(self, key: str, expires_in: int) -> str: ...
    def put_object(self, key: str, data: bytes) -> None: ...
    def get_object(self, key: str) -> bytes:
        """The object's bytes; ``KeyError`` if there is none."""
        ...

    def iter_object(self, key: str) -> Iterator[bytes]: ...
    def delete_object(self, key: str) -> None: ...
    def create_multipart(self, key: str) -> str: ...
    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        """The part's ETag; ``KeyError`` if the multipart upload is gone."""
        ...

    def complete_multipart(
        self, key: str, multipart_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """``KeyError`` if the multipart upload was aborted (or never was), ``ValueError``
        if ``parts`` do not match what was uploaded. Completing a completed upload again
        with the same parts succeeds, as on S3."""
        ...

    def abort_multipart(self, key: str, multipart_id: str) -> None: ...
    def delete_prefix(self, prefix: str, budget: int) -> bool:
        """Delete up to ``budget`` objects under ``prefix``; True when none are left."""
        ...

    def list_objects(self, prefix: str, start_after: str | None, limit: int) -> list[StoredObject]:
        """Up to ``limit`` objects under ``prefix`` in key order, after ``start_after``."""
        ...

    def list_multipart_uploads(self, prefix: str, limit: int) -> list[PendingMultipart]:
        """Multipart uploads under ``prefix`` that were neither completed nor aborted."""
        ...

    def presign_upload_part(self, key: str, multipart_id: str, number: int, expires_in: int) -> str:
        """A URL that a client PUTs part ``number`` of the multipart upload to, with no
        credentials and no headers of its own, for ``expires_in`` seconds."""
        ...

    def list_parts(self, key: str, multipart_id: str) -> list[UploadPart]:
        """The parts the multipart upload holds, by number; ``KeyError`` if it is gone
        (completed or aborted)."""
        ...


class References(Protocol):
    """What one batch read found for a manifest push."""

    repository_exists: bool
    missing_blobs: list[str]
    missing_manifests: list[str]
    manifest_blob_sizes: dict[str, int]  # blobs_size of each child manifest found


class MetadataStore(Protocol):
    """Registries are found by name (``get_registry``); everything in a registry is keyed
    by the registry's id (``RepositoryName.registry_id``, a ``registry_id`` argument), and
    every write that adds to a registry (a session, a blob, a link, a manifest, a tag, a
    repository) is conditional on the name still naming that live incarnation: such a
    write for a deleted, deleting or re-created registry raises ``NameUnknownError`` and
    changes nothing. Removals (unlinking a blob, deleting a tag or manifest) need no such
    condition: their keys belong to one incarnation, and removing from a registry being
    purged is what the purge does anyway."""

    # tenants and credentials
    def get_registry(self, name: str) -> RegistryRecord | None: ...
    def put_registry(self, record: RegistryRecord) -> None: ...
    def list_registries(self, account_id: str) -> list[RegistryRecord]:
        """The account's registries, without those being deleted."""
        ...

    def mark_registry_deleting(self, name: str) -> bool: ...
    def list_deleting_registries(self, limit: int) -> list[str]: ...
    def purge_registry(self, name: str, budget: int) -> bool:
        """Delete up to ``budget`` items of a deleting registry; True once all are gone
        (the registry record last, which frees the name)."""
        ...

    def update_subscription(self, seen: RegistryRecord, plan: str, now: datetime) -> bool:
        """Put the registry on ``plan`` if its name still names the incarnation ``seen``
        and its counters, as they are when the write lands, fit ``plan``'s hard limits (a
        push committed since the caller checked may have taken them beyond); False
        otherwise, and nothing changes."""
        ...

    def correct_usage(
        self, seen: RegistryRecord, storage_bytes: int, repository_count: int, now: datetime
    ) -> bool:
        """Set the registry's storage and repository counters to what a recount of its
        records found (registry.quotas), if the record is still the live incarnation
        ``seen`` with exactly ``seen``'s counters and ``storage_updated_at`` (a commit since
        changed them, and the recount may not include it); False otherwise."""
        ...

    def get_registry_by_id(self, registry_id: str) -> RegistryRecord | None:
        """The record of the incarnation ``registry_id`` (deleting or not); None once it
        is purged or its name names another incarnation (registry.metering)."""
        ...

    def ensure_registry_identity(self, record: RegistryRecord) -> None:
        """Make ``get_registry_by_id`` find ``record`` (registries created before it
        existed have no identity item; ``put_registry`` writes one for every new one)."""
        ...

    def set_egress_capped(self, name: str, registry_id: str, month: str) -> None:
        """Record that the incarnation's ``month`` went over its plan's transfer cap; a
        no-op if the name is gone or names another incarnation, or the flag already names
        ``month`` or a later month (conditional: whatever order concurrent meterings
        write in, the latest month stays)."""
        ...

    def get_token_by_hash(self, token_hash: str) -> TokenRecord | None: ...
    def put_token(self, record: TokenRecord) -> None: ...
    def get_token_by_id(self, account_id: str, token_id: str) -> TokenRecord | None: ...
    def list_tokens(self, account_id: str, after: str | None, limit: int) -> list[TokenRecord]: ...
    def delete_token(self, token_hash: str) -> None: ...
    def touch_token(self, token_hash: str, now: datetime) -> None: ...

    # repositories
    def repository_exists(self, repo: RepositoryName) -> bool: ...
    def list_repositories(self, registry_id: str, after: str | None, limit: int) -> list[str]:
        """Repository names in order, after ``after``; strongly consistent (garbage
        collection relies on seeing every repository created before it began)."""
        ...

    def count_repository(self, repo: RepositoryName) -> tuple[int, int]:
        """(tag count, manifest count)"""
        ...

    def delete_repository(
        self, repo: RepositoryName, protected: Callable[[str], str | None] | None = None
    ) -> bool:
        """Delete the repository with everything in it; False if there is none. Once it
        is marked (no push can add a tag any more), a tag for which ``protected`` returns
        a message stops it (TagImmutableError) and the mark is taken back."""
        ...

    # blobs
    def get_blob_link(self, repo: RepositoryName, digest: str) -> BlobRecord | None: ...
    def get_registry_blob(self, registry_id: str, digest: str) -> BlobRecord | None: ...
    def commit_blob(
        self,
        repo: RepositoryName,
        digest: str,
        size: int,
        now: datetime,
        upload_id: str | None = None,
        key: str | None = None,
        exists: bool = False,
        upload_version: int = 0,
    ) -> bool:
        """Record the blob in its registry (once; adds its size to storage) and link it to
        ``repo``, creating the repository on first push, and end the upload session
        ``upload_id``, all at once, if that session is still at ``upload_version``
        (``BlobUploadUnknownError`` otherwise: a concurrent request completed, cancelled or
        changed it). Returns True if the registry did not hold the blob.

        ``key`` is where the bytes are; a new blob record keeps it. If the registry already
        held the blob, the link names the key of the existing record instead (so every link
        of a blob names the one copy the registry accounts for). ``exists`` is a hint: the
        caller read the registry's record and ``key`` is its key (a mount)."""
        ...

    def unlink_blob(self, repo: RepositoryName, digest: str) -> bool: ...

    # manifests and tags
    def get_manifest(self, repo: RepositoryName, digest: str) -> ManifestRecord | None: ...
    def get_tag(self, repo: RepositoryName, tag: str) -> TagRecord | None: ...
    def get_manifests(
        self, repo: RepositoryName, digests: Sequence[str]
    ) -> dict[str, ManifestRecord]: ...
    def check_references(
        self, repo: RepositoryName, blobs: Sequence[str], manifests: Sequence[str]
    ) -> References: ...
    def put_manifest(
        self,
        repo: RepositoryName,
        record: ManifestRecord,
        tag: str | None,
        create_repository: bool,
        now: datetime,
        tag_immutable: bool = False,
        settings_version: int | None = None,
    ) -> None:
        """Manifest, tag, referrer entry and (first push) repository, at once. Every blob
        record and child manifest it references must exist and is touched (their
        ``touched_at``, which online garbage collection's deletions are conditional on):
        ManifestBlobUnknownError if one is gone. ``tag_immutable``: the tag may not move
        to another digest (TagImmutableError). ``settings_version``: the registry's rules
        are still at that version (SettingsChangedError otherwise)."""
        ...

    def delete_manifest(
        self,
        repo: RepositoryName,
        digest: str,
        protected: Callable[[str], str | None] | None = None,
        settings_version: int | None = None,
    ) -> bool:
        """The manifest with its tags and referrer entry; False if there is none. A tag
        naming it for which ``protected`` returns a message stops it (TagImmutableError
        with that message), judged on the tags it deletes; ``settings_version``: the rules
        are still at that version (SettingsChangedError otherwise)."""
        ...

    def delete_tag(
        self, repo: RepositoryName, tag: str, settings_version: int | None = None
    ) -> bool: ...
    def list_tags(self, repo: RepositoryName, after: str | None, limit: int) -> list[TagRecord]: ...
    def list_manifests(
        self, repo: RepositoryName, after: str | None, limit: int
    ) -> list[ManifestRecord]: ...
    def list_referrers(self, repo: RepositoryName, subject: str) -> list[ManifestRecord]: ...

    # uploads
    def put_upload(self, session: UploadSession) -> None: ...
    def get_upload(self, upload_id: str) -> UploadSession | None: ...
    def update_upload(
        self, session: UploadSession, holder: str | None = None, now: datetime | None = None
    ) -> None:
        """Save ``session`` if nobody saved it since it was read (version check) and no
        other request holds it (a claim whose ``claimed_until`` has not passed, unless its
        ``claim_id`` is ``holder``; ``now`` judges the claim, by default the current time);
        raises BlobUploadInvalidError otherwise. The registry
        is not re-checked here: starting a session and committing its blob are where a
        deleted registry refuses writes."""
        ...

    def delete_upload(
        self, upload_id: str, version: int | None = None, now: datetime | None = None
    ) -> bool:
        """Delete the session; with ``version``, only if it is still at that version and no
        request holds it. False if it was not there, had moved on or was held."""
        ...

    def list_expired_uploads(self, now: datetime, limit: int) -> list[UploadSession]: ...

    # settings: retention, immutability, GC schedule (registry.rules, registry.policies)
    def update_registry_settings(
        self,
        name: str,
        registry_id: str,
        settings: RegistrySettings,
        expected_version: int,
        now: datetime,
    ) -> RegistryRecord:
        """Replace the registry's settings if the name still names the live incarnation
        ``registry_id`` (NameUnknownError otherwise) and its ``settings_version`` is still
        ``expected_version`` (ConflictError otherwise: a concurrent change won); bumps the
        version. In the same write, the registry's entry in the schedule index is set to
        the schedule's next run after ``now`` (or removed without a schedule). Returns
        the updated record."""
        ...

    def due_collection_schedules(self, now: datetime, limit: int) -> list[DueSchedule]:
        """Scheduled collections whose next run is at or before ``now``, earliest first
        (an index query, never a scan). Entries may outlive their registry: check it."""
        ...

    def advance_collection_schedule(
        self, registry_id: str, expected_next_run_at: datetime, next_run_at: datetime | None
    ) -> bool:
        """Move the schedule entry's next run to ``next_run_at`` (None: remove the entry)
        if it is still at ``expected_next_run_at``; False if it changed meanwhile (the
        settings were saved again) or is gone."""
        ...


class AccountStore(Protocol):
    """Tenant accounts and the operator's audit trail (registry.accounts). The account
    record is the truth about suspension; ``set_suspended`` copies it onto every token and
    registry record of the account, which the request path reads anyway."""

    def put_account(self, record: AccountRecord) -> None:
        """Create the account; ``ValueError`` if its id exists."""
        ...

    def get_account(self, account_id: str) -> AccountRecord | None: ...
    def list_accounts(self, after: str | None, limit: int) -> list[AccountRecord]:
        """Accounts in id order, after the id ``after``."""
        ...

    def update_account(self, record: AccountRecord) -> bool:
        """Save status, suspended_at, name, contact and metadata; False if it is gone."""
        ...

    def delete_account(self, account_id: str) -> None: ...
    def set_suspended(self, account_id: str, suspended: bool) -> None:
        """Flag (or unflag) every token and every live registry of the account."""
        ...

    def put_audit(self, record: AuditRecord) -> None: ...
    def list_audit(self, account_id: str, after: str | None, limit: int) -> list[AuditRecord]:
        """The account's trail, oldest first, after the ``AuditRecord.sort_key`` ``after``."""
        ...


class CollectionEngine(Protocol):
    """Drives a garbage collection's steps (AWS Step Functions; the local runtime runs the
    same state machine itself)."""

    def start(self, registry_id: str, gc_uuid: str) -> None: ...


class CollectionStore(Protocol):
    """What garbage collection (registry.gc) needs of the metadata, beyond MetadataStore.

    Reads here are strongly consistent: a collection must see every write that committed
    before it read. Deletions are conditional on what the collection read (a revision, a
    key) and, in online mode, on nothing having touched the item since the collection
    began, so that a concurrent push either sees the item or makes the deletion fail."""

    # the collection's own record
    def begin_collection(self, registry: RegistryRecord, collection: Collection) -> None:
        """Record ``collection`` as the registry's active one (and make the registry
        read-only if its mode says so), if the registry is live and has none active:
        ConflictError if it has one, NameUnknownError if it is gone."""
        ...

    def get_collection(self, registry_id: str, gc_uuid: str) -> Collection | None: ...
    def list_collections(self, registry_id: str, after: str | None, limit: int) -> list[Collection]:
        """Newest first, after the uuid ``after``."""
        ...

    def save_collection(self, collection: Collection) -> bool:
        """Save status, phase, cursor, scan counters and error if the stored version is
        ``collection.version`` (then bump it, here and there); False if it moved on (a
        cancel). The deletion counters are not written here (see the deletions)."""
        ...

    def request_cancel(self, registry_id: str, gc_uuid: str) -> Collection | None:
        """Flag an active collection for cancelling (status ``cancelling``, version
        bumped); None if there is no such active collection."""
        ...

    def finish_collection(self, collection: Collection) -> bool:
        """Save the final status (conditional on the version) and, if the registry still
        names this collection as active, clear that and its read-only flag."""
        ...

    # scanning
    def scan_repository(
        self, repo: RepositoryName
    ) -> tuple[dict[str, ManifestRecord], list[TagRecord]]:
        """Every manifest (with revision and touched_at) and tag of the repository."""
        ...

    def gc_delete_tag(self, repo: RepositoryName, tag: str, digest: str) -> bool:
        """Delete the tag if it still names ``digest`` (retention; read-only or not)."""
        ...

    def gc_delete_manifest(
        self,
        repo: RepositoryName,
        record: ManifestRecord,
        gc_uuid: str,
        touched_before: datetime | None,
    ) -> bool:
        """Delete an untagged manifest (and its referrer entry) if it is still the
        revision read (a tag is only ever set by a push of its manifest, which writes a new
        revision, so no tag can have come to name it since the scan) and, online, no index
        pushed since ``touched_before`` named it; count it on the collection. False if any
        of that failed."""
        ...

    def mark_blobs(self, gc_uuid: str, digests: Iterable[str]) -> None:
        """Remember that ``digests`` are referenced by a kept manifest (idempotent)."""
        ...

    def marked_blobs(self, gc_uuid: str, first: str, last: str) -> set[str]:
        """The marked digests from ``first`` to ``last`` inclusive."""
        ...

    # sweeping
    def list_registry_blobs(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[BlobRecord]:
        """The registry's blob records in digest order, after ``after``."""
        ...

    def gc_delete_blob(
        self,
        registry_name: str,
        registry_id: str,
        blob: BlobRecord,
        gc_uuid: str,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> bool:
        """Delete the blob record (with the index entry of its key) if it still names
        ``blob.key``, was created before ``created_before`` and not touched since
        ``touched_before`` (online mode; None: no such condition), take its size off the
        registry's storage and count it on the collection, all at once. Links to it are
        left for ``gc_delete_link``; its bytes for the caller."""
        ...

    def list_links(self, repo: RepositoryName, after: str | None, limit: int) -> list[BlobRecord]:
        """The repository's blob links in digest order (strongly consistent)."""
        ...

    def get_registry_blobs(self, registry_id: str, digests: Sequence[str]) -> dict[str, BlobRecord]:
        """The registry's records of ``digests`` that exist (one consistent batch read)."""
        ...

    def gc_delete_link(
        self,
        repo: RepositoryName,
        link: BlobRecord,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> bool:
        """Delete a link if it still names ``link.key`` (not re-linked to a new upload)
        and its blob record, if there is one, is still collectable: created before
        ``created_before`` and not touched since ``touched_before`` (None: no condition)."""
        ...

    def named_keys(self, registry_id: str, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` that a record of the registry names: a blob record, or a
        manifest whose current revision is the one a large body's key ends with. Bodies
        stored before revisions were part of their keys count as named."""
        ...

    def forget_keys(self, registry_id: str, keys: Sequence[str]) -> None:
        """Drop the key index entries of objects found unnamed and deleted."""
        ...

    def live_uploads(self, upload_ids: Sequence[str]) -> set[str]:
        """Those of ``upload_ids`` whose session still exists."""
        ...

    def count_orphans_deleted(self, registry_id: str, gc_uuid: str, count: int) -> None: ...


class UsageStore(Protocol):
    """Usage counters and storage snapshots, keyed by registry id (they outlive the
    registry: a deleted registry is still billed for its days)."""

    def add_traffic(
        self,
        registry_id: str,
        month: str,
        source: str,
        counts: TrafficCounts,
        registry: RegistryRecord | None = None,
    ) -> bool:
        """Add ``counts`` to the registry's month once per ``source`` (a log object's
        identity): the marker and the counters are one transaction, so a log object
        processed twice, or a crash between registries, counts each registry once. False
        if ``source`` was counted already. ``registry`` (if known) names the month."""
        ...

    def get_usage_month(self, registry_id: str, month: str) -> UsageMonth | None: ...

    def put_snapshot(self, snapshot: StorageSnapshot) -> None:
        """Write (or overwrite: the latest of a day wins) the day's snapshot, and name the
        month's usage after the registry."""
        ...

    def list_snapshots(self, registry_id: str, month: str) -> list[StorageSnapshot]:
        """The month's snapshots, by day."""
        ...

    def list_usage_months(self, month: str, after: str | None, limit: int) -> list[UsageMonth]:
        """Every registry with traffic or a snapshot in ``month``, by registry id (the
        billing export's rows)."""
        ...


class EventPublisher(Protocol):
    """Publishes domain events (EventBridge on AWS): quota thresholds crossed, etc."""

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None: ...
