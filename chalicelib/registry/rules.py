"""A registry's settings as data: retention rules, tag immutability rules and the garbage
collection schedule (the behaviour lives in ``registry.policies``).

They live apart from ``policies`` so that ``records.RegistryRecord`` can carry them without
an import cycle; this module imports nothing of the registry but its errors.

Patterns are shell-style globs matched with ``fnmatch.fnmatchcase`` (case-sensitive, the
same on every platform):
- ``*`` matches any run of characters, ``/`` included: ``acme/*`` matches ``acme/api``
  and ``acme/team/api`` (repository names are paths; a glob that stopped at ``/`` would
  make ``*`` miss every nested repository, which is the surprise users report);
- ``?`` matches one character;
- ``[abc]``, ``[a-z]`` match one character of the set, ``[!abc]`` one outside it.
There is no escaping: a repository name or tag never holds ``*``, ``?``, ``[`` or ``]``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import UnprocessableError

MAX_RULES = 50
MAX_PATTERN = 256
MAX_KEEP_LAST = 100_000
MAX_DAYS = 36_500
MAX_EVERY_DAYS = 365


def glob_matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the glob ``pattern`` (see the module's notes)."""
    return fnmatch.fnmatchcase(value, pattern)


@dataclass(frozen=True)
class RetentionRule:
    """What to remove from the repositories matching ``repository_pattern``.

    Among tags matching ``tag_pattern`` (and governed by this rule: the first rule in order
    whose patterns match a tag decides it), the ``keep_last`` most recently pushed are kept;
    of the others, those pushed more than ``expire_after_days`` ago go (with both set, a tag
    goes only if it is outside the newest ``keep_last`` *and* older). Tags matching
    ``protect_pattern`` are never removed, nor counted. Manifests no remaining tag reaches
    go ``untagged_expire_after_days`` after they were pushed."""

    repository_pattern: str = "*"
    tag_pattern: str = "*"
    keep_last: int | None = None
    expire_after_days: int | None = None
    untagged_expire_after_days: int | None = None
    protect_pattern: str | None = None

    def matches_repository(self, repository: str) -> bool:
        return glob_matches(self.repository_pattern, repository)

    def matches(self, repository: str, tag: str) -> bool:
        return self.matches_repository(repository) and glob_matches(self.tag_pattern, tag)

    def protects(self, tag: str) -> bool:
        return self.protect_pattern is not None and glob_matches(self.protect_pattern, tag)

    @property
    def plans_tags(self) -> bool:
        return self.keep_last is not None or self.expire_after_days is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "repository_pattern": self.repository_pattern,
            "tag_pattern": self.tag_pattern,
            "keep_last": self.keep_last,
            "expire_after_days": self.expire_after_days,
            "untagged_expire_after_days": self.untagged_expire_after_days,
            "protect_pattern": self.protect_pattern,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "rule") -> RetentionRule:
        fields = _object(
            data,
            where,
            required=set(),
            optional={
                "repository_pattern",
                "tag_pattern",
                "keep_last",
                "expire_after_days",
                "untagged_expire_after_days",
                "protect_pattern",
            },
        )
        rule = cls(
            repository_pattern=_pattern(fields.get("repository_pattern", "*"), where, "repository"),
            tag_pattern=_pattern(fields.get("tag_pattern", "*"), where, "tag"),
            keep_last=_count(fields.get("keep_last"), where, "keep_last", 1, MAX_KEEP_LAST),
            expire_after_days=_count(
                fields.get("expire_after_days"), where, "expire_after_days", 1, MAX_DAYS
            ),
            untagged_expire_after_days=_count(
                fields.get("untagged_expire_after_days"),
                where,
                "untagged_expire_after_days",
                1,
                MAX_DAYS,
            ),
            protect_pattern=(
                None
                if fields.get("protect_pattern") is None
                else _pattern(fields["protect_pattern"], where, "protect")
            ),
        )
        if not rule.plans_tags and rule.untagged_expire_after_days is None:
            raise UnprocessableError(
                f"{where}: set at least one of keep_last, expire_after_days, "
                "untagged_expire_after_days (a rule without them removes nothing)"
            )
        return rule


