"""Storage and repository quotas: the refusals, the figures ``registry get`` shows, and the
scheduled reconciliation of the counters the limits are enforced on.

Enforcement itself is in the stores: a registry's ``storage_bytes`` and
``repository_count`` change only in the transaction that adds (or removes) what they
count, and the transaction that would take them beyond the plan's hard limit carries a
condition that fails (``MetadataStore.commit_blob`` / ``put_manifest``). So the limit holds
exactly at commit, whatever runs in parallel; this module says why a push was refused and
checks that the counters still add up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .errors import QuotaExceededError
from .plans import GIB, MIB, TIERS, Tier, threshold_level, tier
from .records import AccountRecord, BlobRecord, RegistryRecord

PAGE = 1000

# The outcomes of reconciling one registry.
CONSISTENT = "consistent"  # the counters add up to the records
CORRECTED = "corrected"  # they did not, and were set to what the records add up to
SKIPPED = "skipped"  # they changed while the records were counted: the next run decides


def human_size(size: int, digits: int = 1) -> str:
    """Bytes as the refusals print them: ``500 MiB``, ``498.1 MiB``, ``1.5 GiB``."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(size) >= scale:
            text = f"{size / scale:.{digits}f}".rstrip("0").removesuffix(".")
            return f"{text} {unit}"
    return f"{size} B"


def _used_size(used: int, limit: int) -> str:
    """``used`` printed so that it does not read as the limit when it is below it."""
    for digits in range(1, 7):
        text = human_size(used, digits)
        if used >= limit or text != human_size(limit):
            return text
    return f"{used} bytes"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word.removesuffix('y')}ies"


def storage_refusal(registry: RegistryRecord, size: int | None) -> QuotaExceededError:
    """The refusal of a blob of ``size`` bytes (None: of any new bytes at all)."""
    plan = tier(registry.plan)
    limit = plan.storage_limit or 0
    used = registry.storage_bytes
    what = "" if size is None else f"; this {human_size(size)} blob would exceed it"
    return QuotaExceededError(
        f"storage limit reached: registry {registry.name!r} on the {plan.name} plan may hold "
        f"{human_size(limit)} and holds {_used_size(used, limit)}{what} (delete images and run "
        "garbage collection, or upgrade the plan)",
        detail={
            "registry": registry.name,
            "plan": plan.slug,
            "limit": "storage",
            "limit_bytes": limit,
            "used_bytes": used,
            "requested_bytes": size,
        },
    )


def repository_refusal(registry: RegistryRecord) -> QuotaExceededError:
    plan = tier(registry.plan)
    limit = plan.repository_limit or 0
    return QuotaExceededError(
        f"repository limit reached: the {plan.name} plan allows "
        f"{_plural(limit, 'repository')} and registry {registry.name!r} has "
        f"{registry.repository_count} (delete a repository or upgrade the plan)",
        detail={
            "registry": registry.name,
            "plan": plan.slug,
            "limit": "repositories",
            "limit_count": limit,
            "used_count": registry.repository_count,
        },
    )


def storage_exceeded(registry: RegistryRecord, size: int) -> bool:
    """Whether adding ``size`` new bytes would take the registry beyond its hard limit."""
    limit = tier(registry.plan).storage_limit
    return limit is not None and registry.storage_bytes + size > limit


def repositories_exceeded(registry: RegistryRecord, added: int = 1) -> bool:
    limit = tier(registry.plan).repository_limit
    return limit is not None and registry.repository_count + added > limit


def check_commit(registry: RegistryRecord, new_bytes: int, new_repositories: int) -> None:
    """Raise the refusal of a commit that adds ``new_bytes`` of new blobs and
    ``new_repositories`` repositories, if it goes beyond a hard limit of the plan."""
    if new_repositories and repositories_exceeded(registry, new_repositories):
        raise repository_refusal(registry)
    if new_bytes and storage_exceeded(registry, new_bytes):
        raise storage_refusal(registry, new_bytes)


def limited_tiers() -> list[Tier]:
    """Every tier with a hard storage or repository limit (the stores' conditions)."""
    return [t for t in TIERS.values() if t.storage_limit is not None or t.repository_limit]


# ---------------------------------------------------------------------- registry get


def quota_json(record: RegistryRecord) -> dict[str, Any]:
    """``registry get``'s ``quota``: storage against the plan's included storage (hard on
    plans without overage: past it, pushes are refused; else overage is billed) and
    repositories against the plan's repository limit (null: unlimited)."""
    plan = tier(record.plan)
    storage_limit = plan.included_storage_bytes
    repository_limit = plan.repository_limit
    return {
        "storage": {
            "used_bytes": record.storage_bytes,
            "limit_bytes": storage_limit,
            "percent": _percent(record.storage_bytes, storage_limit),
            "hard": plan.storage_limit is not None,
            "threshold_level": threshold_level(record.storage_bytes, storage_limit),
        },
        "repositories": {
            "used": record.repository_count,
            "limit": repository_limit,
            "percent": _percent(record.repository_count, repository_limit),
            "hard": repository_limit is not None,
            "threshold_level": threshold_level(record.repository_count, repository_limit),
        },
    }


