"""Plain records the core reads and writes through its ports."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

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