@dataclass(frozen=True)
class ImmutabilityRule:
    """Tags matching ``tag_pattern`` in repositories matching ``repository_pattern`` can be
    created once and never moved to another manifest or deleted."""

    repository_pattern: str = "*"
    tag_pattern: str = "*"

    def matches_repository(self, repository: str) -> bool:
        return glob_matches(self.repository_pattern, repository)

    def matches(self, repository: str, tag: str) -> bool:
        return self.matches_repository(repository) and glob_matches(self.tag_pattern, tag)

    def describe(self, number: int) -> str:
        return f"rule {number}: repository {self.repository_pattern!r}, tag {self.tag_pattern!r}"

    def to_json(self) -> dict[str, Any]:
        return {"repository_pattern": self.repository_pattern, "tag_pattern": self.tag_pattern}

    @classmethod
    def from_json(cls, data: Any, where: str = "rule") -> ImmutabilityRule:
        fields = _object(data, where, required={"tag_pattern"}, optional={"repository_pattern"})
        return cls(
            repository_pattern=_pattern(fields.get("repository_pattern", "*"), where, "repository"),
            tag_pattern=_pattern(fields["tag_pattern"], where, "tag"),
        )


@dataclass(frozen=True)
class GcSchedule:
    """A garbage collection every ``every_days`` days at ``hour_utc``:00 UTC, counted from
    ``starts_on``. The run times are a pure function of these fields, so the next one is
    computed, never stored as the truth (the store keeps a copy only to find due ones)."""

    every_days: int
    hour_utc: int
    type: str
    mode: str
    starts_on: date

    def first_run(self) -> datetime:
        return datetime.combine(self.starts_on, time(self.hour_utc), tzinfo=UTC)

    def next_run_after(self, now: datetime) -> datetime:
        """The first run time strictly after ``now``."""
        first = self.first_run()
        if now < first:
            return first
        period = timedelta(days=self.every_days)
        return first + period * ((now - first) // period + 1)

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "every_days": self.every_days,
            "hour_utc": self.hour_utc,
            "type": self.type,
            "mode": self.mode,
            "starts_on": self.starts_on.isoformat(),
        }
        if now is not None:
            out["next_run_at"] = _iso(self.next_run_after(now))
        return out

    @classmethod
    def from_json(cls, data: Any, today: date, where: str = "schedule") -> GcSchedule:
        # Imported here: records imports this module (RegistryRecord carries settings).
        from .records import GC_BOTH, GC_MODES, GC_READ_ONLY, GC_TYPES

        fields = _object(
            data,
            where,
            required={"every_days"},
            optional={"hour_utc", "type", "mode", "starts_on", "next_run_at"},
        )
        # null means the default, as leaving the field out does.
        every = _count(fields["every_days"], where, "every_days", 1, MAX_EVERY_DAYS)
        if every is None:
            raise UnprocessableError(f"{where}: every_days must be an integer from 1 to 365")
        hour = _count(fields.get("hour_utc"), where, "hour_utc", 0, 23) or 0
        gc_type = fields.get("type") or GC_BOTH
        if gc_type not in GC_TYPES:
            raise UnprocessableError(f"{where}: type must be one of {', '.join(GC_TYPES)}")
        mode = fields.get("mode") or GC_READ_ONLY
        if mode not in GC_MODES:
            raise UnprocessableError(f"{where}: mode must be one of {', '.join(GC_MODES)}")
        starts_on = today
        if fields.get("starts_on") is not None:
            try:
                starts_on = date.fromisoformat(fields["starts_on"])
            except (TypeError, ValueError) as exc:
                raise UnprocessableError(
                    f"{where}: starts_on must be a date as YYYY-MM-DD"
                ) from exc
        # next_run_at is accepted (a GET's output sent back) and ignored: it is computed.
        return cls(every, hour, gc_type, mode, starts_on)


