"""Registry settings (retention, immutability, GC schedule): saved with a version check,
read back with the registry record, and a schedule index the scheduler queries."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from chalicelib.registry.errors import ConflictError, NameUnknownError
from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import GC_BOTH, GC_ONLINE, RegistryRecord
from chalicelib.registry.rules import (
    GcSchedule,
    ImmutabilityRule,
    RegistrySettings,
    RetentionRule,
)

from .helpers import START, live_registry, new_registry, purge, race, refusals, winners

SETTINGS = RegistrySettings(
    retention_rules=(
        RetentionRule("acme/*", "v*", keep_last=5, protect_pattern="v1.*"),
        RetentionRule(untagged_expire_after_days=7),
    ),
    immutability_rules=(ImmutabilityRule("acme/*", "release-*"),),
    gc_schedule=GcSchedule(7, 3, GC_BOTH, GC_ONLINE, date(2026, 3, 1)),
)


def due_for(store: MetadataStore, registry: RegistryRecord, at: object) -> list[object]:
    return [
        d
        for d in store.due_collection_schedules(at, 1000)  # type: ignore[arg-type]
        if d.registry_id == registry.registry_id
    ]


def test_saved_settings_read_back_with_the_registry_and_bump_its_version(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    assert registry.settings == RegistrySettings() and registry.settings_version == 0
    updated = store.update_registry_settings(
        registry.name, registry.registry_id, SETTINGS, 0, START
    )
    assert updated.settings == SETTINGS and updated.settings_version == 1
    again = live_registry(store, registry.name)
    assert again.settings == SETTINGS and again.settings_version == 1
    cleared = store.update_registry_settings(
        registry.name, registry.registry_id, RegistrySettings(), 1, START
    )
    assert cleared.settings == RegistrySettings() and cleared.settings_version == 2


def test_a_save_from_a_stale_version_is_refused_and_changes_nothing(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    store.update_registry_settings(registry.name, registry.registry_id, SETTINGS, 0, START)
    with pytest.raises(ConflictError):
        store.update_registry_settings(
            registry.name, registry.registry_id, RegistrySettings(), 0, START
        )
    assert live_registry(store, registry.name).settings == SETTINGS


def test_of_concurrent_saves_from_one_version_exactly_one_wins(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    outcomes = race(
        4,
        lambda i: store.update_registry_settings(
            registry.name,
            registry.registry_id,
            RegistrySettings(immutability_rules=(ImmutabilityRule(tag_pattern=f"t{i}"),)),
            0,
            START,
        ),
    )
    assert len(winners(outcomes)) == 1
    assert all(isinstance(e, ConflictError) for e in refusals(outcomes))
    assert live_registry(store, registry.name).settings_version == 1


def test_settings_of_a_deleted_or_recreated_registry_are_refused(store: MetadataStore) -> None:
    old = new_registry(store)
    store.mark_registry_deleting(old.name)
    with pytest.raises(NameUnknownError):
        store.update_registry_settings(old.name, old.registry_id, SETTINGS, 0, START)
    purge(store, old.name, 100)
    new = new_registry(store, name=old.name)
    with pytest.raises(NameUnknownError):
        store.update_registry_settings(old.name, old.registry_id, SETTINGS, 0, START)
    assert live_registry(store, new.name).settings == RegistrySettings()


def test_a_schedule_is_listed_when_due_and_advances_only_from_what_was_read(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    store.update_registry_settings(registry.name, registry.registry_id, SETTINGS, 0, START)
    schedule = SETTINGS.gc_schedule
    assert schedule is not None
    first = schedule.next_run_after(START)  # START is 12:00 on the first day: day 8, 03:00
    assert first == START.replace(hour=3, minute=0, second=0, microsecond=0) + timedelta(days=7)
    assert due_for(store, registry, first - timedelta(seconds=1)) == []
    (due,) = due_for(store, registry, first)
    assert (due.registry_name, due.next_run_at) == (registry.name, first)  # type: ignore[attr-defined]
    later = schedule.next_run_after(first)
    assert store.advance_collection_schedule(registry.registry_id, first, later)
    assert not store.advance_collection_schedule(registry.registry_id, first, later)
    assert due_for(store, registry, first) == []
    assert len(due_for(store, registry, later)) == 1


def test_clearing_the_schedule_removes_it_from_the_index(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    store.update_registry_settings(registry.name, registry.registry_id, SETTINGS, 0, START)
    far = START + timedelta(days=400)
    assert len(due_for(store, registry, far)) == 1
    store.update_registry_settings(
        registry.name,
        registry.registry_id,
        RegistrySettings(retention_rules=SETTINGS.retention_rules),
        1,
        START,
    )
    assert due_for(store, registry, far) == []


def test_an_entry_can_be_dropped_by_advancing_to_nothing(
    store: MetadataStore, registry: RegistryRecord
) -> None:
    store.update_registry_settings(registry.name, registry.registry_id, SETTINGS, 0, START)
    far = START + timedelta(days=400)
    (due,) = due_for(store, registry, far)
    assert store.advance_collection_schedule(registry.registry_id, due.next_run_at, None)  # type: ignore[attr-defined]
    assert due_for(store, registry, far) == []
