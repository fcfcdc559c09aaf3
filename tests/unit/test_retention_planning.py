"""plan_retention and reachable: what retention rules remove, as a pure function of one
repository's tags and manifests; and the rules' validation from untrusted JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from chalicelib.registry.errors import UnprocessableError
from chalicelib.registry.policies import (
    ReferencesInBodyError,
    plan_retention,
    reachable,
)
from chalicelib.registry.records import GC_BOTH, GC_READ_ONLY, ManifestRecord, TagRecord
from chalicelib.registry.rules import (
    GcSchedule,
    ImmutabilityRule,
    RegistrySettings,
    RetentionRule,
    glob_matches,
    parse_immutability_rules,
    parse_retention_rules,
    parse_schedule,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def m(
    digest: str,
    age: float = 100,
    children: tuple[str, ...] = (),
    subject: str | None = None,
    **extra: object,
) -> ManifestRecord:
    return ManifestRecord(
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=10,
        body=b"{}",
        manifests=list(children),
        subject=subject,
        created_at=days_ago(age),
        **extra,  # type: ignore[arg-type]
    )


def t(tag: str, digest: str, age: float) -> TagRecord:
    return TagRecord(tag, digest, days_ago(age))


def planned_tags(plan: object) -> list[str]:
    return sorted(tag for tag, _, _ in plan.tags)  # type: ignore[attr-defined]


def planned_manifests(plan: object) -> list[str]:
    return sorted(d for d, _ in plan.manifests)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------- tags


def test_keep_last_keeps_the_most_recently_pushed_and_plans_the_rest() -> None:
    tags = [t(f"v{i}", f"d{i}", age=i) for i in range(1, 8)]  # v1 newest
    plan = plan_retention([RetentionRule(keep_last=3)], "app", tags, [], NOW)
    assert planned_tags(plan) == ["v4", "v5", "v6", "v7"]
    assert all(reason == "keep_last 3 (rule 1)" for _, _, reason in plan.tags)
    assert {(tag, digest) for tag, digest, _ in plan.tags} == {
        (f"v{i}", f"d{i}") for i in range(4, 8)
    }


def test_expire_after_days_plans_only_tags_older_than_that() -> None:
    tags = [t("old", "d1", 31), t("young", "d2", 29), t("unknown", "d3", 0)]
    tags[2] = TagRecord("unknown", "d3", None)  # no time: never removed for its age
    plan = plan_retention([RetentionRule(expire_after_days=30)], "app", tags, [], NOW)
    assert planned_tags(plan) == ["old"]
    assert plan.tags[0][2] == "expire_after_days 30 (rule 1)"


def test_with_both_a_tag_goes_only_if_outside_the_newest_and_old() -> None:
    tags = [t("a", "1", 40), t("b", "2", 50), t("c", "3", 10), t("d", "4", 60)]
    rule = RetentionRule(keep_last=1, expire_after_days=45)
    plan = plan_retention([rule], "app", tags, [], NOW)
    # c is the newest (kept); a is outside but young; b and d are outside and old.
    assert planned_tags(plan) == ["b", "d"]
    assert plan.tags[0][2] == "keep_last 1 and expire_after_days 45 (rule 1)"


def test_only_tags_matching_a_rules_patterns_are_planned() -> None:
    tags = [t("v1", "1", 90), t("latest", "2", 90), t("v2", "3", 90)]
    rules = [RetentionRule("acme/*", "v*", expire_after_days=1)]
    assert planned_tags(plan_retention(rules, "acme/api", tags, [], NOW)) == ["v1", "v2"]
    assert planned_tags(plan_retention(rules, "other/api", tags, [], NOW)) == []


def test_the_first_rule_matching_a_tag_decides_it() -> None:
    tags = [t(f"release-{i}", str(i), i) for i in range(5)] + [t("dev", "x", 100)]
    rules = [
        RetentionRule(tag_pattern="release-*", keep_last=4),
        RetentionRule(tag_pattern="*", keep_last=1),
    ]
    plan = plan_retention(rules, "app", tags, [], NOW)
    # Rule 2 counts only what rule 1 did not decide: "dev" is its newest, so kept.
    assert planned_tags(plan) == ["release-4"]
    assert plan.tags[0][2] == "keep_last 4 (rule 1)"


def test_a_rule_without_tag_settings_does_not_capture_tags() -> None:
    tags = [t("a", "1", 10), t("b", "2", 20)]
    rules = [RetentionRule(untagged_expire_after_days=1), RetentionRule(keep_last=1)]
    assert planned_tags(plan_retention(rules, "app", tags, [], NOW)) == ["b"]


def test_protected_tags_are_never_planned_nor_counted() -> None:
    tags = [t("latest", "1", 500), t("v3", "2", 1), t("v2", "3", 2), t("v1", "4", 3)]
    rules = [RetentionRule(keep_last=2, protect_pattern="latest")]
    assert planned_tags(plan_retention(rules, "app", tags, [], NOW)) == ["v1"]


def test_a_protect_pattern_of_any_applicable_rule_protects() -> None:
    tags = [t("stable", "1", 500), t("v1", "2", 500)]
    rules = [
        RetentionRule(expire_after_days=1),
        RetentionRule(tag_pattern="x", keep_last=1, protect_pattern="stable"),
    ]
    assert planned_tags(plan_retention(rules, "app", tags, [], NOW)) == ["v1"]


def test_tags_an_immutability_rule_covers_are_never_planned() -> None:
    tags = [t("v1.0", "1", 500), t("nightly", "2", 500)]
    settings = RegistrySettings(
        retention_rules=(RetentionRule(expire_after_days=1),),
        immutability_rules=(ImmutabilityRule("*", "v*"),),
    )
    assert planned_tags(plan_retention(settings, "app", tags, [], NOW)) == ["nightly"]
    rules = [RetentionRule(expire_after_days=1)]
    immutable = [ImmutabilityRule("*", "v*")]
    plan = plan_retention(rules, "app", tags, [], NOW, immutability=immutable)
    assert planned_tags(plan) == ["nightly"]


# ------------------------------------------------------------------------- untagged


def test_untagged_manifests_older_than_the_limit_are_planned() -> None:
    manifests = [m("tagged", 100), m("old", 10), m("young", 2)]
    rules = [RetentionRule(untagged_expire_after_days=7)]
    plan = plan_retention(rules, "app", [t("v1", "tagged", 100)], manifests, NOW)
    assert planned_manifests(plan) == ["old"]
    assert plan.manifests[0][1] == "untagged_expire_after_days 7 (rule 1)"


def test_index_children_and_referrers_of_kept_manifests_are_not_untagged() -> None:
    manifests = [
        m("index", children=("amd64", "arm64")),
        m("amd64"),
        m("arm64"),
        m("sig", subject="index"),
        m("sbom-of-sig", subject="sig"),
        m("orphan-sig", subject="gone"),
        m("old-index", children=("old-child",)),
        m("old-child"),
    ]
    plan = plan_retention(
        [RetentionRule(untagged_expire_after_days=1)],
        "app",
        [t("v1", "index", 1)],
        manifests,
        NOW,
    )
    assert planned_manifests(plan) == ["old-child", "old-index", "orphan-sig"]


def test_manifests_of_tags_the_plan_removes_become_untagged_in_the_same_pass() -> None:
    manifests = [m("a", 100), m("b", 100)]
    rules = [RetentionRule(keep_last=1, untagged_expire_after_days=30)]
    plan = plan_retention(rules, "app", [t("new", "a", 1), t("old", "b", 90)], manifests, NOW)
    assert planned_tags(plan) == ["old"]
    assert planned_manifests(plan) == ["b"]


def test_a_manifest_whose_children_are_only_in_its_body_stops_untagged_planning() -> None:
    manifests = [m("big-index", references_in_body=True), m("child"), m("stray")]
    rules = [RetentionRule(untagged_expire_after_days=1)]
    plan = plan_retention(rules, "app", [t("v1", "big-index", 1)], manifests, NOW)
    assert plan.manifests == [] and plan.notes
    with_reader = plan_retention(
        rules, "app", [t("v1", "big-index", 1)], manifests, NOW, children=lambda r: ["child"]
    )
    assert planned_manifests(with_reader) == ["stray"]


def test_reachable_follows_children_and_referrers_transitively() -> None:
    manifests = [m("i", children=("c",)), m("c"), m("s", subject="c"), m("x")]
    assert reachable(["i"], manifests) == {"i", "c", "s"}
    assert reachable(["missing"], manifests) == {"missing"}
    with pytest.raises(ReferencesInBodyError):
        reachable(["b"], [m("b", references_in_body=True)])


def test_rules_for_other_repositories_plan_nothing() -> None:
    rules = [RetentionRule("acme/*", untagged_expire_after_days=1, keep_last=1)]
    plan = plan_retention(rules, "tools", [t("a", "1", 9), t("b", "2", 9)], [m("z")], NOW)
    assert not plan


# ------------------------------------------------------------------------- patterns and JSON


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("acme/*", "acme/api", True),
        ("acme/*", "acme/team/api", True),  # * crosses "/"
        ("acme/*", "acme", False),
        ("v?", "v1", True),
        ("v?", "v10", False),
        ("v[0-9]*", "v1.2", True),
        ("v[!0-9]*", "v1.2", False),
        ("V*", "v1", False),  # case-sensitive
    ],
)
def test_patterns_are_case_sensitive_globs(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value) is expected


def test_rules_round_trip_through_json() -> None:
    settings = RegistrySettings(
        retention_rules=(RetentionRule("a/*", "v*", 3, 10, 7, "keep-*"),),
        immutability_rules=(ImmutabilityRule("*", "release-*"),),
        gc_schedule=GcSchedule(3, 4, GC_BOTH, GC_READ_ONLY, date(2026, 1, 1)),
    )
    assert RegistrySettings.from_stored(settings.to_json()) == settings
    assert RegistrySettings.from_stored(None) == RegistrySettings()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": 1}, "rules must be a list"),
        ([{"keep_last": 0}], "rule 1: keep_last must be an integer from 1"),
        ([{"keep_last": True}], "keep_last must be an integer"),
        ([{"keep_last": 2}, {"tag_pattern": "v*"}], "rule 2: set at least one of"),
        ([{"keep_last": 2, "colour": "red"}], "unknown field(s) colour"),
        ([{"keep_last": 2, "tag_pattern": ""}], "tag pattern must be 1-256"),
        ([{"keep_last": 2, "tag_pattern": "v[1"}], "unclosed ["),
        ([{"keep_last": 2, "repository_pattern": "é*"}], "printable ASCII"),
        ([{"expire_after_days": 2.5}], "expire_after_days must be an integer"),
        (["x"], "rule 1 must be a JSON object"),
    ],
)
def test_bad_retention_rules_are_refused_with_a_message_naming_the_problem(
    data: object, message: str
) -> None:
    with pytest.raises(UnprocessableError) as raised:
        parse_retention_rules(data if not isinstance(data, dict) else data["rules"])
    assert message in raised.value.message


def test_immutability_rules_need_a_tag_pattern() -> None:
    with pytest.raises(UnprocessableError, match="missing tag_pattern"):
        parse_immutability_rules([{"repository_pattern": "*"}])
    assert parse_immutability_rules([{"tag_pattern": "v*"}]) == (ImmutabilityRule("*", "v*"),)


def test_too_many_rules_are_refused() -> None:
    with pytest.raises(UnprocessableError, match="at most 50"):
        parse_immutability_rules([{"tag_pattern": "v*"}] * 51)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "missing every_days"),
        ({"every_days": 0}, "every_days must be an integer from 1 to 365"),
        ({"every_days": 1, "hour_utc": 24}, "hour_utc must be an integer from 0 to 23"),
        ({"every_days": 1, "type": "everything"}, "type must be one of"),
        ({"every_days": 1, "mode": "fast"}, "mode must be one of"),
        ({"every_days": 1, "starts_on": "tomorrow"}, "starts_on must be a date"),
    ],
)
def test_bad_schedules_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(UnprocessableError) as raised:
        parse_schedule(data, date(2026, 1, 1))
    assert message in raised.value.message


def test_a_schedule_runs_every_n_days_at_its_hour_from_its_start() -> None:
    schedule = parse_schedule({"every_days": 2, "hour_utc": 6}, date(2026, 6, 1))
    assert schedule is not None
    assert (schedule.type, schedule.mode) == (GC_BOTH, GC_READ_ONLY)
    at = datetime(2026, 6, 1, 6, tzinfo=UTC)
    assert schedule.next_run_after(datetime(2026, 5, 20, tzinfo=UTC)) == at
    assert schedule.next_run_after(at - timedelta(seconds=1)) == at
    assert schedule.next_run_after(at) == at + timedelta(days=2)
    assert schedule.next_run_after(at + timedelta(days=5)) == at + timedelta(days=6)
    assert parse_schedule(None, date(2026, 1, 1)) is None
