"""Usage and billing: daily storage snapshots, a registry's month of usage and its charge,
and the monthly billing export (docs/billing.md is the reference for every rule here).

Money is computed in exact decimals: every line of a charge is one integer numerator over
one integer denominator (no intermediate rounding), rounded once to integer cents
ROUND_HALF_UP; a total is the sum of its rounded lines. The usage API and the export share
``UsageCalculator``, so that the export adds up to what the API reports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

from .errors import ConflictError, UnprocessableError
from .plans import GIB, Tier, tier
from .ports import AccountStore, BlobStore, MetadataStore, UsageStore
from .records import RegistryRecord, StorageSnapshot, UsageMonth

# Bumped whenever a rule that changes an amount changes; written into each manifest.
RULES_VERSION = "2026-12.1"
# Access logs (the outbound bytes, pulls and pushes) arrive hours late: a month is final
# only this long after it ended (the setting billing_log_delay overrides it).
DEFAULT_LOG_DELAY = timedelta(hours=48)
# GiB-month columns are fixed-point with this many places (rounded half up for display
# only; charges are computed from the exact values).
GIB_MONTH_PLACES = Decimal("0.000001")
# Every quotient here is an integer over at most 31 * 2^30 * a price: 50 digits hold it far
# beyond the cent, so rounding half up decides exactly as on the true fraction.
_CONTEXT = Context(prec=50)
EXPORT_PREFIX = "exports/billing"
CSV_COLUMNS = (
    "account_id",
    "registry",
    "registry_id",
    "plan",
    "period",
    "storage_gib_months",
    "peak_storage_bytes",
    "outbound_bytes",
    "pulls",
    "pushes",
    "included_storage_bytes",
    "included_bandwidth_bytes",
    "overage_gib_months",
    "plan_price_cents",
    "overage_charge_cents",
    "total_cents",
)
_PAGE = 100
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only, whole string


def cents(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` cents rounded once to an integer, ROUND_HALF_UP."""
    with localcontext(_CONTEXT):
        exact = Decimal(numerator) / Decimal(denominator)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def gib_months(byte_days: int, days_in_month: int) -> Decimal:
    """Byte-days as GiB-months, fixed to GIB_MONTH_PLACES (for display and the export)."""
    with localcontext(_CONTEXT):
        exact = Decimal(byte_days) / Decimal(GIB * days_in_month)
        return exact.quantize(GIB_MONTH_PLACES, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month in UTC ("YYYY-MM")."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        found = _MONTH.fullmatch(text) if isinstance(text, str) else None
        if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
            raise UnprocessableError(f"month must be YYYY-MM (e.g. 2026-11), not {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, moment: datetime) -> Month:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    @property
    def days(self) -> int:
        return (self.next().first_day - self.first_day).days

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def final_at(self, log_delay: timedelta) -> datetime:
        """When the month's counters are complete: its end plus the access logs' delay."""
        return self.next().start() + log_delay


# ------------------------------------------------------------------------ snapshots


class StorageSnapshots:
    """Writes today's (UTC) storage snapshot of every live registry. Run hourly: each run
    overwrites the day's earlier one, so a day is priced by its last snapshot and a missed
    run costs nothing."""

    def __init__(self, accounts: AccountStore, store: MetadataStore, usage: UsageStore) -> None:
        self.accounts = accounts
        self.store = store
        self.usage = usage

    def registries(self) -> Iterator[RegistryRecord]:
        after: str | None = None
        while True:
            page = self.accounts.list_accounts(after, _PAGE)
            for account in page:
                yield from self.store.list_registries(account.account_id)
            if len(page) < _PAGE:
                return
            after = page[-1].account_id

    def run(self, now: datetime) -> int:
        day = now.astimezone(UTC).date().isoformat()
        count = 0
        for record in self.registries():
            self.usage.put_snapshot(
                StorageSnapshot(
                    registry_id=record.registry_id,
                    day=day,
                    registry_name=record.name,
                    account_id=record.account_id,
                    plan=record.plan,
                    storage_bytes=record.storage_bytes,
                    repository_count=record.repository_count,
                    taken_at=now,
                )
            )
            count += 1
        return count


# ------------------------------------------------------------------------ usage


@dataclass(frozen=True)
class BilledDay:
    day: date
    plan: str
    storage_bytes: int
    projected: bool = False


@dataclass(frozen=True)
class PlanPeriod:
    """Consecutive days on one plan."""

    plan: str
    first_day: date
    last_day: date
    days: int


@dataclass(frozen=True)
class Usage:
    """One registry's month: what the usage API shows and the export writes as a row."""

    registry: str
    registry_id: str
    account_id: str
    period: Month
    plan: str  # the last billed day's (the current record's when no day is billed)
    storage_now_bytes: int | None  # None: the registry is gone
    storage_byte_days: int
    peak_storage_bytes: int
    outbound_bytes: int
    pulls: int
    pushes: int
    overage_byte_days: int
    plan_price_cents: int
    overage_charge_cents: int
    final: bool
    days: tuple[BilledDay, ...] = field(repr=False)
    # Log coverage: blob GETs redirected to S3, and presigned downloads S3 logged.
    blob_redirects: int = 0
    blob_downloads_logged: int = 0

    @property
    def total_cents(self) -> int:
        return self.plan_price_cents + self.overage_charge_cents

    @property
    def tier(self) -> Tier:
        return tier(self.plan)

    @property
    def storage_gib_months(self) -> Decimal:
        return gib_months(self.storage_byte_days, self.period.days)

    @property
    def overage_gib_months(self) -> Decimal:
        return gib_months(self.overage_byte_days, self.period.days)

    @property
    def projected_days(self) -> int:
        return sum(1 for d in self.days if d.projected)

    @property
    def projected(self) -> bool:
        return self.projected_days > 0

    def plan_periods(self) -> list[PlanPeriod]:
        periods: list[PlanPeriod] = []
        for d in self.days:
            last = periods[-1] if periods else None
            if last and last.plan == d.plan and last.last_day + timedelta(days=1) == d.day:
                periods[-1] = PlanPeriod(last.plan, last.first_day, d.day, last.days + 1)
            else:
                periods.append(PlanPeriod(d.plan, d.day, d.day, 1))
        return periods

    def row(self) -> dict[str, Any]:
        """The export's row (CSV_COLUMNS, in order); decimals as fixed-point strings."""
        allowance = self.tier
        return {
            "account_id": self.account_id,
            "registry": self.registry,
            "registry_id": self.registry_id,
            "plan": self.plan,
            "period": str(self.period),
            "storage_gib_months": str(self.storage_gib_months),
            "peak_storage_bytes": self.peak_storage_bytes,
            "outbound_bytes": self.outbound_bytes,
            "pulls": self.pulls,
            "pushes": self.pushes,
            "included_storage_bytes": allowance.included_storage_bytes,
            "included_bandwidth_bytes": allowance.included_bandwidth_bytes,
            "overage_gib_months": str(self.overage_gib_months),
            "plan_price_cents": self.plan_price_cents,
            "overage_charge_cents": self.overage_charge_cents,
            "total_cents": self.total_cents,
        }

    def to_json(self) -> dict[str, Any]:
        """The usage API's object (docs/billing.md, "Usage API")."""
        allowance = self.tier
        return {
            "registry": self.registry,
            "registry_id": self.registry_id,
            "account_id": self.account_id,
            "period": str(self.period),
            "period_start": self.period.first_day.isoformat(),
            "period_end": self.period.last_day.isoformat(),
            "days_in_period": self.period.days,
            "final": self.final,
            "projected": self.projected,
            "projected_days": self.projected_days,
            "billed_days": len(self.days),
            "plan": self.plan,
            "plans": [
                {
                    "plan": p.plan,
                    "first_day": p.first_day.isoformat(),
                    "last_day": p.last_day.isoformat(),
                    "days": p.days,
                }
                for p in self.plan_periods()
            ],
            "storage_now_bytes": self.storage_now_bytes,
            "storage_gib_months": str(self.storage_gib_months),
            "peak_storage_bytes": self.peak_storage_bytes,
            "outbound_bytes": self.outbound_bytes,
            "pulls": self.pulls,
            "pushes": self.pushes,
            "log_coverage": {
                "blob_redirects": self.blob_redirects,
                "blob_downloads_logged": self.blob_downloads_logged,
            },
            "allowances": {
                "included_repositories": allowance.included_repositories,
                "included_storage_bytes": allowance.included_storage_bytes,
                "included_bandwidth_bytes": allowance.included_bandwidth_bytes,
                "allow_storage_overage": allowance.allow_storage_overage,
                "bandwidth_hard_cap": allowance.bandwidth_hard_cap,
                "monthly_price_in_cents": allowance.monthly_price_in_cents,
                "storage_overage_price_in_cents": allowance.storage_overage_price_in_cents,
            },
            "charges": {
                "currency": "USD",
                "overage_gib_months": str(self.overage_gib_months),
                "plan_price_cents": self.plan_price_cents,
                "overage_charge_cents": self.overage_charge_cents,
                "total_cents": self.total_cents,
            },
        }


class UsageCalculator:
    """A registry's month from its snapshots and traffic counters (docs/billing.md)."""

    def __init__(
        self,
        store: MetadataStore,
        usage: UsageStore,
        log_delay: timedelta = DEFAULT_LOG_DELAY,
    ) -> None:
        self.store = store
        self.usage = usage
        self.log_delay = log_delay

    def check_month(self, month: Month, now: datetime) -> None:
        if month > Month.of(now):
            raise UnprocessableError(f"{month} has not begun yet")

    def is_final(self, month: Month, now: datetime) -> bool:
        return now >= month.final_at(self.log_delay)

    def for_registry(self, record: RegistryRecord, month: Month, now: datetime) -> Usage:
        """The usage API: the registry as the caller sees it now."""
        self.check_month(month, now)
        traffic = self.usage.get_usage_month(record.registry_id, str(month))
        return self._usage(record.registry_id, month, now, record, traffic)

    def for_usage_month(self, traffic: UsageMonth, month: Month, now: datetime) -> Usage:
        """An export row: the incarnation the counters are keyed by, live or not."""
        current = self.store.get_registry(traffic.registry_name) if traffic.registry_name else None
        return self._usage(traffic.registry_id, month, now, current, traffic)

    def _usage(
        self,
        registry_id: str,
        month: Month,
        now: datetime,
        current: RegistryRecord | None,
        traffic: UsageMonth | None,
    ) -> Usage:
        if current is not None and (current.registry_id != registry_id or current.deleting):
            current = None  # the name is gone, being deleted or names a later incarnation
        snapshots = {s.day: s for s in self.usage.list_snapshots(registry_id, str(month))}
        days = self._billed_days(registry_id, month, now, current, snapshots)
        total = month.days
        price_numerator = sum(tier(d.plan).monthly_price_in_cents for d in days)
        overage_byte_days = 0
        overage_numerator = 0  # byte-days over the included storage x cents per GiB-month
        for d in days:
            day_tier = tier(d.plan)
            if day_tier.allow_storage_overage:
                over = max(0, d.storage_bytes - day_tier.included_storage_bytes)
                overage_byte_days += over
                overage_numerator += over * day_tier.storage_overage_price_in_cents
        latest = max(snapshots.values(), key=lambda s: s.day) if snapshots else None
        name = (
            (traffic.registry_name if traffic else None)
            or (latest.registry_name if latest else None)
            or (current.name if current else "")
        )
        account = (
            (traffic.account_id if traffic else None)
            or (latest.account_id if latest else None)
            or (current.account_id if current else "")
        )
        plan = days[-1].plan if days else (current.plan if current else "")
        return Usage(
            registry=name,
            registry_id=registry_id,
            account_id=account,
            period=month,
            plan=plan,
            storage_now_bytes=current.storage_bytes if current else None,
            storage_byte_days=sum(d.storage_bytes for d in days),
            peak_storage_bytes=max((s.storage_bytes for s in snapshots.values()), default=0),
            outbound_bytes=traffic.egress_bytes if traffic else 0,
            pulls=traffic.pulls if traffic else 0,
            pushes=traffic.pushes if traffic else 0,
            overage_byte_days=overage_byte_days,
            plan_price_cents=cents(price_numerator, total),
            overage_charge_cents=cents(overage_numerator, GIB * total),
            final=self.is_final(month, now),
            days=tuple(days),
            blob_redirects=traffic.redirects if traffic else 0,
            blob_downloads_logged=traffic.downloads if traffic else 0,
        )

    def _billed_days(
        self,
        registry_id: str,
        month: Month,
        now: datetime,
        current: RegistryRecord | None,
        snapshots: dict[str, StorageSnapshot],
    ) -> list[BilledDay]:
        """The days the registry is billed for, each with its storage and plan: a day's
        last snapshot; a day without one carries the previous one forward; none before the
        first snapshot; none after the last one once the registry is gone; in the current
        month, today to the month's end projected from the current record."""
        this_month = Month.of(now)
        today = now.astimezone(UTC).date()
        project_from: date | None = None
        carry_until: date | None
        if month == this_month and current is not None:
            project_from, carry_until = today, today - timedelta(days=1)
        elif month != this_month and self._continued(registry_id, month, this_month, current):
            carry_until = month.last_day
        else:  # gone: billed up to its last snapshot
            carry_until = date.fromisoformat(max(snapshots)) if snapshots else None
        days: list[BilledDay] = []
        previous: StorageSnapshot | None = None
        if carry_until is not None and month.first_day.isoformat() not in snapshots:
            # The month's first days without a snapshot (the schedule was down over the
            # month's change) carry the previous month's last one, if the registry had one
            # then: it existed all along. Without one, it did not exist yet.
            earlier = self.usage.list_snapshots(registry_id, str(month.previous()))
            previous = max(earlier, key=lambda s: s.day, default=None)
        for offset in range(month.days):
            day = month.first_day + timedelta(days=offset)
            if current is not None and project_from is not None and day >= project_from:
                days.append(BilledDay(day, current.plan, current.storage_bytes, projected=True))
                continue
            snapshot = snapshots.get(day.isoformat())
            if snapshot is not None:
                previous = snapshot
            if previous is None or carry_until is None or day > carry_until:
                continue
            days.append(BilledDay(day, previous.plan, previous.storage_bytes))
        return days

    def _continued(
        self,
        registry_id: str,
        month: Month,
        this_month: Month,
        current: RegistryRecord | None,
    ) -> bool:
        """Whether the registry lived on past ``month`` (a past month): it has a snapshot
        in the next month, or the next month is this one and it is still live (its first
        snapshot of the month may not be taken yet)."""
        following = month.next()
        if following == this_month and current is not None:
            return True
        return bool(self.usage.list_snapshots(registry_id, str(following)))


# ------------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportResult:
    month: Month
    final: bool
    keys: dict[str, str]  # csv, jsonl, manifest -> object key
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "period": str(self.month),
            "final": self.final,
            "keys": dict(self.keys),
            "rows": self.manifest["rows"],
            "totals": dict(self.manifest["totals"]),
            "rules_version": self.manifest["rules_version"],
        }


def export_keys(month: Month) -> dict[str, str]:
    base = f"{EXPORT_PREFIX}/{month}"
    return {
        "csv": f"{base}/billing.csv",
        "jsonl": f"{base}/billing.jsonl",
        "manifest": f"{base}/manifest.json",
    }


def render_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def render_jsonl(rows: list[dict[str, Any]]) -> bytes:
    lines = (json.dumps(row, separators=(",", ":"), ensure_ascii=False) for row in rows)
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _sum_decimal(rows: list[dict[str, Any]], column: str) -> str:
    return str(sum((Decimal(r[column]) for r in rows), Decimal(0)).quantize(GIB_MONTH_PLACES))


class BillingExport:
    """Writes a month's billing files (CSV, JSON Lines, manifest) to the export bucket.
    The files hold nothing about when they were written: a re-run over the same data gives
    the same bytes, and a final export, once written, is never rewritten."""

    def __init__(self, calculator: UsageCalculator, blobs: BlobStore) -> None:
        self.calculator = calculator
        self.usage = calculator.usage
        self.blobs = blobs

    def rows(self, month: Month, now: datetime) -> list[Usage]:
        found: list[Usage] = []
        after: str | None = None
        while True:
            page = self.usage.list_usage_months(str(month), after, _PAGE)
            found.extend(self.calculator.for_usage_month(t, month, now) for t in page)
            if len(page) < _PAGE:
                break
            after = page[-1].registry_id
        return sorted(found, key=lambda u: (u.account_id, u.registry, u.registry_id))

    def stored_manifest(self, month: Month) -> dict[str, Any] | None:
        try:
            raw = self.blobs.get_object(export_keys(month)["manifest"])
        except KeyError:
            return None
        manifest: dict[str, Any] = json.loads(raw)
        return manifest

    def run(self, month: Month, now: datetime, provisional: bool = False) -> ExportResult:
        """Export ``month``. A month that is not final yet is exported only when asked for
        as provisional (ConflictError otherwise); a final export already written is
        returned as it is."""
        self.calculator.check_month(month, now)
        final = self.calculator.is_final(month, now)
        keys = export_keys(month)
        if not final and not provisional:
            final_at = month.final_at(self.calculator.log_delay)
            raise ConflictError(
                f"{month} is final from {final_at.strftime('%Y-%m-%d %H:%M')} UTC (access "
                "logs arrive late); ask for a provisional export to write it now"
            )
        stored = self.stored_manifest(month)
        if stored is not None and stored.get("final") is True:
            return ExportResult(month, True, keys, stored)
        rows = [u.row() for u in self.rows(month, now)]
        csv_bytes, jsonl_bytes = render_csv(rows), render_jsonl(rows)
        manifest = {
            "period": str(month),
            "final": final,
            "rules_version": RULES_VERSION,
            "currency": "USD",
            "rows": len(rows),
            "totals": {
                "storage_gib_months": _sum_decimal(rows, "storage_gib_months"),
                "overage_gib_months": _sum_decimal(rows, "overage_gib_months"),
                "outbound_bytes": sum(r["outbound_bytes"] for r in rows),
                "pulls": sum(r["pulls"] for r in rows),
                "pushes": sum(r["pushes"] for r in rows),
                "plan_price_cents": sum(r["plan_price_cents"] for r in rows),
                "overage_charge_cents": sum(r["overage_charge_cents"] for r in rows),
                "total_cents": sum(r["total_cents"] for r in rows),
            },
            "files": {
                "csv": {"key": keys["csv"], "sha256": hashlib.sha256(csv_bytes).hexdigest()},
                "jsonl": {
                    "key": keys["jsonl"],
                    "sha256": hashlib.sha256(jsonl_bytes).hexdigest(),
                },
            },
        }
        # The manifest last: a reader that finds it finds the files it describes.
        self.blobs.put_object(keys["csv"], csv_bytes)
        self.blobs.put_object(keys["jsonl"], jsonl_bytes)
        self.blobs.put_object(keys["manifest"], manifest_bytes(manifest))
        return ExportResult(month, final, keys, manifest)

    def run_due(self, now: datetime) -> ExportResult | None:
        """The schedule: export the previous month once it is final, if not done yet."""
        month = Month.of(now).previous()
        if not self.calculator.is_final(month, now):
            return None
        stored = self.stored_manifest(month)
        if stored is not None and stored.get("final") is True:
            return None
        return self.run(month, now)


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
