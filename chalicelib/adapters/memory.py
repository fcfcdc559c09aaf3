"""In-memory BlobStore and MetadataStore with the same semantics as the AWS adapters, for
unit tests of the core (no network)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from chalicelib.registry.errors import BlobUploadInvalidError
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


class MemoryMetadataStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registries: dict[str, RegistryRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.repositories: dict[str, set[str]] = {}
        self.registry_blobs: dict[str, dict[str, BlobRecord]] = {}
        self.links: dict[RepositoryName, dict[str, BlobRecord]] = {}
        self.manifests: dict[RepositoryName, dict[str, ManifestRecord]] = {}
        self.tags: dict[RepositoryName, dict[str, TagRecord]] = {}
        self.uploads: dict[str, UploadSession] = {}

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
        for repo in [r for r in list(self.links) + list(self.manifests) if r.registry == name]:
            self.links.pop(repo, None)
            self.manifests.pop(repo, None)
            self.tags.pop(repo, None)
        self.repositories.pop(name, None)
        self.registry_blobs.pop(name, None)
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
        return len(self.tags.get(repo, {})), len(self.manifests.get(repo, {}))

    def delete_repository(self, repo: RepositoryName) -> bool:
        with self._lock:
            if not self.repository_exists(repo):
                return False
            self.repositories[repo.registry].discard(repo.repository)
            self.registries[repo.registry].repository_count -= 1
            for table in (self.links, self.manifests, self.tags):
                table.pop(repo, None)
            return True

    def get_manifests(
        self, repo: RepositoryName, digests: Sequence[str]
    ) -> dict[str, ManifestRecord]:
        known = self.manifests.get(repo, {})
        return {d: known[d] for d in digests if d in known}

    def list_manifests(
        self, repo: RepositoryName, after: str | None, limit: int
    ) -> list[ManifestRecord]:
        found = sorted(self.manifests.get(repo, {}).values(), key=lambda m: m.digest)
        return [m for m in found if after is None or m.digest > after][:limit]

    def repository_exists(self, repo: RepositoryName) -> bool:
        return repo.repository in self.repositories.get(repo.registry, set())

    def list_repositories(self, registry: str, after: str | None, limit: int) -> list[str]:
        names = sorted(self.repositories.get(registry, set()))
        return [n for n in names if after is None or n > after][:limit]

    def get_blob_link(self, repo: RepositoryName, digest: str) -> BlobRecord | None:
        return self.links.get(repo, {}).get(digest)

    def get_registry_blob(self, registry: str, digest: str) -> BlobRecord | None:
        return self.registry_blobs.get(registry, {}).get(digest)

    def _create_repository(self, repo: RepositoryName, now: datetime) -> None:
        repos = self.repositories.setdefault(repo.registry, set())
        if repo.repository not in repos:
            repos.add(repo.repository)
            self.registries[repo.registry].repository_count += 1

    def commit_blob(
        self,
        repo: RepositoryName,
        digest: str,
        size: int,
        now: datetime,
        upload_id: str | None = None,
        key: str | None = None,
        exists: bool = False,
    ) -> bool:
        with self._lock:
            if upload_id is not None:
                self.uploads.pop(upload_id, None)
            blobs = self.registry_blobs.setdefault(repo.registry, {})
            new = digest not in blobs
            if new:
                blobs[digest] = BlobRecord(digest, size, now, key)
                self.registries[repo.registry].storage_bytes += size
            self._create_repository(repo, now)
            stored = blobs[digest].key
            self.links.setdefault(repo, {})[digest] = BlobRecord(digest, size, now, stored)
            return new

    def unlink_blob(self, repo: RepositoryName, digest: str) -> bool:
        return self.links.get(repo, {}).pop(digest, None) is not None

    def get_manifest(self, repo: RepositoryName, digest: str) -> ManifestRecord | None:
        return self.manifests.get(repo, {}).get(digest)

    def get_tag(self, repo: RepositoryName, tag: str) -> TagRecord | None:
        return self.tags.get(repo, {}).get(tag)

    def check_references(
        self, repo: RepositoryName, blobs: Sequence[str], manifests: Sequence[str]
    ) -> _Refs:
        links = self.links.get(repo, {})
        known = self.manifests.get(repo, {})
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
            self._create_repository(repo, now)
            self.manifests.setdefault(repo, {})[record.digest] = record
            if tag is not None:
                self.tags.setdefault(repo, {})[tag] = TagRecord(tag, record.digest, now, record)

    def delete_manifest(self, repo: RepositoryName, digest: str) -> bool:
        with self._lock:
            if self.manifests.get(repo, {}).pop(digest, None) is None:
                return False
            tags = self.tags.get(repo, {})
            for name in [t for t, r in tags.items() if r.digest == digest]:
                del tags[name]
            return True

    def delete_tag(self, repo: RepositoryName, tag: str) -> bool:
        return self.tags.get(repo, {}).pop(tag, None) is not None

    def list_tags(self, repo: RepositoryName, after: str | None, limit: int) -> list[TagRecord]:
        tags = sorted(self.tags.get(repo, {}).values(), key=lambda t: t.tag.encode())
        return [t for t in tags if after is None or t.tag.encode() > after.encode()][:limit]

    def list_referrers(self, repo: RepositoryName, subject: str) -> list[ManifestRecord]:
        found = [m for m in self.manifests.get(repo, {}).values() if m.subject == subject]
        return sorted(found, key=lambda m: m.digest)

    def put_upload(self, session: UploadSession) -> None:
        self.uploads[session.upload_id] = replace(session, parts=list(session.parts))

    def get_upload(self, upload_id: str) -> UploadSession | None:
        session = self.uploads.get(upload_id)
        return replace(session, parts=list(session.parts)) if session else None

    def update_upload(self, session: UploadSession) -> None:
        with self._lock:
            current = self.uploads.get(session.upload_id)
            if current is None or current.version != session.version:
                raise BlobUploadInvalidError("the upload was changed by a concurrent request")
            session.version += 1
            self.uploads[session.upload_id] = replace(session, parts=list(session.parts))

    def delete_upload(self, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)

    def list_expired_uploads(self, now: datetime, limit: int) -> list[UploadSession]:
        expired = [s for s in self.uploads.values() if s.expires_at and s.expires_at <= now]
        return sorted(expired, key=lambda s: s.expires_at or now)[:limit]
