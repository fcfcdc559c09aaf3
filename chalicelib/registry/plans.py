"""Subscription tiers are data: one table, no code branches per plan."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Tier:
    slug: str
    name: str
    monthly_price_in_cents: int
    included_repositories: int  # 0: unlimited
    included_storage_bytes: int
    included_bandwidth_bytes: int
    allow_storage_overage: bool
    storage_overage_price_in_cents: int  # per GiB-month beyond the included storage
    bandwidth_hard_cap: bool  # pulls are refused once the month's transfer is used up

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "slug": self.slug,
            "included_repositories": self.included_repositories,
            "included_storage_bytes": self.included_storage_bytes,
            "allow_storage_overage": self.allow_storage_overage,
            "included_bandwidth_bytes": self.included_bandwidth_bytes,
            "bandwidth_hard_cap": self.bandwidth_hard_cap,
            "monthly_price_in_cents": self.monthly_price_in_cents,
            "storage_overage_price_in_cents": self.storage_overage_price_in_cents,
        }

    @property
    def storage_limit(self) -> int | None:
        """The storage a push may not exceed; None where overage is billed instead."""
        return None if self.allow_storage_overage else self.included_storage_bytes

    @property
    def repository_limit(self) -> int | None:
        """The number of repositories a push may not exceed; None: unlimited."""
        return self.included_repositories or None

    @property
    def transfer_cap(self) -> int | None:
        """The month's outbound bytes beyond which pulls are refused; None: no cap."""
        return self.included_bandwidth_bytes if self.bandwidth_hard_cap else None

    def ineligibility(self, repository_count: int, storage_bytes: int) -> list[str]:
        """Why a registry with this usage cannot be on this tier (empty: it can)."""
        reasons = []
        if self.included_repositories and repository_count > self.included_repositories:
            reasons.append("OverRepositoryLimit")
        if not self.allow_storage_overage and storage_bytes > self.included_storage_bytes:
            reasons.append("OverStorageLimit")
        return reasons


TIERS: dict[str, Tier] = {
    t.slug: t
    for t in (
        Tier("starter", "Starter", 0, 1, 500 * MIB, 500 * MIB, False, 0, True),
        Tier("basic", "Basic", 500, 5, 5 * GIB, 5 * GIB, True, 2, False),
        Tier("professional", "Professional", 2000, 0, 100 * GIB, 100 * GIB, True, 2, False),
    )
}


def tier(slug: str) -> Tier:
    """The tier a registry record names (records from before tiers were checked: the
    professional one)."""
    return TIERS.get(slug, TIERS["professional"])


# Crossing these fractions (in percent) of a limit publishes an event (registry.alerts).
THRESHOLDS = (80, 100)


def threshold_level(used: int, limit: int | None) -> int:
    """The highest threshold ``used`` has reached of ``limit`` (0: none, or no limit)."""
    if not limit:
        return 0
    return max((t for t in THRESHOLDS if used * 100 >= limit * t), default=0)
