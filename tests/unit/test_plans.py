"""Subscription tiers: the numbers of each tier and who fits which tier."""

from __future__ import annotations

import pytest

from chalicelib.registry.plans import GIB, MIB, TIERS, Tier


def test_the_three_tiers_in_order() -> None:
    assert list(TIERS) == ["starter", "basic", "professional"]
    assert [t.name for t in TIERS.values()] == ["Starter", "Basic", "Professional"]
    assert all(slug == tier.slug for slug, tier in TIERS.items())


def test_starter_is_free_one_repository_and_hard_capped() -> None:
    starter = TIERS["starter"]
    assert starter.monthly_price_in_cents == 0
    assert starter.included_repositories == 1
    assert starter.included_storage_bytes == 500 * MIB
    assert starter.included_bandwidth_bytes == 500 * MIB
    assert starter.bandwidth_hard_cap is True
    assert starter.allow_storage_overage is False
    assert starter.storage_overage_price_in_cents == 0


def test_basic_is_five_dollars_five_repositories_with_overage() -> None:
    basic = TIERS["basic"]
    assert basic.monthly_price_in_cents == 500
    assert basic.included_repositories == 5
    assert basic.included_storage_bytes == 5 * GIB
    assert basic.included_bandwidth_bytes == 5 * GIB
    assert basic.allow_storage_overage is True
    assert basic.storage_overage_price_in_cents == 2  # $0.02 per GiB-month
    assert basic.bandwidth_hard_cap is False


def test_professional_is_twenty_dollars_unlimited_repositories() -> None:
    pro = TIERS["professional"]
    assert pro.monthly_price_in_cents == 2000
    assert pro.included_repositories == 0  # 0 means unlimited
    assert pro.included_storage_bytes == 100 * GIB
    assert pro.included_bandwidth_bytes == 100 * GIB
    assert pro.allow_storage_overage is True
    assert pro.storage_overage_price_in_cents == 2
    assert pro.bandwidth_hard_cap is False


def test_units_are_binary() -> None:
    assert MIB == 1_048_576
    assert GIB == 1024 * MIB


def test_to_json_carries_every_field_of_the_tier() -> None:
    doc = TIERS["basic"].to_json()
    assert doc == {
        "name": "Basic",
        "slug": "basic",
        "included_repositories": 5,
        "included_storage_bytes": 5 * GIB,
        "allow_storage_overage": True,
        "included_bandwidth_bytes": 5 * GIB,
        "bandwidth_hard_cap": False,
        "monthly_price_in_cents": 500,
        "storage_overage_price_in_cents": 2,
    }


@pytest.mark.parametrize(
    ("slug", "repositories", "storage", "reasons"),
    [
        ("starter", 0, 0, []),
        ("starter", 1, 500 * MIB, []),  # exactly at both limits fits
        ("starter", 2, 0, ["OverRepositoryLimit"]),
        ("starter", 1, 500 * MIB + 1, ["OverStorageLimit"]),
        ("starter", 3, 600 * MIB, ["OverRepositoryLimit", "OverStorageLimit"]),
        ("basic", 5, 5 * GIB, []),
        ("basic", 6, 0, ["OverRepositoryLimit"]),
        # basic allows storage overage: more storage is billed, never a reason to refuse
        ("basic", 1, 50 * GIB, []),
        ("basic", 6, 50 * GIB, ["OverRepositoryLimit"]),
        # professional: unlimited repositories and storage overage
        ("professional", 10_000, 500 * GIB, []),
    ],
)
def test_ineligibility_reasons(
    slug: str, repositories: int, storage: int, reasons: list[str]
) -> None:
    assert TIERS[slug].ineligibility(repositories, storage) == reasons


def test_storage_limit_applies_only_without_overage() -> None:
    strict = Tier("strict", "Strict", 0, 0, 10, 10, False, 0, True)
    lenient = Tier("lenient", "Lenient", 0, 0, 10, 10, True, 1, False)
    assert strict.ineligibility(100, 11) == ["OverStorageLimit"]
    assert lenient.ineligibility(100, 11) == []
    assert strict.ineligibility(100, 10) == []
