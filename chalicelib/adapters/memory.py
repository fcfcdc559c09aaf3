"""In-memory BlobStore and MetadataStore with the same semantics as the AWS adapters, for
unit tests of the core (no network)."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from chalicelib.registry import quotas
from chalicelib.registry.digests import Digest
from chalicelib.registry.errors import (
    AccountSuspendedError,
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    CollectionBusyError,
    ConflictError,
    GarbageCollectionRunningError,
    ManifestBlobUnknownError,
    ManifestInvalidError,
    NameUnknownError,
    SettingsChangedError,
    TagImmutableError,
)
from chalicelib.registry.gc import collectable
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.plans import tier
from chalicelib.registry.records import (
    COLLECTION_PROGRESS_FIELDS,
    GC_CANCELLING,
    GC_READ_ONLY,
    BlobRecord,
    Collection,
    ManifestRecord,
    PendingMultipart,
    RegistryRecord,
    StoredObject,
    TagRecord,
    TokenRecord,
    UploadPart,
    UploadSession,
)
from chalicelib.registry.rules import DueSchedule, RegistrySettings
from chalicelib.registry.service import manifest_key, stored_key

MIN_PART = 5 * 1024 * 1024
# As the DynamoDB store: a manifest push touches what it references in its transaction,
# which holds at most 100 items; one naming more is fenced differently (see dynamo).
MAX_TOUCHED = 94


def _etag(data: bytes) -> str:
    # S3's part ETag is the MD5 of the part: a replaced part no longer matches.
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.multipart: dict[str, dict[int, bytes]] = {}
        self.completed: dict[str, list[tuple[int, str]]] = {}  # id -> the parts it took
        self.calls: list[str] = []
        # Last-Modified of each object, and each pending multipart upload's key and start
        # (what S3's listings report); ``clock`` lets tests age them.
        self.clock: Any = lambda: datetime.now(UTC)
        self.modified: dict[str, datetime] = {}
        self.multipart_keys: dict[str, tuple[str, datetime]] = {}

    def presign_get(self, key: str, expires_in: int) -> str:
        self.calls.append("presign_get")
        return f"memory://{key}?expires_in={expires_in}"

    def put_object(self, key: str, data: bytes) -> None:
        self.calls.append("put_object")
        self.objects[key] = bytes(data)
        self.modified[key] = self.clock()

    def get_object(self, key: str) -> bytes:
        self.calls.append("get_object")
        return self.objects[key]

    def iter_object(self, key: str) -> Iterator[bytes]:
        data = self.objects[key]
        for i in range(0, len(data), 1024 * 1024):
            yield data[i : i + 1024 * 1024]

    def delete_object(self, key: str) -> None:
        self.calls.append("delete_object")
        self.objects.pop(key, None)
        self.modified.pop(key, None)

    def create_multipart(self, key: str) -> str:
        self.calls.append("create_multipart")
        upload_id = uuid.uuid4().hex
        self.multipart[upload_id] = {}
        self.multipart_keys[upload_id] = (key, self.clock())
        return upload_id

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        self.calls.append("upload_part")
        self.multipart[multipart_id][number] = bytes(data)
        return _etag(data)

    def complete_multipart(
        self, key: str, multipart_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        self.calls.append("complete_multipart")
        if multipart_id in self.completed:  # a retry of a completion that succeeded
            if list(parts) != self.completed[multipart_id]:
                raise ValueError("InvalidPart")
            return
        stored = self.multipart.pop(multipart_id)
        numbers = [n for n, _ in parts]
        if numbers != sorted(numbers):
            raise ValueError("InvalidPartOrder")
        for i, (n, etag) in enumerate(parts):
            data = stored[n]
            if etag != _etag(data):
                raise ValueError("InvalidPart")
            if i < len(parts) - 1 and len(data) < MIN_PART:
                raise ValueError("EntityTooSmall")  # as S3: only the last part may be small
        self.objects[key] = b"".join(stored[n] for n, _ in parts)
        self.completed[multipart_id] = list(parts)
        # As S3 reports it: a multipart object's Last-Modified is when its upload began.
        started = self.multipart_keys.pop(multipart_id, (key, self.clock()))[1]
        self.modified[key] = started

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        self.calls.append("abort_multipart")
        self.multipart.pop(multipart_id, None)
        self.multipart_keys.pop(multipart_id, None)

    def presign_upload_part(self, key: str, multipart_id: str, number: int, expires_in: int) -> str:
        self.calls.append("presign_upload_part")
        return f"memory://{key}?uploadId={multipart_id}&partNumber={number}&expires_in={expires_in}"

    def list_parts(self, key: str, multipart_id: str) -> list[UploadPart]:
        self.calls.append("list_parts")
        if multipart_id not in self.multipart:
            raise KeyError(multipart_id)
        stored = self.multipart[multipart_id]
        return [UploadPart(n, _etag(stored[n]), len(stored[n])) for n in sorted(stored)]

    def list_objects(self, prefix: str, start_after: str | None, limit: int) -> list[StoredObject]:
        keys = sorted(
            k
            for k in self.objects
            if k.startswith(prefix) and (start_after is None or k > start_after)
        )
        return [
            StoredObject(k, len(self.objects[k]), self.modified.get(k, self.clock()))
            for k in keys[:limit]
        ]

    def list_multipart_uploads(self, prefix: str, limit: int) -> list[PendingMultipart]:
        found = sorted(
            (key, upload_id, started)
            for upload_id, (key, started) in self.multipart_keys.items()
            if key.startswith(prefix) and upload_id in self.multipart
        )
        return [PendingMultipart(k, u, t) for k, u, t in found[:limit]]

    def delete_prefix(self, prefix: str, budget: int) -> bool:
        keys = [k for k in self.objects if k.startswith(prefix)]
        for key in keys[:budget]:
            del self.objects[key]
        return len(keys) <= budget


@dataclass
class _Refs:
    repository_exists: bool
    missing_blobs: list[str] = field(default_factory=list)
    missing_manifests: list[str] = field(default_factory=list)
    manifest_blob_sizes: dict[str, int] = field(default_factory=dict)


RepoKey = tuple[str, str]  # (registry id, repository)

# As the DynamoDB store (dynamo.MAX_REFERRER_ANNOTATIONS, checked by tests/contract): a
# referrer's annotations are copied into its entry only up to this size.
MAX_REFERRER_ANNOTATIONS = 64 * 1024


def _key(repo: RepositoryName) -> RepoKey:
    return repo.rid, repo.repository


def _session_repo(session: UploadSession) -> RepositoryName:
    return RepositoryName(session.registry, session.repository, session.registry_id)


# DynamoDB hands out copies: a record read is a snapshot, and a record written is not
# changed by what its caller does with it afterwards. These keep the fake to that.


def _copy_manifest(record: ManifestRecord) -> ManifestRecord:
    return replace(
        record,
        blobs=list(record.blobs),
        manifests=list(record.manifests),
        annotations=dict(record.annotations) if record.annotations is not None else None,
    )


def _copy_tag(record: TagRecord) -> TagRecord:
    manifest = _copy_manifest(record.manifest) if record.manifest is not None else None
    return replace(record, manifest=manifest)


def _copy_token(record: TokenRecord) -> TokenRecord:
    return replace(record)


def _copy_session(session: UploadSession) -> UploadSession:
    return replace(session, parts=[replace(p) for p in session.parts])


def _stored_manifest(record: ManifestRecord) -> ManifestRecord:
    """What the DynamoDB manifest item keeps: annotations only live in the body (and, for
    a referrer, in its referrer entry)."""
    return replace(_copy_manifest(record), annotations=None)


def _tag_copy(record: ManifestRecord) -> ManifestRecord:
    """What a tag item carries of its manifest: what a pull by tag needs, no more."""
    return ManifestRecord(
        digest=record.digest,
        media_type=record.media_type,
        size=record.size,
        body=record.body,
        blobs_size=record.blobs_size,
    )


def _referrer_entry(record: ManifestRecord, subject: str) -> ManifestRecord:
    """What a referrer entry keeps: the descriptor the referrers API lists."""
    annotations = record.annotations
    if annotations is not None and len(json.dumps(annotations)) > MAX_REFERRER_ANNOTATIONS:
        annotations = None
    return ManifestRecord(
        digest=record.digest,
        media_type=record.media_type,
        size=record.size,
        body=None,
        subject=subject,
        artifact_type=record.artifact_type,
        annotations=dict(annotations) if annotations is not None else None,
    )


class MemoryMetadataStore:
    """The MetadataStore contract (tests/contract holds both stores to it) in memory.

    One lock makes every call atomic, as DynamoDB makes each request (a transaction
    included); a call that reads and then writes is atomic here too, where the DynamoDB
    store gets the same effect from conditions on what it read."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.registries: dict[str, RegistryRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}
        # Keyed by registry id, as the DynamoDB store keys its items (see dynamo_models).
        self.repositories: dict[str, set[str]] = {}
        self.registry_blobs: dict[str, dict[str, BlobRecord]] = {}
        self.links: dict[RepoKey, dict[str, BlobRecord]] = {}
        self.manifests: dict[RepoKey, dict[str, ManifestRecord]] = {}
        self.tags: dict[RepoKey, dict[str, TagRecord]] = {}
        # (subject, digest) -> referrer entry, as REFERRER#<subject>#<digest> items.
        self.referrers: dict[RepoKey, dict[tuple[str, str], ManifestRecord]] = {}
        self.uploads: dict[str, UploadSession] = {}
        # registry id -> collection uuid -> collection; collection uuid -> marked digests
        self.collections: dict[str, dict[str, Collection]] = {}
        self.marks: dict[str, set[str]] = {}
        # registry id -> (registry name, next run): the GC schedule index (see dynamo).
        self.schedules: dict[str, tuple[str, datetime]] = {}

    def _repository_tables(self) -> tuple[dict[RepoKey, Any], ...]:
        return self.links, self.manifests, self.tags, self.referrers

    def _live(self, repo: RepositoryName) -> RegistryRecord:
        """The registry record if its name still names ``repo``'s live incarnation (the
        condition every DynamoDB write into a registry carries)."""
        record = self.registries.get(repo.registry)
        if record is None or record.deleting or record.registry_id != repo.rid:
            raise NameUnknownError(detail={"name": str(repo)})
        if record.suspended:
            raise AccountSuspendedError(record.account_id)
        if record.read_only:
            raise GarbageCollectionRunningError(record.name, record.gc_active)
        return record

    # ------------------------------------------------------------ registries, tokens

    def get_registry(self, name: str) -> RegistryRecord | None:
        with self._lock:
            record = self.registries.get(name)
            return replace(record) if record else None

    def put_registry(self, record: RegistryRecord) -> None:
        with self._lock:
            if record.name in self.registries:
                raise ValueError(f"registry {record.name!r} already exists")
            # As the DynamoDB store writes a new registry: its times start at its creation,
            # and a new registry is never being deleted.
            self.registries[record.name] = replace(
                record,
                storage_updated_at=record.storage_updated_at or record.created_at,
                subscription_created_at=record.subscription_created_at or record.created_at,
                subscription_updated_at=record.subscription_updated_at or record.created_at,
                deleting=False,
            )

    def list_registries(self, account_id: str) -> list[RegistryRecord]:
        with self._lock:
            return [
                replace(r)
                for _, r in sorted(self.registries.items())
                if r.account_id == account_id and not r.deleting
            ]

    def mark_registry_deleting(self, name: str) -> bool:
        with self._lock:
            record = self.registries.get(name)
            if record is None or record.deleting:
                return False
            record.deleting = True
            return True

    def list_deleting_registries(self, limit: int) -> list[str]:
        with self._lock:
            return sorted(n for n, r in self.registries.items() if r.deleting)[:limit]

    def purge_registry(self, name: str, budget: int) -> bool:
        """As the DynamoDB store: at most ``budget`` items per call, repository by
        repository, then the registry's blobs; the record (and so the name) last, once
        nothing of the incarnation is left."""
        with self._lock:
            record = self.registries.get(name)
            if record is None:
                return True
            if not record.deleting:
                return False
            rid = record.registry_id
            left = budget
            repositories = self.repositories.get(rid, set())
            # Items of repositories first (any whose repository is gone too), then each
            # repository, so an interrupted purge never leaves items nothing can list.
            owned = sorted({k for table in self._repository_tables() for k in table if k[0] == rid})
            for key in owned:
                for table in self._repository_tables():
                    items = table.get(key, {})
                    while items:
                        if left <= 0:
                            return False
                        del items[next(iter(items))]
                        left -= 1
                    table.pop(key, None)
                if key[1] in repositories:
                    if left <= 0:
                        return False
                    repositories.discard(key[1])
                    left -= 1
            for repository in sorted(repositories):
                if left <= 0:
                    return False
                repositories.discard(repository)
                left -= 1
            blobs = self.registry_blobs.get(rid, {})
            while blobs:
                if left <= 0:
                    return False
                del blobs[next(iter(blobs))]
                left -= 1
            self.repositories.pop(rid, None)
            self.registry_blobs.pop(rid, None)
            del self.registries[name]
            return True

    def get_registry_by_id(self, registry_id: str) -> RegistryRecord | None:
        # The DynamoDB store reads an identity item; a scan is as good here.
        with self._lock:
            for record in self.registries.values():
                if record.registry_id == registry_id:
                    return replace(record)
            return None

    def ensure_registry_identity(self, record: RegistryRecord) -> None:
        """Nothing to write: get_registry_by_id scans the records here."""

    def set_egress_capped(self, name: str, registry_id: str, month: str) -> None:
        with self._lock:
            record = self.registries.get(name)
            if (
                record is not None
                and record.registry_id == registry_id
                and (record.egress_capped_month or "") < month
            ):
                record.egress_capped_month = month

    def correct_usage(
        self, seen: RegistryRecord, storage_bytes: int, repository_count: int, now: datetime
    ) -> bool:
        with self._lock:
            record = self.registries.get(seen.name)
            if (
                record is None
                or record.deleting
                or record.registry_id != seen.registry_id
                or record.storage_bytes != seen.storage_bytes
                or record.repository_count != seen.repository_count
                or record.storage_updated_at != seen.storage_updated_at
                or record.usage_version != seen.usage_version
            ):
                return False
            if storage_bytes != record.storage_bytes:
                record.storage_updated_at = now
            record.storage_bytes, record.repository_count = storage_bytes, repository_count
            record.usage_version += 1
            return True

    def update_subscription(self, seen: RegistryRecord, plan: str, now: datetime) -> bool:
        limits = tier(plan)
        with self._lock:
            record = self.registries.get(seen.name)
            if record is None or record.registry_id != seen.registry_id:
                return False
            storage, repositories = limits.storage_limit, limits.repository_limit
            if (storage is not None and record.storage_bytes > storage) or (
                repositories is not None and record.repository_count > repositories
            ):
                return False
            record.plan = plan
            record.subscription_updated_at = now
            return True

    def get_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        with self._lock:
            record = self.tokens.get(token_hash)
            return _copy_token(record) if record else None

    def put_token(self, record: TokenRecord) -> None:
        with self._lock:
            self.tokens[record.token_hash] = _copy_token(record)

    def get_token_by_id(self, account_id: str, token_id: str) -> TokenRecord | None:
        with self._lock:
            for record in self.tokens.values():
                if record.account_id == account_id and record.token_id == token_id:
                    return _copy_token(record)
            return None

    def list_tokens(self, account_id: str, after: str | None, limit: int) -> list[TokenRecord]:
        with self._lock:
            found = sorted(
                (t for t in self.tokens.values() if t.account_id == account_id),
                key=lambda t: t.token_id,
            )
            return [_copy_token(t) for t in found if after is None or t.token_id > after][:limit]

    def delete_token(self, token_hash: str) -> None:
        with self._lock:
            self.tokens.pop(token_hash, None)

    def touch_token(self, token_hash: str, now: datetime) -> None:
        with self._lock:
            record = self.tokens.get(token_hash)
            if record is not None:  # revoked meanwhile: nothing to record
                record.last_used_at = now

    # ------------------------------------------------------------ repositories

    def repository_exists(self, repo: RepositoryName) -> bool:
        with self._lock:
            return repo.repository in self.repositories.get(repo.rid, set())

    def list_repositories(self, registry_id: str, after: str | None, limit: int) -> list[str]:
        with self._lock:
            names = sorted(self.repositories.get(registry_id, set()))
            return [n for n in names if after is None or n > after][:limit]

    def count_repository(self, repo: RepositoryName) -> tuple[int, int]:
        with self._lock:
            return len(self.tags.get(_key(repo), {})), len(self.manifests.get(_key(repo), {}))

    def delete_repository(
        self, repo: RepositoryName, protected: Callable[[str], str | None] | None = None
    ) -> bool:
        with self._lock:
            if not self.repository_exists(repo):
                return False
            record = self._live(repo)
            for name in sorted(self.tags.get(_key(repo), {})):
                refusal = protected(name) if protected else None
                if refusal is not None:
                    raise TagImmutableError(refusal, detail={"tag": name})
            self.repositories[repo.rid].discard(repo.repository)
            record.repository_count -= 1
            record.usage_version += 1
            for table in self._repository_tables():
                table.pop(_key(repo), None)
            return True

    def _create_repository(self, repo: RepositoryName) -> None:
        record = self._live(repo)
        repos = self.repositories.setdefault(repo.rid, set())
        if repo.repository not in repos:
            repos.add(repo.repository)
            record.repository_count += 1
            record.usage_version += 1

    # ------------------------------------------------------------ blobs

    def get_blob_link(self, repo: RepositoryName, digest: str) -> BlobRecord | None:
        with self._lock:
            record = self.links.get(_key(repo), {}).get(digest)
            return replace(record) if record else None

    def get_registry_blob(self, registry_id: str, digest: str) -> BlobRecord | None:
        with self._lock:
            record = self.registry_blobs.get(registry_id, {}).get(digest)
            return replace(record) if record else None

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
        # ``exists`` only saves the DynamoDB store a failed guess; here the state is known.
        with self._lock:
            record = self._live(repo)
            if upload_id is not None:
                session = self.uploads.get(upload_id)
                if session is None or session.version != upload_version:
                    raise BlobUploadUnknownError(
                        "the upload was completed or changed by a concurrent request",
                        detail={"upload": upload_id},
                    )
            blobs = self.registry_blobs.setdefault(repo.rid, {})
            new = digest not in blobs
            # Refused before anything changes, as the DynamoDB transaction's condition.
            quotas.check_commit(
                record, size if new else 0, 0 if self.repository_exists(repo) else 1
            )
            if upload_id is not None:
                del self.uploads[upload_id]
            if new:
                blobs[digest] = BlobRecord(digest, size, now, key)
                record.storage_bytes += size
                record.storage_updated_at = now
                record.usage_version += 1
            else:
                blobs[digest].touched_at = now  # referenced again: see registry.gc
            self._create_repository(repo)
            stored = blobs[digest].key
            self.links.setdefault(_key(repo), {})[digest] = BlobRecord(digest, size, now, stored)
            return new

    def unlink_blob(self, repo: RepositoryName, digest: str) -> bool:
        with self._lock:
            if digest not in self.links.get(_key(repo), {}):
                return False
            self._live(repo)
            return self.links[_key(repo)].pop(digest, None) is not None

    # ------------------------------------------------------------ manifests and tags

    def get_manifest(self, repo: RepositoryName, digest: str) -> ManifestRecord | None:
        with self._lock:
            record = self.manifests.get(_key(repo), {}).get(digest)
            return _copy_manifest(record) if record else None

    def get_tag(self, repo: RepositoryName, tag: str) -> TagRecord | None:
        with self._lock:
            record = self.tags.get(_key(repo), {}).get(tag)
            return _copy_tag(record) if record else None

    def get_manifests(
        self, repo: RepositoryName, digests: Sequence[str]
    ) -> dict[str, ManifestRecord]:
        with self._lock:
            known = self.manifests.get(_key(repo), {})
            return {d: _copy_manifest(known[d]) for d in digests if d in known}

    def check_references(
        self, repo: RepositoryName, blobs: Sequence[str], manifests: Sequence[str]
    ) -> _Refs:
        with self._lock:
            links = self.links.get(_key(repo), {})
            known = self.manifests.get(_key(repo), {})
            return _Refs(
                self.repository_exists(repo),
                sorted({d for d in blobs if d not in links}),
                sorted({d for d in manifests if d not in known}),
                {d: known[d].blobs_size for d in manifests if d in known},
            )

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
        # ``create_repository`` is the caller's guess, which the DynamoDB store corrects
        # when it was wrong; here the repository is simply created if it is missing, unless
        # the caller read the references in a repository that is gone now (deleted since).
        with self._lock:
            registry = self._live(repo)
            self._same_rules(registry, settings_version)
            if not create_repository and not self.repository_exists(repo):
                raise NameUnknownError(
                    f"repository {repo} was deleted while the manifest was pushed",
                    detail={"name": str(repo)},
                )
            existing = self.manifests.get(_key(repo), {}).get(record.digest)
            if existing is not None and existing.media_type != record.media_type:
                raise ManifestInvalidError(
                    f"this manifest was pushed as {existing.media_type}; "
                    f"it cannot also be {record.media_type}",
                    detail={"digest": record.digest},
                )
            if tag_immutable and tag is not None:
                current = self.tags.get(_key(repo), {}).get(tag)
                if current is not None and current.digest != record.digest:
                    raise TagImmutableError(f"tag {tag} of {repo} is immutable")
            if not self.repository_exists(repo):
                quotas.check_commit(registry, 0, 1)
            self._touch_references(repo, registry, record, now)
            self._create_repository(repo)
            self.manifests.setdefault(_key(repo), {})[record.digest] = _stored_manifest(record)
            if tag is not None:
                self.tags.setdefault(_key(repo), {})[tag] = TagRecord(
                    tag, record.digest, now, _tag_copy(record)
                )
            if record.subject is not None:
                self.referrers.setdefault(_key(repo), {})[(record.subject, record.digest)] = (
                    _referrer_entry(record, record.subject)
                )

    @staticmethod
    def _same_rules(registry: RegistryRecord, settings_version: int | None) -> None:
        if settings_version is not None and registry.settings_version != settings_version:
            raise SettingsChangedError("the registry's rules changed; read them again")

    def _touch_references(
        self, repo: RepositoryName, registry: RegistryRecord, record: ManifestRecord, now: datetime
    ) -> None:
        """What the DynamoDB store's manifest transaction does to what the manifest
        references: each blob record and child manifest must exist, and is touched."""
        blobs, children = sorted(set(record.blobs)), sorted(set(record.manifests))
        if record.references_in_body or len(blobs) + len(children) > MAX_TOUCHED:
            if registry.gc_active is not None:
                raise CollectionBusyError(repo.registry, len(blobs) + len(children))
            return
        held = self.registry_blobs.get(repo.rid, {})
        known = self.manifests.get(_key(repo), {})
        missing_blobs = [d for d in blobs if d not in held]
        missing_manifests = [d for d in children if d not in known]
        if missing_blobs or missing_manifests:
            raise ManifestBlobUnknownError(
                detail={"blobs": missing_blobs, "manifests": missing_manifests}
            )
        for digest in blobs:
            held[digest].touched_at = now
        for digest in children:
            known[digest].touched_at = now

    def delete_manifest(
        self,
        repo: RepositoryName,
        digest: str,
        protected: Callable[[str], str | None] | None = None,
        settings_version: int | None = None,
    ) -> bool:
        with self._lock:
            if digest not in self.manifests.get(_key(repo), {}):
                return False
            self._same_rules(self._live(repo), settings_version)
            tags = self.tags.get(_key(repo), {})
            for name in sorted(t for t, r in tags.items() if r.digest == digest):
                refusal = protected(name) if protected else None
                if refusal is not None:
                    raise TagImmutableError(refusal, detail={"tag": name})
            record = self.manifests[_key(repo)].pop(digest)
            for name in [t for t, r in tags.items() if r.digest == digest]:
                del tags[name]
            if record.subject is not None:
                self.referrers.get(_key(repo), {}).pop((record.subject, digest), None)
            return True

    def delete_tag(
        self, repo: RepositoryName, tag: str, settings_version: int | None = None
    ) -> bool:
        with self._lock:
            if tag not in self.tags.get(_key(repo), {}):
                return False
            self._same_rules(self._live(repo), settings_version)
            return self.tags[_key(repo)].pop(tag, None) is not None

    def list_tags(self, repo: RepositoryName, after: str | None, limit: int) -> list[TagRecord]:
        # DynamoDB orders sort keys by their UTF-8 bytes.
        with self._lock:
            tags = sorted(self.tags.get(_key(repo), {}).values(), key=lambda t: t.tag.encode())
            return [_copy_tag(t) for t in tags if after is None or t.tag.encode() > after.encode()][
                :limit
            ]

    def list_manifests(
        self, repo: RepositoryName, after: str | None, limit: int
    ) -> list[ManifestRecord]:
        with self._lock:
            found = sorted(self.manifests.get(_key(repo), {}).values(), key=lambda m: m.digest)
            return [_copy_manifest(m) for m in found if after is None or m.digest > after][:limit]

    def list_referrers(self, repo: RepositoryName, subject: str) -> list[ManifestRecord]:
        with self._lock:
            entries = self.referrers.get(_key(repo), {})
            return [_copy_manifest(entries[k]) for k in sorted(entries) if k[0] == subject]

    # ------------------------------------------------------------ garbage collection

    def begin_collection(self, registry: RegistryRecord, collection: Collection) -> None:
        with self._lock:
            record = self.registries.get(registry.name)
            if record is None or record.deleting or record.registry_id != registry.registry_id:
                raise NameUnknownError(detail={"registry": registry.name})
            if record.gc_active is not None:
                raise ConflictError(
                    f"a garbage collection is already running on {registry.name!r}",
                    detail={"garbage_collection": record.gc_active},
                )
            record.gc_active = collection.uuid
            record.read_only = collection.mode == GC_READ_ONLY
            self.collections.setdefault(registry.registry_id, {})[collection.uuid] = replace(
                collection
            )

    def get_collection(self, registry_id: str, gc_uuid: str) -> Collection | None:
        with self._lock:
            found = self.collections.get(registry_id, {}).get(gc_uuid)
            return replace(found) if found else None

    def list_collections(self, registry_id: str, after: str | None, limit: int) -> list[Collection]:
        with self._lock:
            found = sorted(self.collections.get(registry_id, {}).values(), key=lambda c: c.uuid)
            found.reverse()
            return [replace(c) for c in found if after is None or c.uuid < after][:limit]

    def save_collection(self, collection: Collection) -> bool:
        with self._lock:
            stored = self.collections.get(collection.registry_id, {}).get(collection.uuid)
            if stored is None or stored.version != collection.version:
                return False
            for name in COLLECTION_PROGRESS_FIELDS:
                setattr(stored, name, getattr(collection, name))
            stored.version += 1
            collection.version = stored.version
            return True

    def request_cancel(self, registry_id: str, gc_uuid: str) -> Collection | None:
        with self._lock:
            stored = self.collections.get(registry_id, {}).get(gc_uuid)
            if stored is None or not stored.active:
                return None
            stored.cancel_requested = True
            stored.status = GC_CANCELLING
            stored.version += 1
            return replace(stored)

    def finish_collection(self, collection: Collection) -> bool:
        with self._lock:
            if not self.save_collection(collection):
                return False
            registry = self.registries.get(collection.registry_name)
            if registry is not None and registry.gc_active == collection.uuid:
                registry.gc_active = None
                registry.read_only = False
            return True

    def scan_repository(
        self, repo: RepositoryName
    ) -> tuple[dict[str, ManifestRecord], list[TagRecord]]:
        with self._lock:
            manifests = {
                d: _copy_manifest(m) for d, m in self.manifests.get(_key(repo), {}).items()
            }
            tags = [_copy_tag(t) for _, t in sorted(self.tags.get(_key(repo), {}).items())]
            return manifests, tags

    def gc_delete_tag(self, repo: RepositoryName, tag: str, digest: str) -> bool:
        with self._lock:
            tags = self.tags.get(_key(repo), {})
            if tag not in tags or tags[tag].digest != digest:
                return False
            del tags[tag]
            return True

    def gc_delete_manifest(
        self,
        repo: RepositoryName,
        record: ManifestRecord,
        gc_uuid: str,
        touched_before: datetime | None,
    ) -> bool:
        with self._lock:
            stored = self.manifests.get(_key(repo), {}).get(record.digest)
            if stored is None or stored.revision != record.revision:
                return False
            if touched_before is not None and (
                stored.touched_at is not None and stored.touched_at >= touched_before
            ):
                return False
            del self.manifests[_key(repo)][record.digest]
            if stored.subject is not None:
                self.referrers.get(_key(repo), {}).pop((stored.subject, record.digest), None)
            self._count(repo.rid, gc_uuid, manifests_deleted=1)
            return True

    def _count(self, registry_id: str, gc_uuid: str, **added: int) -> None:
        collection = self.collections.get(registry_id, {}).get(gc_uuid)
        if collection is not None:
            for name, value in added.items():
                setattr(collection, name, getattr(collection, name) + value)

    def mark_blobs(self, gc_uuid: str, digests: Iterable[str]) -> None:
        with self._lock:
            self.marks.setdefault(gc_uuid, set()).update(digests)

    def marked_blobs(self, gc_uuid: str, first: str, last: str) -> set[str]:
        with self._lock:
            return {d for d in self.marks.get(gc_uuid, set()) if first <= d <= last}

    def list_registry_blobs(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[BlobRecord]:
        with self._lock:
            blobs = self.registry_blobs.get(registry_id, {})
            return [replace(blobs[d]) for d in sorted(blobs) if after is None or d > after][:limit]

    def gc_delete_blob(
        self,
        registry_name: str,
        registry_id: str,
        blob: BlobRecord,
        gc_uuid: str,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> bool:
        with self._lock:
            registry = self.registries.get(registry_name)
            stored = self.registry_blobs.get(registry_id, {}).get(blob.digest)
            if registry is None or registry.registry_id != registry_id or stored is None:
                return False
            if stored.key != blob.key or not collectable(stored, created_before, touched_before):
                return False
            del self.registry_blobs[registry_id][blob.digest]
            registry.storage_bytes -= stored.size
            registry.storage_updated_at = datetime.now(UTC)
            registry.usage_version += 1
            self._count(registry_id, gc_uuid, blobs_deleted=1, freed_bytes=stored.size)
            return True

    def list_links(self, repo: RepositoryName, after: str | None, limit: int) -> list[BlobRecord]:
        with self._lock:
            links = self.links.get(_key(repo), {})
            return [replace(links[d]) for d in sorted(links) if after is None or d > after][:limit]

    def get_registry_blobs(self, registry_id: str, digests: Sequence[str]) -> dict[str, BlobRecord]:
        with self._lock:
            held = self.registry_blobs.get(registry_id, {})
            return {d: replace(held[d]) for d in digests if d in held}

    def gc_delete_link(
        self,
        repo: RepositoryName,
        link: BlobRecord,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> bool:
        with self._lock:
            links = self.links.get(_key(repo), {})
            current = links.get(link.digest)
            if current is None or current.key != link.key:
                return False
            record = self.registry_blobs.get(repo.rid, {}).get(link.digest)
            if record is not None and not collectable(record, created_before, touched_before):
                return False
            del links[link.digest]
            return True

    def named_keys(self, registry_id: str, keys: Sequence[str]) -> set[str]:
        bodies = f"registries/{registry_id}/manifests/"
        with self._lock:
            named = {
                stored_key(registry_id, b)
                for b in self.registry_blobs.get(registry_id, {}).values()
            }
            for (rid, _), manifests in self.manifests.items():
                if rid == registry_id:
                    named.update(
                        manifest_key(rid, Digest.parse(m.digest), m.revision)
                        for m in manifests.values()
                        if m.body is None
                    )
            return {
                k
                for k in keys
                if k in named or (k.startswith(bodies) and k[len(bodies) :].count("/") < 2)
            }

    def forget_keys(self, registry_id: str, keys: Sequence[str]) -> None:
        """Nothing to forget: this store derives what names a key from the records."""

    def live_uploads(self, upload_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {u for u in upload_ids if u in self.uploads}

    def count_orphans_deleted(self, registry_id: str, gc_uuid: str, count: int) -> None:
        with self._lock:
            self._count(registry_id, gc_uuid, objects_deleted=count)

    # ------------------------------------------------------------ uploads

    def put_upload(self, session: UploadSession) -> None:
        with self._lock:
            self._live(_session_repo(session))
            if session.upload_id in self.uploads:
                raise ValueError(f"upload {session.upload_id} exists")
            self.uploads[session.upload_id] = _copy_session(session)

    def get_upload(self, upload_id: str) -> UploadSession | None:
        with self._lock:
            session = self.uploads.get(upload_id)
            return _copy_session(session) if session else None

    def update_upload(
        self, session: UploadSession, holder: str | None = None, now: datetime | None = None
    ) -> None:
        # As the port says, the registry is not re-checked: a session of a registry deleted
        # meanwhile may still advance, but committing its blob is refused.
        with self._lock:
            current = self.uploads.get(session.upload_id)
            if (
                current is None
                or current.version != session.version
                or current.held_by_other(now or datetime.now(UTC), holder)
            ):
                raise BlobUploadInvalidError("the upload was changed by a concurrent request")
            session.version += 1
            self.uploads[session.upload_id] = _copy_session(session)

    def delete_upload(
        self, upload_id: str, version: int | None = None, now: datetime | None = None
    ) -> bool:
        with self._lock:
            session = self.uploads.get(upload_id)
            if session is None:
                return False
            if version is not None and (
                session.version != version or session.held_by_other(now or datetime.now(UTC), None)
            ):
                return False
            del self.uploads[upload_id]
            return True

    def list_expired_uploads(self, now: datetime, limit: int) -> list[UploadSession]:
        # In expiry order, as the DynamoDB index (<expires_at>#<upload id>) lists them; a
        # session expires at ``expires_at`` (RegistryService.get_upload refuses it then).
        with self._lock:
            expired = [
                s for s in self.uploads.values() if s.expires_at is not None and s.expires_at <= now
            ]
            expired.sort(key=lambda s: (s.expires_at or now, s.upload_id))
            return [_copy_session(s) for s in expired[:limit]]

    # ------------------------------------------------------------ settings (registry.rules)

    def update_registry_settings(
        self,
        name: str,
        registry_id: str,
        settings: RegistrySettings,
        expected_version: int,
        now: datetime,
    ) -> RegistryRecord:
        with self._lock:
            record = self.registries.get(name)
            if record is None or record.deleting or record.registry_id != registry_id:
                raise NameUnknownError(f"registry {name!r} not found", detail={"registry": name})
            if record.suspended:
                raise AccountSuspendedError(record.account_id)
            if record.settings_version != expected_version:
                raise ConflictError(
                    f"the settings of registry {name!r} were changed by another request; "
                    "read them again"
                )
            record.settings = settings
            record.settings_version = expected_version + 1
            if settings.gc_schedule is not None:
                self.schedules[registry_id] = (name, settings.gc_schedule.next_run_after(now))
            else:
                self.schedules.pop(registry_id, None)
            return replace(record)

    def due_collection_schedules(self, now: datetime, limit: int) -> list[DueSchedule]:
        with self._lock:
            due = sorted((at, rid, name) for rid, (name, at) in self.schedules.items() if at <= now)
            return [DueSchedule(name, rid, at) for at, rid, name in due[:limit]]

    def advance_collection_schedule(
        self, registry_id: str, expected_next_run_at: datetime, next_run_at: datetime | None
    ) -> bool:
        with self._lock:
            entry = self.schedules.get(registry_id)
            if entry is None or entry[1] != expected_next_run_at:
                return False
            if next_run_at is None:
                del self.schedules[registry_id]
            else:
                self.schedules[registry_id] = (entry[0], next_run_at)
            return True
