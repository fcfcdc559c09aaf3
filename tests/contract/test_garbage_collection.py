"""Garbage collection over every pair of adapters (memory, and DynamoDB + S3 on moto): the
collector is the same code; what it relies on (consistent scans, conditional deletions,
exact counters, the key index) must hold in both."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.registry.digests import Digest
from chalicelib.registry.errors import (
    ConflictError,
    GarbageCollectionRunningError,
    ManifestBlobUnknownError,
    UnavailableError,
)
from chalicelib.registry.gc import CollectionSettings, GarbageCollector
from chalicelib.registry.manifests import OCI_INDEX, OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import (
    GC_BOTH,
    GC_CANCELLED,
    GC_ONLINE,
    GC_SUCCEEDED,
    GC_UNREFERENCED_BLOBS,
    GC_UNTAGGED_MANIFESTS,
    Collection,
    RegistryRecord,
)
from chalicelib.registry.service import (
    RegistryService,
    ServiceSettings,
    manifest_key,
    stored_key,
)
from tests.integration.conftest import BUCKET, Aws

from .helpers import unique

WORLDS = [
    pytest.param("memory", id="memory"),
    pytest.param("aws", id="dynamo+s3", marks=pytest.mark.integration),
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class RecordingEngine:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def start(self, registry_id: str, gc_uuid: str) -> None:
        self.started.append((registry_id, gc_uuid))


@dataclass
class World:
    store: Any
    blobs: Any
    service: RegistryService
    collector: GarbageCollector
    clock: Clock
    engine: RecordingEngine
    registry: RegistryRecord
    pushed: dict[str, bytes] = field(default_factory=dict)

    def repo(self, name: str) -> RepositoryName:
        return RepositoryName(self.registry.name, name, self.registry.registry_id)

    def fresh(self) -> RegistryRecord:
        record = self.store.get_registry(self.registry.name)
        assert record is not None
        return record

    def blob(self, repo: RepositoryName, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.service.upload_blob(repo, digest, io.BytesIO(data), len(data))
        self.pushed[digest] = data
        return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}

    def image(
        self,
        repo: RepositoryName,
        reference: str | None,
        *layers: bytes,
        subject: str | None = None,
    ) -> str:
        config = self.blob(
            repo, b'{"architecture":"amd64","os":"linux","n":"%s"}' % uuid.uuid4().hex.encode()
        )
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [self.blob(repo, data) for data in layers],
        }
        if subject is not None:
            doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
            doc["artifactType"] = "application/vnd.example.signature"
        return self.put(repo, reference, doc, OCI_MANIFEST)

    def index(self, repo: RepositoryName, reference: str | None, *children: str) -> str:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": c,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": a},
                }
                for c, a in zip(children, ("amd64", "arm64", "s390x"), strict=False)
            ],
        }
        return self.put(repo, reference, doc, OCI_INDEX)

    def put(
        self, repo: RepositoryName, reference: str | None, doc: dict[str, Any], media: str
    ) -> str:
        """Push by ``reference`` (a tag), or by digest (untagged) when it is None."""
        body = json.dumps(doc).encode()
        reference = reference or "sha256:" + hashlib.sha256(body).hexdigest()
        parsed = self.service.put_manifest(repo, reference, body, media)
        return parsed.digest

    def run(self, gc: Collection, max_steps: int = 500) -> Collection:
        for _ in range(max_steps):
            outcome = self.collector.step(self.registry.registry_id, gc.uuid)
            self.clock.advance(timedelta(seconds=outcome.wait_seconds))
            if outcome.done:
                break
        final = self.store.get_collection(self.registry.registry_id, gc.uuid)
        assert final is not None
        return final

    def manifests(self, repo: RepositoryName) -> set[str]:
        return set(self.store.scan_repository(repo)[0])

    def has_blob(self, digest: str) -> bool:
        record = self.store.get_registry_blob(self.registry.registry_id, digest)
        if record is None:
            return False
        data = self.blobs.get_object(stored_key(self.registry.registry_id, record))
        assert data == self.pushed[digest], "a kept blob's bytes changed"
        return True


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "memory":
        store: Any = MemoryMetadataStore()
        blobs: Any = MemoryBlobStore()
    else:
        aws: Aws = request.getfixturevalue("aws")
        store, blobs = DynamoMetadataStore(), S3BlobStore(BUCKET, aws.s3)
    clock = Clock()
    registry = RegistryRecord(name=unique("gc"), account_id=unique("acct"), created_at=clock())
    store.put_registry(registry)
    engine = RecordingEngine()
    service = RegistryService(store, blobs, ServiceSettings(), clock=clock)
    collector = GarbageCollector(
        store,
        blobs,
        engine,
        CollectionSettings(
            wait=timedelta(seconds=30),
            online_grace=timedelta(minutes=30),
            clock_margin=timedelta(minutes=1),
            page=3,  # small pages and budgets: every test crosses step boundaries
            budget=4,
        ),
        clock=clock,
    )
    yield World(store, blobs, service, collector, clock, engine, registry)


def test_deletes_untagged_manifests_and_unreferenced_blobs_and_storage_drops(world: World) -> None:
    app = world.repo("app")
    kept = world.image(app, "v2", b"shared layer", b"kept layer")
    old = world.image(app, "v1", b"shared layer", b"old layer")
    world.service.delete_manifest(app, "v1")  # untag v1: its manifest is now untagged
    before = world.fresh().storage_bytes
    gc = world.collector.start(world.fresh(), GC_BOTH)
    assert world.engine.started == [(world.registry.registry_id, gc.uuid)]

    final = world.run(gc)

    assert final.status == GC_SUCCEEDED
    assert world.manifests(app) == {kept}
    assert old not in world.manifests(app)
    old_layer = "sha256:" + hashlib.sha256(b"old layer").hexdigest()
    assert not world.has_blob(old_layer)
    assert world.has_blob("sha256:" + hashlib.sha256(b"shared layer").hexdigest())
    assert world.has_blob("sha256:" + hashlib.sha256(b"kept layer").hexdigest())
    after = world.fresh()
    assert final.manifests_deleted == 1
    assert final.blobs_deleted == 2  # the old layer and the old config
    assert final.freed_bytes == before - after.storage_bytes > 0
    assert after.gc_active is None and not after.read_only
    # the link is gone too: the blob is unknown in the repository
    assert world.store.get_blob_link(app, old_layer) is None
    # and a pull by tag still resolves the kept image
    assert world.service.resolve_manifest(app, "v2").digest == kept


def test_index_children_and_referrers_of_kept_manifests_survive(world: World) -> None:
    app = world.repo("app")
    amd = world.image(app, None, b"amd64 layer")
    arm = world.image(app, None, b"arm64 layer")
    index = world.index(app, "multi", amd, arm)
    signature = world.image(app, None, b"signature", subject=index)
    orphan_child = world.image(app, None, b"lonely layer")
    orphan_index = world.index(app, None, orphan_child)
    orphan_sig = world.image(app, None, b"orphan sig", subject=orphan_index)

    final = world.run(world.collector.start(world.fresh(), GC_BOTH))

    assert final.status == GC_SUCCEEDED
    assert world.manifests(app) == {amd, arm, index, signature}
    assert {orphan_child, orphan_index, orphan_sig}.isdisjoint(world.manifests(app))
    assert final.manifests_deleted == 3
    assert world.has_blob("sha256:" + hashlib.sha256(b"arm64 layer").hexdigest())
    assert not world.has_blob("sha256:" + hashlib.sha256(b"lonely layer").hexdigest())
    assert world.service.list_referrers(app, index, None)


def test_blobs_shared_across_repositories_are_kept(world: World) -> None:
    a, b = world.repo("a"), world.repo("b")
    world.image(a, "v1", b"common base")
    world.image(b, "v1", b"common base")
    world.service.delete_manifest(a, "v1")

    final = world.run(world.collector.start(world.fresh(), GC_BOTH))

    assert final.status == GC_SUCCEEDED
    assert world.has_blob("sha256:" + hashlib.sha256(b"common base").hexdigest())
    assert world.manifests(a) == set()


def test_types_limit_what_is_deleted(world: World) -> None:
    app = world.repo("app")
    world.image(app, "gone", b"untagged layer")
    world.service.delete_manifest(app, "gone")
    untagged = world.manifests(app)
    layer = "sha256:" + hashlib.sha256(b"untagged layer").hexdigest()

    blobs_only = world.run(world.collector.start(world.fresh(), GC_UNREFERENCED_BLOBS))
    assert blobs_only.status == GC_SUCCEEDED
    assert world.manifests(app) == untagged  # kept, and so are its blobs
    assert world.has_blob(layer)

    manifests_only = world.run(world.collector.start(world.fresh(), GC_UNTAGGED_MANIFESTS))
    assert manifests_only.manifests_deleted == 1 and manifests_only.blobs_deleted == 0
    assert world.has_blob(layer)

    both = world.run(world.collector.start(world.fresh(), GC_BOTH))
    assert both.blobs_deleted == 2 and not world.has_blob(layer)


def test_a_read_only_collection_refuses_writes_until_it_ends(world: World) -> None:
    app = world.repo("app")
    world.image(app, "v1", b"layer")
    gc = world.collector.start(world.fresh(), GC_BOTH)
    with pytest.raises(ConflictError):
        world.collector.start(world.fresh(), GC_BOTH)
    for attempt in (
        lambda: world.service.start_upload(app),
        lambda: world.image(app, "v2", b"another"),
        lambda: world.service.delete_manifest(app, "v1"),
    ):
        with pytest.raises(GarbageCollectionRunningError) as refused:
            attempt()
        assert "garbage collection is running" in refused.value.message
    assert world.run(gc).status == GC_SUCCEEDED
    world.image(app, "v2", b"another")  # accepted again
    assert world.service.resolve_manifest(app, "v2")


def test_a_tag_delete_refused_by_a_collection_that_ends_before_the_re_read_is_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete's transaction fails on the read-only registry; by the time the store
    reads the registry again to say why, the collection has ended: the delete is tried
    again and succeeds (it answered 429 before, which no client expects from a delete)."""
    if isinstance(world.store, MemoryMetadataStore):
        pytest.skip("the in-memory store checks and deletes under one lock: no window")
    app = world.repo("app")
    world.image(app, "v1", b"layer")
    gc = world.collector.start(world.fresh(), GC_BOTH)
    re_read = world.store._require_live_registry
    ended: list[Collection] = []

    def collection_ends_first(repo: RepositoryName) -> None:
        if not ended:
            ended.append(world.run(gc))
        re_read(repo)

    monkeypatch.setattr(world.store, "_require_live_registry", collection_ends_first)
    world.service.delete_manifest(app, "v1")
    assert [c.status for c in ended] == [GC_SUCCEEDED]
    assert world.store.get_tag(app, "v1") is None


