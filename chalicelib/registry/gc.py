"""Garbage collection: per registry, one at a time, in bounded steps that any engine can
drive (AWS Step Functions on AWS, the local runtime's interpreter of the same state
machine locally).

A collection walks through phases, each persisted on its record before the next step
runs, so a crash at any point loses nothing but the step in flight, and re-running that
step is harmless (every deletion is conditional on what was read, and the deletion
counters are added in the same transaction as each deletion):

  begin    -> "requested": a read-only collection has already made the registry
              read-only (in the same transaction that recorded it as active);
  wait     -> "waiting for write JWTs to expire": see "Read-only mode" below;
  scan     -> "scanning manifests": per repository, apply retention rules, delete the
              manifests no tag reaches, and mark every blob a kept manifest references;
  links    -> "deleting unreferenced blobs": unlink the blobs nobody marked from every
  blobs       repository, then delete their records (and bytes),
  objects     the S3 objects under the registry's prefix that no record names, and
  uploads     the multipart uploads no session owns.

What "untagged" means. Tags are the roots (a tag carries its own copy of the manifest, so
it is a root in its own right). A manifest is kept if a tag names it, if a kept index
lists it as a child, or if it is a referrer (its ``subject``) of a kept manifest. The rest
of the repository's manifests are untagged. Blobs are shared by the repositories of a
registry: a blob is unreferenced if no kept manifest in any repository references it.

Read-only mode. While it runs, every write into the registry is refused: each write's
DynamoDB condition on the registry record (the one that also checks the registry is live)
refuses a read-only record, so a push authorized before the collection began, with a JWT
or an upload capability still valid for an hour, can no longer commit anything once the
flag is set. Nothing already authorized has to be waited out for safety, then; the wait
lets every warm process's cached registry record (``registry_cache_ttl``) catch up, so
that the token endpoint stops issuing push scopes before scanning starts. Upload sessions
in flight are not cancelled: they cannot commit until the collection ends, and their bytes
are protected by the sessions that own them.

Online mode, and why nothing referenced is ever deleted. Pushes go on during an online
collection. The argument, in the terms of the store's conditional writes:

1. Scanning reads each repository strongly consistently after ``marks_from`` (T0), so it
   sees every manifest and tag that committed before T0 and marks what they reference.
2. Every push that makes a blob referenced after T0 writes ``touched_at`` (its time) on
   the blob's record, in the transaction that commits the manifest (or the mount, or the
   re-upload), conditional on the record existing; an index does the same to the child
   manifests it names. A blob or manifest is deleted only by a transaction conditional on
   ``touched_at`` being absent or older than T0 minus ``clock_margin`` (which absorbs the
   skew between the clocks of the processes involved, and replication lag of listings).
3. So for any blob B and manifest M referencing it, the two transactions are ordered by
   DynamoDB: if B's deletion committed first, M's push fails its condition (B is gone) and
   the client gets MANIFEST_BLOB_UNKNOWN; if M's push committed first, B's deletion fails
   its condition (B was touched) and B stays. A manifest push fails or sees the blob; a
   blob deletion fails or no manifest references it.
4. Untagged manifests are deleted parents first (an index before its children, a subject
   before its referrers), each conditional on the revision scanned and on not being
   touched; when one survives (re-pushed or named by a new index meanwhile), everything it
   reaches is kept too and its blobs are marked, before any blob is swept.
5. Blobs younger than ``online_grace`` at T0 are kept whatever their marks: a client
   uploads its layers before it pushes the manifest that references them.
A manifest that names more blobs and manifests than one transaction can touch is refused
during an online collection instead (CollectionBusyError); see the store.

Objects without a record. An upload's bytes are named, at every moment, either by its
session or by the blob record its commit created (the commit ends the session in the same
transaction). The sweep reads the sessions first and the key index second, so an object
whose upload commits between the two reads is seen by the second. Bytes written by a
single request (which has no session) are protected by ``orphan_grace``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .auth import utcnow
from .digests import Digest
from .errors import ConflictError, NotFoundError, UnavailableError, UnprocessableError
from .manifests import parse_manifest
from .names import RepositoryName
from .policies import plan_retention
from .ports import BlobStore, CollectionEngine, CollectionStore, MetadataStore
from .records import (
    GC_BOTH,
    GC_CANCELLED,
    GC_DELETING,
    GC_FAILED,
    GC_MODES,
    GC_ONLINE,
    GC_READ_ONLY,
    GC_REQUESTED,
    GC_SCANNING,
    GC_SUCCEEDED,
    GC_TYPES,
    GC_WAITING,
    BlobRecord,
    Collection,
    ManifestRecord,
    RegistryRecord,
    TagRecord,
    new_collection_id,
)
from .service import manifest_key, stored_key


class GcStore(MetadataStore, CollectionStore, Protocol):
    """Both ports, as one adapter implements them."""


# Retention rules, applied to a repository before it is scanned: the tags to delete, as
# (tag, digest) pairs. Provided by registry.policies; None when there are no rules.
RetentionHook = Callable[
    [RegistryRecord, str, list[TagRecord], dict[str, ManifestRecord], datetime],
    list[tuple[str, str]],
]


@dataclass(frozen=True)
class CollectionSettings:
    # A read-only collection waits this long before scanning: the request path's registry
    # cache (config.registry_cache_ttl), after which no process issues push scopes.
    wait: timedelta = timedelta(seconds=30)
    # Online mode keeps blobs and manifests younger than this at T0.
    online_grace: timedelta = timedelta(hours=1)
    # Online mode keeps what was touched after T0 minus this (clock skew, listing lag).
    clock_margin: timedelta = timedelta(minutes=5)
    # Objects no record names are deleted only when older than this.
    orphan_grace: timedelta = timedelta(hours=1)
    # Work per step: repositories, blob records and objects are read in pages of ``page``
    # and a step stops after the page that took it past ``budget`` items.
    page: int = 500
    budget: int = 5000


@dataclass(frozen=True)
class StepOutcome:
    done: bool
    wait_seconds: int = 0


STATUS_BY_PHASE = {
    "begin": GC_REQUESTED,
    "wait": GC_WAITING,
    "scan": GC_SCANNING,
    "links": GC_DELETING,
    "blobs": GC_DELETING,
    "objects": GC_DELETING,
    "uploads": GC_DELETING,
}


def collection_json(gc: Collection) -> dict[str, Any]:
    progress = {
        "repositories_scanned": gc.repositories_scanned,
        "manifests_scanned": gc.manifests_scanned,
        "blobs_scanned": gc.blobs_scanned,
        "objects_scanned": gc.objects_scanned,
        "objects_deleted": gc.objects_deleted,
    }
    progress["items_scanned"] = (
        gc.repositories_scanned + gc.manifests_scanned + gc.blobs_scanned + gc.objects_scanned
    )
    return {
        "uuid": gc.uuid,
        "registry_name": gc.registry_name,
        "status": gc.status,
        "type": gc.type,
        "mode": gc.mode,
        "created_at": _iso(gc.created_at),
        "updated_at": _iso(gc.updated_at),
        "blobs_deleted": gc.blobs_deleted,
        "manifests_deleted": gc.manifests_deleted,
        "freed_bytes": gc.freed_bytes,
        "trigger": gc.trigger,
        "error": gc.error,
        "progress": progress,
    }


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def collectable(
    blob: BlobRecord, created_before: datetime | None, touched_before: datetime | None
) -> bool:
    """Whether an online collection may remove the blob: created before ``created_before``
    and not touched by a push since ``touched_before`` (None: no such condition). The
    stores' deletions are conditional on the same, on the record as it is then."""
    if created_before is not None and (
        blob.created_at is None or blob.created_at >= created_before
    ):
        return False
    return not (
        touched_before is not None
        and blob.touched_at is not None
        and blob.touched_at >= touched_before
    )


