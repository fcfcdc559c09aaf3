"""Per-registry policies: retention planning and application, tag immutability, and the
entry point of scheduled garbage collections. The settings themselves are data in
``registry.rules`` (re-exported here).

Retention, as planned by ``plan_retention`` (a pure function: the garbage collector calls
it on what it scanned, the on-demand ``RetentionService`` on what it listed):
- Rules apply to the repositories their ``repository_pattern`` matches, in order. A tag is
  decided by the first rule with ``keep_last`` or ``expire_after_days`` whose repository
  and tag patterns match it; tags no such rule matches are never planned.
- ``keep_last N`` keeps the N most recently pushed tags the rule decides (by the tag's
  ``updated_at``: when it was last set); ``expire_after_days D`` removes those pushed more
  than D days ago. With both, a tag goes only if it is outside the newest N *and* older
  than D days (the rule never removes more than either part alone would).
- Tags matching an immutability rule, or the ``protect_pattern`` of any rule that applies
  to the repository, are never planned and do not count towards ``keep_last``.
- ``untagged_expire_after_days D`` (first rule matching the repository that sets it)
  removes manifests that no remaining tag reaches and that were pushed more than D days
  ago. "Reaches" is ``reachable``: through index children, and through referrers (a
  signature, an SBOM) whose subject is reached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConflictError, RegistryError, UnprocessableError
from .manifests import parse_manifest
from .names import RepositoryName
from .rules import (
    DueSchedule,
    GcSchedule,
    ImmutabilityRule,
    RegistrySettings,
    RetentionRule,
    glob_matches,
    parse_immutability_rules,
    parse_retention_rules,
    parse_schedule,
)

if TYPE_CHECKING:
    from .ports import MetadataStore
    from .records import ManifestRecord, RegistryRecord, TagRecord

logger = logging.getLogger(__name__)

EPOCH = datetime.fromtimestamp(0, UTC)

# What on-demand application (the API) takes on in one request; the garbage collector
# applies the same rules at any scale, in bounded steps.
MAX_APPLY_REPOSITORIES = 100
MAX_APPLY_ITEMS = 20_000  # tags + manifests listed, over all repositories
PAGE = 1000

Children = Callable[["ManifestRecord"], Sequence[str]]


class ReferencesInBodyError(ValueError):
    """A manifest's child list was too long to keep in its record and no way to read its
    body was given: what it reaches is unknown."""


# ---------------------------------------------------------------------- reachability


def reachable(
    tags_digests: Iterable[str],
    manifests: Iterable[ManifestRecord] | Mapping[str, ManifestRecord],
    children: Children | None = None,
) -> set[str]:
    """The digests reachable from ``tags_digests``: the tagged manifests, the children of
    every reached index, and every referrer whose subject is reached, transitively.

    ``children`` gives a manifest's child digests when the record does not hold them
    (``references_in_body``); without it such a manifest raises ReferencesInBodyError,
    so that nothing it may reach is ever taken for unreachable."""
    records = manifests if isinstance(manifests, Mapping) else {m.digest: m for m in manifests}
    by_subject: dict[str, list[str]] = {}
    for record in records.values():
        if record.subject is not None:
            by_subject.setdefault(record.subject, []).append(record.digest)
    seen: set[str] = set()
    stack = list(tags_digests)
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        record = records.get(digest)
        if record is not None:
            if record.references_in_body:
                if children is None:
                    raise ReferencesInBodyError(digest)
                stack.extend(children(record))
            else:
                stack.extend(record.manifests)
        stack.extend(by_subject.get(digest, ()))
    return seen


# ---------------------------------------------------------------------- planning


@dataclass
class RetentionPlan:
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, digest, reason)
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (digest, reason)
    # Why part of the plan was left out (e.g. a manifest whose children are unknown).
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tags or self.manifests)


def _tag_reason(number: int, rule: RetentionRule) -> str:
    parts = []
    if rule.keep_last is not None:
        parts.append(f"keep_last {rule.keep_last}")
    if rule.expire_after_days is not None:
        parts.append(f"expire_after_days {rule.expire_after_days}")
    return f"{' and '.join(parts)} (rule {number})"


def plan_retention(
    rules: RegistrySettings | Sequence[RetentionRule],
    repository: str,
    tags: Sequence[TagRecord],
    manifests: Sequence[ManifestRecord],
    now: datetime,
    immutability: Sequence[ImmutabilityRule] = (),
    children: Children | None = None,
) -> RetentionPlan:
    """What the rules remove from one repository, given all its tags and manifests.

    Pass the registry's whole ``RegistrySettings`` (its immutability rules then protect
    their tags), or retention rules and ``immutability`` separately. Pure: reads nothing,
    changes nothing."""
    if isinstance(rules, RegistrySettings):
        immutability = tuple(immutability) + rules.immutability_rules
        rules = rules.retention_rules
    applicable = [(n, r) for n, r in enumerate(rules, start=1) if r.matches_repository(repository)]
    plan = RetentionPlan()
    if not applicable:
        return plan
    decided: dict[int, list[TagRecord]] = {}
    for tag in tags:
        if any(rule.matches(repository, tag.tag) for rule in immutability):
            continue
        if any(rule.protects(tag.tag) for _, rule in applicable):
            continue
        for number, rule in applicable:
            if rule.plans_tags and glob_matches(rule.tag_pattern, tag.tag):
                decided.setdefault(number, []).append(tag)
                break
    by_number = dict(applicable)
    for number, governed in sorted(decided.items()):
        rule = by_number[number]
        newest_first = sorted(governed, key=lambda t: (t.updated_at or EPOCH, t.tag), reverse=True)
        candidates = newest_first[rule.keep_last :] if rule.keep_last is not None else newest_first
        cutoff = (
            now - timedelta(days=rule.expire_after_days)
            if rule.expire_after_days is not None
            else None
        )
        for tag in candidates:
            if cutoff is not None and (tag.updated_at is None or tag.updated_at >= cutoff):
                continue  # unknown age counts as young: never removed for its age
            plan.tags.append((tag.tag, tag.digest, _tag_reason(number, rule)))
    untagged = next(
        ((n, r) for n, r in applicable if r.untagged_expire_after_days is not None), None
    )
    if untagged is None:
        return plan
    number, rule = untagged
    assert rule.untagged_expire_after_days is not None
    planned = {t for t, _, _ in plan.tags}
    roots = [t.digest for t in tags if t.tag not in planned]
    try:
        kept = reachable(roots, manifests, children)
    except ReferencesInBodyError as exc:
        plan.notes.append(
            f"untagged manifests of {repository} left alone: the children of {exc} are "
            "only in its body"
        )
        return plan
    cutoff = now - timedelta(days=rule.untagged_expire_after_days)
    reason = f"untagged_expire_after_days {rule.untagged_expire_after_days} (rule {number})"
    for record in sorted(manifests, key=lambda m: m.digest):
        if record.digest in kept or record.created_at is None or record.created_at >= cutoff:
            continue
        plan.manifests.append((record.digest, reason))
    return plan


# ---------------------------------------------------------------------- immutability


def immutable_message(
    repo: RepositoryName | str, tag: str, number: int, rule: ImmutabilityRule
) -> str:
    repository = repo.repository if isinstance(repo, RepositoryName) else repo
    registry = f"{repo.registry}/" if isinstance(repo, RepositoryName) else ""
    return f"tag {tag} of {registry}{repository} is immutable ({rule.describe(number)})"


# ---------------------------------------------------------------------- on demand


@dataclass
class RetentionReport:
    dry_run: bool
    tags: list[dict[str, str]] = field(default_factory=list)
    manifests: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dry_run": self.dry_run,
            "tags": self.tags,
            "manifests": self.manifests,
        }
        if self.notes:
            out["notes"] = self.notes
        return out


class RetentionService:
    """Applies a registry's retention rules now (``POST .../retention/apply``), or says
    what they would remove (``dry_run``). Bounded for one API request: a registry whose
    rules match more than ``MAX_APPLY_REPOSITORIES`` repositories, or more than
    ``MAX_APPLY_ITEMS`` tags and manifests, is refused; a garbage collection applies the
    same rules at any size."""

    def __init__(self, store: MetadataStore, children: ChildrenReader | None = None) -> None:
        self.store = store
        self.children = children

    def apply(self, registry: RegistryRecord, dry_run: bool, now: datetime) -> RetentionReport:
        report = RetentionReport(dry_run)
        rules = registry.settings.retention_rules
        if not rules:
            return report
        repositories = self._repositories(registry, rules)
        listed = 0
        plans: list[tuple[RepositoryName, RetentionPlan, dict[str, ManifestRecord]]] = []
        for name in repositories:
            repo = RepositoryName(registry.name, name, registry.registry_id)
            tags: list[TagRecord] = self._all(partial(self.store.list_tags, repo), "tag")
            manifests: list[ManifestRecord] = self._all(
                partial(self.store.list_manifests, repo), "digest"
            )
            listed += len(tags) + len(manifests)
            if listed > MAX_APPLY_ITEMS:
                raise UnprocessableError(
                    f"the retention rules of {registry.name} cover more than {MAX_APPLY_ITEMS} "
                    "tags and manifests: too many for one request; start a garbage collection "
                    "(it applies the retention rules first, at any size)"
                )
            children = self.children.bind(repo) if self.children is not None else None
            plan = plan_retention(registry.settings, name, tags, manifests, now, children=children)
            plans.append((repo, plan, {m.digest: m for m in manifests}))
        for repo, plan, records in plans:
            report.notes.extend(plan.notes)
            for tag, digest, reason in plan.tags:
                if dry_run or self._delete_tag(repo, tag, digest):
                    report.tags.append(
                        {
                            "repository": repo.repository,
                            "tag": tag,
                            "digest": digest,
                            "reason": reason,
                        }
                    )
            for digest, reason in plan.manifests:
                if dry_run or self._delete_manifest(repo, records[digest]):
                    report.manifests.append(
                        {"repository": repo.repository, "digest": digest, "reason": reason}
                    )
        return report

    def _repositories(self, registry: RegistryRecord, rules: Sequence[RetentionRule]) -> list[str]:
        found: list[str] = []
        after: str | None = None
        while True:
            page = self.store.list_repositories(registry.registry_id, after, PAGE)
            found.extend(n for n in page if any(r.matches_repository(n) for r in rules))
            if len(found) > MAX_APPLY_REPOSITORIES:
                raise UnprocessableError(
                    f"the retention rules of {registry.name} match more than "
                    f"{MAX_APPLY_REPOSITORIES} repositories: too many for one request; start "
                    "a garbage collection (it applies the retention rules first, at any size)"
                )
            if len(page) < PAGE:
                return found
            after = page[-1]

    @staticmethod
    def _all(fetch: Callable[[str | None, int], list[Any]], key: str) -> list[Any]:
        items: list[Any] = []
        while True:
            page = fetch(getattr(items[-1], key) if items else None, PAGE)
            items.extend(page)
            if len(page) < PAGE or len(items) > MAX_APPLY_ITEMS:
                return items

    def _delete_tag(self, repo: RepositoryName, tag: str, digest: str) -> bool:
        # Only the tag as planned: one moved to another manifest since is a new decision.
        current = self.store.get_tag(repo, tag)
        if current is None or current.digest != digest:
            return False
        return self.store.delete_tag(repo, tag)

    def _delete_manifest(self, repo: RepositoryName, planned: ManifestRecord) -> bool:
        # A push of the same manifest since (a new revision) may have tagged it: skip it.
        current = self.store.get_manifest(repo, planned.digest)
        if current is None or current.revision != planned.revision:
            return False
        return self.store.delete_manifest(repo, planned.digest)


class ChildrenReader(Protocol):
    """Reads child digests out of a manifest's body (for records that do not list them)."""

    def bind(self, repo: RepositoryName) -> Children: ...