PHASES = ("begin", "wait", "scan", "links", "blobs", "objects", "uploads")


def _garbage(world: World) -> None:
    """Four images, all untagged: every phase has something to do."""
    app = world.repo("app")
    for n in range(4):
        world.image(app, f"t{n}", f"layer {n}".encode())
        world.service.delete_manifest(app, f"t{n}")


def _storage_is_what_is_held(world: World) -> None:
    registry = world.fresh()
    assert registry.storage_bytes == sum(
        len(world.pushed[d])
        for d in world.pushed
        if world.store.get_registry_blob(world.registry.registry_id, d) is not None
    )


@pytest.mark.parametrize("phase", PHASES)
def test_cancel_in_each_phase_ends_cancelled_and_releases_the_registry(
    world: World, phase: str
) -> None:
    _garbage(world)
    gc = world.collector.start(world.fresh(), GC_BOTH)
    for _ in range(100):
        current = world.store.get_collection(world.registry.registry_id, gc.uuid)
        assert current is not None and current.active, f"ended before {phase}"
        if current.phase == phase:
            break
        outcome = world.collector.step(world.registry.registry_id, gc.uuid)
        world.clock.advance(timedelta(seconds=outcome.wait_seconds))
    cancelling = world.collector.cancel(world.fresh(), gc.uuid)
    assert cancelling.status == "cancelling"
    final = world.run(gc)
    assert final.status == GC_CANCELLED
    registry = world.fresh()
    assert registry.gc_active is None and not registry.read_only
    _storage_is_what_is_held(world)  # what it deleted before the cancel is counted exactly
    world.image(world.repo("app"), "after", b"writable again")


