"""The operator and the tenants.

* An operator token (the ``operator`` scope only, as infra/bootstrap_admin.py creates) gets
  401 or 403 on every /v2/ route of every tenant, the token endpoint included, and changes
  nothing: operating the service is not reading customers' images.
* No tenant token, whatever its scopes, can call an account route.
* A suspended account's Basic credentials and new JWTs are refused on /v2/ and /api/v1 with
  a message saying so, and its pushes are refused even with a JWT issued before; after
  resume it works again.
* A deleted account's registry names are free only after the purge, and nothing issued to
  it (API token, JWT, upload Location) works on a registry re-created with the same name.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from chalicelib.registry.accounts import OPERATOR_ACCOUNT
from tests.api.helpers import (
    OCI_MANIFEST,
    V2,
    Api,
    assert_api_error,
    basic,
    bearer,
    sha256_digest,
    unique,
)
from tests.support.server import RunningRegistry

from .conftest import World

pytestmark = pytest.mark.integration

REFUSED = (401, 403)


@pytest.fixture(scope="module")
def operator_token(sec_server: RunningRegistry) -> str:
    return sec_server.create_token(["operator"], None, account=OPERATOR_ACCOUNT)


def v2_requests(world: World, reg: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every /v2/ route, aimed at registry ``reg``'s ``app`` repository."""
    repo = f"{world.names[reg]}/app"
    image = world.images.get(reg, world.images["A"])
    digest = image.config_digest
    upload = str(uuid.uuid4())
    scope = f"repository:{repo}:pull,push,delete"
    form = {"grant_type": "password", "username": "x", "scope": scope}
    return [
        ("GET", "/v2/", {}),
        ("HEAD", "/v2/", {}),
        ("GET", "/v2/_catalog", {}),
        ("GET", "/v2/token", {"params": {"service": "portside", "scope": scope}}),
        ("POST", "/v2/token", {"data": form}),
        ("GET", f"/v2/{repo}/tags/list", {}),
        ("GET", f"/v2/{repo}/referrers/{image.digest}", {}),
        ("GET", f"/v2/{repo}/manifests/v1", {"headers": {"Accept": OCI_MANIFEST}}),
        ("HEAD", f"/v2/{repo}/manifests/v1", {"headers": {"Accept": OCI_MANIFEST}}),
        (
            "PUT",
            f"/v2/{repo}/manifests/operator",
            {"data": image.manifest, "headers": {"Content-Type": OCI_MANIFEST}},
        ),
        ("DELETE", f"/v2/{repo}/manifests/{image.digest}", {}),
        ("POST", f"/v2/{repo}/blobs/uploads/", {}),
        ("POST", f"/v2/{repo}/blobs/uploads/", {"params": {"mount": digest, "from": repo}}),
        ("GET", f"/v2/{repo}/blobs/uploads/{upload}", {}),
        ("PATCH", f"/v2/{repo}/blobs/uploads/{upload}", {"data": b"x"}),
        ("PUT", f"/v2/{repo}/blobs/uploads/{upload}", {"params": {"digest": digest}}),
        ("DELETE", f"/v2/{repo}/blobs/uploads/{upload}", {}),
        ("GET", f"/v2/{repo}/blobs/{digest}", {}),
        ("HEAD", f"/v2/{repo}/blobs/{digest}", {}),
        ("DELETE", f"/v2/{repo}/blobs/{digest}", {}),
    ]


def test_an_operator_token_gets_401_or_403_on_every_v2_route_of_every_tenant(
    world: World, operator_token: str
) -> None:
    operator = V2.basic(world.url, operator_token)
    wrong: list[str] = []
    for reg in ("A", "B", "C", "X"):
        for method, path, kwargs in v2_requests(world, reg):
            if path == "/v2/token" and method == "POST":
                kwargs = {"data": {**kwargs["data"], "password": operator_token}}
            answer = operator.request(method, path, **kwargs)
            if answer.status_code not in REFUSED:
                wrong.append(f"{reg}: {method} {path} -> {answer.status_code}")
    assert not wrong, "\n".join(wrong)
    # Nothing changed: every tenant's image is where its owner left it.
    for reg in ("A", "B", "C"):
        image = world.images[reg]
        owner = world.owner_v2(reg)
        assert owner.manifest_status(image.repo, "v1") == 200
        assert owner.manifest_status(image.repo, "operator") == 404


def test_the_operator_token_manages_accounts_but_sees_no_tenant_registry(
    world: World, operator_token: str
) -> None:
    operator = Api(world.url, operator_token)
    listed = operator.get("/api/v1/accounts", expect=200).json()["accounts"]
    assert "local" in [a["id"] for a in listed]
    assert operator.get("/api/v1/registries", expect=200).json()["registries"] == []
    for reg in ("A", "C"):
        answer = operator.get(f"/api/v1/registries/{world.names[reg]}")
        assert_api_error(answer, 404, "not_found")


@pytest.mark.parametrize("token", ["pull_a", "push_a", "admin_a", "admin1_tenant", "admin2"])
def test_a_tenant_token_cannot_call_any_account_route(world: World, token: str) -> None:
    if token == "admin1_tenant":
        # Account 1's admin without the operator scope its bootstrap token also holds.
        secret = Api(world.url, world.tokens["admin1"].secret).create_token(["admin"])["token"]
    else:
        secret = world.tokens[token].secret
    api = Api(world.url, secret)
    target = "local"
    for method, path, body in (
        ("POST", "/api/v1/accounts", {"name": "mine"}),
        ("GET", "/api/v1/accounts", None),
        ("GET", f"/api/v1/accounts/{target}", None),
        ("POST", f"/api/v1/accounts/{target}/suspend", None),
        ("POST", f"/api/v1/accounts/{target}/resume", None),
        ("DELETE", f"/api/v1/accounts/{target}", None),
        ("GET", f"/api/v1/accounts/{target}/audit", None),
    ):
        assert_api_error(api.request(method, path, json=body), 403, "forbidden")


