"""``portside registry retention|immutability`` and ``registry gc schedule``, against the
real local server: rules set and shown, a dry run that changes nothing, apply, an immutable
tag refused on push and delete, and a schedule set, shown and cleared."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from portside.cli.policies import parse_immutability_rule, parse_retention_rule
from tests.support.server import RunningRegistry

from .conftest import Cli, push
from .oci import OCI_MANIFEST


def test_retention_rules_are_set_from_options_and_shown(cli: Cli, new_registry: str) -> None:
    saved = (
        cli(
            "-o",
            "json",
            "registry",
            "retention",
            "set",
            new_registry,
            "--rule",
            "repository=app*,tag=v[1,2]*,keep-last=1,protect=v1.0",
            "--rule",
            "untagged-expire-after-days=7",
        )
        .ok()
        .json()
    )
    assert saved["rules"][0] == {
        "repository_pattern": "app*",
        "tag_pattern": "v[1,2]*",
        "keep_last": 1,
        "expire_after_days": None,
        "untagged_expire_after_days": None,
        "protect_pattern": "v1.0",
    }
    assert saved["rules"][1]["untagged_expire_after_days"] == 7
    table = cli("registry", "retention", "get", new_registry).ok().stdout
    assert "app*" in table and "7 days" in table and "KEEP LAST" in table


def test_retention_rules_from_a_file_and_cleared(
    cli: Cli, new_registry: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"keep_last": 3}]}))
    cli("registry", "retention", "set", new_registry, "--file", str(path)).ok()
    got = cli("-o", "json", "registry", "retention", "get", new_registry).ok().json()
    assert [r["keep_last"] for r in got["rules"]] == [3]
    cli("registry", "retention", "set", new_registry, "--clear").ok()
    assert "No retention rules" in cli("registry", "retention", "get", new_registry).ok().stdout


def test_bad_rules_fail_with_the_api_message(cli: Cli, new_registry: str) -> None:
    line = cli("registry", "retention", "set", new_registry, "--rule", "tag=v*").failed()
    assert "set at least one of keep_last" in line
    assert cli("registry", "retention", "set", new_registry).exit_code == 2  # usage


def test_dry_run_lists_and_apply_removes(
    cli: Cli, new_registry: str, server: RunningRegistry
) -> None:
    for tag in ("v1", "v2", "v3"):
        push(server, new_registry, "app", tag)
    cli("registry", "retention", "set", new_registry, "--rule", "keep-last=1").ok()
    dry = cli("-o", "json", "registry", "retention", "apply", new_registry, "--dry-run").ok()
    assert sorted(t["tag"] for t in dry.json()["tags"]) == ["v1", "v2"]
    table = cli("registry", "retention", "apply", new_registry, "--dry-run").ok()
    assert "keep_last 1 (rule 1)" in table.stdout and "would be removed" in table.stderr
    left = cli("-o", "json", "tag", "list", new_registry, "app").ok().json()
    assert len(left) == 3
    applied = cli("registry", "retention", "apply", new_registry, "--force").ok()
    assert "2 tags and 0 manifests removed" in applied.stderr
    left = cli("-o", "json", "tag", "list", new_registry, "app").ok().json()
    assert [t["tag"] for t in left] == ["v3"]


def test_immutable_tags_are_refused_on_push_and_delete(
    cli: Cli, new_registry: str, server: RunningRegistry
) -> None:
    push(server, new_registry, "app", "v1")
    shown = cli("registry", "immutability", "set", new_registry, "--rule", "app:v*").ok().stdout
    assert "app" in shown and "v*" in shown
    other = push(server, new_registry, "app", "other")
    response = requests.put(  # another manifest under the same tag
        f"{server.url}/v2/{new_registry}/app/manifests/v1",
        data=other.manifest,
        headers={"Content-Type": OCI_MANIFEST},
        auth=(server.token, server.token),
        timeout=30,
    )
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["errors"][0]["code"] == "DENIED"
    assert "rule 1: repository 'app', tag 'v*'" in body["errors"][0]["message"]
    line = cli("tag", "delete", new_registry, "app", "v1", "--force").failed()
    assert "immutable" in line and "rule 1" in line
    push(server, new_registry, "app", "latest")  # other tags still move
    cli("registry", "immutability", "set", new_registry, "--clear").ok()
    cli("tag", "delete", new_registry, "app", "v1", "--force").ok()


def test_a_schedule_is_set_shown_and_cleared(cli: Cli, new_registry: str) -> None:
    saved = (
        cli(
            "-o",
            "json",
            "registry",
            "gc",
            "schedule",
            "set",
            new_registry,
            "--every-days",
            "7",
            "--hour-utc",
            "3",
            "--online",
            "--starts-on",
            "2026-01-05",
        )
        .ok()
        .json()["schedule"]
    )
    assert saved["every_days"] == 7 and saved["mode"] == "online"
    assert saved["next_run_at"].endswith("03:00:00Z")
    table = cli("registry", "gc", "schedule", "get", new_registry).ok().stdout
    assert "7 days" in table and "03:00 UTC" in table and "online" in table
    cli("registry", "gc", "schedule", "clear", new_registry).ok()
    assert "No scheduled" in cli("registry", "gc", "schedule", "get", new_registry).ok().stderr


def test_rule_options_parse_into_the_api_shape() -> None:
    assert parse_retention_rule("tag=v*,expire-after-days=30") == {
        "tag_pattern": "v*",
        "expire_after_days": 30,
    }
    assert parse_immutability_rule("release-*") == {
        "repository_pattern": "*",
        "tag_pattern": "release-*",
    }
    assert parse_immutability_rule("acme/*:v*") == {
        "repository_pattern": "acme/*",
        "tag_pattern": "v*",
    }