class Crash(Exception):
    pass


# What a collection writes: a crash can come right after any of these lands.
WRITES = {
    "store": (
        "save_collection",
        "finish_collection",
        "gc_delete_tag",
        "gc_delete_manifest",
        "mark_blobs",
        "gc_delete_link",
        "gc_delete_blob",
        "count_orphans_deleted",
    ),
    "blobs": ("delete_object", "abort_multipart"),
}


def _crash_after_write(world: World, crash_at: int) -> dict[str, int]:
    """Make the ``crash_at``-th write of the collection land and then raise Crash (once)."""
    calls = {"n": 0}

    def counting(fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            result = fn(*args, **kwargs)  # the write lands, the process dies after it
            if calls["n"] == crash_at:
                raise Crash
            return result

        return wrapped

    for target, names in (("store", WRITES["store"]), ("blobs", WRITES["blobs"])):
        adapter = getattr(world, target)
        for name in names:
            setattr(adapter, name, counting(getattr(adapter, name)))
    return calls


def _scenario(world: World) -> tuple[str, int]:
    app, lib = world.repo("app"), world.repo("lib")
    keep = world.image(app, "keep", b"keep layer", b"shared")
    for n in range(3):
        world.image(app, f"old{n}", f"old {n}".encode(), b"shared")
        world.service.delete_manifest(app, f"old{n}")
    world.image(lib, "v1", b"lib layer")
    world.service.delete_manifest(lib, "v1")
    return keep, world.fresh().storage_bytes


def _another_registry(world: World) -> World:
    registry = RegistryRecord(
        name=unique("gc"), account_id=unique("acct"), created_at=world.clock()
    )
    world.store.put_registry(registry)
    return World(
        world.store,
        world.blobs,
        world.service,
        world.collector,
        world.clock,
        world.engine,
        registry,
    )


def test_a_crash_after_any_write_resumes_to_the_same_result(world: World) -> None:
    """For every write a collection makes, in turn: the process dies right after it lands
    (the engine retries the step); the collection still ends as an uninterrupted one does,
    with exact counters. On DynamoDB every third write (each run costs a second)."""
    stride = 1 if isinstance(world.blobs, MemoryBlobStore) else 3
    crash_at, crashed_runs = 1, 0
    while True:
        run = _another_registry(world)
        keep, before = _scenario(run)
        calls = _crash_after_write(run, crash_at)
        gc = run.collector.start(run.fresh(), GC_BOTH)
        crashed = False
        for _ in range(500):
            try:
                outcome = run.collector.step(run.registry.registry_id, gc.uuid)
            except Crash:
                crashed = True
                continue  # the engine retries the step
            run.clock.advance(timedelta(seconds=outcome.wait_seconds))
            if outcome.done:
                break
        _restore(run)
        final = run.store.get_collection(run.registry.registry_id, gc.uuid)
        assert final is not None and final.status == GC_SUCCEEDED, (crash_at, final)
        app, lib = run.repo("app"), run.repo("lib")
        assert run.manifests(app) == {keep} and run.manifests(lib) == set(), crash_at
        assert final.manifests_deleted == 4, crash_at
        assert final.blobs_deleted == 8, crash_at  # three old layers and configs, lib's two
        assert final.freed_bytes == before - run.fresh().storage_bytes, crash_at
        assert run.has_blob("sha256:" + hashlib.sha256(b"shared").hexdigest())
        if not crashed:
            break  # past the last write
        crashed_runs += 1
        assert calls["n"] >= crash_at
        crash_at += stride
    print(f"crashed after each of {crashed_runs} writes (every {stride})")
    assert crashed_runs >= 10, crashed_runs


def _restore(world: World) -> None:
    for target, names in (("store", WRITES["store"]), ("blobs", WRITES["blobs"])):
        adapter = getattr(world, target)
        for name in names:
            if name in vars(adapter):
                delattr(adapter, name)


def test_online_mode_keeps_young_blobs_and_what_pushes_touch(world: World) -> None:
    app = world.repo("app")
    world.image(app, "old", b"old layer", b"reused later")
    world.service.delete_manifest(app, "old")
    world.clock.advance(timedelta(hours=2))  # older than the grace window
    young = world.blob(app, b"uploaded, manifest not pushed yet")["digest"]
    gc = world.collector.start(world.fresh(), GC_BOTH, GC_ONLINE)
    # scanning runs with the registry writable
    for _ in range(3):
        world.collector.step(world.registry.registry_id, gc.uuid)
    # a push after the scan began references an old, unmarked blob: it touches it
    world.clock.advance(timedelta(minutes=2))
    world.image(app, "new", b"reused later")
    final = world.run(gc)
    assert final.status == GC_SUCCEEDED
    assert world.has_blob(young)
    reused = "sha256:" + hashlib.sha256(b"reused later").hexdigest()
    assert world.has_blob(reused)
    assert world.store.get_blob_link(app, reused) is not None  # the push kept its link
    assert not world.has_blob("sha256:" + hashlib.sha256(b"old layer").hexdigest())
    assert world.service.resolve_manifest(app, "new")


def test_online_a_push_after_the_blob_was_deleted_fails_cleanly(world: World) -> None:
    app = world.repo("app")
    world.image(app, "old", b"doomed layer")
    world.service.delete_manifest(app, "old")
    world.clock.advance(timedelta(hours=2))
    doomed = "sha256:" + hashlib.sha256(b"doomed layer").hexdigest()
    assert world.store.get_blob_link(app, doomed) is not None
    final = world.run(world.collector.start(world.fresh(), GC_BOTH, GC_ONLINE))
    assert final.status == GC_SUCCEEDED and not world.has_blob(doomed)
    # Unlinked before its record went: a HEAD now says unknown, and a client uploads again.
    assert world.store.get_blob_link(app, doomed) is None
    # A client that saw the blob earlier (HEAD said it exists) pushes a manifest naming it:
    # refused, never accepted with a missing blob.
    config = world.blob(app, b'{"os":"linux"}')
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{"mediaType": "application/octet-stream", "digest": doomed, "size": 12}],
    }
    with pytest.raises(ManifestBlobUnknownError):
        world.put(app, "late", doc, OCI_MANIFEST)