def _new_tenant(world: World, operator_token: str) -> tuple[str, str]:
    created = Api(world.url, operator_token).post(
        "/api/v1/accounts", json={"name": unique("tenant")}, expect=201
    )
    body = created.json()
    return body["account"]["id"], body["token"]["token"]


def _refused_as_suspended(answer: requests.Response) -> None:
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
    body = answer.json()
    message = body["errors"][0]["message"] if "errors" in body else body["message"]
    assert "suspended" in message, body


def test_a_suspended_account_is_refused_everywhere_until_resumed(
    world: World, operator_token: str
) -> None:
    operator = Api(world.url, operator_token)
    account_id, secret = _new_tenant(world, operator_token)
    registry = unique("sec-susp")
    Api(world.url, secret).create_registry(registry)
    v2 = V2.basic(world.url, secret)
    image = v2.push_image(f"{registry}/app", "v1")
    old_jwt = v2.jwt(secret, f"repository:{registry}/app:pull,push,delete")

    operator.post(f"/api/v1/accounts/{account_id}/suspend", expect=200)
    repo = f"{registry}/app"
    _refused_as_suspended(v2.request("GET", f"/v2/{repo}/manifests/v1"))
    _refused_as_suspended(v2.request("GET", "/v2/"))
    _refused_as_suspended(v2.request("GET", "/v2/_catalog"))
    _refused_as_suspended(
        v2.request("GET", "/v2/token", params={"scope": f"repository:{repo}:pull"})
    )
    _refused_as_suspended(
        V2(world.url, None).request(
            "POST", "/v2/token", data={"grant_type": "password", "password": secret}
        )
    )
    _refused_as_suspended(Api(world.url, secret, check=False).get("/api/v1/registries"))
    # The JWT issued before: pushes and deletes are refused at once.
    with_jwt = V2(world.url, bearer(old_jwt))
    _refused_as_suspended(with_jwt.request("POST", f"/v2/{repo}/blobs/uploads/"))
    _refused_as_suspended(
        with_jwt.request(
            "PUT",
            f"/v2/{repo}/manifests/v2",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
    )
    assert with_jwt.manifest_status(repo, "v2") == 404

    operator.post(f"/api/v1/accounts/{account_id}/resume", expect=200)
    assert v2.manifest_status(repo, "v1") == 200
    v2.push_image(repo, "v2")
    assert v2.jwt(secret, f"repository:{repo}:pull")


def test_nothing_issued_to_a_deleted_account_works_on_a_re_created_registry(
    world: World, operator_token: str
) -> None:
    operator = Api(world.url, operator_token)
    account_id, secret = _new_tenant(world, operator_token)
    name = unique("sec-gone")
    repo = f"{name}/app"
    Api(world.url, secret).create_registry(name)
    old_v2 = V2.basic(world.url, secret)
    old_v2.push_image(repo, "v1")
    old_jwt = old_v2.jwt(secret, f"repository:{repo}:pull,push,delete")
    started = old_v2.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202
    location = urljoin(started.url, started.headers["Location"])

    operator.delete(f"/api/v1/accounts/{account_id}", expect=204)
    successor_id, successor = _new_tenant(world, operator_token)
    successor_api = Api(world.url, successor)
    # Taken until the purge has removed the old registry's content.
    deadline = time.monotonic() + 60
    while True:
        body = {"name": name, "subscription_tier_slug": "professional"}
        answer = successor_api.post("/api/v1/registries", json=body)
        if answer.status_code == 201:
            break
        assert answer.status_code == 409, answer.text
        assert time.monotonic() < deadline, "the deleted account's registry was never purged"
        time.sleep(0.5)
    new_image = V2.basic(world.url, successor).push_image(repo, "v1")

    old_basic = V2(world.url, basic(secret))
    assert old_basic.request("GET", f"/v2/{repo}/manifests/v1").status_code == 401
    with_jwt = V2(world.url, bearer(old_jwt))
    for method, path, kwargs in (
        ("GET", f"/v2/{repo}/manifests/v1", {}),
        ("GET", f"/v2/{repo}/blobs/{new_image.config_digest}", {}),
        ("DELETE", f"/v2/{repo}/manifests/{new_image.digest}", {}),
        ("POST", f"/v2/{repo}/blobs/uploads/", {}),
    ):
        answer = with_jwt.request(method, path, **kwargs)
        assert answer.status_code in (401, 403, 404), (method, path, answer.status_code)
    data = os.urandom(64)
    finished = old_v2.request(
        "PUT",
        location,
        params={"digest": sha256_digest(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream", "Authorization": ""},
    )
    assert finished.status_code in (401, 403, 404), finished.text
    successor_v2 = V2.basic(world.url, successor)
    assert successor_v2.manifest_status(repo, "v1") == 200
    head = successor_v2.request("HEAD", f"/v2/{repo}/blobs/{sha256_digest(data)}")
    assert head.status_code == 404
    operator.delete(f"/api/v1/accounts/{successor_id}", expect=204)