def _percent(used: int, limit: int | None) -> float | None:
    return None if not limit else round(used * 100 / limit, 1)


# ---------------------------------------------------------------------- reconciliation


class UsageRecords(Protocol):
    """What reconciliation needs of the metadata store (MetadataStore and CollectionStore
    methods)."""

    def get_registry(self, name: str) -> RegistryRecord | None: ...
    def list_registries(self, account_id: str) -> list[RegistryRecord]: ...
    def list_repositories(self, registry_id: str, after: str | None, limit: int) -> list[str]: ...
    def list_registry_blobs(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[BlobRecord]: ...
    def correct_usage(
        self, seen: RegistryRecord, storage_bytes: int, repository_count: int, now: datetime
    ) -> bool: ...
    def ensure_registry_identity(self, record: RegistryRecord) -> None: ...


class Accounts(Protocol):
    def list_accounts(self, after: str | None, limit: int) -> list[AccountRecord]: ...


@dataclass(frozen=True)
class Reconciliation:
    """What one registry's counters said and what its records add up to."""

    registry: str
    registry_id: str
    storage_before: int
    storage_after: int
    repositories_before: int
    repositories_after: int
    outcome: str

    @property
    def storage_drift(self) -> int:
        """Bytes the counter was short of the records (negative: it counted too many)."""
        return self.storage_after - self.storage_before

    @property
    def repository_drift(self) -> int:
        return self.repositories_after - self.repositories_before

    def to_log(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "registry_id": self.registry_id,
            "outcome": self.outcome,
            "storage_before": self.storage_before,
            "storage_after": self.storage_after,
            "storage_drift": self.storage_drift,
            "repositories_before": self.repositories_before,
            "repositories_after": self.repositories_after,
            "repository_drift": self.repository_drift,
        }


def count_records(store: UsageRecords, registry_id: str) -> tuple[int, int]:
    """(bytes, repositories) of the registry's records: the sizes of its blob records (one
    per digest in the registry, so a blob linked into many repositories counts once) and
    its repository items. The store's listings are strongly consistent."""
    total, after = 0, None
    while True:
        blobs = store.list_registry_blobs(registry_id, after, PAGE)
        total += sum(b.size for b in blobs)
        if len(blobs) < PAGE:
            break
        after = blobs[-1].digest
    repositories, after = 0, None
    while True:
        names = store.list_repositories(registry_id, after, PAGE)
        repositories += len(names)
        if len(names) < PAGE:
            break
        after = names[-1]
    return total, repositories


def _same_counters(a: RegistryRecord, b: RegistryRecord) -> bool:
    return (
        a.registry_id == b.registry_id
        and a.storage_bytes == b.storage_bytes
        and a.repository_count == b.repository_count
        and a.storage_updated_at == b.storage_updated_at
        and a.usage_version == b.usage_version
        and not b.deleting
    )


def reconcile_registry(store: UsageRecords, name: str, now: datetime) -> Reconciliation | None:
    """Recount one registry and correct its counters if they drifted; None if there is no
    such live registry.

    A commit changes the records and the counters in one transaction, so the counters are
    correct whenever no commit is half-seen. The recount is not one snapshot, though: a
    commit during it may be counted or not. So the counters are read before and after the
    recount, and the correction is conditional on them (with the storage time every
    storage change sets) still being what was read before: if anything committed since,
    nothing is written and the next run decides. A commit can never be overwritten."""
    before = store.get_registry(name)
    if before is None or before.deleting:
        return None
    # The metering finds registries by id: backfill the identity item of a registry made
    # before there was one (a read, and a write only the first time).
    store.ensure_registry_identity(before)
    storage, repositories = count_records(store, before.registry_id)
    after = store.get_registry(name)
    outcome = CONSISTENT
    if after is None or not _same_counters(before, after):
        outcome = SKIPPED
    elif (storage, repositories) != (before.storage_bytes, before.repository_count):
        corrected = store.correct_usage(before, storage, repositories, now)
        outcome = CORRECTED if corrected else SKIPPED
    return Reconciliation(
        registry=name,
        registry_id=before.registry_id,
        storage_before=before.storage_bytes,
        storage_after=storage,
        repositories_before=before.repository_count,
        repositories_after=repositories,
        outcome=outcome,
    )


def iter_registries(accounts: Accounts, store: UsageRecords) -> Iterator[RegistryRecord]:
    """Every live registry, account by account (index queries, never a table scan)."""
    after: str | None = None
    while True:
        page = accounts.list_accounts(after, PAGE)
        for account in page:
            yield from store.list_registries(account.account_id)
        if len(page) < PAGE:
            return
        after = page[-1].account_id


class StorageReconciler:
    """The hourly reconciliation (events.handlers.reconcile_storage_schedule)."""

    def __init__(
        self, store: UsageRecords, accounts: Accounts, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.accounts = accounts
        self._clock = clock

    def run(self) -> list[Reconciliation]:
        """Reconcile every registry; what was found for each."""
        found = []
        for registry in iter_registries(self.accounts, self.store):
            result = reconcile_registry(self.store, registry.name, self._clock())
            if result is not None:
                found.append(result)
        return found
