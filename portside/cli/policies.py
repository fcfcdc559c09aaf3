"""``portside registry retention|immutability`` and ``portside registry gc schedule``: a
registry's retention rules (get, set, apply with ``--dry-run``), its tag immutability rules
(get, set) and its scheduled garbage collection (get, set, clear). See docs/retention.md.

Rules are given as repeated ``--rule`` options or as a JSON file (``--file``, ``-`` for
stdin) holding the API's list (or its ``{"rules": [...]}`` body); ``--clear`` removes them.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

import click

from portside.cli.context import CliState, confirm, force_option, global_options, pass_state
from portside.cli.gc import gc
from portside.cli.output import human_time, short_digest
from portside.clientlib.api import JSON

# --rule keys for retention rules -> the API's fields.
RETENTION_KEYS = {
    "repository": "repository_pattern",
    "tag": "tag_pattern",
    "keep-last": "keep_last",
    "expire-after-days": "expire_after_days",
    "untagged-expire-after-days": "untagged_expire_after_days",
    "protect": "protect_pattern",
}
NUMBER_FIELDS = {"keep_last", "expire_after_days", "untagged_expire_after_days"}
# Split "a=1,b=2" only before a known key, so a pattern may hold a comma ("v[1,2]").
_PAIRS = re.compile(r",(?=(?:" + "|".join(map(re.escape, RETENTION_KEYS)) + r")=)")

GC_TYPES = (
    "untagged manifests only",
    "unreferenced blobs only",
    "untagged manifests and unreferenced blobs",
)
GC_MODES = ("read-only", "online")


def parse_retention_rule(text: str) -> JSON:
    """``repository=acme/*,tag=v*,keep-last=5`` as the API's rule object."""
    rule: JSON = {}
    for pair in _PAIRS.split(text):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in RETENTION_KEYS:
            raise click.BadParameter(
                f"{pair!r}: use KEY=VALUE with KEY one of {', '.join(RETENTION_KEYS)}",
                param_hint="--rule",
            )
        field = RETENTION_KEYS[key]
        if field in NUMBER_FIELDS:
            if not value.isdigit():
                raise click.BadParameter(f"{key} must be a whole number", param_hint="--rule")
            rule[field] = int(value)
        else:
            rule[field] = value
    return rule


def parse_immutability_rule(text: str) -> JSON:
    """``acme/*:v*`` (repository pattern, tag pattern) or ``v*`` (every repository)."""
    repository, sep, tag = text.rpartition(":")
    if not tag:
        raise click.BadParameter(
            f"{text!r}: use [REPOSITORY_PATTERN:]TAG_PATTERN", param_hint="--rule"
        )
    return {"repository_pattern": repository if sep else "*", "tag_pattern": tag}


def _rules_from(
    rules: tuple[str, ...], file: IO[str] | None, clear: bool, parse: Any
) -> list[JSON]:
    given = sum((bool(rules), file is not None, clear))
    if given != 1:
        raise click.UsageError("give the rules with --rule (repeatable) or --file, or --clear")
    if clear:
        return []
    if file is not None:
        try:
            data = json.load(file)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--file") from exc
        if isinstance(data, dict) and "rules" in data:
            data = data["rules"]
        if not isinstance(data, list):
            raise click.BadParameter("expected a JSON list of rules", param_hint="--file")
        return data
    return [parse(text) for text in rules]


def _show_retention(state: CliState, rules: list[JSON]) -> None:
    printer = state.printer
    if printer.json:
        printer.emit_json({"rules": rules})
        return

    def text(value: Any) -> str:
        return "-" if value is None else str(value)

    printer.table(
        ["#", "REPOSITORY", "TAG", "KEEP LAST", "EXPIRE AFTER", "UNTAGGED AFTER", "PROTECT"],
        (
            [
                str(number),
                text(rule.get("repository_pattern")),
                text(rule.get("tag_pattern")),
                text(rule.get("keep_last")),
                _days(rule.get("expire_after_days")),
                _days(rule.get("untagged_expire_after_days")),
                text(rule.get("protect_pattern")),
            ]
            for number, rule in enumerate(rules, start=1)
        ),
        empty="No retention rules.",
    )


def _days(value: Any) -> str:
    return "-" if value is None else f"{value} days"


def _show_immutability(state: CliState, rules: list[JSON]) -> None:
    printer = state.printer
    if printer.json:
        printer.emit_json({"rules": rules})
        return
    printer.table(
        ["#", "REPOSITORY", "TAG"],
        (
            [str(n), str(r.get("repository_pattern", "*")), str(r.get("tag_pattern", "-"))]
            for n, r in enumerate(rules, start=1)
        ),
        empty="No immutability rules: every tag can be moved and deleted.",
    )


rule_file = click.option(
    "--file",
    "file",
    type=click.File("r"),
    default=None,
    help='A JSON file with the rules (the API\'s list, or its {"rules": [...]} body); - for stdin.',
)
clear_option = click.option("--clear", is_flag=True, help="Remove every rule.")


# ------------------------------------------------------------------------------ retention


@click.group()
def retention() -> None:
    """Retention rules: which tags and untagged manifests are removed, and when."""


@retention.command("get")
@click.argument("registry_name", metavar="REGISTRY")
@global_options
@pass_state
def retention_get(state: CliState, registry_name: str) -> None:
    """Show the retention rules of REGISTRY, in the order they apply."""
    _show_retention(state, state.client().get_retention_rules(registry_name))


@retention.command("set")
@click.argument("registry_name", metavar="REGISTRY")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="KEY=VALUE,...",
    help="A rule, e.g. 'repository=acme/*,tag=v*,keep-last=5,protect=v1.*'. Keys: "
    + ", ".join(RETENTION_KEYS)
    + ". Repeat for several rules (the first matching one decides a tag).",
)
@rule_file
@clear_option
@global_options
@pass_state
def retention_set(
    state: CliState,
    registry_name: str,
    rules: tuple[str, ...],
    file: IO[str] | None,
    clear: bool,
) -> None:
    """Replace the retention rules of REGISTRY (needs an admin token)."""
    wanted = _rules_from(rules, file, clear, parse_retention_rule)
    _show_retention(state, state.client().set_retention_rules(registry_name, wanted))


@retention.command("apply")
@click.argument("registry_name", metavar="REGISTRY")
@click.option("--dry-run", is_flag=True, help="Only list what the rules would remove.")
@force_option()
@global_options
@pass_state
def retention_apply(state: CliState, registry_name: str, dry_run: bool, force: bool) -> None:
    """Apply the retention rules of REGISTRY now: delete the tags and untagged manifests
    they select (blobs are freed by the next garbage collection)."""
    if not dry_run:
        confirm(force, f"Delete what the retention rules of {registry_name} select?")
    report = state.client().apply_retention(registry_name, dry_run)
    printer = state.printer
    if printer.json:
        printer.emit_json(report)
        return
    rows = [
        [
            "tag",
            str(t.get("repository")),
            f"{t.get('tag')} ({short_digest(t.get('digest'))})",
            str(t.get("reason")),
        ]
        for t in report.get("tags", [])
    ] + [
        ["manifest", str(m.get("repository")), str(m.get("digest")), str(m.get("reason"))]
        for m in report.get("manifests", [])
    ]
    printer.table(
        ["KIND", "REPOSITORY", "TAG / DIGEST", "REASON"],
        rows,
        no_wrap=["TAG / DIGEST"],
        empty="Nothing to remove.",
    )
    for note in report.get("notes", []):
        printer.info(note)
    verb = "would be removed (dry run)" if dry_run else "removed"
    printer.info(
        f"{len(report.get('tags', []))} tags and {len(report.get('manifests', []))} "
        f"manifests {verb}."
    )


# ------------------------------------------------------------------------------ immutability


@click.group()
def immutability() -> None:
    """Tag immutability rules: tags that can never be moved or deleted."""


@immutability.command("get")
@click.argument("registry_name", metavar="REGISTRY")
@global_options
@pass_state
def immutability_get(state: CliState, registry_name: str) -> None:
    """Show the tag immutability rules of REGISTRY."""
    _show_immutability(state, state.client().get_immutability_rules(registry_name))


@immutability.command("set")
@click.argument("registry_name", metavar="REGISTRY")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="[REPOSITORY:]TAG",
    help="Glob patterns, e.g. 'acme/*:v*' or 'release-*' (every repository). Repeatable.",
)
@rule_file
@clear_option
@global_options
@pass_state
def immutability_set(
    state: CliState,
    registry_name: str,
    rules: tuple[str, ...],
    file: IO[str] | None,
    clear: bool,
) -> None:
    """Replace the tag immutability rules of REGISTRY (needs an admin token)."""
    wanted = _rules_from(rules, file, clear, parse_immutability_rule)
    _show_immutability(state, state.client().set_immutability_rules(registry_name, wanted))


# ------------------------------------------------------------------------------ gc schedule


@click.group()
def schedule() -> None:
    """The registry's scheduled garbage collection."""


def _show_schedule(state: CliState, item: JSON | None) -> None:
    printer = state.printer
    if printer.json:
        printer.emit_json({"schedule": item})
        return
    if item is None:
        printer.info("No scheduled garbage collection.")
        return
    every = item.get("every_days")
    printer.details(
        [
            ("Every", f"{every} day{'s' if every != 1 else ''}"),
            ("At", f"{int(item.get('hour_utc', 0)):02d}:00 UTC"),
            ("Type", str(item.get("type", "-"))),
            ("Mode", str(item.get("mode", "-"))),
            ("Starts on", str(item.get("starts_on", "-"))),
            ("Next run", human_time(item.get("next_run_at"))),
        ]
    )


@schedule.command("get")
@click.argument("registry_name", metavar="REGISTRY")
@global_options
@pass_state
def schedule_get(state: CliState, registry_name: str) -> None:
    """Show when REGISTRY's garbage collection runs by itself."""
    _show_schedule(state, state.client().get_gc_schedule(registry_name))


@schedule.command("set")
@click.argument("registry_name", metavar="REGISTRY")
@click.option("--every-days", type=click.IntRange(1, 365), required=True, help="Run every N days.")
@click.option(
    "--hour-utc",
    type=click.IntRange(0, 23),
    default=0,
    show_default=True,
    help="The hour (UTC) it starts.",
)
@click.option(
    "--type",
    "gc_type",
    type=click.Choice(GC_TYPES),
    default=GC_TYPES[2],
    show_default=True,
    help="What the collection removes.",
)
@click.option(
    "--online", is_flag=True, help="Keep the registry writable while it runs (default: read-only)."
)
@click.option(
    "--starts-on",
    metavar="YYYY-MM-DD",
    default=None,
    help="The first day it runs (default: today).",
)
@global_options
@pass_state
def schedule_set(
    state: CliState,
    registry_name: str,
    every_days: int,
    hour_utc: int,
    gc_type: str,
    online: bool,
    starts_on: str | None,
) -> None:
    """Run a garbage collection of REGISTRY every N days (needs an admin token)."""
    body: JSON = {
        "every_days": every_days,
        "hour_utc": hour_utc,
        "type": gc_type,
        "mode": GC_MODES[1] if online else GC_MODES[0],
    }
    if starts_on is not None:
        body["starts_on"] = starts_on
    _show_schedule(state, state.client().set_gc_schedule(registry_name, body))


@schedule.command("clear")
@click.argument("registry_name", metavar="REGISTRY")
@global_options
@pass_state
def schedule_clear(state: CliState, registry_name: str) -> None:
    """Stop running REGISTRY's garbage collection on a schedule."""
    _show_schedule(state, state.client().set_gc_schedule(registry_name, None))


# `portside registry gc schedule ...`: hung under H3's `gc` group when this module loads
# (portside.cli.registries imports it).
gc.add_command(schedule)