def test_tags_moved_during_a_collection_keep_what_they_name(world: World) -> None:
    app = world.repo("app")
    first = world.image(app, "latest", b"first layer")
    second = world.image(app, None, b"second layer")  # untagged for now
    world.clock.advance(timedelta(hours=2))
    gc = world.collector.start(world.fresh(), GC_BOTH, GC_ONLINE)
    world.collector.step(world.registry.registry_id, gc.uuid)
    world.collector.step(world.registry.registry_id, gc.uuid)
    # re-point latest at the untagged manifest before it is scanned or deleted
    body = world.service.manifest_body(app, world.service.resolve_manifest(app, second))
    world.service.put_manifest(app, "latest", body, OCI_MANIFEST)
    final = world.run(gc)
    assert final.status == GC_SUCCEEDED
    assert world.service.resolve_manifest(app, "latest").digest == second
    assert world.has_blob("sha256:" + hashlib.sha256(b"second layer").hexdigest())
    assert first  # the old target may go or stay; what latest names never goes


def test_objects_no_record_names_are_swept(world: World) -> None:
    app = world.repo("app")
    world.image(app, "v1", b"committed layer")
    rid = world.registry.registry_id
    orphan = f"registries/{rid}/blobs/uploads/{uuid.uuid4()}/abandoned"
    world.blobs.put_object(orphan, b"refused upload bytes")
    session = world.service.start_upload(app)
    in_flight = f"registries/{rid}/blobs/uploads/{session.upload_id}/part"
    world.blobs.put_object(in_flight, b"bytes of a live session")
    collector = GarbageCollector(
        world.store,
        world.blobs,
        world.engine,
        # every object counts as old: only ownership keeps one
        CollectionSettings(wait=timedelta(0), orphan_grace=timedelta(hours=-1), page=3, budget=4),
        clock=world.clock,
    )
    gc = collector.start(world.fresh(), GC_BOTH)
    for _ in range(200):
        if collector.step(rid, gc.uuid).done:
            break
    final = world.store.get_collection(rid, gc.uuid)
    assert final is not None and final.status == GC_SUCCEEDED
    keys = {o.key for o in world.blobs.list_objects(f"registries/{rid}/", None, 1000)}
    assert orphan not in keys
    assert in_flight in keys
    assert world.has_blob("sha256:" + hashlib.sha256(b"committed layer").hexdigest())
    assert final.objects_deleted == 1


