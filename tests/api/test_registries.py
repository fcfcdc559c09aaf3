"""Registries, names, plans and subscriptions through /api/v1 over real sockets."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.support.server import RunningRegistry

from .helpers import V2, Api, assert_api_error, assert_v2_error, unique

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _tiers(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["slug"]: t for t in body["options"]["subscription_tiers"]}


def test_create_get_list_registry(admin: Api) -> None:
    name = unique("reg")
    created = admin.create_registry(name, "basic")
    assert created["name"] == name
    assert created["storage_usage_bytes"] == 0
    assert created["repository_count"] == 0
    assert created["subscription"]["tier"]["slug"] == "basic"
    assert created["subscription"]["tier"]["monthly_price_in_cents"] == 500

    got = admin.get(f"/api/v1/registries/{name}", expect=200).json()["registry"]
    assert got == created
    names = [r["name"] for r in admin.get("/api/v1/registries", expect=200).json()["registries"]]
    assert name in names and "bootstrap" in names


def test_create_registry_errors(admin: Api) -> None:
    name = unique("dup")
    admin.create_registry(name)
    assert_api_error(
        admin.post("/api/v1/registries", json={"name": name, "subscription_tier_slug": "basic"}),
        409,
        "conflict",
    )
    for bad in ("Upper", "-lead", "trail-", "a" * 64, "options", "validate-name", "", "a_b"):
        answer = admin.post(
            "/api/v1/registries", json={"name": bad, "subscription_tier_slug": "basic"}
        )
        assert_api_error(answer, 422, "unprocessable_entity")
    assert_api_error(
        admin.post("/api/v1/registries", json={"name": unique("t"), "subscription_tier_slug": "x"}),
        422,
        "unprocessable_entity",
    )
    assert_api_error(
        admin.post("/api/v1/registries", json={"name": unique("t")}), 400, "bad_request"
    )
    assert_api_error(
        admin.post(
            "/api/v1/registries",
            json={"name": unique("t"), "subscription_tier_slug": "basic", "extra": 1},
        ),
        400,
        "bad_request",
    )
    assert_api_error(
        admin.post(
            "/api/v1/registries", data=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
        "bad_request",
    )
    assert_api_error(admin.post("/api/v1/registries", json=[1, 2]), 400, "bad_request")


def test_get_unknown_registry_is_404(admin: Api) -> None:
    assert_api_error(admin.get(f"/api/v1/registries/{unique('none')}"), 404, "not_found")
    assert_api_error(admin.get("/api/v1/registries/Not_Valid"), 404, "not_found")
    assert_api_error(admin.delete(f"/api/v1/registries/{unique('none')}"), 404, "not_found")


@pytest.mark.parametrize(
    ("name", "status", "error_id"),
    [
        ("Uppercase", 422, "unprocessable_entity"),
        ("-leading", 422, "unprocessable_entity"),
        ("trailing-", 422, "unprocessable_entity"),
        ("a" * 64, 422, "unprocessable_entity"),
        ("options", 422, "unprocessable_entity"),
        ("validate-name", 422, "unprocessable_entity"),
        ("", 422, "unprocessable_entity"),
        ("has.dot", 422, "unprocessable_entity"),
        ("bootstrap", 409, "conflict"),
    ],
)
def test_validate_name_refusals(admin: Api, name: str, status: int, error_id: str) -> None:
    answer = admin.post("/api/v1/registries/validate-name", json={"name": name})
    assert_api_error(answer, status, error_id)


def test_validate_name_free(admin: Api) -> None:
    for name in (unique("free"), "a" * 63, "x", "0-0"):
        answer = admin.post("/api/v1/registries/validate-name", json={"name": name}, expect=204)
        assert answer.content == b""


def test_validate_name_malformed(admin: Api) -> None:
    assert_api_error(admin.post("/api/v1/registries/validate-name", json={}), 400, "bad_request")
    assert_api_error(
        admin.post("/api/v1/registries/validate-name", json={"name": 7}),
        422,
        "unprocessable_entity",
    )


def test_delete_registry_frees_the_name_and_removes_content(
    server: RunningRegistry, admin: Api, v2: V2
) -> None:
    name = unique("gone")
    admin.create_registry(name)
    image = v2.push_image(f"{name}/app", "v1", (2048,))
    layer = image.layers[0][0]
    assert v2.request("HEAD", f"/v2/{name}/app/blobs/{layer}").status_code == 200

    admin.delete(f"/api/v1/registries/{name}", expect=204)
    # Invisible at once, everywhere.
    assert_api_error(admin.get(f"/api/v1/registries/{name}"), 404, "not_found")
    assert name not in [r["name"] for r in admin.get("/api/v1/registries").json()["registries"]]
    assert_v2_error(v2.request("GET", f"/v2/{name}/app/manifests/v1"), 404, "NAME_UNKNOWN")
    assert_v2_error(v2.request("HEAD", f"/v2/{name}/app/blobs/{layer}"), 404, "NAME_UNKNOWN")
    assert_api_error(admin.delete(f"/api/v1/registries/{name}"), 404, "not_found")

    # The local runtime purges every 5 s: the name is free within ~15 s.
    deadline = time.monotonic() + 20
    while True:
        answer = admin.post("/api/v1/registries/validate-name", json={"name": name})
        if answer.status_code == 204:
            break
        assert answer.status_code == 409, answer.text
        assert time.monotonic() < deadline, "the deleted registry's name was not freed in 20 s"
        time.sleep(0.5)

    s3 = boto3.client(
        "s3",
        endpoint_url=server.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    listed = s3.list_objects_v2(Bucket="portside-blobs", Prefix=f"registries/{name}/")
    assert listed.get("KeyCount", 0) == 0, [o["Key"] for o in listed.get("Contents", [])]

    # A new registry of the same name starts empty: the old blobs are not reachable.
    admin.create_registry(name)
    assert admin.get(f"/api/v1/registries/{name}/repositories").json()["repositories"] == []
    assert v2.request("HEAD", f"/v2/{name}/app/blobs/{layer}").status_code == 404
    assert v2.manifest_status(f"{name}/app", image.digest) == 404
    mount = v2.request("POST", f"/v2/{name}/other/blobs/uploads/", params={"mount": layer})
    assert mount.status_code == 202, "a purged blob must not be mountable"


def test_options_without_registry(admin: Api) -> None:
    tiers = _tiers(admin.get("/api/v1/registries/options", expect=200).json())
    assert set(tiers) == {"starter", "basic", "professional"}
    assert all(t["eligible"] and t["eligibility_reasons"] == [] for t in tiers.values())
    assert tiers["starter"]["included_repositories"] == 1
    assert tiers["starter"]["included_storage_bytes"] == 500 * MIB
    assert tiers["starter"]["monthly_price_in_cents"] == 0
    assert tiers["basic"]["monthly_price_in_cents"] == 500
    assert tiers["professional"]["included_repositories"] == 0


def test_options_and_downgrade_for_a_registry_with_two_repositories(admin: Api, v2: V2) -> None:
    name = unique("opts")
    admin.create_registry(name, "basic")
    first = v2.push_image(f"{name}/one", "v1")
    second = v2.push_image(f"{name}/two", "v1")
    registry = admin.get(f"/api/v1/registries/{name}").json()["registry"]
    assert registry["repository_count"] == 2
    assert registry["storage_usage_bytes"] == first.compressed_size + second.compressed_size

    tiers = _tiers(admin.get("/api/v1/registries/options", params={"registry": name}).json())
    assert tiers["starter"]["eligible"] is False
    assert tiers["starter"]["eligibility_reasons"] == ["OverRepositoryLimit"]
    assert tiers["basic"]["eligible"] and tiers["professional"]["eligible"]

    refused = admin.post(f"/api/v1/registries/{name}/subscription", json={"tier_slug": "starter"})
    assert_api_error(refused, 409, "conflict")
    assert refused.json()["eligibility_reasons"] == ["OverRepositoryLimit"]
    subscription = admin.get(f"/api/v1/registries/{name}/subscription", expect=200).json()
    assert subscription["subscription"]["tier"]["slug"] == "basic"

    upgraded = admin.post(
        f"/api/v1/registries/{name}/subscription", json={"tier_slug": "professional"}, expect=200
    ).json()["subscription"]
    assert upgraded["tier"]["slug"] == "professional"
    assert upgraded["updated_at"] >= upgraded["created_at"]
    got = admin.get(f"/api/v1/registries/{name}").json()["registry"]
    assert got["subscription"]["tier"]["slug"] == "professional"


def test_options_storage_limit(server: RunningRegistry, admin: Api) -> None:
    """A registry holding 600 MiB (its record written straight into the table: pushing that
    much would take too long) is over the starter storage limit and cannot downgrade to it."""
    from chalicelib.registry.records import RegistryRecord

    name = unique("big")
    now = datetime.now(UTC)
    server._store().put_registry(
        RegistryRecord(
            name=name,
            account_id="local",
            plan="basic",
            storage_bytes=600 * MIB,
            repository_count=1,
            created_at=now,
        )
    )
    got = admin.get(f"/api/v1/registries/{name}", expect=200).json()["registry"]
    assert got["storage_usage_bytes"] == 600 * MIB
    tiers = _tiers(admin.get("/api/v1/registries/options", params={"registry": name}).json())
    assert tiers["starter"]["eligible"] is False
    assert tiers["starter"]["eligibility_reasons"] == ["OverStorageLimit"]
    assert tiers["basic"]["eligible"] and tiers["professional"]["eligible"]
    refused = admin.post(f"/api/v1/registries/{name}/subscription", json={"tier_slug": "starter"})
    assert_api_error(refused, 409, "conflict")
    assert refused.json()["eligibility_reasons"] == ["OverStorageLimit"]


def test_options_unknown_registry(admin: Api) -> None:
    answer = admin.get("/api/v1/registries/options", params={"registry": unique("none")})
    assert_api_error(answer, 404, "not_found")


def test_subscription_errors(admin: Api) -> None:
    name = unique("sub")
    admin.create_registry(name, "starter")
    path = f"/api/v1/registries/{name}/subscription"
    assert admin.get(path).json()["subscription"]["tier"]["slug"] == "starter"
    assert_api_error(admin.post(path, json={"tier_slug": "gold"}), 422, "unprocessable_entity")
    assert_api_error(admin.post(path, json={}), 400, "bad_request")
    assert_api_error(admin.post(path, json={"tier_slug": "basic", "x": 1}), 400, "bad_request")
    none = f"/api/v1/registries/{unique('none')}/subscription"
    assert_api_error(admin.get(none), 404, "not_found")
    assert_api_error(admin.post(none, json={"tier_slug": "basic"}), 404, "not_found")
    admin.post(path, json={"tier_slug": "basic"}, expect=200)
