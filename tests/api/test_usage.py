"""Usage and billing exports on the real local runtime (docs/billing.md):
``GET /api/v1/registries/{name}/usage`` and ``POST /api/v1/billing/exports``.

Snapshots and traffic counters are written straight into the server's DynamoDB (moto)
through the DynamoDB usage store, as the schedules and the metering would; every answer is
checked against openapi.yaml. Months before 2026 are final by the server's clock; each test
uses a month of its own."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.dynamo_models import bind_table
from chalicelib.adapters.dynamo_usage import DynamoUsageStore
from chalicelib.registry.billing import Month, cents
from chalicelib.registry.plans import GIB
from chalicelib.registry.records import StorageSnapshot, TrafficCounts
from tests.support.server import RunningRegistry

from .helpers import Api, assert_api_error, unique

pytestmark = pytest.mark.integration


def stores(server: RunningRegistry) -> tuple[DynamoMetadataStore, DynamoUsageStore]:
    """The server's stores, from this process (as RunningRegistry's helpers reach them)."""
    os.environ["AWS_ENDPOINT_URL"] = server.aws_endpoint
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    bind_table("portside", "us-east-1")
    return DynamoMetadataStore(), DynamoUsageStore()


def usage_store(server: RunningRegistry) -> DynamoUsageStore:
    return stores(server)[1]


def registry_id(server: RunningRegistry, name: str) -> str:
    record = stores(server)[0].get_registry(name)
    assert record is not None
    return record.registry_id


def seed_month(
    server: RunningRegistry, name: str, account: str, month: Month, storage: int, plan: str
) -> str:
    """A snapshot on every day of ``month`` and on the next month's first (it lived on)."""
    rid = registry_id(server, name)
    store = usage_store(server)
    day = month.first_day
    while day <= month.next().first_day:
        store.put_snapshot(StorageSnapshot(rid, day.isoformat(), name, account, plan, storage, 1))
        day += timedelta(days=1)
    return rid


def s3_object(server: RunningRegistry, key: str) -> bytes:
    client = boto3.client(
        "s3",
        endpoint_url=server.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    body: bytes = client.get_object(Bucket="portside-blobs", Key=key)["Body"].read()
    return body


def tenant(admin: Api) -> tuple[Api, str]:
    """A new account's admin token (no operator scope) and the account's id."""
    answer = admin.post("/api/v1/accounts", json={"name": unique("Tenant")}, expect=201).json()
    return admin.with_token(answer["token"]["token"]), answer["account"]["id"]


def test_the_current_month_is_projected_from_the_current_record(admin: Api) -> None:
    name = unique("use")
    admin.create_registry(name, "professional")
    usage = admin.get(f"/api/v1/registries/{name}/usage", expect=200).json()["usage"]
    now = datetime.now(UTC)
    month = Month.of(now)
    assert usage["period"] == str(month) and usage["days_in_period"] == month.days
    assert usage["projected"] is True and usage["final"] is False
    assert usage["storage_now_bytes"] == 0 and usage["plan"] == "professional"
    assert usage["allowances"]["included_storage_bytes"] == 100 * GIB
    # No snapshot yet: today to the month's end, projected on the professional plan.
    days = usage["projected_days"]
    assert usage["billed_days"] >= days == month.days - now.day + 1
    if usage["billed_days"] == days:
        assert usage["charges"]["plan_price_cents"] == cents(2000 * days, month.days)
    assert usage["charges"]["overage_charge_cents"] == 0


def test_a_past_month_is_priced_from_snapshots_and_the_export_adds_up_to_it(
    server: RunningRegistry, admin: Api
) -> None:
    month = Month(2025, 3)
    name = unique("bill")
    admin.create_registry(name, "professional")
    rid = seed_month(server, name, "local", month, 150 * GIB, "professional")
    store = usage_store(server)
    counts = TrafficCounts(3 * GIB, 12, 2, downloads=40, redirects=41)
    store.add_traffic(rid, str(month), unique("log"), counts)
    usage = admin.get(
        f"/api/v1/registries/{name}/usage", params={"month": str(month)}, expect=200
    ).json()["usage"]
    assert usage["final"] is True and usage["projected"] is False
    assert usage["storage_gib_months"] == "150.000000"
    assert usage["peak_storage_bytes"] == 150 * GIB
    assert (usage["outbound_bytes"], usage["pulls"], usage["pushes"]) == (3 * GIB, 12, 2)
    assert usage["log_coverage"] == {"blob_redirects": 41, "blob_downloads_logged": 40}
    charges = usage["charges"]
    assert charges["overage_gib_months"] == "50.000000"
    assert (charges["plan_price_cents"], charges["overage_charge_cents"]) == (2000, 100)
    assert charges["total_cents"] == 2100

    export = admin.post("/api/v1/billing/exports", json={"month": str(month)}, expect=200).json()[
        "export"
    ]
    assert export["final"] is True and export["period"] == "2025-03"
    assert export["keys"]["csv"] == "exports/billing/2025-03/billing.csv"
    csv_bytes = s3_object(server, export["keys"]["csv"])
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode())))
    assert len(rows) == export["rows"]
    (row,) = [r for r in rows if r["registry_id"] == rid]
    assert int(row["total_cents"]) == charges["total_cents"]
    assert int(row["overage_charge_cents"]) == charges["overage_charge_cents"]
    assert row["storage_gib_months"] == usage["storage_gib_months"]
    assert export["totals"]["total_cents"] == sum(int(r["total_cents"]) for r in rows)
    # Asking again answers the same final export; the files are unchanged.
    again = admin.post("/api/v1/billing/exports", json={"month": str(month)}, expect=200)
    assert again.json()["export"] == export
    assert s3_object(server, export["keys"]["csv"]) == csv_bytes


