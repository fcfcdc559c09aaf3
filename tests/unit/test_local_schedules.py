"""The local runtime fires every schedule the app declares the way AWS does: found from the
handler string the deployed template carries, invoked with an EventBridge scheduled event,
at the app's rates."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from chalice.app import Blueprint, Chalice, CloudWatchEvent, Rate, ScheduledEventConfig

import chalicelib.events.handlers as handlers
from chalicelib.application import create_app
from portside.local.runtime import LOCAL_INTERVALS
from portside.local.schedules import (
    Schedule,
    app_schedules,
    fire,
    rate_seconds,
    resolve_handler,
    run_schedules,
    scheduled_event,
)


@dataclass
class RecordingService:
    """Stands in for the registry and management services behind the handlers."""

    calls: list[str] = field(default_factory=list)

    def cleanup_expired_uploads(self, limit: int = 100) -> int:
        self.calls.append("cleanup_expired_uploads")
        return 0

    def purge_deleted_registries(self) -> int:
        self.calls.append("purge_deleted_registries")
        return 0

    def run(self, now: Any) -> None:  # wiring.scheduled_collections()
        self.calls.append("scheduled_collections")


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> RecordingService:
    recorder = RecordingService()
    api = SimpleNamespace(service=recorder)
    monkeypatch.setattr(handlers, "v2_api", lambda: api)
    monkeypatch.setattr(handlers, "management_api", lambda: api)
    monkeypatch.setattr(handlers.wiring, "scheduled_collections", lambda: recorder, raising=False)
    reconciler = SimpleNamespace(run=lambda: recorder.calls.append("reconcile_storage") or [])
    monkeypatch.setattr(handlers.wiring, "storage_reconciler", lambda: reconciler)

    def snapshot_storage(now: Any) -> int:
        recorder.calls.append("snapshot_storage")
        return 0

    def export_billing(now: Any) -> None:
        recorder.calls.append("export_billing")

    snapshots = SimpleNamespace(run=snapshot_storage)
    monkeypatch.setattr(handlers.wiring, "storage_snapshots", lambda: snapshots)
    billing = SimpleNamespace(run_due=export_billing)
    monkeypatch.setattr(handlers.wiring, "billing_export", lambda: billing)
    return recorder


def declared_schedules(app: Chalice) -> dict[str, str]:
    return {
        source.name: source.handler_string
        for source in app.event_sources
        if isinstance(source, ScheduledEventConfig)
    }


def test_local_runtime_fires_every_schedule_the_app_declares_by_its_handler_string(
    service: RecordingService,
) -> None:
    app = create_app()
    schedules = app_schedules(app, LOCAL_INTERVALS)

    assert {s.name: s.handler_string for s in schedules} == declared_schedules(app)
    assert {s.name for s in schedules} == {
        "cleanup-expired-uploads",
        "purge-deleted-registries",
        "scheduled-collections",
        "reconcile-storage",
        "snapshot-storage",
        "export-billing",
    }
    for schedule in schedules:
        fire(schedule)
    assert sorted(service.calls) == [
        "cleanup_expired_uploads",
        "export_billing",
        "purge_deleted_registries",
        "reconcile_storage",
        "scheduled_collections",
        "snapshot_storage",
    ]


def test_schedules_run_at_the_apps_rates_except_the_faster_local_purge() -> None:
    app = create_app()
    assert {s.name: s.interval for s in app_schedules(app)} == {
        "cleanup-expired-uploads": 900.0,
        "purge-deleted-registries": 60.0,
        "scheduled-collections": 900.0,
        "reconcile-storage": 3600.0,
        "snapshot-storage": 3600.0,
        "export-billing": 86400.0,
    }
    assert {s.name: s.interval for s in app_schedules(app, LOCAL_INTERVALS)} == {
        "cleanup-expired-uploads": 900.0,
        "purge-deleted-registries": 5.0,
        "scheduled-collections": 900.0,
        "reconcile-storage": 3600.0,
        "snapshot-storage": 3600.0,
        "export-billing": 86400.0,
    }
    with pytest.raises(ValueError, match="no-such-schedule"):
        app_schedules(app, {"no-such-schedule": 1.0})


def factory_blueprint() -> Blueprint:
    bp = Blueprint(__name__)

    @bp.schedule(Rate(1, unit=Rate.MINUTES), name="inside-a-factory")
    def hidden_schedule(event: CloudWatchEvent) -> None:
        raise AssertionError("never reachable by its handler string")

    return bp


def test_a_schedule_defined_inside_a_factory_is_not_found_as_on_aws() -> None:
    app = Chalice(app_name="probe")
    app.register_blueprint(factory_blueprint())
    (schedule,) = app_schedules(app)

    assert schedule.handler_string == f"{__name__}.hidden_schedule"
    with pytest.raises(LookupError, match=r"Runtime\.HandlerNotFound"):
        fire(schedule)


def test_handler_strings_resolve_to_module_attributes_only() -> None:
    assert (
        resolve_handler("chalicelib.events.handlers.purge_deleted_registries_schedule")
        is handlers.purge_deleted_registries_schedule
    )
    with pytest.raises(LookupError):
        resolve_handler("chalicelib.events.handlers.events_blueprint")
    with pytest.raises(ModuleNotFoundError):
        resolve_handler("chalicelib.events.nowhere.handler")


def test_scheduled_event_is_what_eventbridge_sends_and_chalice_parses() -> None:
    event = CloudWatchEvent(scheduled_event("purge-deleted-registries", region="eu-west-1"), None)
    assert event.detail_type == "Scheduled Event"
    assert event.source == "aws.events"
    assert event.region == "eu-west-1"
    assert event.resources == [
        "arn:aws:events:eu-west-1:000000000000:rule/purge-deleted-registries"
    ]
    assert event.detail == {}


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60.0), ("rate(15 minutes)", 900.0), ("rate(2 hours)", 7200.0)],
)
def test_rate_expressions_become_periods(expression: str, seconds: float) -> None:
    assert rate_seconds(expression) == seconds


def test_cron_expressions_are_refused_rather_than_silently_never_fired() -> None:
    with pytest.raises(ValueError, match="rate"):
        rate_seconds("cron(0 3 1 * ? *)")


def test_run_schedules_keeps_each_period_and_survives_a_failing_run() -> None:
    stop = threading.Event()
    seen: list[str] = []

    def invoke(schedule: Schedule) -> Any:
        seen.append(schedule.name)
        if len(seen) >= 8:
            stop.set()
        if schedule.name == "every-tick":
            raise RuntimeError("a failing run must not stop the schedules")
        return None

    tick = 0.125  # exact in binary: the clock adds up without rounding
    schedules = [
        Schedule("every-tick", "m.a", "rate(1 minute)", interval=tick),
        Schedule("every-third", "m.b", "rate(3 minutes)", interval=3 * tick),
    ]
    runner = threading.Thread(target=run_schedules, args=(stop, schedules, invoke, tick))
    runner.start()
    runner.join(timeout=10)

    assert not runner.is_alive()
    assert seen[:8] == [
        "every-tick",
        "every-third",  # clock 0
        "every-tick",  # 1
        "every-tick",  # 2
        "every-tick",
        "every-third",  # 3
        "every-tick",  # 4
        "every-tick",  # 5
    ]
