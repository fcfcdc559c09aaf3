"""Quota threshold events: crossing 80% and 100% of a plan's limit publishes an event.

The registry record changes on every counted write (a blob committed or deleted, a
repository created, a plan changed). Whatever feeds this module (a DynamoDB stream on AWS,
the local runtime's poller of the same stream) hands it the record before and after each
change; nothing here runs on the push path, and nothing is stored: a threshold is crossed
when the level the record reached after the change is higher than the level before it.

Levels are judged on each side's own plan (a downgrade that leaves the registry holding 90%
of the smaller plan's storage crosses 80%; an upgrade crosses nothing), and the event
names the new plan and its limit.

Delivery is at least once: a batch that fails after publishing some of its events is
retried, and those events are published again. Consumers that must not act twice can key
on (registry_id, resource, threshold, used).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .plans import THRESHOLDS, threshold_level, tier
from .ports import EventPublisher

SOURCE = "portside.registry"
DETAIL_TYPE = "Quota Threshold Crossed"
STORAGE = "storage"
REPOSITORIES = "repositories"
TRANSFER = "transfer"


@dataclass(frozen=True)
class RegistryUsage:
    """What the watch needs of a registry record (one image of the stream)."""

    registry: str
    registry_id: str
    account_id: str
    plan: str
    storage_bytes: int = 0
    repository_count: int = 0
    deleting: bool = False


@dataclass(frozen=True)
class ThresholdCrossing:
    registry: str
    registry_id: str
    account_id: str
    plan: str
    resource: str  # storage | repositories | transfer
    threshold: int  # percent: one of plans.THRESHOLDS
    used: int
    limit: int
    month: str | None = None  # "YYYY-MM", transfer only

    def detail(self) -> dict[str, Any]:
        """The EventBridge ``Detail`` of the event (docs/quota-events.md)."""
        out: dict[str, Any] = {
            "registry": self.registry,
            "registry_id": self.registry_id,
            "account_id": self.account_id,
            "plan": self.plan,
            "resource": self.resource,
            "threshold": self.threshold,
            "used": self.used,
            "limit": self.limit,
        }
        if self.month is not None:
            out["month"] = self.month
        return out


def crossed(before: int, after: int) -> list[int]:
    """The thresholds above the level ``before`` and at or below the level ``after``
    (levels as plans.threshold_level gives them): 0 -> 100 crosses both."""
    return [t for t in THRESHOLDS if before < t <= after]


def _limits(usage: RegistryUsage) -> dict[str, tuple[int, int | None]]:
    plan = tier(usage.plan)
    return {
        # Storage thresholds are of the included storage: on a paid plan, 100% is where
        # overage billing begins; on the starter plan it is the hard limit.
        STORAGE: (usage.storage_bytes, plan.included_storage_bytes),
        REPOSITORIES: (usage.repository_count, plan.repository_limit),
    }


def crossings(old: RegistryUsage | None, new: RegistryUsage | None) -> list[ThresholdCrossing]:
    """The thresholds the change from ``old`` to ``new`` crossed (storage first, then
    repositories; lower thresholds first). ``old`` None: the record is new. ``new`` None
    (the record was deleted) or a deleting registry: nothing."""
    if new is None or new.deleting:
        return []
    # A name deleted and taken again is another registry: its old image says nothing.
    before = _limits(old) if old is not None and old.registry_id == new.registry_id else {}
    out = []
    for resource, (used, limit) in _limits(new).items():
        if not limit:
            continue  # unlimited on this plan
        old_used, old_limit = before.get(resource, (0, None))
        for threshold in crossed(
            threshold_level(old_used, old_limit), threshold_level(used, limit)
        ):
            out.append(
                ThresholdCrossing(
                    registry=new.registry,
                    registry_id=new.registry_id,
                    account_id=new.account_id,
                    plan=new.plan,
                    resource=resource,
                    threshold=threshold,
                    used=used,
                    limit=limit,
                )
            )
    return out


def publish(publisher: EventPublisher, found: Iterable[ThresholdCrossing]) -> None:
    for crossing in found:
        publisher.publish(DETAIL_TYPE, crossing.detail())


Change = tuple[RegistryUsage | None, RegistryUsage | None]


@dataclass
class WatchOutcome:
    published: list[ThresholdCrossing] = field(default_factory=list)
    # The index of the first change whose events could not all be published (None: every
    # change was handled) and why: the caller retries from that change on.
    failed_at: int | None = None
    error: Exception | None = None


class QuotaWatch:
    """Turns a batch of registry record changes, in stream order, into threshold events."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    def process(self, changes: Sequence[Change]) -> WatchOutcome:
        """Publish the crossings of each change in order; stop at the first change whose
        events cannot be published (its earlier events may be out already: at least once)."""
        outcome = WatchOutcome()
        for index, (old, new) in enumerate(changes):
            found = crossings(old, new)
            try:
                publish(self.publisher, found)
            except Exception as error:  # any publishing failure: retry from this change
                outcome.failed_at = index
                outcome.error = error
                return outcome
            outcome.published.extend(found)
        return outcome