def test_online_a_blob_uploaded_again_after_it_was_unlinked_is_kept(world: World) -> None:
    app = world.repo("app")
    world.image(app, "old", b"comes back")
    world.service.delete_manifest(app, "old")
    world.clock.advance(timedelta(hours=2))
    layer = "sha256:" + hashlib.sha256(b"comes back").hexdigest()
    gc = world.collector.start(world.fresh(), GC_BOTH, GC_ONLINE)
    for _ in range(50):  # up to the moment the links are gone and the records are next
        world.collector.step(world.registry.registry_id, gc.uuid)
        current = world.store.get_collection(world.registry.registry_id, gc.uuid)
        assert current is not None
        if current.phase == "blobs":
            break
    assert world.store.get_blob_link(app, layer) is None
    # A client finds it missing (HEAD) and uploads it again: the commit touches the record.
    world.clock.advance(timedelta(minutes=2))
    world.blob(app, b"comes back")
    final = world.run(gc)
    assert final.status == GC_SUCCEEDED
    assert world.has_blob(layer)
    assert world.store.get_blob_link(app, layer) is not None


def test_a_collection_the_engine_cannot_start_fails_and_frees_the_registry(world: World) -> None:
    class Down:
        def start(self, registry_id: str, gc_uuid: str) -> None:
            raise ConnectionError("states.us-east-1.amazonaws.com unreachable")

    collector = GarbageCollector(world.store, world.blobs, Down(), clock=world.clock)
    with pytest.raises(UnavailableError) as refused:
        collector.start(world.fresh(), GC_BOTH)
    assert refused.value.status == 503
    registry = world.fresh()
    assert registry.gc_active is None and not registry.read_only
    gc = world.store.list_collections(world.registry.registry_id, None, 10)[0]
    assert gc.status == "failed" and "could not start" in (gc.error or "")
    world.image(world.repo("app"), "v1", b"pushes go on")  # not left read-only


