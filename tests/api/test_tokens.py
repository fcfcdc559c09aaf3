"""API tokens and docker credentials through /api/v1, and their effect on /v2/."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from tests.support.server import RunningRegistry

from .helpers import V2, Api, assert_api_error, assert_v2_error, basic, claims_of, unique

pytestmark = pytest.mark.integration


def _listed(admin: Api, token_id: str) -> dict[str, object]:
    for item in admin.all_pages("/api/v1/tokens", "tokens", 200):
        if item["id"] == token_id:
            return item
    raise AssertionError(f"token {token_id} not listed")


def test_create_token_returns_the_secret_once(admin: Api) -> None:
    created = admin.create_token(["pull", "push"], ["bootstrap"], 3600, name="ci")
    assert created["token"].startswith("pst_")
    assert created["name"] == "ci"
    assert created["scopes"] == ["pull", "push"]
    assert created["registries"] == ["bootstrap"]
    assert created["last_used_at"] is None
    expires = datetime.fromisoformat(created["expires_at"])
    assert 3500 < (expires - datetime.now(UTC)).total_seconds() <= 3600

    listed = _listed(admin, created["id"])
    assert "token" not in listed
    assert created["token"] not in str(admin.get("/api/v1/tokens", params={"per_page": 200}).text)
    assert listed == {k: v for k, v in created.items() if k != "token"}

    unlimited = admin.create_token(["admin"])
    assert unlimited["registries"] is None and unlimited["expires_at"] is None


@pytest.mark.parametrize(
    ("body", "status", "error_id"),
    [
        ({"name": "", "scopes": ["pull"]}, 422, "unprocessable_entity"),
        ({"name": "x" * 101, "scopes": ["pull"]}, 422, "unprocessable_entity"),
        ({"name": "x", "scopes": []}, 422, "unprocessable_entity"),
        ({"name": "x", "scopes": ["root"]}, 422, "unprocessable_entity"),
        ({"name": "x", "scopes": "pull"}, 422, "unprocessable_entity"),
        ({"name": "x", "scopes": ["pull"], "expiry_seconds": 0}, 422, "unprocessable_entity"),
        ({"name": "x", "scopes": ["pull"], "expiry_seconds": "10"}, 422, "unprocessable_entity"),
        (
            {"name": "x", "scopes": ["pull"], "expiry_seconds": 31536001},
            422,
            "unprocessable_entity",
        ),
        ({"name": "x", "scopes": ["pull"], "registries": "bootstrap"}, 422, "unprocessable_entity"),
        ({"name": "x", "scopes": ["pull"], "registries": ["no-such-reg"]}, 404, "not_found"),
        ({"name": "x"}, 400, "bad_request"),
        ({"scopes": ["pull"]}, 400, "bad_request"),
        ({"name": "x", "scopes": ["pull"], "admin": True}, 400, "bad_request"),
    ],
)
def test_create_token_errors(
    admin: Api, body: dict[str, object], status: int, error_id: str
) -> None:
    assert_api_error(admin.post("/api/v1/tokens", json=body), status, error_id)


def test_last_used_at_is_set_by_the_management_api(admin: Api) -> None:
    created = admin.create_token(["pull"])
    assert _listed(admin, created["id"])["last_used_at"] is None
    admin.with_token(created["token"]).get("/api/v1/registries", expect=200)
    used = _listed(admin, created["id"])["last_used_at"]
    assert isinstance(used, str)
    assert abs((datetime.fromisoformat(used) - datetime.now(UTC)).total_seconds()) < 60


def test_last_used_at_is_set_by_the_token_endpoint(admin: Api, v2: V2) -> None:
    created = admin.create_token(["pull"])
    v2.jwt(created["token"], "repository:bootstrap/app:pull")
    assert isinstance(_listed(admin, created["id"])["last_used_at"], str)


def test_revoke_token(server: RunningRegistry, admin: Api, v2: V2) -> None:
    created = admin.create_token(["admin"])
    secret = created["token"]
    as_token = admin.with_token(secret)
    as_token.get("/api/v1/registries", expect=200)
    assert v2.request("GET", "/v2/", headers={"Authorization": basic(secret)}).status_code == 200

    admin.delete(f"/api/v1/tokens/{created['id']}", expect=204)
    assert created["id"] not in [t["id"] for t in admin.all_pages("/api/v1/tokens", "tokens", 200)]
    assert_api_error(as_token.get("/api/v1/registries"), 401, "unauthorized")
    assert_api_error(as_token.get("/api/v1/tokens"), 401, "unauthorized")
    assert_v2_error(
        v2.request("GET", "/v2/", headers={"Authorization": basic(secret)}), 401, "UNAUTHORIZED"
    )
    assert_v2_error(
        v2.request("GET", "/v2/bootstrap/app/tags/list", headers={"Authorization": basic(secret)}),
        401,
        "UNAUTHORIZED",
    )
    assert_v2_error(
        v2.request(
            "GET",
            "/v2/token",
            params={"scope": "repository:bootstrap/app:pull"},
            headers={"Authorization": basic(secret)},
        ),
        401,
        "UNAUTHORIZED",
    )
    assert_v2_error(
        v2.http.post(
            f"{server.url}/v2/token",
            data={"grant_type": "password", "username": secret, "password": secret},
            timeout=30,
        ),
        401,
        "UNAUTHORIZED",
    )
    assert_api_error(admin.delete(f"/api/v1/tokens/{created['id']}"), 404, "not_found")
    assert_api_error(admin.delete("/api/v1/tokens/no-such-token"), 404, "not_found")


def _decoded(config: dict[str, object], host: str) -> str:
    auths = config["auths"]
    assert isinstance(auths, dict) and list(auths) == [host], auths
    raw = base64.b64decode(auths[host]["auth"]).decode()
    username, _, password = raw.partition(":")
    assert username == password and username.startswith("pst_")
    return username


def test_docker_credentials_read_only(server: RunningRegistry, admin: Api, v2: V2) -> None:
    name = unique("creds")
    admin.create_registry(name)
    image = v2.push_image(f"{name}/app", "v1")
    config = admin.get(f"/api/v1/registries/{name}/docker-credentials", expect=200).json()
    secret = _decoded(config, server.host)
    reader = V2.basic(server.url, secret)
    assert reader.manifest_status(f"{name}/app", "v1") == 200
    assert reader.request("HEAD", f"/v2/{name}/app/blobs/{image.layers[0][0]}").status_code == 200
    assert_v2_error(reader.request("POST", f"/v2/{name}/app/blobs/uploads/"), 403, "DENIED")
    assert_v2_error(
        reader.request("DELETE", f"/v2/{name}/app/manifests/{image.digest}"), 403, "DENIED"
    )
    # Scoped to this registry only.
    assert_v2_error(reader.request("GET", "/v2/bootstrap/app/tags/list"), 404, "NAME_UNKNOWN")
    jwt = reader.jwt(secret, f"repository:{name}/app:pull,push")
    assert claims_of(jwt)["access"] == [
        {"type": "repository", "name": f"{name}/app", "actions": ["pull"]}
    ]
    minted = [
        t for t in admin.all_pages("/api/v1/tokens", "tokens", 200) if t["registries"] == [name]
    ]
    assert [(t["scopes"], t["expires_at"]) for t in minted] == [(["pull"], None)]


def test_docker_credentials_read_write(server: RunningRegistry, admin: Api) -> None:
    name = unique("creds")
    admin.create_registry(name)
    config = admin.get(
        f"/api/v1/registries/{name}/docker-credentials",
        params={"read_write": "true"},
        expect=200,
    ).json()
    writer = V2.basic(server.url, _decoded(config, server.host))
    image = writer.push_image(f"{name}/app", "v1")
    assert writer.manifest_status(f"{name}/app", image.digest) == 200


def test_docker_credentials_expire(server: RunningRegistry, admin: Api) -> None:
    name = unique("creds")
    admin.create_registry(name)
    config = admin.get(
        f"/api/v1/registries/{name}/docker-credentials",
        params={"read_write": "true", "expiry_seconds": "2"},
        expect=200,
    ).json()
    secret = _decoded(config, server.host)
    client = V2.basic(server.url, secret)
    assert client.request("GET", "/v2/").status_code == 200
    client.push_image(f"{name}/app", "v1")
    time.sleep(2.5)
    assert_v2_error(client.request("GET", "/v2/"), 401, "UNAUTHORIZED")
    assert_v2_error(client.request("GET", f"/v2/{name}/app/tags/list"), 401, "UNAUTHORIZED")


def test_docker_credentials_errors(admin: Api) -> None:
    path = "/api/v1/registries/bootstrap/docker-credentials"
    assert_api_error(admin.get(path, params={"read_write": "maybe"}), 400, "bad_request")
    none = f"/api/v1/registries/{unique('none')}/docker-credentials"
    assert_api_error(admin.get(none), 404, "not_found")


@pytest.mark.parametrize("value", ["0", "31536001", "soon"])
def test_docker_credentials_bad_expiry_is_documented(admin: Api, value: str) -> None:
    answer = admin.get(
        "/api/v1/registries/bootstrap/docker-credentials", params={"expiry_seconds": value}
    )
    # Like an out-of-range expiry_seconds at POST /tokens: an unprocessable value (422).
    assert answer.status_code == 422
    assert "expiry_seconds" in answer.json()["message"]