class BodyChildren:
    """A ChildrenReader over a way to read bodies (RegistryService.manifest_body)."""

    def __init__(self, read_body: Callable[[RepositoryName, ManifestRecord], bytes]) -> None:
        self.read_body = read_body

    def bind(self, repo: RepositoryName) -> Children:
        def children(record: ManifestRecord) -> Sequence[str]:
            body = self.read_body(repo, record)
            return parse_manifest(body, record.media_type).child_manifest_digests

        return children


# ---------------------------------------------------------------------- schedules


class CollectionStarter(Protocol):
    """What ScheduledCollections needs of registry.gc.GarbageCollector."""

    def start(
        self, registry: RegistryRecord, gc_type: str, mode: str, trigger: str = ...
    ) -> Any: ...


class ScheduledCollections:
    """Starts the garbage collections whose schedule is due (EventBridge calls ``run``
    every 15 minutes through chalicelib.events.handlers).

    Each due entry is re-checked against the registry record (the entry may be stale: the
    registry deleted, the schedule changed), the collection is started, and the entry is
    advanced to the schedule's next run, conditionally on it still being the one read. A
    collection already running is not an error: that run is skipped. A crash between the
    start and the advance makes the next invocation try again, which the one-active-
    collection rule turns into a skip (or, if the first one has ended, a second harmless
    collection): a run is never silently lost."""

    BATCH = 100
    MAX_BATCHES = 20

    def __init__(self, store: MetadataStore, collector: CollectionStarter) -> None:
        self.store = store
        self.collector = collector

    def run(self, now: datetime) -> int:
        """Start what is due at ``now``; returns how many collections were started."""
        started = 0
        for _ in range(self.MAX_BATCHES):
            due = self.store.due_collection_schedules(now, self.BATCH)
            advanced = 0
            for entry in due:
                outcome, moved = self._run_one(entry, now)
                started += outcome
                advanced += moved
            if len(due) < self.BATCH or not advanced:
                break
        return started

    def _run_one(self, entry: DueSchedule, now: datetime) -> tuple[int, int]:
        registry = self.store.get_registry(entry.registry_name)
        schedule = registry.settings.gc_schedule if registry is not None else None
        if (
            registry is None
            or registry.deleting
            or registry.registry_id != entry.registry_id
            or schedule is None
        ):
            # A stale entry (registry gone or re-created, schedule cleared): drop it.
            moved = self.store.advance_collection_schedule(
                entry.registry_id, entry.next_run_at, None
            )
            return 0, int(moved)
        started = 0
        try:
            self.collector.start(registry, schedule.type, schedule.mode, trigger="schedule")
            started = 1
        except ConflictError:
            logger.info("scheduled collection of %s skipped: one is running", registry.name)
        except RegistryError as exc:  # suspended, read-only, ...: skip this run
            logger.warning("scheduled collection of %s not started: %s", registry.name, exc)
        moved = self.store.advance_collection_schedule(
            entry.registry_id, entry.next_run_at, schedule.next_run_after(now)
        )
        return started, int(moved)


__all__ = [
    "MAX_APPLY_ITEMS",
    "MAX_APPLY_REPOSITORIES",
    "BodyChildren",
    "ChildrenReader",
    "DueSchedule",
    "GcSchedule",
    "ImmutabilityRule",
    "ReferencesInBodyError",
    "RegistrySettings",
    "RetentionPlan",
    "RetentionReport",
    "RetentionRule",
    "RetentionService",
    "ScheduledCollections",
    "immutable_message",
    "parse_immutability_rules",
    "parse_retention_rules",
    "parse_schedule",
    "plan_retention",
    "reachable",
]
