"""/api/v1/accounts against the real local runtime, every answer checked against the
OpenAPI document: the bootstrap token (operator and admin of ``local``) onboards a tenant,
whose admin token then works on its own; a tenant admin cannot touch accounts; suspension
refuses the tenant's tokens on /v2/ and /api/v1 and its writes, resume undoes it; deletion
revokes the tokens and frees the registry names after the purge."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.server import RunningRegistry

from .helpers import V2, Api, assert_api_error, assert_v2_error, bearer, unique

pytestmark = pytest.mark.integration


def create_account(admin: Api, name: str | None = None, **fields: Any) -> dict[str, Any]:
    answer = admin.post(
        "/api/v1/accounts", json={"name": name or unique("Tenant"), **fields}, expect=201
    ).json()
    assert answer["token"]["token"].startswith("pst_")
    created: dict[str, Any] = answer
    return created


def test_a_new_account_gets_an_admin_token_that_works_on_its_own(
    server: RunningRegistry, admin: Api
) -> None:
    created = create_account(admin, "Acme", contact="ops@acme.test", metadata={"crm": "7"})
    account = created["account"]
    assert account["status"] == "active" and account["registry_count"] == 0
    assert created["token"]["scopes"] == ["admin", "pull", "push"]
    tenant = Api(server.url, created["token"]["token"])
    registry = unique("acme")
    tenant.create_registry(registry)
    image = V2.basic(server.url, created["token"]["token"]).push_image(f"{registry}/app", "v1")
    # The bootstrap account does not see the tenant's registry, and the tenant not its.
    assert registry not in [r["name"] for r in admin.get("/api/v1/registries").json()["registries"]]
    assert tenant.get("/api/v1/registries", expect=200).json()["registries"][0]["name"] == registry

    shown = admin.get(f"/api/v1/accounts/{account['id']}", expect=200).json()["account"]
    assert shown["registry_count"] == 1
    assert shown["storage_usage_bytes"] == image.compressed_size
    assert shown["contact"] == "ops@acme.test" and shown["metadata"] == {"crm": "7"}
    listed = admin.all_pages("/api/v1/accounts", "accounts", per_page=2)
    assert account["id"] in [a["id"] for a in listed]
    assert "local" in [a["id"] for a in listed]
    trail = admin.get(f"/api/v1/accounts/{account['id']}/audit", expect=200).json()["audit"]
    assert [e["action"] for e in trail] == ["create"]


def test_a_tenant_admin_gets_403_on_every_account_route(
    server: RunningRegistry, admin: Api
) -> None:
    target = create_account(admin)
    other_tenant = create_account(admin)["token"]["token"]
    local_admin = admin.create_token(["admin"])["token"]
    account_id = target["account"]["id"]
    for token in (other_tenant, local_admin, target["token"]["token"]):
        api = admin.with_token(token)
        for method, path, body in (
            ("POST", "/api/v1/accounts", {"name": "mine"}),
            ("GET", "/api/v1/accounts", None),
            ("GET", f"/api/v1/accounts/{account_id}", None),
            ("POST", f"/api/v1/accounts/{account_id}/suspend", None),
            ("POST", f"/api/v1/accounts/{account_id}/resume", None),
            ("DELETE", f"/api/v1/accounts/{account_id}", None),
            ("GET", f"/api/v1/accounts/{account_id}/audit", None),
        ):
            answer = api.request(method, path, json=body)
            assert_api_error(answer, 403, "forbidden")
    assert admin.get(f"/api/v1/accounts/{account_id}", expect=200).json()["account"]["status"] == (
        "active"
    )


def test_a_suspended_account_is_refused_with_the_reason_until_resumed(
    server: RunningRegistry, admin: Api
) -> None:
    created = create_account(admin)
    account_id, secret = created["account"]["id"], created["token"]["token"]
    tenant = Api(server.url, secret)
    registry = unique("susp")
    tenant.create_registry(registry)
    v2 = V2.basic(server.url, secret)
    v2.push_image(f"{registry}/app", "v1")
    jwt = v2.jwt(secret, f"repository:{registry}/app:pull,push")

    suspended = admin.post(f"/api/v1/accounts/{account_id}/suspend", expect=200).json()
    assert suspended["account"]["status"] == "suspended"
    assert suspended["account"]["suspended_at"] is not None

    answer = tenant.get("/api/v1/registries")
    assert_api_error(answer, 403, "forbidden")
    assert "suspended" in answer.json()["message"]
    pull = v2.request("GET", f"/v2/{registry}/app/manifests/v1")
    assert_v2_error(pull, 403, "DENIED")
    assert "suspended" in pull.json()["errors"][0]["message"]
    token = v2.request("GET", "/v2/token", params={"scope": f"repository:{registry}/app:pull"})
    assert_v2_error(token, 403, "DENIED")
    # A JWT issued before the suspension: reads until it expires, but no writes.
    with_jwt = V2(server.url, bearer(jwt))
    assert with_jwt.manifest_status(f"{registry}/app", "v1") == 200
    started = with_jwt.request("POST", f"/v2/{registry}/app/blobs/uploads/")
    assert_v2_error(started, 403, "DENIED")

    admin.post(f"/api/v1/accounts/{account_id}/resume", expect=200)
    tenant.get("/api/v1/registries", expect=200)
    v2.push_image(f"{registry}/app", "v2")
    trail = admin.get(f"/api/v1/accounts/{account_id}/audit", expect=200).json()["audit"]
    assert [e["action"] for e in trail] == ["create", "suspend", "resume"]


def test_deleting_an_account_revokes_its_tokens_and_frees_its_names_after_the_purge(
    server: RunningRegistry, admin: Api
) -> None:
    created = create_account(admin)
    account_id, secret = created["account"]["id"], created["token"]["token"]
    tenant = Api(server.url, secret)
    registry = unique("gone")
    tenant.create_registry(registry)
    V2.basic(server.url, secret).push_image(f"{registry}/app", "v1")

    admin.delete(f"/api/v1/accounts/{account_id}", expect=204)
    assert_api_error(tenant.get("/api/v1/registries"), 401, "unauthorized")
    assert_api_error(admin.get(f"/api/v1/accounts/{account_id}"), 404, "not_found")
    trail = admin.get(f"/api/v1/accounts/{account_id}/audit", expect=200).json()["audit"]
    assert trail[-1]["action"] == "delete"
    assert trail[-1]["detail"] == {"tokens_revoked": "1", "registries_deleted": "1"}
    # The local runtime purges every few seconds; the name is taken until then.
    deadline = time.monotonic() + 60
    while True:
        answer = admin.post("/api/v1/registries/validate-name", json={"name": registry})
        if answer.status_code == 204:
            break
        assert answer.status_code == 409
        assert time.monotonic() < deadline, "the deleted account's registry was never purged"
        time.sleep(0.5)


def test_bad_account_requests_are_refused_as_documented(admin: Api) -> None:
    for body in ({"name": ""}, {"name": "x", "metadata": {"n": 1}}, {"name": 7}):
        assert_api_error(admin.post("/api/v1/accounts", json=body), 422, "unprocessable_entity")
    assert_api_error(admin.post("/api/v1/accounts", json={"nom": "x"}), 400, "bad_request")
    assert_api_error(admin.get("/api/v1/accounts/" + "x" * 3000), 404, "not_found")
    assert_api_error(admin.post("/api/v1/accounts/nope/suspend"), 404, "not_found")
    # The bootstrap token's own account: it would lock itself out.
    assert_api_error(admin.post("/api/v1/accounts/local/suspend"), 409, "conflict")
    assert_api_error(admin.delete("/api/v1/accounts/local"), 409, "conflict")
