"""The settings routes of /api/v1 (retention rules, immutability rules, GC schedule,
retention apply with a dry run), RetentionService, and ScheduledCollections."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.api.routes import ManagementApi
from chalicelib.http.messages import HttpRequest
from chalicelib.registry import policies
from chalicelib.registry.auth import Authenticator
from chalicelib.registry.errors import ConflictError, UnprocessableError
from chalicelib.registry.management import ManagementService
from chalicelib.registry.policies import RetentionService, ScheduledCollections
from chalicelib.registry.records import GC_BOTH, GC_ONLINE, RegistryRecord
from chalicelib.registry.rules import GcSchedule, RegistrySettings, RetentionRule
from chalicelib.registry.service import RegistryService

from .builders import START, FakeClock, make_token, push_image, sha256
from .conftest import ACCOUNT, FOREIGN_REGISTRY, REGISTRY, named

BASE = "https://registry.example.test"
REG = f"/api/v1/registries/{REGISTRY}"


@dataclass
class Reply:
    status: int
    body: Any


class Client:
    def __init__(self, api: ManagementApi, token: str) -> None:
        self.api, self.token = api, token

    def __call__(self, method: str, path: str, body: Any = None) -> Reply:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = {"authorization": f"Bearer {self.token}"}
        request = HttpRequest(method, path, {}, headers, io.BytesIO(raw), len(raw), BASE)
        response = self.api.handle(request)
        return Reply(response.status, json.loads(response.body) if response.body else None)


@pytest.fixture
def api(
    store: MemoryMetadataStore, blobs: MemoryBlobStore, service: RegistryService, clock: FakeClock
) -> ManagementApi:
    return ManagementApi(ManagementService(store, blobs, service, Authenticator(store), clock))


@pytest.fixture
def admin(api: ManagementApi, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"admin"}))


@pytest.fixture
def pusher(api: ManagementApi, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"push"}))


@pytest.fixture
def reader(api: ManagementApi, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"pull"}))


# ------------------------------------------------------------------------- rules


def test_retention_rules_are_saved_and_read_back_with_defaults_filled(admin: Client) -> None:
    assert admin("GET", f"{REG}/retention-rules") == Reply(200, {"rules": []})
    saved = admin("PUT", f"{REG}/retention-rules", {"rules": [{"keep_last": 3}]})
    rule = {
        "repository_pattern": "*",
        "tag_pattern": "*",
        "keep_last": 3,
        "expire_after_days": None,
        "untagged_expire_after_days": None,
        "protect_pattern": None,
    }
    assert saved == Reply(200, {"rules": [rule]})
    assert admin("GET", f"{REG}/retention-rules") == Reply(200, {"rules": [rule]})


def test_changing_one_kind_of_setting_keeps_the_others(
    admin: Client, store: MemoryMetadataStore
) -> None:
    admin("PUT", f"{REG}/retention-rules", {"rules": [{"keep_last": 3}]})
    admin("PUT", f"{REG}/immutability-rules", {"rules": [{"tag_pattern": "v*"}]})
    admin("PUT", f"{REG}/garbage-collection-schedule", {"schedule": {"every_days": 7}})
    record = store.get_registry(REGISTRY)
    assert record is not None and record.settings_version == 3
    assert len(record.settings.retention_rules) == 1
    assert len(record.settings.immutability_rules) == 1
    assert record.settings.gc_schedule is not None


def test_bad_rules_answer_422_naming_the_rule(admin: Client) -> None:
    reply = admin("PUT", f"{REG}/retention-rules", {"rules": [{"keep_last": 1}, {}]})
    assert reply.status == 422 and "rule 2" in reply.body["message"]
    reply = admin("PUT", f"{REG}/immutability-rules", {"rules": "v*"})
    assert reply.status == 422
    assert admin("PUT", f"{REG}/immutability-rules", {}).status == 400  # missing "rules"


def test_only_admins_change_settings_and_anyone_who_sees_the_registry_reads_them(
    admin: Client, reader: Client, pusher: Client
) -> None:
    assert reader("PUT", f"{REG}/retention-rules", {"rules": []}).status == 403
    assert pusher("PUT", f"{REG}/immutability-rules", {"rules": []}).status == 403
    assert reader("GET", f"{REG}/immutability-rules").status == 200
    foreign = f"/api/v1/registries/{FOREIGN_REGISTRY}/retention-rules"
    assert admin("GET", foreign).status == 404


def test_the_schedule_is_shown_with_its_next_run_and_can_be_cleared(
    admin: Client, store: MemoryMetadataStore
) -> None:
    assert admin("GET", f"{REG}/garbage-collection-schedule") == Reply(200, {"schedule": None})
    body = {"every_days": 7, "hour_utc": 3, "mode": "online", "starts_on": "2026-03-01"}
    reply = admin("PUT", f"{REG}/garbage-collection-schedule", {"schedule": body})
    assert reply.status == 200
    shown = reply.body["schedule"]
    assert shown["type"] == GC_BOTH and shown["mode"] == GC_ONLINE
    schedule = GcSchedule(7, 3, GC_BOTH, GC_ONLINE, START.date())
    next_run = datetime.fromisoformat(shown["next_run_at"].replace("Z", "+00:00"))
    assert next_run == schedule.next_run_after(datetime.now(UTC) - timedelta(seconds=5)) or (
        next_run == schedule.next_run_after(datetime.now(UTC))
    )
    # The store's index found it; clearing removes it.
    far = START + timedelta(days=5000)
    assert [d.registry_name for d in store.due_collection_schedules(far, 10)] == [REGISTRY]
    assert admin("PUT", f"{REG}/garbage-collection-schedule", {"schedule": None}) == Reply(
        200, {"schedule": None}
    )
    assert store.due_collection_schedules(far, 10) == []
    bad = admin("PUT", f"{REG}/garbage-collection-schedule", {"schedule": {"every_days": 0}})
    assert bad.status == 422


# ------------------------------------------------------------------------- apply


@pytest.fixture
def aged(service: RegistryService, store: MemoryMetadataStore, clock: FakeClock) -> list[bytes]:
    """Four tags of team/app pushed a day apart (v1 oldest)."""
    repo = named(REGISTRY, "team/app")
    bodies = []
    for i in range(1, 5):
        bodies.append(push_image(service, repo, f"v{i}", f"image-{i}"))
        clock.advance(timedelta(days=1))
    return bodies


def test_a_dry_run_lists_what_would_go_and_changes_nothing(
    admin: Client, store: MemoryMetadataStore, aged: list[bytes]
) -> None:
    admin("PUT", f"{REG}/retention-rules", {"rules": [{"keep_last": 2}]})
    reply = admin("POST", f"{REG}/retention/apply", {"dry_run": True})
    assert reply.status == 200
    assert reply.body == {
        "dry_run": True,
        "tags": [
            {
                "repository": "team/app",
                "tag": t,
                "digest": sha256(b),
                "reason": "keep_last 2 (rule 1)",
            }
            for t, b in sorted([("v1", aged[0]), ("v2", aged[1])], reverse=True)
        ],
        "manifests": [],
    }
    assert store.count_repository(named(REGISTRY, "team/app"))[0] == 4


def test_applying_removes_the_planned_tags_and_untagged_manifests(
    admin: Client, pusher: Client, reader: Client, store: MemoryMetadataStore, aged: list[bytes]
) -> None:
    rules = [{"keep_last": 2, "untagged_expire_after_days": 1}]
    admin("PUT", f"{REG}/retention-rules", {"rules": rules})
    assert reader("POST", f"{REG}/retention/apply", {"dry_run": False}).status == 403
    reply = pusher("POST", f"{REG}/retention/apply", {"dry_run": False})
    assert reply.status == 200 and reply.body["dry_run"] is False
    assert sorted(t["tag"] for t in reply.body["tags"]) == ["v1", "v2"]
    assert sorted(m["digest"] for m in reply.body["manifests"]) == sorted(
        sha256(b) for b in aged[:2]
    )
    repo = named(REGISTRY, "team/app")
    assert [t.tag for t in store.list_tags(repo, None, 10)] == ["v3", "v4"]
    assert store.count_repository(repo) == (2, 2)
    assert admin("POST", f"{REG}/retention/apply", {"dry_run": "yes"}).status == 422


def test_immutable_tags_are_never_applied(
    admin: Client, store: MemoryMetadataStore, aged: list[bytes]
) -> None:
    admin("PUT", f"{REG}/immutability-rules", {"rules": [{"tag_pattern": "v1"}]})
    admin("PUT", f"{REG}/retention-rules", {"rules": [{"keep_last": 1}]})
    reply = admin("POST", f"{REG}/retention/apply", {"dry_run": False})
    assert sorted(t["tag"] for t in reply.body["tags"]) == ["v2", "v3"]
    repo = named(REGISTRY, "team/app")
    assert [t.tag for t in store.list_tags(repo, None, 10)] == ["v1", "v4"]


def test_a_tag_moved_since_the_plan_is_left_alone(
    service: RegistryService, store: MemoryMetadataStore, aged: list[bytes]
) -> None:
    record = store.update_registry_settings(
        REGISTRY,
        "id-acme",
        RegistrySettings(retention_rules=(RetentionRule(keep_last=3),)),
        0,
        START,
    )
    repo = named(REGISTRY, "team/app")
    real_get = store.get_tag

    def moved(r: Any, tag: str) -> Any:  # v1 was re-pushed between the plan and the delete
        found = real_get(r, tag)
        return None if tag == "v1" else found

    store.get_tag = moved  # type: ignore[method-assign]
    report = RetentionService(store).apply(record, False, START + timedelta(days=10))
    assert report.tags == []
    store.get_tag = real_get  # type: ignore[method-assign]
    assert store.get_tag(repo, "v1") is not None


def test_apply_refuses_registries_too_big_for_one_request(
    service: RegistryService,
    store: MemoryMetadataStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policies, "MAX_APPLY_REPOSITORIES", 2)
    for name in ("a", "b", "c"):
        push_image(service, named(REGISTRY, name), "v1", name)
    record = store.update_registry_settings(
        REGISTRY,
        "id-acme",
        RegistrySettings(retention_rules=(RetentionRule(keep_last=1),)),
        0,
        START,
    )
    with pytest.raises(UnprocessableError, match="more than 2 repositories"):
        RetentionService(store).apply(record, True, START)


# ------------------------------------------------------------------------- schedules


@dataclass
class FakeCollector:
    started: list[tuple[str, str, str, str]] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)

    def start(self, registry: RegistryRecord, gc_type: str, mode: str, trigger: str = "api") -> Any:
        if registry.name in self.busy:
            raise ConflictError("one is running")
        self.started.append((registry.name, gc_type, mode, trigger))
        return None


def schedule_registry(store: MemoryMetadataStore, name: str = REGISTRY) -> GcSchedule:
    schedule = GcSchedule(1, 3, GC_BOTH, GC_ONLINE, START.date())
    record = store.get_registry(name)
    assert record is not None
    store.update_registry_settings(
        name, record.registry_id, RegistrySettings(gc_schedule=schedule), 0, START
    )
    return schedule


def test_due_schedules_start_a_collection_and_advance(store: MemoryMetadataStore) -> None:
    schedule = schedule_registry(store)
    collector = FakeCollector()
    runner = ScheduledCollections(store, collector)
    first = schedule.next_run_after(START)
    assert runner.run(first - timedelta(minutes=1)) == 0
    assert runner.run(first + timedelta(minutes=7)) == 1
    assert collector.started == [(REGISTRY, GC_BOTH, GC_ONLINE, "schedule")]
    assert runner.run(first + timedelta(minutes=22)) == 0  # advanced: not due again
    (due,) = store.due_collection_schedules(first + timedelta(days=1), 10)
    assert due.next_run_at == first + timedelta(days=1)


def test_a_running_collection_skips_the_run_but_still_advances(
    store: MemoryMetadataStore,
) -> None:
    schedule = schedule_registry(store)
    collector = FakeCollector(busy={REGISTRY})
    first = schedule.next_run_after(START)
    assert ScheduledCollections(store, collector).run(first) == 0
    assert store.due_collection_schedules(first, 10) == []


def test_entries_of_deleted_registries_are_dropped(store: MemoryMetadataStore) -> None:
    schedule = schedule_registry(store)
    store.mark_registry_deleting(REGISTRY)
    collector = FakeCollector()
    far = schedule.next_run_after(START) + timedelta(days=3)
    assert ScheduledCollections(store, collector).run(far) == 0
    assert collector.started == [] and store.due_collection_schedules(far, 10) == []


def test_a_repository_holding_an_immutable_tag_cannot_be_deleted(
    admin: Client, store: MemoryMetadataStore, aged: list[bytes]
) -> None:
    admin("PUT", f"{REG}/immutability-rules", {"rules": [{"tag_pattern": "v2"}]})
    path = f"{REG}/repositories/team%2Fapp"
    reply = admin("DELETE", path)
    assert reply.status == 403
    assert "repository acme/team/app is tagged v2" in reply.body["message"]
    assert "rule 1" in reply.body["message"]
    admin("DELETE", f"{REG}/repositories/team%2Fapp/tags/v3")  # not covered: deleted
    assert admin("DELETE", f"{REG}/repositories/team%2Fapp/tags/v2").status == 403
    admin("PUT", f"{REG}/immutability-rules", {"rules": []})
    assert admin("DELETE", path).status == 204
