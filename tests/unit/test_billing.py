"""Billing (chalicelib/registry/billing.py): snapshots, GiB-months, carry-forward,
projection, proration, plan changes, overage, rounding, month lengths, the export (golden
files under tests/golden/billing/), finality and its agreement with the usage figures.

Everything runs over the in-memory adapters (MemoryUsageStore is the DynamoDB usage
store's twin, held to the same contract in tests/contract/test_usage_store.py)."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.adapters.memory_accounts import MemoryAccountStore
from chalicelib.adapters.memory_usage import MemoryUsageStore
from chalicelib.registry.billing import (
    CSV_COLUMNS,
    RULES_VERSION,
    BillingExport,
    Month,
    StorageSnapshots,
    Usage,
    UsageCalculator,
    cents,
    export_keys,
)
from chalicelib.registry.errors import ConflictError, UnprocessableError
from chalicelib.registry.plans import GIB, MIB
from chalicelib.registry.records import AccountRecord, RegistryRecord, TrafficCounts

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "billing"
NOVEMBER = Month(2026, 11)
# November 2026 is final from 2026-12-03 00:00 UTC (end of month + 48 h of log delay).
FINAL_NOW = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
PROVISIONAL_NOW = datetime(2026, 12, 2, 23, 59, tzinfo=UTC)


@dataclass
class World:
    store: MemoryMetadataStore = field(default_factory=MemoryMetadataStore)
    usage: MemoryUsageStore = field(default_factory=MemoryUsageStore)
    blobs: MemoryBlobStore = field(default_factory=MemoryBlobStore)

    def __post_init__(self) -> None:
        self.accounts = MemoryAccountStore(self.store)
        self.snapshots = StorageSnapshots(self.accounts, self.store, self.usage)
        self.calculator = UsageCalculator(self.store, self.usage)
        self.export = BillingExport(self.calculator, self.blobs)

    def registry(self, name: str, plan: str, account: str = "acct") -> RegistryRecord:
        if self.accounts.get_account(account) is None:
            self.accounts.put_account(AccountRecord(account, account))
        record = RegistryRecord(name=name, account_id=account, plan=plan, registry_id=f"id-{name}")
        self.store.put_registry(record)
        return record

    def set(self, name: str, storage: int | None = None, plan: str | None = None) -> None:
        record = self.store.registries[name]
        if storage is not None:
            record.storage_bytes = storage
        if plan is not None:
            record.plan = plan

    def snapshot_days(self, first: date, last: date) -> None:
        day = first
        while day <= last:
            self.snapshots.run(datetime(day.year, day.month, day.day, 23, 0, tzinfo=UTC))
            day += timedelta(days=1)

    def usage_of(self, name: str, month: Month, now: datetime) -> Usage:
        record = self.store.get_registry(name)
        assert record is not None
        return self.calculator.for_registry(record, month, now)


def nov(day: int) -> date:
    return date(2026, 11, day)


# ------------------------------------------------------------------------ snapshots


def test_snapshot_run_writes_todays_snapshot_of_every_live_registry_overwriting_earlier() -> None:
    w = World()
    w.registry("alpha", "starter", account="a1")
    w.registry("bravo", "basic", account="a2")
    w.registry("gone", "basic", account="a2")
    w.store.mark_registry_deleting("gone")
    w.set("alpha", storage=10)
    assert w.snapshots.run(datetime(2026, 11, 5, 1, tzinfo=UTC)) == 2
    w.set("alpha", storage=20, plan="basic")
    w.snapshots.run(datetime(2026, 11, 5, 23, tzinfo=UTC))
    (snap,) = w.usage.list_snapshots("id-alpha", "2026-11")
    assert (snap.day, snap.storage_bytes, snap.plan) == ("2026-11-05", 20, "basic")
    assert [s.day for s in w.usage.list_snapshots("id-bravo", "2026-11")] == ["2026-11-05"]
    assert w.usage.list_snapshots("id-gone", "2026-11") == []


# ------------------------------------------------------------------------ GiB-months


def test_gib_months_are_the_months_byte_days_over_days_and_gib() -> None:
    w = World()
    w.registry("r", "professional")
    w.set("r", storage=30 * GIB)
    w.snapshot_days(nov(1), nov(15))
    w.set("r", storage=60 * GIB)
    w.snapshot_days(nov(16), nov(30))
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 1))
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert u.storage_gib_months == Decimal("45.000000")
    assert u.peak_storage_bytes == 60 * GIB
    assert u.storage_now_bytes == 60 * GIB
    assert not u.projected and u.final
    assert (u.plan_price_cents, u.overage_charge_cents, u.total_cents) == (2000, 0, 2000)


def test_a_day_without_a_snapshot_carries_the_previous_one_and_days_before_the_first_count_0() -> (
    None
):
    w = World()
    w.registry("r", "professional")
    w.set("r", storage=3 * GIB)
    w.snapshot_days(nov(11), nov(11))  # created on the 11th: days 1-10 count nothing
    w.set("r", storage=6 * GIB)
    w.snapshot_days(nov(21), nov(21))  # days 12-20 carry the 11th's 3 GiB
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 1))  # lived on: 22-30 carry 6 GiB
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert len(u.days) == 20
    assert u.storage_byte_days == 10 * 3 * GIB + 10 * 6 * GIB
    assert u.storage_gib_months == Decimal("3.000000")  # 90 GiB-days / 30
    assert u.plan_price_cents == cents(2000 * 20, 30) == 1333


def test_days_the_schedule_missed_at_the_months_change_carry_the_last_months_snapshot() -> (
    None
):
    w = World()
    w.registry("r", "professional")
    w.set("r", storage=3 * GIB)
    w.snapshot_days(date(2026, 10, 30), date(2026, 10, 31))
    w.set("r", storage=6 * GIB)
    w.snapshot_days(nov(4), nov(30))  # down from the 1st to the 3rd
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 1))
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert len(u.days) == 30
    assert u.storage_byte_days == 3 * 3 * GIB + 27 * 6 * GIB
    assert u.plan_price_cents == 2000


def test_a_registry_gone_during_the_month_is_billed_up_to_its_last_snapshot() -> None:
    w = World()
    w.registry("r", "basic")
    w.set("r", storage=GIB)
    w.snapshot_days(nov(1), nov(6))
    w.store.mark_registry_deleting("r")
    u = w.calculator.for_usage_month(
        w.usage.list_usage_months("2026-11", None, 10)[0], NOVEMBER, FINAL_NOW
    )
    assert len(u.days) == 6 and u.storage_now_bytes is None
    assert u.plan_price_cents == 100  # 500 * 6 / 30


def test_the_current_month_projects_today_to_its_end_with_the_current_storage() -> None:
    w = World()
    w.registry("r", "basic")
    w.set("r", storage=10 * GIB)
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 9))
    w.set("r", storage=20 * GIB)
    u = w.usage_of("r", Month(2026, 12), datetime(2026, 12, 10, 12, tzinfo=UTC))
    assert u.projected and u.projected_days == 22 and not u.final
    assert u.storage_byte_days == (9 * 10 + 22 * 20) * GIB
    assert u.storage_gib_months == Decimal("17.096774")  # 530 / 31
    assert u.plan_price_cents == 500
    # 5 GiB over for 9 days, 15 GiB over for 22: 375 GiB-days * 2 cents / 31 days = 24.19
    assert u.overage_charge_cents == 24
    assert u.to_json()["projected"] is True


def test_a_plan_change_mid_month_prices_each_day_by_its_plan() -> None:
    w = World()
    w.registry("r", "starter")
    w.set("r", storage=400 * MIB)
    w.snapshot_days(nov(1), nov(10))
    w.set("r", plan="basic", storage=6 * GIB)
    w.snapshot_days(nov(11), nov(30))
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 1))
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert [(p.plan, p.days) for p in u.plan_periods()] == [("starter", 10), ("basic", 20)]
    assert u.plan_price_cents == 333  # 0 * 10/30 + 500 * 20/30 = 333.33
    # Starter days over 5 GiB would not count (no overage there); basic: 1 GiB x 20 days.
    assert u.overage_gib_months == Decimal("0.666667")
    assert u.overage_charge_cents == 1  # 20 GiB-days * 2 / 30 = 1.33
    assert u.plan == "basic" and u.total_cents == 334


def test_professional_over_100_gib_pays_overage_per_gib_month() -> None:
    w = World()
    w.registry("r", "professional")
    w.set("r", storage=150 * GIB)
    w.snapshot_days(nov(1), nov(30))
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 1))
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert u.overage_gib_months == Decimal("50.000000")
    assert (u.plan_price_cents, u.overage_charge_cents, u.total_cents) == (2000, 100, 2100)


def test_starter_has_no_overage_and_no_bandwidth_charge() -> None:
    w = World()
    w.registry("r", "starter")
    w.set("r", storage=900 * MIB)  # over 500 MiB (only reachable before limits held)
    w.snapshot_days(nov(1), nov(30))
    w.usage.add_traffic("id-r", "2026-11", "log-1", TrafficCounts(10 * GIB, 5, 1))
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert u.outbound_bytes == 10 * GIB and (u.pulls, u.pushes) == (5, 1)
    assert u.total_cents == 0


def test_rounding_is_half_up_once_per_line_at_half_a_cent() -> None:
    assert [cents(n, 10) for n in (4, 5, 14, 15, 25)] == [0, 1, 1, 2, 3]
    assert cents(2 * 4999, 20000) == 0 and cents(1, 2) == 1
    w = World()
    w.registry("r", "professional")
    w.set("r", storage=100 * GIB)
    w.snapshot_days(nov(1), nov(29))
    w.set("r", storage=100 * GIB + 15 * GIB // 2)  # 7.5 GiB over for one day of 30
    w.snapshot_days(nov(30), date(2026, 12, 1))
    u = w.usage_of("r", NOVEMBER, FINAL_NOW)
    assert u.overage_charge_cents == 1  # 7.5 * 2 / 30 = 0.5 cent, half up
    w.set("r", storage=100 * GIB + 7 * GIB)  # 0.4667 cent: down
    w.snapshot_days(nov(30), nov(30))
    assert w.usage_of("r", NOVEMBER, FINAL_NOW).overage_charge_cents == 0


@pytest.mark.parametrize(
    ("month", "days", "one_day_cents"),
    [
        (Month(2026, 2), 28, 71),
        (Month(2028, 2), 29, 69),
        (Month(2026, 4), 30, 67),
        (Month(2026, 1), 31, 65),
    ],
)
def test_months_of_28_29_30_and_31_days(month: Month, days: int, one_day_cents: int) -> None:
    assert month.days == days
    w = World()
    w.registry("full", "professional")
    w.snapshot_days(month.first_day, month.next().first_day)
    now = month.next().start() + timedelta(days=5)
    assert w.usage_of("full", month, now).plan_price_cents == 2000
    w2 = World()
    w2.registry("one", "professional")
    w2.snapshot_days(month.last_day, month.next().first_day)
    u = w2.usage_of("one", month, now)
    assert len(u.days) == 1 and u.plan_price_cents == one_day_cents  # 2000 / days


def test_december_to_january() -> None:
    december = Month(2026, 12)
    assert december.next() == Month(2027, 1) and Month(2027, 1).previous() == december
    assert december.final_at(timedelta(hours=48)) == datetime(2027, 1, 3, tzinfo=UTC)
    w = World()
    w.registry("r", "basic")
    w.snapshot_days(date(2026, 12, 20), date(2026, 12, 20))
    w.set("r", storage=7 * GIB)
    w.snapshot_days(date(2027, 1, 2), date(2027, 1, 2))
    now = datetime(2027, 1, 5, tzinfo=UTC)
    dec = w.usage_of("r", december, now)
    assert len(dec.days) == 12 and dec.final  # the 20th to the 31st, carried
    assert dec.plan_price_cents == cents(500 * 12, 31) == 194
    jan = w.usage_of("r", Month(2027, 1), now)
    # The 1st predates January's first snapshot and carries December's last (the registry
    # existed: the schedule missed the 1st); the 2nd-4th carry the 2nd's; 5th-31st projected.
    assert len(jan.days) == 31 and jan.projected_days == 27 and not jan.final
    assert [d.storage_bytes for d in jan.days[:3]] == [0, 7 * GIB, 7 * GIB]


def test_bad_and_future_months_are_unprocessable() -> None:
    arabic_indic = "\u0662\u0660\u0662\u0666-\u0661\u0661"  # 2026-11 in other digits
    bad = ("2026-13", "2026-1", "26-11", "2026-00", "", "2026-11-01", "2026-11\n", arabic_indic)
    for text in bad:
        with pytest.raises(UnprocessableError):
            Month.parse(text)
    w = World()
    record = w.registry("r", "basic")
    with pytest.raises(UnprocessableError):
        w.calculator.for_registry(record, Month(2027, 1), FINAL_NOW)


# ------------------------------------------------------------------------ the export


def golden_world() -> World:
    """Three registries in November 2026: a starter one; one that moved from starter to
    basic on the 11th and went over 5 GiB on the 21st; a professional one created on the
    5th holding 120 GiB."""
    w = World()
    w.registry("alpha", "starter", account="acct-a")
    w.registry("bravo", "starter", account="acct-b")
    w.set("alpha", storage=100 * MIB)
    w.set("bravo", storage=400 * MIB)
    w.snapshot_days(nov(1), nov(4))
    w.registry("charlie", "professional", account="acct-c")
    w.set("charlie", storage=120 * GIB)
    w.snapshot_days(nov(5), nov(10))
    w.set("bravo", plan="basic", storage=4 * GIB)
    w.snapshot_days(nov(11), nov(15))
    w.set("alpha", storage=200 * MIB)
    w.snapshot_days(nov(16), nov(19))  # no run on the 20th-22nd: the 19th carries
    w.snapshot_days(nov(23), nov(23))
    w.set("bravo", storage=6 * GIB)
    w.snapshot_days(nov(21), nov(21))  # only bravo changed; a late run rewrites days
    w.snapshot_days(nov(22), nov(30))
    w.snapshot_days(date(2026, 12, 1), date(2026, 12, 1))
    w.usage.add_traffic("id-alpha", "2026-11", "log-1", TrafficCounts(300 * MIB, 40, 3))
    w.usage.add_traffic("id-bravo", "2026-11", "log-1", TrafficCounts(7 * GIB, 120, 9))
    w.usage.add_traffic("id-charlie", "2026-11", "log-2", TrafficCounts(150 * GIB, 9000, 250))
    w.usage.add_traffic("id-charlie", "2026-11", "log-2", TrafficCounts(150 * GIB, 9000, 250))
    return w


def read_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_the_export_matches_its_golden_files_byte_for_byte() -> None:
    w = golden_world()
    result = w.export.run(NOVEMBER, FINAL_NOW)
    keys = export_keys(NOVEMBER)
    assert result.keys == keys and keys["csv"] == "exports/billing/2026-11/billing.csv"
    produced = {"csv": w.blobs.objects[keys["csv"]], "jsonl": w.blobs.objects[keys["jsonl"]]}
    if os.environ.get("PORTSIDE_UPDATE_GOLDEN"):
        for kind, data in produced.items():
            (GOLDEN / f"2026-11.{kind}").write_bytes(data)
    assert produced["csv"] == (GOLDEN / "2026-11.csv").read_bytes()
    assert produced["jsonl"] == (GOLDEN / "2026-11.jsonl").read_bytes()
    rows = {r["registry"]: r for r in read_rows(produced["csv"])}
    assert list(read_rows(produced["csv"])[0]) == list(CSV_COLUMNS)
    # The figures, worked out by hand (docs/billing.md):
    assert rows["alpha"]["storage_gib_months"] == "0.146484"  # (15x100 + 15x200) MiB-days
    assert rows["alpha"]["total_cents"] == "0"
    assert rows["bravo"]["plan"] == "basic"
    assert rows["bravo"]["plan_price_cents"] == "333"  # 500 x 20/30
    assert rows["bravo"]["overage_gib_months"] == "0.333333"  # 1 GiB x 10 days / 30
    assert rows["bravo"]["overage_charge_cents"] == "1"  # 0.667 cent
    assert rows["bravo"]["storage_gib_months"] == "3.463542"  # 103.90625 GiB-days / 30
    assert rows["charlie"]["plan_price_cents"] == "1733"  # 2000 x 26/30
    assert rows["charlie"]["overage_charge_cents"] == "35"  # 520 GiB-days x 2 / 30
    assert rows["charlie"]["outbound_bytes"] == str(150 * GIB)  # log-2 counted once
    assert result.manifest["totals"]["total_cents"] == 0 + 334 + 1768
    assert result.manifest["rows"] == 3 and result.manifest["final"] is True
    assert result.manifest["rules_version"] == RULES_VERSION
    jsonl = [json.loads(line) for line in produced["jsonl"].splitlines()]
    assert [r["registry"] for r in jsonl] == ["alpha", "bravo", "charlie"]
    assert jsonl[2]["total_cents"] == 1768 and jsonl[2]["storage_gib_months"] == "104.000000"


def test_rerunning_an_export_writes_identical_bytes_and_a_final_one_never_changes() -> None:
    w = golden_world()
    w.export.run(NOVEMBER, FINAL_NOW)
    first = dict(w.blobs.objects)
    w.export.run(NOVEMBER, FINAL_NOW + timedelta(days=3))
    assert w.blobs.objects == first
    # Late data after the month is final does not rewrite it.
    w.usage.add_traffic("id-alpha", "2026-11", "late-log", TrafficCounts(1, 1, 1))
    result = w.export.run(NOVEMBER, FINAL_NOW + timedelta(days=30))
    assert w.blobs.objects == first and result.final
    assert w.export.run_due(datetime(2026, 12, 10, tzinfo=UTC)) is None  # done already


def test_a_month_not_final_exports_only_as_provisional() -> None:
    w = golden_world()
    with pytest.raises(ConflictError, match="provisional"):
        w.export.run(NOVEMBER, PROVISIONAL_NOW)
    provisional = w.export.run(NOVEMBER, PROVISIONAL_NOW, provisional=True)
    assert provisional.final is False
    manifest = json.loads(w.blobs.objects[export_keys(NOVEMBER)["manifest"]])
    assert manifest["final"] is False
    # The schedule waits for the log delay, then writes the final export over it.
    assert w.export.run_due(PROVISIONAL_NOW) is None
    final = w.export.run_due(FINAL_NOW)
    assert final is not None and final.final
    assert json.loads(w.blobs.objects[export_keys(NOVEMBER)["manifest"]])["final"] is True
    # A month not begun yet cannot be exported at all.
    with pytest.raises(UnprocessableError):
        w.export.run(Month(2027, 1), FINAL_NOW, provisional=True)


def test_the_export_adds_up_to_what_the_usage_figures_report() -> None:
    w = golden_world()
    result = w.export.run(NOVEMBER, FINAL_NOW)
    rows = read_rows(w.blobs.objects[result.keys["csv"]])
    total = 0
    for row in rows:
        shown = w.usage_of(row["registry"], NOVEMBER, FINAL_NOW).to_json()
        charges = shown["charges"]
        assert int(row["total_cents"]) == charges["total_cents"]
        assert int(row["plan_price_cents"]) == charges["plan_price_cents"]
        assert int(row["overage_charge_cents"]) == charges["overage_charge_cents"]
        assert row["storage_gib_months"] == shown["storage_gib_months"]
        assert int(row["outbound_bytes"]) == shown["outbound_bytes"]
        total += charges["total_cents"]
    assert result.manifest["totals"]["total_cents"] == total