def test_bodies_of_large_manifests_go_when_no_manifest_names_them(world: World) -> None:
    """A manifest too large for its item keeps its body in an object of its push's own:
    the body of a manifest deleted, or superseded by a push of the same manifest, is an
    object no record names, and goes; the body a kept manifest names stays."""
    app = world.repo("app")
    world.service.settings = ServiceSettings(manifest_inline_limit=8 * 1024)
    pad = "x" * 10_000  # pushes the manifest over the (lowered) inline limit
    config = world.blob(app, b'{"os":"linux","pad":1}')
    layer = world.blob(app, b"layer of large manifests")

    def large(tag: str | None, n: int) -> str:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [layer],
            "annotations": {"pad": pad, "n": str(n)},
        }
        return world.put(app, tag, doc, OCI_MANIFEST)

    kept = large("kept", 1)
    large("kept", 1)  # the same manifest again: a new revision, a new body object
    doomed = large("doomed", 2)
    world.service.delete_manifest(app, "doomed")
    rid = world.registry.registry_id
    bodies = lambda: {  # noqa: E731
        o.key for o in world.blobs.list_objects(f"registries/{rid}/manifests/", None, 100)
    }
    assert len(bodies()) == 3
    collector = GarbageCollector(
        world.store,
        world.blobs,
        world.engine,
        CollectionSettings(wait=timedelta(0), orphan_grace=timedelta(hours=-1), page=3, budget=4),
        clock=world.clock,
    )
    gc = collector.start(world.fresh(), GC_BOTH)
    for _ in range(200):
        if collector.step(rid, gc.uuid).done:
            break
    record = world.store.get_manifest(app, kept)
    assert record is not None and record.body is None
    left = bodies()
    assert left == {manifest_key(rid, Digest.parse(kept), record.revision)}
    assert doomed not in world.manifests(app)
    # and the kept one is still served, by tag and by digest
    for reference in ("kept", kept):
        resolved = world.service.resolve_manifest(app, reference)
        assert hashlib.sha256(world.service.manifest_body(app, resolved)).hexdigest() == kept[7:]


def test_only_the_current_revisions_body_is_named_whatever_order_keys_come_in(
    world: World,
) -> None:
    """Each push of a large manifest names a body of its own; pushed three times, the
    manifest has three body keys under one record, and only the last is named, however
    the keys are ordered in the page the sweep asks about."""
    app = world.repo("app")
    world.service.settings = ServiceSettings(manifest_inline_limit=8 * 1024)
    config = world.blob(app, b'{"os":"linux","revisions":1}')
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [],
        "annotations": {"pad": "x" * 10_000},
    }
    for _ in range(3):
        digest = world.put(app, "v1", doc, OCI_MANIFEST)
    rid = world.registry.registry_id
    keys = [o.key for o in world.blobs.list_objects(f"registries/{rid}/manifests/", None, 100)]
    record = world.store.get_manifest(app, digest)
    assert record is not None and record.revision is not None
    current = manifest_key(rid, Digest.parse(digest), record.revision)
    assert len(keys) == 3 and current in keys
    stale = [k for k in keys if k != current]
    for page in ([current, *stale], [*stale, current], [stale[0], current, stale[1]]):
        assert world.store.named_keys(rid, page) == {current}
