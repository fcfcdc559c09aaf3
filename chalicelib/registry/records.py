"""Plain records the core reads and writes through its ports."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

# Retention, immutability and schedule settings are data of the registry record; rules.py
# imports nothing of this module at import time, so this is no cycle.
from .rules import RegistrySettings

if TYPE_CHECKING:
    from .names import RepositoryName


def new_registry_id() -> str:
    return uuid.uuid4().hex


@dataclass
class RegistryRecord:
    name: str
    account_id: str
    # Immutable identity of this incarnation of the name (see names.RepositoryName): every
    # record constructed gets a fresh one, so a re-created registry never shares it.
    registry_id: str = field(default_factory=new_registry_id)
    plan: str = "professional"
    storage_bytes: int = 0
    repository_count: int = 0
    # Bumped by every write that changes either counter: reconciliation corrects them only
    # if it is unchanged since it read them (a +1 and a -1 in between leave the counts as
    # they were, not the version).
    usage_version: int = 0
    read_only: bool = False
    created_at: datetime | None = None
    storage_updated_at: datetime | None = None
    subscription_created_at: datetime | None = None
    subscription_updated_at: datetime | None = None
    # Set when the registry is deleted: it is invisible at once, its content is purged in
    # the background, and the name is free when the record itself goes.
    deleting: bool = False
    # A copy of its account's suspension (registry.accounts): every write into the registry
    # is conditional on this record, so refusing writes costs no extra read.
    suspended: bool = False
    # The uuid of the garbage collection running on the registry (one at a time); while a
    # read-only one runs, ``read_only`` is set and every write's condition refuses it.
    gc_active: str | None = None
    # Retention rules, tag immutability rules, GC schedule (registry.rules); every change
    # bumps ``settings_version``, and a push that relied on a cached copy of the rules is
    # conditional on the version it saw (MetadataStore.put_manifest).
    settings: RegistrySettings = field(default_factory=RegistrySettings)
    settings_version: int = 0
    # The month ("YYYY-MM") in which the metering found the registry over its plan's hard
    # transfer cap (registry.metering): pulls are refused while it is the current month and
    # the plan still caps transfer (an upgrade lifts it at once).
    egress_capped_month: str | None = None


@dataclass
class TokenRecord:
    token_id: str
    token_hash: str
    account_id: str
    name: str
    scopes: frozenset[str]
    registries: frozenset[str] | None = None  # None: every registry of the account
    expires_at: datetime | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    # A copy of its account's suspension: authenticating reads this record anyway.
    suspended: bool = False


@dataclass
class BlobRecord:
    digest: str
    size: int
    created_at: datetime | None = None
    # The S3 key of the bytes, where their upload wrote them (committing copies nothing).
    # None for blobs stored under their content address (``service.blob_key``).
    key: str | None = None
    # Last time a push referenced the blob (a manifest naming it, a mount, a re-upload):
    # an online garbage collection keeps what was touched after it began (registry.gc).
    touched_at: datetime | None = None


@dataclass
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    body: bytes | None  # None when the body lives in the blob store (large manifests)
    blobs: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    created_at: datetime | None = None
    # True when ``blobs``/``manifests`` were too long to keep in the record: parse the body.
    references_in_body: bool = False
    # Bytes of the blobs it references as stored (for an index: its children's, summed).
    blobs_size: int = 0
    # Changes on every push of the manifest (see MetadataStore.delete_manifest).
    revision: str | None = None
    # Last time an index pushed after it named it as a child (see BlobRecord.touched_at).
    touched_at: datetime | None = None


@dataclass
class TagRecord:
    tag: str
    digest: str
    updated_at: datetime | None = None
    # The tagged manifest as copied into the tag when it was set (None if not copied).
    manifest: ManifestRecord | None = None


@dataclass
class UploadPart:
    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class DirectUpload:
    """What a direct upload (registry.direct_uploads) adds to its session: the blob the
    client announced, how it is cut into parts it sends straight to S3, and where the
    upload stands (``status``: uploading, verifying, committed or failed)."""

    digest: str
    size: int
    part_size: int
    part_count: int
    status: str = "uploading"
    error_code: str | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "size": self.size,
            "part_size": self.part_size,
            "part_count": self.part_count,
            "status": self.status,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DirectUpload:
        return cls(
            digest=str(data["digest"]),
            size=int(data["size"]),
            part_size=int(data["part_size"]),
            part_count=int(data["part_count"]),
            status=str(data.get("status") or "uploading"),
            error_code=data.get("error_code"),
            error_message=data.get("error_message"),
        )


@dataclass
class UploadSession:
    """A resumable blob upload.

    Bytes arrive in S3 multipart parts of ``part_size`` bytes; a remainder smaller than a
    part (S3 refuses parts under 5 MiB except the last) waits in ``tail_key`` until more
    bytes arrive or the upload completes. ``sha256`` is known only when every byte so far
    arrived in a single request (hash state cannot be persisted between requests); otherwise
    the assembled object is re-read and hashed on completion.
    """

    upload_id: str
    registry: str
    repository: str
    data_key: str
    registry_id: str = ""
    multipart_id: str | None = None
    parts: list[UploadPart] = field(default_factory=list)
    offset: int = 0
    tail_key: str | None = None
    tail_size: int = 0
    sha256: str | None = None
    version: int = 0
    created_at: datetime | None = None
    expires_at: datetime | None = None
    # Held by one request while it touches the multipart upload (see service._claim):
    # until ``claimed_until`` passes, only the holder of ``claim_id`` may save or end it.
    claim_id: str | None = None
    claimed_until: datetime | None = None
    # Set for a direct upload (parts sent to S3 by the client); None for the standard path.
    # A session of one kind is unknown to the other kind's routes.
    direct: DirectUpload | None = None

    def held_by_other(self, now: datetime, holder: str | None) -> bool:
        return (
            self.claim_id is not None
            and self.claim_id != holder
            and self.claimed_until is not None
            and self.claimed_until > now
        )

    @property
    def repo_path(self) -> str:
        return f"{self.registry}/{self.repository}"

    def belongs_to(self, repo: RepositoryName) -> bool:
        """Issued for this repository of this incarnation of the registry."""
        return self.repo_path == str(repo) and self.registry_id == repo.registry_id


ACCOUNT_ACTIVE = "active"
ACCOUNT_SUSPENDED = "suspended"


@dataclass
class AccountRecord:
    """A tenant: what owns registries and API tokens (their ``account_id``). Only an
    operator creates, suspends and deletes one (registry.accounts)."""

    account_id: str
    name: str
    contact: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = ACCOUNT_ACTIVE
    created_at: datetime | None = None
    suspended_at: datetime | None = None


@dataclass
class AuditRecord:
    """One operator action on an account: who (the operator token), when, what."""

    account_id: str
    action: str
    actor_token_id: str
    actor_name: str
    at: datetime
    audit_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def sort_key(self) -> str:
        """Oldest first; what the stores order an account's trail by and page after."""
        return f"{self.at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{self.audit_id}"


