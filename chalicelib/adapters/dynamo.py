"""MetadataStore on DynamoDB through PynamoDB (single table, see dynamo_models)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DeleteError,
    DoesNotExist,
    PutError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.registry import quotas
from chalicelib.registry.digests import Digest
from chalicelib.registry.errors import (
    AccountSuspendedError,
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    CollectionBusyError,
    ConcurrentWriteError,
    ConflictError,
    GarbageCollectionRunningError,
    ManifestBlobUnknownError,
    ManifestInvalidError,
    NameUnknownError,
    SettingsChangedError,
    TagImmutableError,
)
from chalicelib.registry.names import MAX_NAME_LENGTH, RepositoryName
from chalicelib.registry.plans import tier
from chalicelib.registry.records import (
    COLLECTION_PROGRESS_FIELDS,
    GC_CANCELLING,
    GC_FINAL_STATUSES,
    GC_READ_ONLY,
    BlobRecord,
    Collection,
    DirectUpload,
    ManifestRecord,
    RegistryRecord,
    TagRecord,
    TokenRecord,
    UploadPart,
    UploadSession,
)
from chalicelib.registry.rules import DueSchedule, RegistrySettings
from chalicelib.registry.service import manifest_key

from .dynamo_models import (
    IDENTITY,
    META,
    BlobKeyItem,
    BlobLinkItem,
    CollectionItem,
    GcScheduleItem,
    Item,
    ManifestItem,
    MarkItem,
    ReferenceProbe,
    ReferrerItem,
    RegistryBlobItem,
    RegistryIdentityItem,
    RegistryItem,
    RepositoryItem,
    TagItem,
    TokenItem,
    UploadItem,
)

# Optimistic writes re-read and retry this many times when a condition lost a race.
RETRIES = 4
# A transaction holds at most 100 items; a manifest push writes up to 6 of its own, and
# touches each blob and child manifest it references (registry.gc) in the rest.
MAX_TOUCHED = 94


def reg_pk(registry: str) -> str:
    return f"REG#{registry}"


def rid_pk(registry_id: str) -> str:
    return f"RID#{registry_id}"


def repo_pk(repo: RepositoryName) -> str:
    return f"REPO#{repo.rid}/{repo.repository}"


def _repository_key(repo: RepositoryName) -> tuple[str, str]:
    return rid_pk(repo.rid), f"REPO#{repo.repository}"


@dataclass
class FoundReferences:
    repository_exists: bool
    missing_blobs: list[str] = field(default_factory=list)
    missing_manifests: list[str] = field(default_factory=list)
    manifest_blob_sizes: dict[str, int] = field(default_factory=dict)


class DynamoMetadataStore:
    def __init__(self) -> None:
        self._connection: Connection | None = None

    def _require_live_registry(self, repo: RepositoryName) -> None:
        # Consistent: called right after a conditional write failed on the record, which an
        # eventually consistent read could still show as it was.
        item = _get(RegistryItem, reg_pk(repo.registry), META, consistent_read=True)
        registry = None if item is None else _registry_record(item)
        if registry is None or registry.deleting or registry.registry_id != repo.rid:
            raise NameUnknownError(detail={"name": str(repo)})
        if registry.suspended:
            raise AccountSuspendedError(registry.account_id)
        if registry.read_only:
            raise GarbageCollectionRunningError(registry.name, registry.gc_active)

    def _why_cancelled(
        self, exc: TransactWriteError, labels: dict[str, list[str]], repo: RepositoryName
    ) -> set[str]:
        """Which labelled conditions a cancelled transaction failed. Anything but lost
        conditions is re-raised, and a failed registry condition becomes the error that
        says why (the registry is gone, being deleted, or taken again)."""
        failed = _failed_conditions(exc, labels)
        if failed is None:
            raise exc
        if "registry" in failed:
            self._require_live_registry(repo)
        return failed

    def _transaction(self) -> TransactWrite:
        if self._connection is None:
            self._connection = Connection(region=Item.Meta.region)
        return TransactWrite(connection=self._connection)

    # ------------------------------------------------------------ registries, tokens

    def get_registry(self, name: str) -> RegistryRecord | None:
        item = _get(RegistryItem, reg_pk(name), META)
        return None if item is None else _registry_record(item)

    def put_registry(self, record: RegistryRecord) -> None:
        """Create the registry if its name is free (names are globally unique)."""
        item = RegistryItem(
            reg_pk(record.name),
            META,
            gsi1pk=f"ACCOUNT#{record.account_id}",
            gsi1sk=f"REG#{record.name}",
            registry_id=record.registry_id,
            account_id=record.account_id,
            plan=record.plan,
            storage_bytes=record.storage_bytes,
            repository_count=record.repository_count,
            read_only=record.read_only,
            created_at=record.created_at,
            storage_updated_at=record.storage_updated_at or record.created_at,
            subscription_created_at=record.subscription_created_at or record.created_at,
            subscription_updated_at=record.subscription_updated_at or record.created_at,
        )
        # With its identity item, at once (get_registry_by_id: the metering knows ids only).
        identity = RegistryIdentityItem(
            rid_pk(record.registry_id), IDENTITY, registry_name=record.name
        )
        try:
            with self._transaction() as tx:
                tx.save(item, condition=RegistryItem.pk.does_not_exist())
                tx.save(identity)
        except TransactWriteError as exc:
            labels = {"check": [], "delete": [], "put": ["registry", "id"], "update": []}
            if "registry" in (_failed_conditions(exc, labels) or ()):
                raise ValueError(f"registry {record.name!r} already exists") from exc
            raise

    def list_registries(self, account_id: str) -> list[RegistryRecord]:
        # Deleting registries move to the DELETING partition of the index: never listed.
        return [
            _registry_record(cast(RegistryItem, found))
            for found in RegistryItem.gsi1.query(f"ACCOUNT#{account_id}")
        ]

    def mark_registry_deleting(self, name: str) -> bool:
        try:
            RegistryItem(reg_pk(name), META).update(
                actions=[
                    RegistryItem.deleting.set(True),
                    RegistryItem.gsi1pk.set("DELETING"),
                    RegistryItem.gsi1sk.set(name),
                ],
                condition=RegistryItem.pk.exists() & _registry_live(),
            )
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def list_deleting_registries(self, limit: int) -> list[str]:
        return [str(i.gsi1sk) for i in RegistryItem.gsi1.query("DELETING", limit=limit)]

    def purge_registry(self, name: str, budget: int) -> bool:
        """Delete a deleting registry's items, repository by repository, within ``budget``.

        Safe to stop anywhere and run again: it only ever deletes what a query still finds.
        The record (and so the name) goes last, and only if it still names the incarnation
        whose items were deleted.
        """
        record = self.get_registry(name)
        if record is None:
            return True
        if not record.deleting:
            return False
        rid = record.registry_id
        deleted = 0
        for child in Item.query(rid_pk(rid), Item.sk.startswith("REPO#")):
            repo = RepositoryName(name, child.sk.removeprefix("REPO#"), rid)
            with Item.batch_write() as batch:
                for item in Item.query(repo_pk(repo), attributes_to_get=["pk", "sk"]):
                    batch.delete(item)
                    deleted += 1
                    if deleted >= budget:
                        return False
            child.delete()
            deleted += 1
        with Item.batch_write() as batch:
            for item in Item.query(rid_pk(rid), attributes_to_get=["pk", "sk"]):
                batch.delete(item)
                deleted += 1
                if deleted >= budget:
                    return False
        Item(reg_pk(name), META).delete(
            condition=(RegistryItem.deleting == True) & (RegistryItem.registry_id == rid)  # noqa: E712
        )
        return True

    def get_registry_by_id(self, registry_id: str) -> RegistryRecord | None:
        identity = _get(RegistryIdentityItem, rid_pk(registry_id), IDENTITY)
        if identity is None:
            return None
        record = self.get_registry(identity.registry_name)
        return record if record is not None and record.registry_id == registry_id else None

    def ensure_registry_identity(self, record: RegistryRecord) -> None:
        if _get(RegistryIdentityItem, rid_pk(record.registry_id), IDENTITY) is None:
            # An id is never reused, so the item can only ever name this record's name.
            RegistryIdentityItem(
                rid_pk(record.registry_id), IDENTITY, registry_name=record.name
            ).save()

    def set_egress_capped(self, name: str, registry_id: str, month: str) -> None:
        try:
            RegistryItem(reg_pk(name), META).update(
                actions=[RegistryItem.egress_capped_month.set(month)],
                # The month order is part of the write: a late log of an earlier month,
                # metered at the same time as a later one, never replaces the later flag.
                condition=RegistryItem.pk.exists()
                & (RegistryItem.registry_id == registry_id)
                & (
                    RegistryItem.egress_capped_month.does_not_exist()
                    | (RegistryItem.egress_capped_month < month)
                ),
            )
        except UpdateError as exc:
            if not _is_condition_failure(exc):
                raise

    def update_subscription(self, seen: RegistryRecord, plan: str, now: datetime) -> bool:
        # The same limits a commit checks, on the counters as they are when this lands: a
        # downgrade and a push racing it end as one of the two serial orders.
        condition: Condition = RegistryItem.registry_id == seen.registry_id
        limits = tier(plan)
        if limits.storage_limit is not None:
            condition &= RegistryItem.storage_bytes <= limits.storage_limit
        if limits.repository_limit is not None:
            condition &= RegistryItem.repository_count <= limits.repository_limit
        try:
            RegistryItem(reg_pk(seen.name), META).update(
                actions=[
                    RegistryItem.plan.set(plan),
                    RegistryItem.subscription_updated_at.set(now),
                ],
                condition=condition,
            )
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def correct_usage(
        self, seen: RegistryRecord, storage_bytes: int, repository_count: int, now: datetime
    ) -> bool:
        """Set the counters to a recount's result if the record is still the live
        incarnation ``seen`` with exactly its counters, storage time and usage version
        (every counter change bumps the version, so a commit since the read fails this,
        even one whose +1 another's -1 undid); False otherwise."""
        stamped: Condition = (
            RegistryItem.storage_updated_at == seen.storage_updated_at
            if seen.storage_updated_at is not None
            else RegistryItem.storage_updated_at.does_not_exist()
        )
        versioned: Condition = (
            RegistryItem.usage_version == seen.usage_version
            if seen.usage_version
            else RegistryItem.usage_version.does_not_exist() | (RegistryItem.usage_version == 0)
        )
        condition: Condition = (
            (RegistryItem.registry_id == seen.registry_id)
            & _registry_live()
            & (RegistryItem.storage_bytes == seen.storage_bytes)
            & (RegistryItem.repository_count == seen.repository_count)
            & stamped
            & versioned
        )
        actions: list[Action] = [
            RegistryItem.storage_bytes.set(storage_bytes),
            RegistryItem.repository_count.set(repository_count),
            RegistryItem.usage_version.add(1),
        ]
        if storage_bytes != seen.storage_bytes:
            actions.append(RegistryItem.storage_updated_at.set(now))
        try:
            RegistryItem(reg_pk(seen.name), META).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def get_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        item = _get(TokenItem, f"TOKEN#{token_hash}", META)
        return None if item is None else _token_record(item)

    def get_token_by_id(self, account_id: str, token_id: str) -> TokenRecord | None:
        for found in TokenItem.gsi1.query(f"TOKENS#{account_id}", TokenItem.gsi1sk == token_id):
            return _token_record(cast(TokenItem, found))
        return None

    def list_tokens(self, account_id: str, after: str | None, limit: int) -> list[TokenRecord]:
        condition = TokenItem.gsi1sk > after if after is not None else None
        items = TokenItem.gsi1.query(f"TOKENS#{account_id}", condition, limit=limit)
        return [_token_record(cast(TokenItem, i)) for i in items]

    def delete_token(self, token_hash: str) -> None:
        Item(f"TOKEN#{token_hash}", META).delete()

    def touch_token(self, token_hash: str, now: datetime) -> None:
        try:
            TokenItem(f"TOKEN#{token_hash}", META).update(
                actions=[TokenItem.last_used_at.set(now)], condition=TokenItem.pk.exists()
            )
        except UpdateError as exc:
            if not _is_condition_failure(exc):  # revoked meanwhile: nothing to record
                raise

    def put_token(self, record: TokenRecord) -> None:
        TokenItem(
            f"TOKEN#{record.token_hash}",
            META,
            gsi1pk=f"TOKENS#{record.account_id}",
            gsi1sk=record.token_id,
            token_id=record.token_id,
            account_id=record.account_id,
            name=record.name,
            scopes=set(record.scopes),
            registries=set(record.registries) if record.registries else None,
            all_registries=record.registries is None,
            expires_at=record.expires_at,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            suspended=record.suspended or None,
        ).save()

    # ------------------------------------------------------------ repositories

    def repository_exists(self, repo: RepositoryName) -> bool:
        return _exists(*_repository_key(repo))

    def _repository_state(self, repo: RepositoryName) -> bool:
        """Whether the repository exists (after a write's guess proved wrong); a repository
        being deleted takes no writes."""
        item = _get(RepositoryItem, *_repository_key(repo), consistent_read=True)
        if item is not None and item.deleting:
            raise NameUnknownError(
                f"repository {repo} is being deleted", detail={"name": str(repo)}
            )
        return item is not None

    def list_repositories(self, registry_id: str, after: str | None, limit: int) -> list[str]:
        condition = _after("REPO#", after, MAX_NAME_LENGTH)
        if condition is None:
            return []
        # Consistent: garbage collection lists repositories to find every manifest that
        # committed before it began (registry.gc); a catalog page costs one read unit more.
        items = Item.query(rid_pk(registry_id), condition, limit=limit, consistent_read=True)
        return [i.sk.removeprefix("REPO#") for i in items]

    def count_repository(self, repo: RepositoryName) -> tuple[int, int]:
        tags = Item.count(repo_pk(repo), Item.sk.startswith("TAG#"))
        manifests = Item.count(repo_pk(repo), Item.sk.startswith("MANIFEST#"))
        return tags, manifests

    def delete_repository(
        self, repo: RepositoryName, protected: Callable[[str], str | None] | None = None
    ) -> bool:
        """Its manifests, tags, referrer entries and blob links, then the repository and
        its count. Blobs stay in the registry until garbage collection.

        The repository is marked deleting first, and every push into it is conditional on
        that mark's absence: a push racing the deletion either landed before the mark (and
        is deleted with the rest) or is refused; it never leaves items in a repository that
        no longer exists. A deletion interrupted after the mark is finished by the next one.
        """
        for _ in range(RETRIES):
            labels: dict[str, list[str]] = {
                "check": ["registry"],
                "delete": [],
                "put": [],
                "update": ["repo"],
            }
            try:
                with self._transaction() as tx:
                    tx.condition_check(
                        RegistryItem, reg_pk(repo.registry), META, condition=_registry_is(repo)
                    )
                    tx.update(
                        RepositoryItem(*_repository_key(repo)),
                        actions=[RepositoryItem.deleting.set(True)],
                        condition=Item.pk.exists(),
                    )
            except TransactWriteError as exc:
                failed = self._why_cancelled(exc, labels, repo)
                if "repo" in failed:
                    return False
                continue  # a conflict with a concurrent write: try again
            break
        else:
            raise ConcurrentWriteError("repository deletion raced with other writers; retry")
        if protected is not None:
            # Marked: no push can set a tag now, so these are all the tags that would go.
            for tag in TagItem.query(
                repo_pk(repo),
                Item.sk.startswith("TAG#"),
                consistent_read=True,
                attributes_to_get=["pk", "sk"],
            ):
                name = tag.sk.removeprefix("TAG#")
                refusal = protected(name)
                if refusal is not None:
                    try:  # the repository stays, open to pushes again
                        RepositoryItem(*_repository_key(repo)).update(
                            actions=[RepositoryItem.deleting.remove()],
                            condition=RepositoryItem.deleting == True,  # noqa: E712
                        )
                    except UpdateError as exc:
                        if not _is_condition_failure(exc):
                            raise
                    raise TagImmutableError(refusal, detail={"tag": name})
        with Item.batch_write() as batch:
            for item in Item.query(repo_pk(repo), attributes_to_get=["pk", "sk"]):
                batch.delete(item)
        for _ in range(RETRIES):
            labels = {"check": [], "delete": ["repo"], "put": [], "update": ["registry"]}
            try:
                with self._transaction() as tx:
                    tx.delete(
                        Item(*_repository_key(repo)),
                        condition=RepositoryItem.deleting == True,  # noqa: E712
                    )
                    tx.update(
                        RegistryItem(reg_pk(repo.registry), META),
                        actions=[
                            RegistryItem.repository_count.add(-1),
                            RegistryItem.usage_version.add(1),
                        ],
                        condition=_registry_is(repo),
                    )
            except TransactWriteError as exc:
                lost = _failed_conditions(exc, labels)
                if lost is None:
                    raise
                if "repo" in lost:
                    return False  # a concurrent deletion finished first
                if "registry" in lost:
                    self._require_live_registry(repo)
                continue
            return True
        raise ConcurrentWriteError("repository deletion raced with other writers; retry")

    # ------------------------------------------------------------ blobs

    def get_blob_link(self, repo: RepositoryName, digest: str) -> BlobRecord | None:
        item = _get(BlobLinkItem, repo_pk(repo), f"LINK#{digest}")
        return None if item is None else _blob_record(digest, item)

    def get_registry_blob(self, registry_id: str, digest: str) -> BlobRecord | None:
        item = _get(RegistryBlobItem, rid_pk(registry_id), f"BLOB#{digest}")
        return None if item is None else _blob_record(digest, item)

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
        """One transaction: the registry's blob record + storage counter (first time only),
        the link, the repository + repository counter (first push only), and the end of
        the upload session that produced the blob.

        It guesses what exists (a new blob, an existing repository: the common push) and
        states the guess as conditions, so the usual push is this one request. When a guess
        was wrong the transaction is cancelled, and the cancellation reasons say which, so
        the retry needs no read either, except when the blob turns out to exist already:
        the link must name the key of the registry's copy, which only a read can tell
        (``exists`` says the caller read it, as a mount does, and ``key`` is that key).
        """
        blob_exists, repo_exists = exists, True
        repo_flipped = False
        link_key = key
        for attempt in range(RETRIES):
            labels: dict[str, list[str]] = {"check": [], "delete": [], "put": [], "update": []}
            blob_key = (rid_pk(repo.rid), f"BLOB#{digest}")
            repo_key = _repository_key(repo)
            live = _registry_is(repo)
            try:
                with self._transaction() as tx:
                    if blob_exists:
                        # The link copies the record's key: assert the record still has it.
                        # Referenced again: touched, for an online collection (registry.gc).
                        tx.update(
                            RegistryBlobItem(*blob_key),
                            actions=[RegistryBlobItem.touched_at.set(now)],
                            condition=_blob_stored_at(link_key),
                        )
                        labels["update"].append("blob")
                    else:
                        tx.save(
                            RegistryBlobItem(*blob_key, size=size, created_at=now, key=key),
                            condition=Item.pk.does_not_exist(),
                        )
                        labels["put"].append("blob")
                        if key is not None:
                            # The key index entry: the orphan sweep's proof that someone
                            # owns the object at ``key``.
                            tx.save(BlobKeyItem(rid_pk(repo.rid), f"KEY#{key}", digest=digest))
                            labels["put"].append("key")
                    if repo_exists:
                        tx.condition_check(RepositoryItem, *repo_key, condition=_repository_open())
                        labels["check"].append("repo")
                    else:
                        tx.save(
                            RepositoryItem(*repo_key, created_at=now),
                            condition=Item.pk.does_not_exist(),
                        )
                        labels["put"].append("repo")
                    counters: list[Action] = []
                    if not blob_exists:
                        counters.append(RegistryItem.storage_bytes.add(size))
                        counters.append(RegistryItem.storage_updated_at.set(now))
                    if not repo_exists:
                        counters.append(RegistryItem.repository_count.add(1))
                    if counters:
                        counters.append(RegistryItem.usage_version.add(1))
                    # Every write asserts that the registry is live, so nothing lands in a
                    # registry whose content is being purged; what it adds must fit under
                    # the plan's hard limits (registry.quotas).
                    room = _within_limits(0 if blob_exists else size, 0 if repo_exists else 1)
                    if counters:
                        tx.update(
                            RegistryItem(reg_pk(repo.registry), META),
                            actions=counters,
                            condition=live if room is None else live & room,
                        )
                        labels["update"].append("registry")
                    else:
                        tx.condition_check(
                            RegistryItem, reg_pk(repo.registry), META, condition=live
                        )
                        labels["check"].append("registry")
                    tx.save(
                        BlobLinkItem(
                            repo_pk(repo), f"LINK#{digest}", size=size, created_at=now, key=link_key
                        )
                    )
                    labels["put"].append("link")
                    if upload_id is not None:
                        # Only the state this request verified may end the session.
                        tx.delete(
                            Item(f"UPLOAD#{upload_id}", META),
                            condition=UploadItem.version == upload_version,
                        )
                        labels["delete"].append("upload")
            except TransactWriteError as exc:
                failed = self._why_cancelled(exc, labels, repo)
                if "upload" in failed:
                    raise BlobUploadUnknownError(
                        "the upload was completed or changed by a concurrent request",
                        detail={"upload": upload_id},
                    ) from exc
                if "blob" in failed:
                    existing = self.get_registry_blob(repo.rid, digest)
                    blob_exists = existing is not None
                    link_key = existing.key if existing is not None else key
                if "repo" in failed:
                    # A wrong guess flips without a read (the first push into a repository
                    # costs one more transaction, not a read); wrong twice, the repository
                    # is being deleted or raced: read what it is.
                    repo_exists = self._repository_state(repo) if repo_flipped else not repo_exists
                    repo_flipped = True
                if "registry" in failed and not failed & {"blob", "repo"}:
                    # Live and writable (or _why_cancelled raised): no room under the plan's
                    # limits, unless a guess was wrong after all (a concurrent push stored
                    # the blob or created the repository) or the counters moved since.
                    blob_exists, repo_exists, link_key = self._room_for_commit(
                        repo, digest, size, blob_exists, repo_exists, link_key
                    )
                if "conflict" in failed:
                    _back_off(attempt)
                continue
            return not blob_exists
        raise ConcurrentWriteError("blob commit raced with other writers; retry")

    def _room_for_commit(
        self,
        repo: RepositoryName,
        digest: str,
        size: int,
        blob_exists: bool,
        repo_exists: bool,
        link_key: str | None,
    ) -> tuple[bool, bool, str | None]:
        """After a commit's registry condition failed on a live registry: raise the quota
        refusal if the registry, read now, has no room for what the commit adds; else the
        guesses for the retry (blob exists, repository exists, the link's key)."""
        guesses = blob_exists, repo_exists, link_key
        item = _get(RegistryItem, reg_pk(repo.registry), META, consistent_read=True)
        if item is None:
            return guesses
        registry = _registry_record(item)
        new_bytes = 0 if blob_exists else size
        new_repositories = 0 if repo_exists else 1
        if new_bytes and quotas.storage_exceeded(registry, new_bytes):
            # A cancellation's reasons need not name every failed condition: before refusing
            # a blob for the room it takes, make sure the registry does not hold it.
            held = _get(RegistryBlobItem, rid_pk(repo.rid), f"BLOB#{digest}", consistent_read=True)
            if held is not None:
                return True, repo_exists, held.key
        if (
            new_repositories
            and quotas.repositories_exceeded(registry, new_repositories)
            and self._repository_state(repo)
        ):
            return blob_exists, True, link_key
        quotas.check_commit(registry, new_bytes, new_repositories)
        return guesses  # there is room now (a collection freed some, or an upgrade)

    def unlink_blob(self, repo: RepositoryName, digest: str) -> bool:
        return self._delete_in_registry(repo, BlobLinkItem(repo_pk(repo), f"LINK#{digest}"))

    def _delete_in_registry(
        self, repo: RepositoryName, item: Item, settings_version: int | None = None
    ) -> bool:
        """Delete ``item`` if it exists and the registry takes writes (it is not
        read-only for a garbage collection) with its rules at ``settings_version`` if given
        (SettingsChangedError otherwise); False if there was nothing to delete."""
        labels: dict[str, list[str]] = {
            "check": ["registry"],
            "delete": ["item"],
            "put": [],
            "update": [],
        }
        for attempt in range(RETRIES):
            try:
                with self._transaction() as tx:
                    tx.condition_check(
                        RegistryItem,
                        reg_pk(repo.registry),
                        META,
                        condition=_registry_is(repo, settings_version),
                    )
                    tx.delete(item, condition=Item.pk.exists())
            except TransactWriteError as exc:
                failed = self._why_cancelled(exc, labels, repo)
                if "registry" in failed:
                    self._explain_registry_refusal(repo, settings_version, False, [], [])
                if "item" in failed:
                    return False
                # The registry refused and, read again, gives no reason: it changed in
                # between (a read-only collection ended); or a conflict. Either way the
                # delete may simply be tried again.
                _back_off(attempt)
                continue
            return True
        raise ConcurrentWriteError("the deletion raced with another write; retry")

    # ------------------------------------------------------------ manifests and tags

    def get_manifest(self, repo: RepositoryName, digest: str) -> ManifestRecord | None:
        item = _get(ManifestItem, repo_pk(repo), f"MANIFEST#{digest}")
        return None if item is None else _manifest_record(item)

    def get_tag(self, repo: RepositoryName, tag: str) -> TagRecord | None:
        item = _get(TagItem, repo_pk(repo), f"TAG#{tag}")
        return None if item is None else _tag_record(item)

    def get_manifests(
        self, repo: RepositoryName, digests: Sequence[str]
    ) -> dict[str, ManifestRecord]:
        keys = [(repo_pk(repo), f"MANIFEST#{d}") for d in sorted(set(digests))]
        return {r.digest: r for r in (_manifest_record(i) for i in ManifestItem.batch_get(keys))}

    def check_references(
        self, repo: RepositoryName, blobs: Sequence[str], manifests: Sequence[str]
    ) -> FoundReferences:
        """One BatchGetItem: the repository, every referenced blob link and child manifest."""
        repo_key = _repository_key(repo)
        blob_keys = {(repo_pk(repo), f"LINK#{d}"): d for d in blobs}
        manifest_keys = {(repo_pk(repo), f"MANIFEST#{d}"): d for d in manifests}
        keys = [repo_key, *blob_keys, *manifest_keys]
        items = ReferenceProbe.batch_get(keys, attributes_to_get=["pk", "sk", "blobs_size"])
        found = {(i.pk, i.sk): i for i in items}
        return FoundReferences(
            repository_exists=repo_key in found,
            missing_blobs=sorted(d for k, d in blob_keys.items() if k not in found),
            missing_manifests=sorted(d for k, d in manifest_keys.items() if k not in found),
            manifest_blob_sizes={
                d: int(found[k].blobs_size or 0) for k, d in manifest_keys.items() if k in found
            },
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
        """Manifest, tag, referrer entry and (first push) repository in one transaction,
        conditional on the registry incarnation being live, the repository existing and not
        being deleted (or being created now), and the manifest, if it exists, having been
        pushed as the same media type (the first push decides how it is served).

        The same transaction touches every blob record and child manifest the manifest
        references, conditional on each existing: this is what an online garbage
        collection's deletions are conditional on (registry.gc), so that of a push and a
        deletion of something it references, one fails. A manifest referencing more than
        fits in the transaction is instead conditional on no collection running.

        ``tag_immutable``: the tag may be created or re-pushed with the digest it has, not
        moved (TagImmutableError). ``settings_version``: the registry's rules are still the
        version the caller judged the push by (SettingsChangedError otherwise)."""
        # The caller read the references (blob links, child manifests) in the repository
        # before this. If the repository existed then and is gone now, it was deleted in
        # between, links and all: re-creating it would leave a manifest whose blobs are gone.
        read_in_existing = not create_repository
        blobs, children = sorted(set(record.blobs)), sorted(set(record.manifests))
        large = record.references_in_body or len(blobs) + len(children) > MAX_TOUCHED
        registry_condition = _registry_is(repo, settings_version)
        if large:
            registry_condition = registry_condition & RegistryItem.gc_active.does_not_exist()
        for attempt in range(RETRIES):
            if attempt:
                create_repository = not self._repository_state(repo)
                if create_repository and read_in_existing:
                    raise NameUnknownError(
                        f"repository {repo} was deleted while the manifest was pushed",
                        detail={"name": str(repo)},
                    )
            labels: dict[str, list[str]] = {"check": [], "delete": [], "put": [], "update": []}
            try:
                with self._transaction() as tx:
                    tx.save(
                        ManifestItem(
                            repo_pk(repo),
                            f"MANIFEST#{record.digest}",
                            gsi1pk=f"MANIFESTS#{repo.rid}",
                            gsi1sk=f"{repo.repository}@{record.digest}",
                            revision=record.revision,
                            media_type=record.media_type,
                            size=record.size,
                            body=record.body,
                            blobs=record.blobs or None,
                            manifests=record.manifests or None,
                            references_in_body=record.references_in_body,
                            blobs_size=record.blobs_size,
                            subject=record.subject,
                            artifact_type=record.artifact_type,
                            created_at=record.created_at,
                        ),
                        condition=ManifestItem.pk.does_not_exist()
                        | (ManifestItem.media_type == record.media_type),
                    )
                    labels["put"].append("manifest")
                    if tag is not None:
                        tx.save(
                            TagItem(
                                repo_pk(repo),
                                f"TAG#{tag}",
                                gsi1pk=f"TAGS#{repo.rid}",
                                gsi1sk=f"{repo.repository}:{tag}",
                                digest=record.digest,
                                updated_at=now,
                                media_type=record.media_type,
                                size=record.size,
                                body=record.body,
                                blobs_size=record.blobs_size,
                            ),
                            condition=(
                                TagItem.pk.does_not_exist() | (TagItem.digest == record.digest)
                                if tag_immutable
                                else None
                            ),
                        )
                        labels["put"].append("tag")
                    if record.body is None and record.revision is not None:
                        # The body's own key: named for the orphan sweep while this
                        # revision is the manifest's (see named_keys).
                        body_key = manifest_key(
                            repo.rid, Digest.parse(record.digest), record.revision
                        )
                        tx.save(
                            BlobKeyItem(
                                rid_pk(repo.rid),
                                f"KEY#{body_key}",
                                digest=record.digest,
                                repository=repo.repository,
                            )
                        )
                        labels["put"].append("body")
                    if record.subject is not None:
                        tx.save(
                            ReferrerItem(
                                repo_pk(repo),
                                f"REFERRER#{record.subject}#{record.digest}",
                                digest=record.digest,
                                media_type=record.media_type,
                                size=record.size,
                                artifact_type=record.artifact_type,
                                annotations=_bounded_annotations(record.annotations),
                            )
                        )
                        labels["put"].append("referrer")
                    if create_repository:
                        tx.save(
                            RepositoryItem(*_repository_key(repo), created_at=now),
                            condition=Item.pk.does_not_exist(),
                        )
                        labels["put"].append("repo")
                        # One more repository must fit under the plan (registry.quotas).
                        room = _within_limits(0, 1)
                        tx.update(
                            RegistryItem(reg_pk(repo.registry), META),
                            actions=[
                                RegistryItem.repository_count.add(1),
                                RegistryItem.usage_version.add(1),
                            ],
                            condition=(
                                registry_condition if room is None else registry_condition & room
                            ),
                        )
                        labels["update"].append("registry")
                    else:
                        tx.condition_check(
                            RegistryItem, reg_pk(repo.registry), META, condition=registry_condition
                        )
                        tx.condition_check(
                            RepositoryItem, *_repository_key(repo), condition=_repository_open()
                        )
                        labels["check"] += ["registry", "repo"]
                    if not large:
                        for digest in blobs:
                            tx.update(
                                RegistryBlobItem(rid_pk(repo.rid), f"BLOB#{digest}"),
                                actions=[RegistryBlobItem.touched_at.set(now)],
                                condition=Item.pk.exists(),
                            )
                            labels["update"].append(f"blob:{digest}")
                        for digest in children:
                            tx.update(
                                ManifestItem(repo_pk(repo), f"MANIFEST#{digest}"),
                                actions=[ManifestItem.touched_at.set(now)],
                                condition=Item.pk.exists(),
                            )
                            labels["update"].append(f"child:{digest}")
            except TransactWriteError as exc:
                failed = self._why_cancelled(exc, labels, repo)
                if "registry" in failed:
                    # Live and writable (or _why_cancelled raised): the rules changed, a
                    # collection runs while this push is too big to fence, or the plan has
                    # no room for the repository it creates.
                    self._explain_registry_refusal(
                        repo, settings_version, large, blobs, children, int(create_repository)
                    )
                gone = sorted(f for f in failed if f.startswith(("blob:", "child:")))
                if gone:
                    raise ManifestBlobUnknownError(
                        detail={
                            "blobs": [f[5:] for f in gone if f.startswith("blob:")],
                            "manifests": [f[6:] for f in gone if f.startswith("child:")],
                        }
                    ) from exc
                if "tag" in failed:
                    raise TagImmutableError(f"tag {tag} of {repo} is immutable") from exc
                if "manifest" in failed:
                    existing = self.get_manifest(repo, record.digest)
                    if existing is not None and existing.media_type != record.media_type:
                        raise ManifestInvalidError(
                            f"this manifest was pushed as {existing.media_type}; "
                            f"it cannot also be {record.media_type}",
                            detail={"digest": record.digest},
                        ) from exc
                if "conflict" in failed:
                    _back_off(attempt)
                continue  # the repository guess was wrong, or a conflict: try again
            return
        raise ConcurrentWriteError("manifest push raced with other writers; retry")

    def _explain_registry_refusal(
        self,
        repo: RepositoryName,
        settings_version: int | None,
        large: bool,
        blobs: Sequence[str],
        children: Sequence[str],
        new_repositories: int = 0,
    ) -> None:
        item = _get(RegistryItem, reg_pk(repo.registry), META, consistent_read=True)
        if item is None:
            return
        if settings_version is not None and int(item.settings_version or 0) != settings_version:
            raise SettingsChangedError("the registry's rules changed; read them again")
        if large and item.gc_active is not None:
            raise CollectionBusyError(repo.registry, len(blobs) + len(children))
        registry = _registry_record(item)
        if (
            new_repositories
            and quotas.repositories_exceeded(registry, new_repositories)
            # A concurrent push may have created it (then the retry needs no room).
            and not self._repository_state(repo)
        ):
            raise quotas.repository_refusal(registry)

    def delete_manifest(
        self,
        repo: RepositoryName,
        digest: str,
        protected: Callable[[str], str | None] | None = None,
        settings_version: int | None = None,
    ) -> bool:
        """The manifest, every tag pointing at it and its referrer entry, together.

        The tags are read before the transaction, so it is conditional on the manifest's
        revision as read: a push of the same manifest in between (a new revision, maybe a
        new tag) cancels it and it starts over with the tags as they are then. No tag can
        outlive the manifest it carries a copy of. Each time the tags are read, a tag that
        ``protected`` names a rule for stops it (TagImmutableError), and the transaction is
        conditional on the rules being at ``settings_version``.
        """
        for _ in range(RETRIES):
            record = self.get_manifest(repo, digest)
            if record is None:
                return False
            tags = [
                t
                for t in TagItem.query(repo_pk(repo), Item.sk.startswith("TAG#"))
                if t.digest == digest
            ]
            for t in tags:
                refusal = protected(t.sk.removeprefix("TAG#")) if protected else None
                if refusal is not None:
                    raise TagImmutableError(refusal, detail={"tag": t.sk.removeprefix("TAG#")})
            # A transaction holds at most 100 items. Tags carry a copy of the manifest, so
            # any beyond what fits go first: a failure then leaves the manifest with fewer
            # tags, never a tag that still serves a deleted manifest.
            first, rest = tags[:98], tags[98:]
            for t in rest:
                try:
                    t.delete(condition=TagItem.digest == digest)
                except DeleteError as exc:
                    if not _is_condition_failure(exc):
                        raise
            revision = (
                ManifestItem.revision == record.revision
                if record.revision is not None
                else ManifestItem.revision.does_not_exist()
            )
            try:
                with self._transaction() as tx:
                    tx.condition_check(
                        RegistryItem,
                        reg_pk(repo.registry),
                        META,
                        condition=_registry_is(repo, settings_version),
                    )
                    tx.delete(
                        ManifestItem(repo_pk(repo), f"MANIFEST#{digest}"),
                        condition=Item.pk.exists() & revision,
                    )
                    if record.subject:
                        tx.delete(
                            ReferrerItem(repo_pk(repo), f"REFERRER#{record.subject}#{digest}")
                        )
                    for t in first:
                        tx.delete(t, condition=TagItem.digest == digest)
            except TransactWriteError as exc:
                failed = _failed_conditions(exc, _REGISTRY_CHECK_FIRST)
                if failed is not None and "registry" in failed:
                    self._require_live_registry(repo)
                    self._explain_registry_refusal(repo, settings_version, False, [], [])
                if _is_transaction_conflict(exc):
                    continue  # pushed or re-tagged meanwhile: read again
                raise
            return True
        raise ConcurrentWriteError("the manifest kept changing while being deleted; retry")

    def delete_tag(
        self, repo: RepositoryName, tag: str, settings_version: int | None = None
    ) -> bool:
        return self._delete_in_registry(
            repo, TagItem(repo_pk(repo), f"TAG#{tag}"), settings_version
        )

    def list_tags(self, repo: RepositoryName, after: str | None, limit: int) -> list[TagRecord]:
        condition = _after("TAG#", after, MAX_TAG_LENGTH)
        if condition is None:
            return []
        return [_tag_record(i) for i in TagItem.query(repo_pk(repo), condition, limit=limit)]

    def list_manifests(
        self, repo: RepositoryName, after: str | None, limit: int
    ) -> list[ManifestRecord]:
        condition = _after("MANIFEST#", after, MAX_DIGEST_LENGTH)
        if condition is None:
            return []
        return [
            _manifest_record(i) for i in ManifestItem.query(repo_pk(repo), condition, limit=limit)
        ]

    def list_referrers(self, repo: RepositoryName, subject: str) -> list[ManifestRecord]:
        items = ReferrerItem.query(repo_pk(repo), Item.sk.startswith(f"REFERRER#{subject}#"))
        return [
            ManifestRecord(
                digest=i.digest,
                media_type=i.media_type,
                size=int(i.size),
                body=None,
                subject=subject,
                artifact_type=i.artifact_type,
                annotations=i.annotations,
            )
            for i in items
        ]

    # ------------------------------------------------------------ garbage collection

    def begin_collection(self, registry: RegistryRecord, collection: Collection) -> None:
        idle: Condition = (
            RegistryItem.pk.exists()
            & (RegistryItem.registry_id == registry.registry_id)
            & _registry_live()
            & RegistryItem.gc_active.does_not_exist()
        )
        try:
            with self._transaction() as tx:
                tx.save(
                    _collection_item(collection),
                    condition=Item.pk.does_not_exist(),
                )
                tx.update(
                    RegistryItem(reg_pk(registry.name), META),
                    actions=[
                        RegistryItem.gc_active.set(collection.uuid),
                        RegistryItem.read_only.set(collection.mode == GC_READ_ONLY),
                    ],
                    condition=idle,
                )
        except TransactWriteError as exc:
            if (
                _failed_conditions(
                    exc, {"check": [], "delete": [], "put": ["gc"], "update": ["registry"]}
                )
                is None
            ):
                raise
            current = self.get_registry(registry.name)
            if current is None or current.deleting or current.registry_id != registry.registry_id:
                raise NameUnknownError(detail={"registry": registry.name}) from exc
            raise ConflictError(
                f"a garbage collection is already running on {registry.name!r}",
                detail={"garbage_collection": current.gc_active},
            ) from exc

    def get_collection(self, registry_id: str, gc_uuid: str) -> Collection | None:
        item = _get(CollectionItem, rid_pk(registry_id), f"GC#{gc_uuid}", consistent_read=True)
        return None if item is None else _collection_record(item)

    def list_collections(self, registry_id: str, after: str | None, limit: int) -> list[Collection]:
        condition: Condition = (
            Item.sk.startswith("GC#") if after is None else Item.sk.between("GC#", f"GC#{after}")
        )
        found = []
        for item in CollectionItem.query(
            rid_pk(registry_id), condition, scan_index_forward=False, limit=limit + 1
        ):
            if after is not None and item.sk == f"GC#{after}":
                continue
            found.append(_collection_record(item))
            if len(found) == limit:
                break
        return found

    def save_collection(self, collection: Collection) -> bool:
        try:
            CollectionItem(rid_pk(collection.registry_id), f"GC#{collection.uuid}").update(
                actions=[*_progress_actions(collection), CollectionItem.version.add(1)],
                condition=CollectionItem.version == collection.version,
            )
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        collection.version += 1
        return True

    def request_cancel(self, registry_id: str, gc_uuid: str) -> Collection | None:
        try:
            CollectionItem(rid_pk(registry_id), f"GC#{gc_uuid}").update(
                actions=[
                    CollectionItem.cancel_requested.set(True),
                    CollectionItem.status.set(GC_CANCELLING),
                    CollectionItem.version.add(1),
                ],
                condition=CollectionItem.pk.exists()
                & ~CollectionItem.status.is_in(*sorted(GC_FINAL_STATUSES)),
            )
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return self.get_collection(registry_id, gc_uuid)

    def finish_collection(self, collection: Collection) -> bool:
        """The final state and, in the same transaction, the registry's release; if the
        registry no longer names this collection (it was deleted), the state alone."""
        gc_item = CollectionItem(rid_pk(collection.registry_id), f"GC#{collection.uuid}")
        actions = [*_progress_actions(collection), CollectionItem.version.add(1)]
        same_version = CollectionItem.version == collection.version
        try:
            with self._transaction() as tx:
                tx.update(gc_item, actions=actions, condition=same_version)
                tx.update(
                    RegistryItem(reg_pk(collection.registry_name), META),
                    actions=[RegistryItem.gc_active.remove(), RegistryItem.read_only.set(False)],
                    condition=(RegistryItem.gc_active == collection.uuid)
                    & (RegistryItem.registry_id == collection.registry_id),
                )
        except TransactWriteError as exc:
            failed = _failed_conditions(
                exc, {"check": [], "delete": [], "put": [], "update": ["gc", "registry"]}
            )
            if failed is None or "conflict" in failed:
                raise
            if "gc" in failed:
                return False
            try:  # the registry is gone or names another collection: nothing to release
                gc_item.update(actions=actions, condition=same_version)
            except UpdateError as again:
                if _is_condition_failure(again):
                    return False
                raise
        collection.version += 1
        return True

    def scan_repository(
        self, repo: RepositoryName
    ) -> tuple[dict[str, ManifestRecord], list[TagRecord]]:
        # Bodies are left out (a tag's copy, and most manifests' own, are up to 300 KB):
        # only a manifest whose references did not fit in its item needs its body.
        manifests: dict[str, ManifestRecord] = {}
        for item in ManifestItem.query(
            repo_pk(repo),
            Item.sk.startswith("MANIFEST#"),
            consistent_read=True,
            attributes_to_get=_MANIFEST_SCAN_ATTRIBUTES,
        ):
            record = _manifest_record(item)
            if record.references_in_body:
                full = _get(ManifestItem, item.pk, item.sk, consistent_read=True)
                if full is None:
                    continue
                record = _manifest_record(full)
            manifests[record.digest] = record
        tags = [
            TagRecord(i.sk.removeprefix("TAG#"), i.digest, i.updated_at)
            for i in TagItem.query(
                repo_pk(repo),
                Item.sk.startswith("TAG#"),
                consistent_read=True,
                attributes_to_get=["pk", "sk", "digest", "updated_at"],
            )
        ]
        return manifests, tags

    def gc_delete_tag(self, repo: RepositoryName, tag: str, digest: str) -> bool:
        return _delete_existing(
            TagItem(repo_pk(repo), f"TAG#{tag}"), condition=TagItem.digest == digest
        )

    def gc_delete_manifest(
        self,
        repo: RepositoryName,
        record: ManifestRecord,
        gc_uuid: str,
        touched_before: datetime | None,
    ) -> bool:
        condition: Condition = Item.pk.exists() & (
            ManifestItem.revision == record.revision
            if record.revision is not None
            else ManifestItem.revision.does_not_exist()
        )
        if touched_before is not None:
            condition = condition & (
                ManifestItem.touched_at.does_not_exist()
                | (ManifestItem.touched_at < touched_before)
            )
        for _ in range(RETRIES):
            try:
                with self._transaction() as tx:
                    tx.delete(
                        ManifestItem(repo_pk(repo), f"MANIFEST#{record.digest}"),
                        condition=condition,
                    )
                    if record.subject is not None:
                        tx.delete(
                            ReferrerItem(
                                repo_pk(repo), f"REFERRER#{record.subject}#{record.digest}"
                            )
                        )
                    tx.update(
                        CollectionItem(rid_pk(repo.rid), f"GC#{gc_uuid}"),
                        actions=[CollectionItem.manifests_deleted.add(1)],
                    )
            except TransactWriteError as exc:
                failed = _failed_conditions(
                    exc, {"check": [], "delete": ["manifest"], "put": [], "update": []}
                )
                if failed is None:
                    raise
                if "manifest" in failed:
                    return False
                continue  # a conflict (a cancel writing the collection): again
            return True
        raise ConcurrentWriteError("manifest deletion raced with other writers")

    def mark_blobs(self, gc_uuid: str, digests: Iterable[str]) -> None:
        expires = datetime.now(UTC) + MARK_LIFETIME
        with MarkItem.batch_write() as batch:
            for digest in sorted(set(digests)):
                batch.save(MarkItem(f"GCMARK#{gc_uuid}", f"B#{digest}", ttl=expires))

    def marked_blobs(self, gc_uuid: str, first: str, last: str) -> set[str]:
        return {
            i.sk.removeprefix("B#")
            for i in MarkItem.query(
                f"GCMARK#{gc_uuid}",
                Item.sk.between(f"B#{first}", f"B#{last}"),
                consistent_read=True,
                attributes_to_get=["pk", "sk"],
            )
        }

    def list_registry_blobs(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[BlobRecord]:
        condition = _after("BLOB#", after, MAX_DIGEST_LENGTH)
        if condition is None:
            return []
        return [
            _blob_record(i.sk.removeprefix("BLOB#"), i)
            for i in RegistryBlobItem.query(
                rid_pk(registry_id), condition, limit=limit, consistent_read=True
            )
        ]

    def gc_delete_blob(
        self,
        registry_name: str,
        registry_id: str,
        blob: BlobRecord,
        gc_uuid: str,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> bool:
        condition = _blob_stored_at(blob.key)
        if created_before is not None or touched_before is not None:
            condition = condition & _collectable_blob(created_before, touched_before)
        labels: dict[str, list[str]] = {
            "check": [],
            "delete": ["blob"],
            "put": [],
            "update": ["registry"],
        }
        now = datetime.now(UTC)
        for _ in range(RETRIES):
            try:
                with self._transaction() as tx:
                    tx.delete(
                        RegistryBlobItem(rid_pk(registry_id), f"BLOB#{blob.digest}"),
                        condition=condition,
                    )
                    if blob.key is not None:
                        tx.delete(BlobKeyItem(rid_pk(registry_id), f"KEY#{blob.key}"))
                        labels["delete"].append("key")
                    tx.update(
                        RegistryItem(reg_pk(registry_name), META),
                        actions=[
                            RegistryItem.storage_bytes.add(-blob.size),
                            RegistryItem.storage_updated_at.set(now),
                            RegistryItem.usage_version.add(1),
                        ],
                        condition=RegistryItem.registry_id == registry_id,
                    )
                    tx.update(
                        CollectionItem(rid_pk(registry_id), f"GC#{gc_uuid}"),
                        actions=[
                            CollectionItem.blobs_deleted.add(1),
                            CollectionItem.freed_bytes.add(blob.size),
                        ],
                    )
            except TransactWriteError as exc:
                failed = _failed_conditions(exc, labels)
                if failed is None:
                    raise
                if "blob" in failed or "registry" in failed:
                    return False
                continue
            return True
        raise ConcurrentWriteError("blob deletion raced with other writers")

    def list_links(self, repo: RepositoryName, after: str | None, limit: int) -> list[BlobRecord]:
        condition = _after("LINK#", after, MAX_DIGEST_LENGTH)
        if condition is None:
            return []
        return [
            _blob_record(i.sk.removeprefix("LINK#"), i)
            for i in BlobLinkItem.query(repo_pk(repo), condition, limit=limit, consistent_read=True)
        ]

    def get_registry_blobs(self, registry_id: str, digests: Sequence[str]) -> dict[str, BlobRecord]:
        keys = [(rid_pk(registry_id), f"BLOB#{d}") for d in sorted(set(digests))]
        return {
            record.digest: record
            for record in (
                _blob_record(i.sk.removeprefix("BLOB#"), i)
                for i in RegistryBlobItem.batch_get(keys, consistent_read=True)
            )
        }

    def gc_delete_link(
        self,
        repo: RepositoryName,
        link: BlobRecord,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> bool:
        same_key: Condition = Item.pk.exists() & (
            BlobLinkItem.key == link.key
            if link.key is not None
            else BlobLinkItem.key.does_not_exist()
        )
        link_item = BlobLinkItem(repo_pk(repo), f"LINK#{link.digest}")
        if created_before is None and touched_before is None:
            return _delete_existing(link_item, condition=same_key)
        # The blob record, if any, must still be collectable: a push that touched it
        # since the collection began keeps the link (its condition fails here).
        collectable: Condition = Item.pk.does_not_exist() | _collectable_blob(
            created_before, touched_before
        )
        labels: dict[str, list[str]] = {
            "check": ["blob"],
            "delete": ["link"],
            "put": [],
            "update": [],
        }
        try:
            with self._transaction() as tx:
                tx.condition_check(
                    RegistryBlobItem, rid_pk(repo.rid), f"BLOB#{link.digest}", condition=collectable
                )
                tx.delete(link_item, condition=same_key)
        except TransactWriteError as exc:
            if _failed_conditions(exc, labels) is None:
                raise
            return False
        return True

    def named_keys(self, registry_id: str, keys: Sequence[str]) -> set[str]:
        """Keys in the key index (a large manifest's body only while its revision is the
        manifest's), and content addresses whose blob record names no other key. Bodies
        stored before revisions were in their keys are always named."""
        content = f"registries/{registry_id}/blobs/sha256/"
        bodies = f"registries/{registry_id}/manifests/"
        records: dict[tuple[str, str], str] = {}  # blob records, for content addresses
        indexed: dict[tuple[str, str], str] = {}  # key index entries
        named: set[str] = set()
        for key in keys:
            if key.startswith(content):
                records[(rid_pk(registry_id), f"BLOB#sha256:{key[len(content) :]}")] = key
            elif key.startswith(bodies) and key[len(bodies) :].count("/") < 2:
                named.add(key)  # an older body, without a revision: left alone
            else:
                indexed[(rid_pk(registry_id), f"KEY#{key}")] = key
        for record in RegistryBlobItem.batch_get(list(records), consistent_read=True):
            if record.key is None:  # the record names no other key: the content address
                named.add(records[(record.pk, record.sk)])
        # Manifest item -> its body keys in this page: one per revision pushed, so
        # several keys (the current body and superseded ones) can share one item.
        manifests: dict[tuple[str, str], list[str]] = {}
        for item in BlobKeyItem.batch_get(list(indexed), consistent_read=True):
            key = indexed[(item.pk, item.sk)]
            if item.repository is not None:
                manifest = (f"REPO#{registry_id}/{item.repository}", f"MANIFEST#{item.digest}")
                manifests.setdefault(manifest, []).append(key)
            else:
                named.add(key)
        if manifests:
            for found in ManifestItem.batch_get(
                list(manifests), consistent_read=True, attributes_to_get=["pk", "sk", "revision"]
            ):
                named.update(
                    key
                    for key in manifests[(found.pk, found.sk)]
                    if key.rsplit("/", 1)[1] == found.revision
                )
        return named

    def forget_keys(self, registry_id: str, keys: Sequence[str]) -> None:
        with BlobKeyItem.batch_write() as batch:
            for key in keys:
                batch.delete(BlobKeyItem(rid_pk(registry_id), f"KEY#{key}"))

    def live_uploads(self, upload_ids: Sequence[str]) -> set[str]:
        keys = [(f"UPLOAD#{u}", META) for u in sorted(set(upload_ids))]
        return {
            i.pk.removeprefix("UPLOAD#")
            for i in Item.batch_get(keys, consistent_read=True, attributes_to_get=["pk", "sk"])
        }

    def count_orphans_deleted(self, registry_id: str, gc_uuid: str, count: int) -> None:
        CollectionItem(rid_pk(registry_id), f"GC#{gc_uuid}").update(
            actions=[CollectionItem.objects_deleted.add(count)]
        )

    # ------------------------------------------------------------ uploads

    def put_upload(self, session: UploadSession) -> None:
        """Create the session if its registry incarnation is live: none is started in a
        registry being deleted, or one whose name was taken again."""
        repo = _session_repo(session)
        for _ in range(RETRIES):
            try:
                self._put_upload(session, repo)
            except TransactWriteError as exc:
                labels = {"check": ["registry"], "delete": [], "put": ["upload"], "update": []}
                failed = self._why_cancelled(exc, labels, repo)
                if "upload" in failed:
                    raise ValueError(f"upload {session.upload_id} exists") from exc
                continue  # a conflict with a concurrent write of the registry record
            return
        raise ConcurrentWriteError("starting the upload raced with other writers; retry")

    def _put_upload(self, session: UploadSession, repo: RepositoryName) -> None:
        with self._transaction() as tx:
            tx.condition_check(
                RegistryItem, reg_pk(repo.registry), META, condition=_registry_is(repo)
            )
            tx.save(_upload_item(session), condition=Item.pk.does_not_exist())

    def get_upload(self, upload_id: str) -> UploadSession | None:
        item = _get(UploadItem, f"UPLOAD#{upload_id}", META, consistent_read=True)
        return None if item is None else _upload_session(item)

    def update_upload(
        self, session: UploadSession, holder: str | None = None, now: datetime | None = None
    ) -> None:
        """Save the session if nobody saved it since it was read (a version check) and no
        other request holds it.

        Unlike starting a session and committing a blob, advancing one does not re-check
        the registry (it would turn one write unit into four on every PATCH): a session of
        a registry deleted meanwhile may still take bytes, but can never commit them, and
        the expired-upload cleanup frees them."""
        expected = session.version
        session.version = expected + 1
        try:
            _upload_item(session).save(
                condition=(UploadItem.version == expected) & _not_held_by_other(holder, now)
            )
        except PutError as exc:
            session.version = expected
            if _is_condition_failure(exc):
                raise BlobUploadInvalidError(
                    "the upload was changed by a concurrent request"
                ) from exc
            raise

    def delete_upload(
        self, upload_id: str, version: int | None = None, now: datetime | None = None
    ) -> bool:
        condition = Item.pk.exists()
        if version is not None:
            held = _not_held_by_other(None, now)
            condition = condition & (UploadItem.version == version) & held
        return _delete_existing(Item(f"UPLOAD#{upload_id}", META), condition)

    def list_expired_uploads(self, now: datetime, limit: int) -> list[UploadSession]:
        # Keys are "<expires_at>#<id>"; "$" sorts just after "#", so a session expiring at
        # ``now`` exactly is included, as the service counts it expired.
        cutoff = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "$"
        items = UploadItem.gsi1.query(
            "UPLOADS", UploadItem.gsi1sk.between("0", cutoff), limit=limit
        )
        return [_upload_session(cast(UploadItem, i)) for i in items]

    # ------------------------------------------------------------ settings (registry.rules)

    def update_registry_settings(
        self,
        name: str,
        registry_id: str,
        settings: RegistrySettings,
        expected_version: int,
        now: datetime,
    ) -> RegistryRecord:
        """One transaction: the settings and their version on the registry record
        (conditional on the incarnation being live and the version as read), and the
        schedule entry (RID#<id> / SCHEDULE#GC) put or removed with them."""
        version_is: Condition = RegistryItem.settings_version == expected_version
        if expected_version == 0:  # records older than settings have no version at all
            version_is = version_is | RegistryItem.settings_version.does_not_exist()
        condition = (
            RegistryItem.pk.exists()
            & (RegistryItem.registry_id == registry_id)
            & _registry_live()
            & (RegistryItem.suspended.does_not_exist() | (RegistryItem.suspended == False))  # noqa: E712
            & version_is
        )
        schedule_key = (rid_pk(registry_id), SCHEDULE_SK)
        try:
            with self._transaction() as tx:
                tx.update(
                    RegistryItem(reg_pk(name), META),
                    actions=[
                        RegistryItem.settings.set(settings.to_json()),
                        RegistryItem.settings_version.set(expected_version + 1),
                    ],
                    condition=condition,
                )
                if settings.gc_schedule is not None:
                    next_run = settings.gc_schedule.next_run_after(now)
                    tx.save(
                        GcScheduleItem(
                            *schedule_key,
                            gsi1pk=SCHEDULES,
                            gsi1sk=_schedule_sk(next_run, registry_id),
                            registry_name=name,
                            next_run_at=next_run,
                        )
                    )
                else:
                    tx.delete(Item(*schedule_key))
        except TransactWriteError as exc:
            labels: dict[str, list[str]] = {"check": [], "delete": [], "put": [], "update": []}
            labels["delete" if settings.gc_schedule is None else "put"].append("schedule")
            labels["update"].append("registry")
            failed = _failed_conditions(exc, labels)
            if failed is None:
                raise
            if "registry" not in failed:
                raise ConcurrentWriteError("the settings raced with other writers; retry") from exc
            item = _get(RegistryItem, reg_pk(name), META, consistent_read=True)
            record = None if item is None else _registry_record(item)
            if record is None or record.deleting or record.registry_id != registry_id:
                raise NameUnknownError(
                    f"registry {name!r} not found", detail={"registry": name}
                ) from exc
            if record.suspended:
                raise AccountSuspendedError(record.account_id) from exc
            raise ConflictError(
                f"the settings of registry {name!r} were changed by another request; "
                "read them again"
            ) from exc
        item = _get(RegistryItem, reg_pk(name), META, consistent_read=True)
        if item is None:
            raise NameUnknownError(f"registry {name!r} not found", detail={"registry": name})
        return _registry_record(item)

    def due_collection_schedules(self, now: datetime, limit: int) -> list[DueSchedule]:
        # "$" sorts after "#": an entry due at ``now`` exactly is included.
        cutoff = _stamp(now) + "$"
        items = GcScheduleItem.query(
            SCHEDULES,
            GcScheduleItem.gsi1sk.between("0", cutoff),
            index_name="gsi1",
            limit=limit,
        )
        return [
            DueSchedule(i.registry_name, i.pk.removeprefix("RID#"), i.next_run_at) for i in items
        ]

    def advance_collection_schedule(
        self, registry_id: str, expected_next_run_at: datetime, next_run_at: datetime | None
    ) -> bool:
        key = (rid_pk(registry_id), SCHEDULE_SK)
        still: Condition = Item.pk.exists() & (
            GcScheduleItem.gsi1sk == _schedule_sk(expected_next_run_at, registry_id)
        )
        if next_run_at is None:
            return _delete_existing(Item(*key), still)
        try:
            GcScheduleItem(*key).update(
                actions=[
                    GcScheduleItem.next_run_at.set(next_run_at),
                    GcScheduleItem.gsi1sk.set(_schedule_sk(next_run_at, registry_id)),
                ],
                condition=still,
            )
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True


SCHEDULE_SK = "SCHEDULE#GC"
SCHEDULES = "GCSCHEDULES"


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _schedule_sk(next_run_at: datetime, registry_id: str) -> str:
    return f"{_stamp(next_run_at)}#{registry_id}"


# DynamoDB items are capped at 400 KB; a referrer's annotations are copied into its entry
# only up to this size (a manifest may carry up to 4 MiB of them).
MAX_REFERRER_ANNOTATIONS = 64 * 1024


def _bounded_annotations(annotations: dict[str, str] | None) -> dict[str, str] | None:
    if annotations is None or len(json.dumps(annotations)) > MAX_REFERRER_ANNOTATIONS:
        return None
    return annotations


M = TypeVar("M", bound=Item)


def _get(model: type[M], pk: str, sk: str, consistent_read: bool = False) -> M | None:
    try:
        return model.get(pk, sk, consistent_read=consistent_read)
    except DoesNotExist:
        return None


def _delete_existing(item: Item, condition: Condition | None = None) -> bool:
    """Delete ``item`` (if ``condition`` holds); False if there was nothing to delete."""
    try:
        item.delete(condition=condition if condition is not None else Item.pk.exists())
    except DeleteError as exc:
        if _is_condition_failure(exc):
            return False
        raise
    return True


def _exists(pk: str, sk: str) -> bool:
    try:
        Item.get(pk, sk, attributes_to_get=["pk"])
    except DoesNotExist:
        return False
    return True


def _registry_live() -> Condition:
    live: Condition = RegistryItem.deleting.does_not_exist() | (
        RegistryItem.deleting == False  # noqa: E712
    )
    return live


# The longest key each listing can hold (names.py): a client's ``after`` is cut to it, which
# changes nothing about what sorts after it, and keeps the sort key under DynamoDB's limit.
MAX_TAG_LENGTH = 128
MAX_DIGEST_LENGTH = 255


def _after(prefix: str, after: str | None, longest: int) -> Condition | None:
    """Sort keys under ``prefix`` that come after ``prefix + after``; None if none can.

    ``after`` comes from the client (``last``, a page token) and may be anything, while the
    keys are ASCII (names, tags and digests are validated). So a non-ASCII character in it
    becomes "\x7f", which sorts after every character a key holds and before none: the
    same keys come after it, and the bound stays within DynamoDB's 1 KB sort key. "\x00"
    sorts before every character, so the range starts just after ``after``.
    """
    if after is None:
        start: Condition = Item.sk.startswith(prefix)
        return start
    cut = next((i for i, ch in enumerate(after) if not ch.isascii()), None)
    if cut is not None:
        after = after[:cut] + "\x7f"
    low, high = f"{prefix}{after[:longest]}\x00", f"{prefix}\U0010ffff"
    if low >= high:
        return None
    between: Condition = Item.sk.between(low, high)
    return between


def _repository_open() -> Condition:
    """The repository exists and is not being deleted."""
    condition: Condition = Item.pk.exists() & RepositoryItem.deleting.does_not_exist()
    return condition


def _registry_is(repo: RepositoryName, settings_version: int | None = None) -> Condition:
    """The name still names the incarnation ``repo`` was resolved to, and it is live (and,
    given ``settings_version``, its rules are still at that version)."""
    same: Condition = (
        RegistryItem.pk.exists()
        & (RegistryItem.registry_id == repo.rid)
        & _registry_live()
        & (RegistryItem.suspended.does_not_exist() | (RegistryItem.suspended == False))  # noqa: E712
        # A read-only garbage collection is running (registry.gc): no write may land.
        & (RegistryItem.read_only.does_not_exist() | (RegistryItem.read_only == False))  # noqa: E712
    )
    if settings_version is not None:
        same_rules: Condition = RegistryItem.settings_version == settings_version
        if settings_version == 0:  # records older than settings have no version at all
            same_rules = same_rules | RegistryItem.settings_version.does_not_exist()
        same = same & same_rules
    return same


def _within_limits(new_bytes: int, new_repositories: int) -> Condition | None:
    """The registry's counters leave room for ``new_bytes`` more storage and
    ``new_repositories`` more repositories under its plan's hard limits (registry.quotas);
    None if nothing limits that much.

    The condition names every limited plan rather than the plan the caller saw, so it is
    judged on the plan the record has when the transaction commits: an upgrade during a
    push needs no re-read, and the limit holds exactly however many pushes commit at once
    (each one's counter update is in the same transaction as what it counts). DynamoDB
    cannot subtract in a condition: the room is computed here (``limit - new``)."""
    limited: list[tuple[str, Condition]] = []
    for plan in quotas.limited_tiers():
        room: Condition | None = None
        if new_bytes and plan.storage_limit is not None:
            room = RegistryItem.storage_bytes <= plan.storage_limit - new_bytes
        if new_repositories and plan.repository_limit is not None:
            more: Condition = RegistryItem.repository_count <= (
                plan.repository_limit - new_repositories
            )
            room = more if room is None else room & more
        if room is not None:
            limited.append((plan.slug, room))
    if not limited:
        return None
    condition: Condition = RegistryItem.plan.does_not_exist() | ~RegistryItem.plan.is_in(
        *(slug for slug, _ in limited)
    )
    for slug, room in limited:
        condition = condition | ((RegistryItem.plan == slug) & room)
    return condition


def _blob_stored_at(key: str | None) -> Condition:
    stored: Condition = (
        RegistryBlobItem.key == key if key is not None else RegistryBlobItem.key.does_not_exist()
    )
    condition: Condition = Item.pk.exists() & stored
    return condition


def _collectable_blob(
    created_before: datetime | None, touched_before: datetime | None
) -> Condition:
    """A blob record an online collection may remove: created before ``created_before``
    and not touched by a push since ``touched_before`` (registry.gc)."""
    condition: Condition = Item.pk.exists()
    if created_before is not None:
        condition = condition & (RegistryBlobItem.created_at < created_before)
    if touched_before is not None:
        condition = condition & (
            RegistryBlobItem.touched_at.does_not_exist()
            | (RegistryBlobItem.touched_at < touched_before)
        )
    return condition


def _blob_record(digest: str, item: RegistryBlobItem | BlobLinkItem) -> BlobRecord:
    touched = item.touched_at if isinstance(item, RegistryBlobItem) else None
    return BlobRecord(digest, int(item.size), item.created_at, item.key, touched)


def _registry_record(item: RegistryItem) -> RegistryRecord:
    return RegistryRecord(
        name=item.pk.removeprefix("REG#"),
        account_id=item.account_id,
        registry_id=item.registry_id,
        gc_active=item.gc_active,
        plan=item.plan,
        storage_bytes=int(item.storage_bytes),
        repository_count=int(item.repository_count),
        usage_version=int(item.usage_version or 0),
        read_only=bool(item.read_only),
        created_at=item.created_at,
        storage_updated_at=item.storage_updated_at,
        subscription_created_at=item.subscription_created_at,
        subscription_updated_at=item.subscription_updated_at,
        deleting=bool(item.deleting),
        suspended=bool(item.suspended),
        settings=RegistrySettings.from_stored(item.settings),
        settings_version=int(item.settings_version or 0),
        egress_capped_month=item.egress_capped_month,
    )


def _tag_record(item: TagItem) -> TagRecord:
    manifest = None
    if item.media_type is not None and item.size is not None:
        manifest = ManifestRecord(
            digest=item.digest,
            media_type=item.media_type,
            size=int(item.size),
            body=item.body,
            blobs_size=int(item.blobs_size or 0),
        )
    return TagRecord(item.sk.removeprefix("TAG#"), item.digest, item.updated_at, manifest)


def _token_record(item: TokenItem) -> TokenRecord:
    return TokenRecord(
        token_id=item.token_id,
        token_hash=item.pk.removeprefix("TOKEN#"),
        account_id=item.account_id,
        name=item.name,
        scopes=frozenset(item.scopes or ()),
        registries=None if item.all_registries else frozenset(item.registries or ()),
        expires_at=item.expires_at,
        created_at=item.created_at,
        last_used_at=item.last_used_at,
        suspended=bool(item.suspended),
    )


def _manifest_record(item: ManifestItem) -> ManifestRecord:
    return ManifestRecord(
        digest=item.sk.removeprefix("MANIFEST#"),
        media_type=item.media_type,
        size=int(item.size),
        body=item.body,
        blobs=[str(d) for d in item.blobs or []],
        manifests=[str(d) for d in item.manifests or []],
        references_in_body=bool(item.references_in_body),
        blobs_size=int(item.blobs_size or 0),
        subject=item.subject,
        artifact_type=item.artifact_type,
        created_at=item.created_at,
        revision=item.revision,
        touched_at=item.touched_at,
    )


def _not_held_by_other(holder: str | None, now: datetime | None) -> Condition:
    """No request but ``holder`` holds the session: no claim, an expired one, or its own."""
    free: Condition = UploadItem.claim_id.does_not_exist() | (
        UploadItem.claimed_until < (now or datetime.now(UTC))
    )
    if holder is not None:
        free = free | (UploadItem.claim_id == holder)
    return free


def _session_repo(session: UploadSession) -> RepositoryName:
    return RepositoryName(session.registry, session.repository, session.registry_id)


def _upload_item(s: UploadSession) -> UploadItem:
    expires = s.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if s.expires_at else ""
    return UploadItem(
        f"UPLOAD#{s.upload_id}",
        META,
        gsi1pk="UPLOADS",
        gsi1sk=f"{expires}#{s.upload_id}",
        registry=s.registry,
        registry_id=s.registry_id,
        repository=s.repository,
        data_key=s.data_key,
        multipart_id=s.multipart_id,
        parts=[[p.number, p.etag, p.size] for p in s.parts],
        offset=s.offset,
        tail_key=s.tail_key,
        tail_size=s.tail_size,
        sha256=s.sha256,
        version=s.version,
        created_at=s.created_at,
        expires_at=s.expires_at,
        ttl=s.expires_at,
        claim_id=s.claim_id,
        claimed_until=s.claimed_until,
        direct=s.direct.to_json() if s.direct is not None else None,
    )


def _upload_session(item: UploadItem) -> UploadSession:
    return UploadSession(
        upload_id=item.pk.removeprefix("UPLOAD#"),
        registry=item.registry,
        registry_id=item.registry_id,
        repository=item.repository,
        data_key=item.data_key,
        multipart_id=item.multipart_id,
        parts=[UploadPart(int(n), str(e), int(z)) for n, e, z in (item.parts or [])],
        offset=int(item.offset),
        tail_key=item.tail_key,
        tail_size=int(item.tail_size),
        sha256=item.sha256,
        version=int(item.version),
        created_at=item.created_at,
        expires_at=item.expires_at,
        claim_id=item.claim_id,
        claimed_until=item.claimed_until,
        direct=DirectUpload.from_json(item.direct) if item.direct else None,
    )


# A transaction whose first item is the registry's condition check (and whose other
# failures are read from the store again rather than from their reasons).
_REGISTRY_CHECK_FIRST: dict[str, list[str]] = {
    "check": ["registry"],
    "delete": [],
    "put": [],
    "update": [],
}


# A collection's marks outlive it by this much (DynamoDB's TTL then removes them).
MARK_LIFETIME = timedelta(days=3)

# What scanning reads of a manifest item (everything but the body).
_MANIFEST_SCAN_ATTRIBUTES = [
    "pk",
    "sk",
    "revision",
    "media_type",
    "size",
    "blobs",
    "manifests",
    "references_in_body",
    "blobs_size",
    "subject",
    "artifact_type",
    "created_at",
    "touched_at",
]


def _progress_actions(collection: Collection) -> list[Action]:
    """A progress save: every field but the deletion counters (only ever added to)."""
    actions: list[Action] = []
    for name in COLLECTION_PROGRESS_FIELDS:
        attribute = getattr(CollectionItem, name)
        value = getattr(collection, name)
        actions.append(attribute.remove() if value is None else attribute.set(value))
    return actions


def _collection_item(c: Collection) -> CollectionItem:
    return CollectionItem(
        rid_pk(c.registry_id),
        f"GC#{c.uuid}",
        uuid=c.uuid,
        registry_name=c.registry_name,
        registry_id=c.registry_id,
        status=c.status,
        type=c.type,
        mode=c.mode,
        trigger=c.trigger,
        created_at=c.created_at,
        updated_at=c.updated_at,
        phase=c.phase,
        version=c.version,
    )


def _collection_record(item: CollectionItem) -> Collection:
    return Collection(
        uuid=item.uuid,
        registry_name=item.registry_name,
        registry_id=item.registry_id,
        status=item.status,
        type=item.type,
        mode=item.mode,
        created_at=item.created_at,
        updated_at=item.updated_at,
        trigger=item.trigger,
        blobs_deleted=int(item.blobs_deleted or 0),
        manifests_deleted=int(item.manifests_deleted or 0),
        freed_bytes=int(item.freed_bytes or 0),
        objects_deleted=int(item.objects_deleted or 0),
        repositories_scanned=int(item.repositories_scanned or 0),
        manifests_scanned=int(item.manifests_scanned or 0),
        blobs_scanned=int(item.blobs_scanned or 0),
        objects_scanned=int(item.objects_scanned or 0),
        error=item.error,
        phase=item.phase,
        cursor=item.cursor,
        marks_from=item.marks_from,
        wait_until=item.wait_until,
        cancel_requested=bool(item.cancel_requested),
        version=int(item.version or 0),
    )


def _back_off(attempt: int) -> None:
    """Before retrying a transaction DynamoDB cancelled for a conflict with a concurrent
    one (pushes into a registry share its record, and images share base layers, whose
    records a manifest push touches): a short, jittered wait, so that the retries of racing
    pushes do not collide again in lockstep."""
    time.sleep(random.uniform(0, 0.02 * 2**attempt))


def _is_condition_failure(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def _failed_conditions(exc: TransactWriteError, labels: dict[str, list[str]]) -> set[str] | None:
    """Which labelled items of a cancelled transaction failed their condition; None if it
    failed for another reason. PynamoDB sends condition checks, deletes, puts and updates
    in that order, and DynamoDB's reasons follow the items one to one."""
    reasons = getattr(exc, "cancellation_reasons", None)
    if not reasons:
        return None
    order = labels["check"] + labels["delete"] + labels["put"] + labels["update"]
    failed: set[str] = set()
    for label, reason in zip(order, reasons, strict=False):
        code = getattr(reason, "code", None) if reason is not None else None
        if code == "ConditionalCheckFailed":
            failed.add(label)
        elif code == "TransactionConflict":
            failed.add("conflict")
    return failed or None


def _is_transaction_conflict(exc: TransactWriteError) -> bool:
    reasons = getattr(exc, "cancellation_reasons", None) or []
    codes = {getattr(r, "code", None) for r in reasons if r is not None}
    return bool(codes & {"ConditionalCheckFailed", "TransactionConflict"})


__all__ = ["DynamoMetadataStore", "FoundReferences", "UpdateError"]