def test_a_month_not_final_exports_only_as_provisional(admin: Api) -> None:
    month = str(Month.of(datetime.now(UTC)))
    refused = admin.post("/api/v1/billing/exports", json={"month": month})
    assert_api_error(refused, 409, "conflict")
    assert "provisional" in refused.json()["message"]
    answer = admin.post(
        "/api/v1/billing/exports", json={"month": month, "provisional": True}, expect=200
    ).json()["export"]
    assert answer["final"] is False and answer["keys"]["manifest"].endswith("/manifest.json")


def test_exports_need_the_operator_scope(admin: Api) -> None:
    tenant_api, _ = tenant(admin)
    refused = tenant_api.post("/api/v1/billing/exports", json={"month": "2025-01"})
    assert_api_error(refused, 403, "forbidden")
    assert "operator" in refused.json()["message"]


def test_a_tenant_sees_the_usage_of_its_own_registries_only(admin: Api) -> None:
    tenant_api, _ = tenant(admin)
    own = unique("mine")
    tenant_api.create_registry(own, "basic")
    assert (
        tenant_api.get(f"/api/v1/registries/{own}/usage", expect=200).json()["usage"]["plan"]
        == "basic"
    )
    foreign = unique("theirs")
    admin.create_registry(foreign, "basic")
    assert_api_error(tenant_api.get(f"/api/v1/registries/{foreign}/usage"), 404, "not_found")
    # A pull-only token limited to the registry reads its usage too.
    pull = tenant_api.create_token(["pull"], registries=[own])["token"]
    assert tenant_api.with_token(pull).get(f"/api/v1/registries/{own}/usage").status_code == 200


@pytest.mark.parametrize("month", ["2025-13", "25-01", "abc", "2025-1"])
def test_a_bad_month_is_unprocessable(admin: Api, month: str) -> None:
    name = unique("bad")
    admin.create_registry(name, "starter")
    answer = admin.get(f"/api/v1/registries/{name}/usage", params={"month": month})
    assert_api_error(answer, 422, "unprocessable_entity")
    exported = admin.post("/api/v1/billing/exports", json={"month": month})
    assert_api_error(exported, 422, "unprocessable_entity")


def test_a_month_not_begun_is_unprocessable(admin: Api) -> None:
    name = unique("future")
    admin.create_registry(name, "starter")
    future = date.today().replace(day=1) + timedelta(days=40)
    answer = admin.get(
        f"/api/v1/registries/{name}/usage", params={"month": future.strftime("%Y-%m")}
    )
    assert_api_error(answer, 422, "unprocessable_entity")
