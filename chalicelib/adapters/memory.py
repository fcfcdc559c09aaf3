"""In-memory BlobStore and MetadataStore with the same semantics as the AWS adapters, for
unit tests of the core (no network)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from chalicelib.registry.errors import (
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    ManifestInvalidError,
    NameUnknownError,
)
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import (
    BlobRecord,
    ManifestRecord,
    RegistryRecord,
    TagRecord,
    TokenRecord,
    UploadSession,
)

MIN_PART = 5 * 1024 * 1024


def _etag(data: bytes) -> str:
    # S3's part ETag is the MD5 of the part: a replaced part no longer matches.
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.multipart: dict[str, dict[int, bytes]] = {}
        self.calls: list[str] = []

    def presign_get(self, key: str, expires_in: int) -> str:
        self.calls.append("presign_get")
        return f"memory://{key}?expires_in={expires_in}"

    def put_object(self, key: str, data: bytes) -> None:
        self.calls.append("put_object")
        self.objects[key] = bytes(data)

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

    def create_multipart(self, key: str) -> str:
        self.calls.append("create_multipart")
        upload_id = uuid.uuid4().hex
        self.multipart[upload_id] = {}
        return upload_id

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        self.calls.append("upload_part")
        self.multipart[multipart_id][number] = bytes(data)
        return _etag(data)

    def complete_multipart(
        self, key: str, multipart_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        self.calls.append("complete_multipart")
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

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        self.calls.append("abort_multipart")
        self.multipart.pop(multipart_id, None)

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


def _key(repo: RepositoryName) -> RepoKey:
    return repo.rid, repo.repository


def _session_repo(session: UploadSession) -> RepositoryName:
    return RepositoryName(session.registry, session.repository, session.registry_id)


class MemoryMetadataStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registries: dict[str, RegistryRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}
        # Keyed by registry id, as the DynamoDB store keys its items (see dynamo_models).
        self.repositories: dict[str, set[str]] = {}
        self.registry_blobs: dict[str, dict[str, BlobRecord]] = {}
        self.links: dict[RepoKey, dict[str, BlobRecord]] = {}
        self.manifests: dict[RepoKey, dict[str, ManifestRecord]] = {}
        self.tags: dict[RepoKey, dict[str, TagRecord]] = {}
        self.uploads: dict[str, UploadSession] = {}

    def _live(self, repo: RepositoryName) -> RegistryRecord:
        """The registry record if its name still names ``repo``'s live incarnation (the
        condition every DynamoDB write into a registry carries)."""
        record = self.registries.get(repo.registry)
        if record is None or record.deleting or record.registry_id != repo.rid:
            raise NameUnknownError(detail={"name": str(repo)})
        return record

    def get_registry(self, name: str) -> RegistryRecord | None:
        record = self.registries.get(name)
        return replace(record) if record else None

    def put_registry(self, record: RegistryRecord) -> None:
        if record.name in self.registries:
            raise ValueError(f"registry {record.name!r} already exists")
        self.registries[record.name] = replace(record)

    def list_registries(self, account_id: str) -> list[RegistryRecord]:
        return [
            replace(r)
            for r in self.registries.values()
            if r.account_id == account_id and not r.deleting
        ]

    def mark_registry_deleting(self, name: str) -> bool:
        record = self.registries.get(name)
        if record is None or record.deleting:
            return False
        record.deleting = True
        return True

    def list_deleting_registries(self, limit: int) -> list[str]:
        return sorted(n for n, r in self.registries.items() if r.deleting)[:limit]

    def purge_registry(self, name: str, budget: int) -> bool:
        record = self.registries.get(name)
        if record is None:
            return True
        if not record.deleting:
            return False
        rid = record.registry_id
        for table in (self.links, self.manifests, self.tags):
            for key in [k for k in table if k[0] == rid]:
                del table[key]
        self.repositories.pop(rid, None)
        self.registry_blobs.pop(rid, None)
        self.registries.pop(name, None)
        return True

    def update_subscription(self, name: str, plan: str, now: datetime) -> None:
        record = self.registries[name]
        record.plan = plan
        record.subscription_updated_at = now

    def get_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return self.tokens.get(token_hash)

    def put_token(self, record: TokenRecord) -> None:
        self.tokens[record.token_hash] = record

    def get_token_by_id(self, account_id: str, token_id: str) -> TokenRecord | None:
        for record in self.tokens.values():
            if record.account_id == account_id and record.token_id == token_id:
                return record
        return None

    def list_tokens(self, account_id: str, after: str | None, limit: int) -> list[TokenRecord]:
        found = sorted(
            (t for t in self.tokens.values() if t.account_id == account_id),
            key=lambda t: t.token_id,
        )
        return [t for t in found if after is None or t.token_id > after][:limit]

    def delete_token(self, token_hash: str) -> None:
        self.tokens.pop(token_hash, None)

    def touch_token(self, token_hash: str, now: datetime) -> None:
        record = self.tokens.get(token_hash)
        if record is not None:
            record.last_used_at = now

    def count_repository(self, repo: RepositoryName) -> tuple[int, int]:
        return len(self.tags.get(_key(repo), {})), len(self.manifests.get(_key(repo), {}))

    def delete_repository(self, repo: RepositoryName) -> bool:
        with self._lock:
            if not self.repository_exists(repo):
                return False
            record = self._live(repo)
            self.repositories[repo.rid].discard(repo.repository)
            record.repository_count -= 1
            for table in (self.links, self.manifests, self.tags):
                table.pop(_key(repo), None)
            return True

    def get_manifests(
        self, repo: RepositoryName, digests: Sequence[str]
    ) -> dict[str, ManifestRecord]:
        known = self.manifests.get(_key(repo), {})
        return {d: known[d] for d in digests if d in known}

    def list_manifests(
        self, repo: RepositoryName, after: str | None, limit: int
    ) -> list[ManifestRecord]:
        found = sorted(self.manifests.get(_key(repo), {}).values(), key=lambda m: m.digest)
        return [m for m in found if after is None or m.digest > after][:limit]

    def repository_exists(self, repo: RepositoryName) -> bool:
        return repo.repository in self.repositories.get(repo.rid, set())

    def list_repositories(self, registry_id: str, after: str | None, limit: int) -> list[str]:
        names = sorted(self.repositories.get(registry_id, set()))
        return [n for n in names if after is None or n > after][:limit]

    def get_blob_link(self, repo: RepositoryName, digest: str) -> BlobRecord | None:
        return self.links.get(_key(repo), {}).get(digest)

    def get_registry_blob(self, registry_id: str, digest: str) -> BlobRecord | None:
        return self.registry_blobs.get(registry_id, {}).get(digest)

    def _create_repository(self, repo: RepositoryName, now: datetime) -> None:
        record = self._live(repo)
        repos = self.repositories.setdefault(repo.rid, set())
        if repo.repository not in repos:
            repos.add(repo.repository)
            record.repository_count += 1

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
        with self._lock:
            record = self._live(repo)
            if upload_id is not None:
                session = self.uploads.get(upload_id)
                if session is None or session.version != upload_version:
                    raise BlobUploadUnknownError("the upload was completed or changed")
                del self.uploads[upload_id]
            blobs = self.registry_blobs.setdefault(repo.rid, {})
            new = digest not in blobs
            if new:
                blobs[digest] = BlobRecord(digest, size, now, key)
                record.storage_bytes += size
            self._create_repository(repo, now)
            stored = blobs[digest].key
            self.links.setdefault(_key(repo), {})[digest] = BlobRecord(digest, size, now, stored)
            return new

    def unlink_blob(self, repo: RepositoryName, digest: str) -> bool:
        return self.links.get(_key(repo), {}).pop(digest, None) is not None

    def get_manifest(self, repo: RepositoryName, digest: str) -> ManifestRecord | None:
        return self.manifests.get(_key(repo), {}).get(digest)

    def get_tag(self, repo: RepositoryName, tag: str) -> TagRecord | None:
        return self.tags.get(_key(repo), {}).get(tag)

    def check_references(
        self, repo: RepositoryName, blobs: Sequence[str], manifests: Sequence[str]
    ) -> _Refs:
        links = self.links.get(_key(repo), {})
        known = self.manifests.get(_key(repo), {})
        return _Refs(
            self.repository_exists(repo),
            sorted(d for d in blobs if d not in links),
            sorted(d for d in manifests if d not in known),
            {d: known[d].blobs_size for d in manifests if d in known},
        )

    def put_manifest(
        self,
        repo: RepositoryName,
        record: ManifestRecord,
        tag: str | None,
        create_repository: bool,
        now: datetime,
    ) -> None:
        with self._lock:
            existing = self.manifests.get(_key(repo), {}).get(record.digest)
            if existing is not None and existing.media_type != record.media_type:
                raise ManifestInvalidError(
                    f"this manifest was pushed as {existing.media_type}",
                    detail={"digest": record.digest},
                )
            self._create_repository(repo, now)
            self.manifests.setdefault(_key(repo), {})[record.digest] = record
            if tag is not None:
                self.tags.setdefault(_key(repo), {})[tag] = TagRecord(
                    tag, record.digest, now, record
                )

    def delete_manifest(self, repo: RepositoryName, digest: str) -> bool:
        with self._lock:
            if self.manifests.get(_key(repo), {}).pop(digest, None) is None:
                return False
            tags = self.tags.get(_key(repo), {})
            for name in [t for t, r in tags.items() if r.digest == digest]:
                del tags[name]
            return True

    def delete_tag(self, repo: RepositoryName, tag: str) -> bool:
        return self.tags.get(_key(repo), {}).pop(tag, None) is not None

    def list_tags(self, repo: RepositoryName, after: str | None, limit: int) -> list[TagRecord]:
        tags = sorted(self.tags.get(_key(repo), {}).values(), key=lambda t: t.tag.encode())
        return [t for t in tags if after is None or t.tag.encode() > after.encode()][:limit]

    def list_referrers(self, repo: RepositoryName, subject: str) -> list[ManifestRecord]:
        found = [m for m in self.manifests.get(_key(repo), {}).values() if m.subject == subject]
        return sorted(found, key=lambda m: m.digest)

    def put_upload(self, session: UploadSession) -> None:
        with self._lock:
            self._live(_session_repo(session))
            if session.upload_id in self.uploads:
                raise ValueError(f"upload {session.upload_id} exists")
            self.uploads[session.upload_id] = replace(session, parts=list(session.parts))

    def get_upload(self, upload_id: str) -> UploadSession | None:
        session = self.uploads.get(upload_id)
        return replace(session, parts=list(session.parts)) if session else None

    def update_upload(self, session: UploadSession) -> None:
        with self._lock:
            try:
                self._live(_session_repo(session))
            except NameUnknownError as exc:
                raise BlobUploadUnknownError(
                    "the registry of this upload no longer exists"
                ) from exc
            current = self.uploads.get(session.upload_id)
            if current is None or current.version != session.version:
                raise BlobUploadInvalidError("the upload was changed by a concurrent request")
            session.version += 1
            self.uploads[session.upload_id] = replace(session, parts=list(session.parts))

    def delete_upload(self, upload_id: str, version: int | None = None) -> bool:
        with self._lock:
            session = self.uploads.get(upload_id)
            if session is None or (version is not None and session.version != version):
                return False
            del self.uploads[upload_id]
            return True

    def list_expired_uploads(self, now: datetime, limit: int) -> list[UploadSession]:
        expired = [s for s in self.uploads.values() if s.expires_at and s.expires_at <= now]
        return sorted(expired, key=lambda s: s.expires_at or now)[:limit]