GC_REQUESTED = "requested"
GC_WAITING = "waiting for write JWTs to expire"
GC_SCANNING = "scanning manifests"
GC_DELETING = "deleting unreferenced blobs"
GC_CANCELLING = "cancelling"
GC_FAILED = "failed"
GC_SUCCEEDED = "succeeded"
GC_CANCELLED = "cancelled"
GC_FINAL_STATUSES = frozenset({GC_FAILED, GC_SUCCEEDED, GC_CANCELLED})

GC_UNTAGGED_MANIFESTS = "untagged manifests only"
GC_UNREFERENCED_BLOBS = "unreferenced blobs only"
GC_BOTH = "untagged manifests and unreferenced blobs"
GC_TYPES = (GC_UNTAGGED_MANIFESTS, GC_UNREFERENCED_BLOBS, GC_BOTH)
GC_READ_ONLY = "read-only"
GC_ONLINE = "online"
GC_MODES = (GC_READ_ONLY, GC_ONLINE)


def new_collection_id(now: datetime) -> str:
    """A UUID (version 7 layout) whose first 48 bits are the creation time in milliseconds,
    so that a registry's collections sort by age under their ids."""
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rest = uuid.uuid4().int & ((1 << 74) - 1)
    value = (
        (millis << 80)
        | (0x7 << 76)
        | ((rest >> 62) << 64)
        | (0b10 << 62)
        | (rest & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


# What a progress save writes of a Collection (MetadataStore.save_collection): everything
# but the deletion counters, which only the deletions themselves add to.
COLLECTION_PROGRESS_FIELDS = (
    "status",
    "phase",
    "cursor",
    "marks_from",
    "wait_until",
    "updated_at",
    "error",
    "repositories_scanned",
    "manifests_scanned",
    "blobs_scanned",
    "objects_scanned",
)


@dataclass
class Collection:
    """One garbage collection of one registry incarnation (registry.gc).

    ``phase`` and ``cursor`` say where the work is, so that any step can be re-run after a
    crash; ``version`` makes progress saves conditional (a cancel bumps it). The deletion
    counters are only ever added to, in the same DynamoDB transaction as each deletion, so
    they stay exact whatever is re-run."""

    uuid: str
    registry_name: str
    registry_id: str
    status: str
    type: str
    mode: str
    created_at: datetime
    updated_at: datetime
    trigger: str = "api"
    blobs_deleted: int = 0
    manifests_deleted: int = 0
    freed_bytes: int = 0
    objects_deleted: int = 0
    repositories_scanned: int = 0
    manifests_scanned: int = 0
    blobs_scanned: int = 0
    objects_scanned: int = 0
    error: str | None = None
    phase: str = "begin"
    cursor: str | None = None
    # When scanning began (the mark phase's time): online deletions keep whatever a push
    # touched after it (see registry.gc).
    marks_from: datetime | None = None
    wait_until: datetime | None = None
    cancel_requested: bool = False
    version: int = 0

    @property
    def active(self) -> bool:
        return self.status not in GC_FINAL_STATUSES

    @property
    def deletes_manifests(self) -> bool:
        return self.type in (GC_UNTAGGED_MANIFESTS, GC_BOTH)

    @property
    def deletes_blobs(self) -> bool:
        return self.type in (GC_UNREFERENCED_BLOBS, GC_BOTH)


@dataclass(frozen=True)
class StoredObject:
    """An object a BlobStore listing found."""

    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class PendingMultipart:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    multipart_id: str
    initiated: datetime


# ---------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class TrafficCounts:
    """What one log object says one registry did in one month (registry.metering)."""

    egress_bytes: int = 0  # bytes sent to clients by S3 (and CloudFront) for its objects
    pulls: int = 0  # manifest GETs answered 200
    pushes: int = 0  # manifest PUTs answered 201
    # The two sides of a blob download, to bound what the best-effort logs lost: the
    # presigned GETs S3 (CloudFront) logged with content, and the blob GETs the API
    # answered with a redirect to one (docs/metering.md, "Log coverage").
    downloads: int = 0
    redirects: int = 0


@dataclass
class UsageMonth:
    """One registry's traffic counters for one month ("YYYY-MM"), summed over every log
    object metered so far. Keyed by the registry's id: it outlives the registry, which is
    billed for the days it existed."""

    registry_id: str
    month: str
    registry_name: str | None = None
    account_id: str | None = None
    egress_bytes: int = 0
    pulls: int = 0
    pushes: int = 0
    downloads: int = 0
    redirects: int = 0


@dataclass(frozen=True)
class StorageSnapshot:
    """A registry's storage as the daily snapshot found it (registry.billing): GiB-months
    are the mean of a month's snapshots; the plan of the day prices that day."""

    registry_id: str
    day: str  # "YYYY-MM-DD" (UTC)
    registry_name: str
    account_id: str
    plan: str
    storage_bytes: int
    repository_count: int
    taken_at: datetime | None = None
