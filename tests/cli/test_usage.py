"""``portside registry usage`` and ``registry usage export`` against the real server.

Snapshots and traffic are written into the server's DynamoDB (moto) through the DynamoDB
usage store, as the snapshot schedule and the metering would (docs/billing.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.registry.billing import Month
from chalicelib.registry.records import StorageSnapshot, TrafficCounts
from tests.api.test_usage import stores
from tests.support.server import RunningRegistry

from .conftest import Cli, unique_name

GIB = 1024**3
PAST = Month(2025, 5)  # final by the server's clock; the CLI tests' own month


def seed(server: RunningRegistry, name: str, storage: int, plan: str) -> str:
    """Snapshots on every day of PAST and the next month's first, and some traffic."""
    store, usage = stores(server)
    record = store.get_registry(name)
    assert record is not None
    rid = record.registry_id
    day = PAST.first_day
    while day <= PAST.next().first_day:
        usage.put_snapshot(StorageSnapshot(rid, day.isoformat(), name, "local", plan, storage, 1))
        day += timedelta(days=1)
    usage.add_traffic(rid, str(PAST), f"log-{rid}", TrafficCounts(2 * GIB, 7, 1))
    return rid


def test_usage_shows_storage_traffic_allowances_and_the_final_charge(
    cli: Cli, server: RunningRegistry
) -> None:
    name = unique_name("use")
    cli("registry", "create", name, "--tier", "professional").ok()
    seed(server, name, 150 * GIB, "professional")
    table = cli("registry", "usage", name, "--month", str(PAST)).ok().stdout
    assert f"{PAST}: final" in table
    assert "150.000000 GiB-months" in table
    assert "Peak storage" in table and "150 GiB" in table
    assert "2 GiB of 100 GiB included" in table  # outbound against the allowance
    assert "Pulls" in table and "7" in table
    assert "$20.00" in table and "$1.00" in table  # plan price; 50 GiB-months over x 2 cents
    assert "Total (final)" in table and "$21.00" in table
    shown = cli("registry", "usage", name, "--month", str(PAST), "--json").ok().json()
    assert shown["charges"]["total_cents"] == 2100 and shown["final"] is True
    assert (
        cli("-o", "json", "registry", "usage", "show", name, "--month", str(PAST))
        .ok()
        .json()["storage_gib_months"]
        == "150.000000"
    )


def test_usage_of_the_current_month_is_projected(cli: Cli) -> None:
    name = unique_name("now")
    cli("registry", "create", name, "--tier", "basic").ok()
    table = cli("registry", "usage", name).ok().stdout
    assert "projected" in table and "Total (projected)" in table
    assert "0 B of 5 GiB included" in table  # storage now against the basic plan
    shown = cli("registry", "usage", name, "--json").ok().json()
    assert shown["period"] == str(Month.of(datetime.now(UTC))) and shown["projected"] is True


def test_export_prints_the_keys_and_totals_and_needs_the_operator(
    cli: Cli, server: RunningRegistry
) -> None:
    name = unique_name("exp")
    cli("registry", "create", name, "--tier", "professional").ok()
    seed(server, name, 150 * GIB, "professional")
    out = cli("registry", "usage", "export", "--month", str(PAST)).ok().stdout
    assert f"exports/billing/{PAST}/billing.csv" in out
    assert f"exports/billing/{PAST}/billing.jsonl" in out
    assert f"exports/billing/{PAST}/manifest.json" in out
    assert "(final)" in out and "Total" in out
    result = cli("registry", "usage", "export", "--month", str(PAST), "--json").ok().json()
    assert result["final"] is True and result["totals"]["total_cents"] >= 2100
    # This month is not final: refused unless provisional.
    month = str(Month.of(datetime.now(UTC)))
    line = cli("registry", "usage", "export", "--month", month).failed()
    assert "provisional" in line
    out = cli("registry", "usage", "export", "--month", month, "--provisional").ok().stdout
    assert "(provisional)" in out
    # A tenant admin is no operator.
    tenant = server.create_token(["pull", "push", "admin"])
    line = cli.with_env(PORTSIDE_TOKEN=tenant)(
        "registry", "usage", "export", "--month", str(PAST)
    ).failed()
    assert "operator" in line


def test_a_bad_month_is_refused_before_any_request(cli: Cli) -> None:
    outcome = cli("registry", "usage", "some-registry", "--month", "2025-13")
    assert outcome.exit_code == 2 and "YYYY-MM" in outcome.stderr
    outcome = cli("registry", "usage", "export", "--month", "May")
    assert outcome.exit_code == 2 and "YYYY-MM" in outcome.stderr