@dataclass(frozen=True)
class RegistrySettings:
    retention_rules: tuple[RetentionRule, ...] = ()
    immutability_rules: tuple[ImmutabilityRule, ...] = ()
    gc_schedule: GcSchedule | None = None

    def immutable_rule(self, repository: str, tag: str) -> tuple[int, ImmutabilityRule] | None:
        """The first immutability rule (numbered from 1) protecting ``tag``, if any."""
        for number, rule in enumerate(self.immutability_rules, start=1):
            if rule.matches(repository, tag):
                return number, rule
        return None

    def to_json(self) -> dict[str, Any]:
        """What the stores keep (and ``from_stored`` reads back)."""
        return {
            "retention_rules": [r.to_json() for r in self.retention_rules],
            "immutability_rules": [r.to_json() for r in self.immutability_rules],
            "gc_schedule": self.gc_schedule.to_json() if self.gc_schedule else None,
        }

    @classmethod
    def from_stored(cls, data: Any) -> RegistrySettings:
        if not data:
            return cls()
        schedule = data.get("gc_schedule")
        return cls(
            retention_rules=tuple(
                RetentionRule.from_json(r) for r in data.get("retention_rules") or ()
            ),
            immutability_rules=tuple(
                ImmutabilityRule.from_json(r) for r in data.get("immutability_rules") or ()
            ),
            gc_schedule=(
                GcSchedule.from_json(schedule, date.fromisoformat(schedule["starts_on"]))
                if schedule
                else None
            ),
        )


@dataclass(frozen=True)
class DueSchedule:
    """A registry whose scheduled garbage collection is due (MetadataStore's copy)."""

    registry_name: str
    registry_id: str
    next_run_at: datetime


def parse_retention_rules(data: Any) -> tuple[RetentionRule, ...]:
    """Rules from an untrusted JSON list; UnprocessableError saying which rule is wrong."""
    return tuple(
        RetentionRule.from_json(item, f"rule {i}")
        for i, item in enumerate(_list(data, "rules"), start=1)
    )


def parse_immutability_rules(data: Any) -> tuple[ImmutabilityRule, ...]:
    return tuple(
        ImmutabilityRule.from_json(item, f"rule {i}")
        for i, item in enumerate(_list(data, "rules"), start=1)
    )


def parse_schedule(data: Any, today: date) -> GcSchedule | None:
    return None if data is None else GcSchedule.from_json(data, today)


# ---------------------------------------------------------------------- validation helpers


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _list(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise UnprocessableError(f"{what} must be a list")
    if len(data) > MAX_RULES:
        raise UnprocessableError(f"at most {MAX_RULES} {what} per registry")
    return data


def _object(data: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UnprocessableError(f"{where} must be a JSON object")
    missing = sorted(required - data.keys())
    unknown = sorted(data.keys() - required - optional)
    if missing:
        raise UnprocessableError(f"{where}: missing {', '.join(missing)}")
    if unknown:
        raise UnprocessableError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    return data


def _pattern(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_PATTERN:
        raise UnprocessableError(f"{where}: the {what} pattern must be 1-{MAX_PATTERN} characters")
    if not value.isprintable() or not value.isascii():
        raise UnprocessableError(
            f"{where}: the {what} pattern {value!r} must be printable ASCII "
            "(names and tags are ASCII; use *, ? and [...] as globs)"
        )
    if value.count("[") != value.count("]"):
        raise UnprocessableError(f"{where}: the {what} pattern {value!r} has an unclosed [")
    return value


def _count(value: Any, where: str, what: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UnprocessableError(f"{where}: {what} must be an integer from {low} to {high}")
    return value


__all__ = [
    "DueSchedule",
    "GcSchedule",
    "ImmutabilityRule",
    "RegistrySettings",
    "RetentionRule",
    "glob_matches",
    "parse_immutability_rules",
    "parse_retention_rules",
    "parse_schedule",
]