def reachable(
    roots: Iterable[str],
    children: dict[str, list[str]],
    referrers: dict[str, list[str]],
) -> set[str]:
    """Everything reachable from ``roots`` through index children and referrers."""
    seen: set[str] = set()
    todo = [d for d in roots if d in children]
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        todo.extend(c for c in children[digest] if c in children and c not in seen)
        todo.extend(r for r in referrers.get(digest, ()) if r not in seen)
    return seen


def retention_tags(
    registry: RegistryRecord,
    repository: str,
    tags: list[TagRecord],
    manifests: dict[str, ManifestRecord],
    now: datetime,
) -> list[tuple[str, str]]:
    """The registry's retention rules for one repository (registry.policies), as the tags
    to delete before it is scanned (the collection itself removes what they leave
    untagged, whatever its age)."""
    if not registry.settings.retention_rules:
        return []
    plan = plan_retention(registry.settings, repository, tags, list(manifests.values()), now)
    return [(tag, digest) for tag, digest, _ in plan.tags]


class GarbageCollector:
    def __init__(
        self,
        store: GcStore,
        blobs: BlobStore,
        engine: CollectionEngine,
        settings: CollectionSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        retention: RetentionHook | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.engine = engine
        self.settings = settings or CollectionSettings()
        self._clock = clock
        self.retention = retention

    # ------------------------------------------------------------------ the API's side

    def start(
        self,
        registry: RegistryRecord,
        gc_type: str = GC_BOTH,
        mode: str = GC_READ_ONLY,
        trigger: str = "api",
    ) -> Collection:
        if gc_type not in GC_TYPES:
            raise UnprocessableError(
                f"type must be one of {', '.join(repr(t) for t in GC_TYPES)}",
                detail={"type": gc_type},
            )
        if mode not in GC_MODES:
            raise UnprocessableError(
                f"mode must be one of {', '.join(repr(m) for m in GC_MODES)}",
                detail={"mode": mode},
            )
        now = self._clock()
        gc = Collection(
            uuid=new_collection_id(now),
            registry_name=registry.name,
            registry_id=registry.registry_id,
            status=GC_REQUESTED,
            type=gc_type,
            mode=mode,
            created_at=now,
            updated_at=now,
            trigger=trigger,
        )
        self.store.begin_collection(registry, gc)
        try:
            self.engine.start(registry.registry_id, gc.uuid)
        except Exception as exc:
            # Nothing will drive it: end it now rather than leave the registry read-only.
            self.fail(registry.registry_id, gc.uuid, f"could not start: {exc}")
            raise UnavailableError(
                "the garbage collection could not be started; try again",
                detail={"uuid": gc.uuid},
            ) from exc
        return gc

    def active(self, registry: RegistryRecord) -> Collection | None:
        if registry.gc_active is None:
            return None
        gc = self.store.get_collection(registry.registry_id, registry.gc_active)
        return gc if gc is not None and gc.active else None

    def get(self, registry: RegistryRecord, gc_uuid: str) -> Collection:
        gc = self.store.get_collection(registry.registry_id, gc_uuid)
        if gc is None:
            raise NotFoundError(
                f"no garbage collection {gc_uuid!r} in registry {registry.name!r}",
                detail={"uuid": gc_uuid},
            )
        return gc

    def history(self, registry: RegistryRecord, after: str | None, limit: int) -> list[Collection]:
        return self.store.list_collections(registry.registry_id, after, limit)

    def cancel(self, registry: RegistryRecord, gc_uuid: str) -> Collection:
        gc = self.get(registry, gc_uuid)
        if not gc.active:
            raise ConflictError(
                f"the garbage collection already ended ({gc.status})",
                detail={"uuid": gc_uuid, "status": gc.status},
            )
        cancelled = self.store.request_cancel(registry.registry_id, gc_uuid)
        if cancelled is None:
            raise ConflictError("the garbage collection ended meanwhile", detail={"uuid": gc_uuid})
        return cancelled

    def fail(self, registry_id: str, gc_uuid: str, error: str) -> None:
        for _ in range(3):
            gc = self.store.get_collection(registry_id, gc_uuid)
            if gc is None or not gc.active:
                return
            gc.error = error[:1000]
            if self._end(gc, GC_FAILED):
                return

    # ------------------------------------------------------------------ the engine's side

    def step(self, registry_id: str, gc_uuid: str) -> StepOutcome:
        """One bounded unit of work; the engine calls it again until ``done``, after
        ``wait_seconds``. Safe to call again after a crash anywhere in it."""
        gc = self.store.get_collection(registry_id, gc_uuid)
        if gc is None or not gc.active:
            return StepOutcome(True)
        registry = self.store.get_registry(gc.registry_name)
        if registry is None or registry.registry_id != registry_id or registry.deleting:
            gc.error = "the registry was deleted"
            return self._finish(gc, GC_CANCELLED)
        if gc.cancel_requested:
            return self._finish(gc, GC_CANCELLED)
        phases: dict[str, Callable[[Collection, RegistryRecord], StepOutcome]] = {
            "begin": self._begin,
            "wait": self._wait,
            "scan": self._scan,
            "links": self._sweep_links,
            "blobs": self._sweep_blobs,
            "objects": self._sweep_objects,
            "uploads": self._sweep_uploads,
        }
        return phases[gc.phase](gc, registry)

    def _advance(self, gc: Collection, phase: str, cursor: str | None = None) -> None:
        gc.phase, gc.cursor = phase, cursor
        gc.status = STATUS_BY_PHASE[phase]

    def _save(self, gc: Collection, wait_seconds: int = 0) -> StepOutcome:
        gc.updated_at = self._clock()
        # Lost only to a cancel (which bumps the version): the next step reads it.
        self.store.save_collection(gc)
        return StepOutcome(False, wait_seconds)

    def _end(self, gc: Collection, status: str) -> bool:
        gc.status = status
        gc.updated_at = self._clock()
        return self.store.finish_collection(gc)

    def _finish(self, gc: Collection, status: str) -> StepOutcome:
        for _ in range(3):
            if self._end(gc, status):
                return StepOutcome(True)
            fresh = self.store.get_collection(gc.registry_id, gc.uuid)
            if fresh is None or not fresh.active:
                return StepOutcome(True)
            # A cancel arrived after the work was done: what was done stands, and the
            # collection ends as the user asked.
            gc, status = fresh, (GC_CANCELLED if fresh.cancel_requested else status)
        return StepOutcome(False)

    def _begin(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        wait = self.settings.wait if gc.mode == GC_READ_ONLY else timedelta(0)
        gc.wait_until = self._clock() + wait
        self._advance(gc, "wait")
        return self._save(gc, math.ceil(wait.total_seconds()))

    def _wait(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        now = self._clock()
        if gc.wait_until is not None and now < gc.wait_until:
            return StepOutcome(False, max(1, math.ceil((gc.wait_until - now).total_seconds())))
        gc.marks_from = now
        self._advance(gc, "scan")
        return self._save(gc)

    # ------------------------------------------------------------------ scanning

    def _cutoffs(self, gc: Collection) -> tuple[datetime | None, datetime | None]:
        """(created before, touched before): what an online deletion requires."""
        if gc.mode != GC_ONLINE or gc.marks_from is None:
            return None, None
        return (
            gc.marks_from - self.settings.online_grace,
            gc.marks_from - self.settings.clock_margin,
        )

    def _scan(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        work = 0
        while work < self.settings.budget:
            names = self.store.list_repositories(
                registry.registry_id, gc.cursor, self.settings.page
            )
            for name in names:
                repo = RepositoryName(registry.name, name, registry.registry_id)
                work += 1 + self._collect_repository(gc, registry, repo)
                gc.repositories_scanned += 1
                gc.cursor = name
                if work >= self.settings.budget:
                    break
            else:
                if len(names) < self.settings.page:
                    if gc.deletes_blobs:
                        self._advance(gc, "links")
                    else:
                        self._save(gc)
                        return self._finish(gc, GC_SUCCEEDED)
                    break
        return self._save(gc)

    def _collect_repository(
        self, gc: Collection, registry: RegistryRecord, repo: RepositoryName
    ) -> int:
        """Delete the repository's untagged manifests (if the type says so) and mark the
        blobs of the ones kept. Returns the number of manifests read."""
        manifests, tags = self.store.scan_repository(repo)
        gc.manifests_scanned += len(manifests)
        if self.retention is not None and gc.deletes_manifests:
            for tag, digest in self.retention(
                registry, repo.repository, tags, manifests, self._clock()
            ):
                if self.store.gc_delete_tag(repo, tag, digest):
                    tags = [t for t in tags if t.tag != tag]
        references = {d: self._references(repo, m) for d, m in manifests.items()}
        children = {d: refs[1] for d, refs in references.items()}
        referrers: dict[str, list[str]] = {}
        for digest, record in manifests.items():
            if record.subject is not None:
                referrers.setdefault(record.subject, []).append(digest)

        def closure(roots: Iterable[str]) -> set[str]:
            return reachable(roots, children, referrers)

        if gc.deletes_manifests:
            created_before, touched_before = self._cutoffs(gc)
            roots = {t.digest for t in tags}
            if created_before is not None and touched_before is not None:
                # Online: what was pushed or named lately may still be on its way to a tag
                # (a client pushes an index's children before the index).
                roots |= {
                    d
                    for d, m in manifests.items()
                    if m.created_at is None
                    or m.created_at >= created_before
                    or (m.touched_at is not None and m.touched_at >= touched_before)
                }
            kept = closure(roots)
            kept |= self._delete_untagged(gc, repo, manifests, children, kept, closure)
        else:
            kept = set(manifests)
        if gc.deletes_blobs:
            marked: set[str] = set()
            for digest in kept:
                marked.update(references[digest][0])
            self.store.mark_blobs(gc.uuid, marked)
        return len(manifests)

    def _delete_untagged(
        self,
        gc: Collection,
        repo: RepositoryName,
        manifests: dict[str, ManifestRecord],
        children: dict[str, list[str]],
        kept: set[str],
        closure: Callable[[Iterable[str]], set[str]],
    ) -> set[str]:
        """Delete what ``kept`` leaves out, parents before children and subjects before
        referrers; returns what survived (and everything it reaches)."""
        _, touched_before = self._cutoffs(gc)
        pending = set(manifests) - kept
        parents: dict[str, set[str]] = {}
        for digest in pending:
            for child in children[digest]:
                parents.setdefault(child, set()).add(digest)
        survivors: set[str] = set()
        while pending:
            ready = sorted(
                d
                for d in pending
                if not (parents.get(d, set()) & pending) and manifests[d].subject not in pending
            )
            if not ready:
                break  # a cycle (only a hostile repository has one): keep it
            for digest in ready:
                pending.discard(digest)
                if digest in survivors:
                    continue
                if not self.store.gc_delete_manifest(
                    repo, manifests[digest], gc.uuid, touched_before
                ):
                    survivors |= closure([digest])
        return survivors | closure(pending)

    def _references(
        self, repo: RepositoryName, record: ManifestRecord
    ) -> tuple[list[str], list[str]]:
        """(blobs, child manifests) of a manifest; the body says when the record could not."""
        if not record.references_in_body:
            return list(record.blobs), list(record.manifests)
        body = record.body
        if body is None:
            key = manifest_key(repo.rid, Digest.parse(record.digest), record.revision)
            body = self.blobs.get_object(key)
        parsed = parse_manifest(body, record.media_type)
        return parsed.required_blob_digests, parsed.child_manifest_digests

    # ------------------------------------------------------------------ sweeping

    def _sweep_blobs(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        created_before, touched_before = self._cutoffs(gc)
        work = 0
        while work < self.settings.budget:
            page = self.store.list_registry_blobs(
                registry.registry_id, gc.cursor, self.settings.page
            )
            if page:
                marked = self.store.marked_blobs(gc.uuid, page[0].digest, page[-1].digest)
                for blob in page:
                    if blob.digest in marked or not collectable(
                        blob, created_before, touched_before
                    ):
                        continue
                    if self.store.gc_delete_blob(
                        registry.name,
                        registry.registry_id,
                        blob,
                        gc.uuid,
                        created_before,
                        touched_before,
                    ):
                        # The record is gone (its links went in the phase before), so
                        # nothing can link or reference the bytes any more. A crash before
                        # this delete leaves an object no record names: the object sweep
                        # removes it.
                        self.blobs.delete_object(stored_key(registry.registry_id, blob))
                gc.blobs_scanned += len(page)
                gc.cursor = page[-1].digest
                work += len(page)
            if len(page) < self.settings.page:
                self._advance(gc, "objects")
                break
        return self._save(gc)

    def _sweep_links(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        """Unlink the blobs about to be deleted from every repository, before their
        records go: a client that finds a blob by HEAD in a repository (through its link)
        then pushes a manifest naming it, so a link must never outlive its blob's record.
        Each unlinking is conditional on the blob record still being collectable (not
        touched since T0): a push that references the blob meanwhile keeps the link."""
        created_before, touched_before = self._cutoffs(gc)
        work = 0
        while work < self.settings.budget:
            names = self.store.list_repositories(registry.registry_id, gc.cursor, 50)
            for name in names:
                repo = RepositoryName(registry.name, name, registry.registry_id)
                work += 1 + self._unlink_collectable(gc, repo, created_before, touched_before)
                gc.cursor = name
            if len(names) < 50:
                self._advance(gc, "blobs")
                break
        return self._save(gc)

    def _unlink_collectable(
        self,
        gc: Collection,
        repo: RepositoryName,
        created_before: datetime | None,
        touched_before: datetime | None,
    ) -> int:
        after: str | None = None
        seen = 0
        while True:
            links = self.store.list_links(repo, after, self.settings.page)
            if not links:
                return seen
            digests = [link.digest for link in links]
            records = self.store.get_registry_blobs(repo.rid, digests)
            marked = self.store.marked_blobs(gc.uuid, digests[0], digests[-1])
            for link in links:
                record = records.get(link.digest)
                if record is not None and (
                    link.digest in marked or not collectable(record, created_before, touched_before)
                ):
                    continue
                # No record (an earlier collection's leftover) or about to lose it.
                self.store.gc_delete_link(repo, link, created_before, touched_before)
            seen += len(links)
            after = digests[-1]
            if len(links) < self.settings.page:
                return seen

    def _sweep_objects(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        # Blob bytes, and the bodies of manifests too large for their items.
        prefix = f"registries/{registry.registry_id}/"
        uploads_prefix = prefix + "blobs/uploads/"
        old = self._clock() - self.settings.orphan_grace
        work = 0
        while work < self.settings.budget:
            objects = self.blobs.list_objects(prefix, gc.cursor, 1000)
            candidates = [o for o in objects if o.last_modified < old]
            by_upload: dict[str, list[str]] = {}
            for obj in candidates:
                upload_id = (
                    obj.key[len(uploads_prefix) :].partition("/")[0]
                    if obj.key.startswith(uploads_prefix)
                    else ""
                )
                by_upload.setdefault(upload_id, []).append(obj.key)
            # Sessions first, then the key index (see the module docstring).
            live = self.store.live_uploads([u for u in by_upload if u])
            keys = [k for u, ks in by_upload.items() if u not in live for k in ks]
            named = self.store.named_keys(registry.registry_id, keys) if keys else set()
            orphans = [k for k in keys if k not in named]
            for key in orphans:
                self.blobs.delete_object(key)
            if orphans:
                self.store.forget_keys(registry.registry_id, orphans)
                self.store.count_orphans_deleted(registry.registry_id, gc.uuid, len(orphans))
                gc.objects_deleted += len(orphans)
            gc.objects_scanned += len(objects)
            work += len(objects)
            if objects:
                gc.cursor = objects[-1].key
            if len(objects) < 1000:
                self._advance(gc, "uploads")
                break
        return self._save(gc)

    def _sweep_uploads(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
        prefix = f"registries/{registry.registry_id}/blobs/uploads/"
        old = self._clock() - self.settings.orphan_grace
        pending = [p for p in self.blobs.list_multipart_uploads(prefix, 1000) if p.initiated < old]
        live = self.store.live_uploads(
            sorted({p.key[len(prefix) :].partition("/")[0] for p in pending})
        )
        for multipart in pending:
            if multipart.key[len(prefix) :].partition("/")[0] not in live:
                self.blobs.abort_multipart(multipart.key, multipart.multipart_id)
        self._save(gc)
        return self._finish(gc, GC_SUCCEEDED)
