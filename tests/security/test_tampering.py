"""Expired, revoked, malformed, unknown and tampered credentials are refused with 401.

The security server's signing secret is known (``conftest.SIGNING_KEY``), so JWTs can be
forged with the registry's real key the way ``chalicelib.registry.auth.derive_key`` derives
it, and each claim check is proven on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from tests.api.helpers import V2, Api, basic, bearer, claims_of, error_code
from tests.support.server import RunningRegistry, start_registry

from .conftest import SIGNING_KEY, World

pytestmark = pytest.mark.integration


def derived(purpose: str, secret: str = SIGNING_KEY) -> bytes:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


REGISTRY_KEY = derived("registry-jwt")


def registry_ids(world: World) -> dict[str, str]:
    """The ``rids`` claim a real JWT for registry A carries: the id of A's incarnation."""
    real = world.owner_v2("A").jwt(
        world.owner_token("A"), f"repository:{world.names['A']}/app:pull"
    )
    rids: dict[str, str] = claims_of(real)["rids"]
    assert set(rids) == {world.names["A"]}
    return rids


def forge(world: World, key: bytes | str = REGISTRY_KEY, drop: str = "", **changes: Any) -> str:
    now = datetime.now(UTC)
    repo = f"{world.names['A']}/app"
    claims: dict[str, Any] = {
        "iss": "portside",
        "sub": "forged",
        "aud": "portside",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": "x",
        "access": [{"type": "repository", "name": repo, "actions": ["pull", "push", "delete"]}],
        "account": "local",
        "registries": None,
        "rids": registry_ids(world),
    }
    claims.update(changes)
    claims.pop(drop, None)
    return jwt.encode(claims, key, algorithm="HS256")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def assert_v2_401(response: requests.Response, invalid_token: bool = True) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    body = response.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED", body
    assert isinstance(body["errors"][0]["message"], str)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer realm="), challenge
    if invalid_token:
        assert 'error="invalid_token"' in challenge, challenge


def assert_api_401(response: requests.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    body = response.json()
    assert body["id"] == "unauthorized" and body["message"], body


def _tags(world: World, authorization: str, reg: str = "A") -> requests.Response:
    return V2(world.url, authorization).request("GET", f"/v2/{world.names[reg]}/app/tags/list")


def test_a_forged_jwt_with_the_right_key_works(world: World) -> None:
    """The control for every forgery below: with the real derived key and sound claims,
    the registry accepts the JWT (so each refusal is caused by the one thing changed)."""
    assert _tags(world, bearer(forge(world))).status_code == 200


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    "case",
    [
        "wrong key",
        "raw signing secret as key",
        "upload-capability key",
        "alg none",
        "expired",
        "not yet valid",
        "wrong audience",
        "wrong issuer",
        "missing sub",
        "missing exp",
        "missing aud",
        "HS512",
        "edited access",
        "garbage",
    ],
)
def test_tampered_jwts_are_refused(world: World, case: str) -> None:
    now = datetime.now(UTC)
    token: str
    if case == "wrong key":
        token = forge(world, key=derived("registry-jwt", "not-the-secret"))
    elif case == "raw signing secret as key":
        token = forge(world, key=SIGNING_KEY)
    elif case == "upload-capability key":
        token = forge(world, key=derived("upload-capability"))
    elif case == "alg none":
        valid = forge(world)
        header = _b64({"alg": "none", "typ": "JWT"})
        token = f"{header}.{valid.split('.')[1]}."
    elif case == "expired":
        token = forge(
            world,
            iat=now - timedelta(hours=1),
            nbf=now - timedelta(hours=1),
            exp=now - timedelta(minutes=1),
        )
    elif case == "not yet valid":
        token = forge(world, nbf=now + timedelta(hours=1), exp=now + timedelta(hours=2))
    elif case == "wrong audience":
        token = forge(world, aud="another-service")
    elif case == "wrong issuer":
        token = forge(world, iss="someone-else")
    elif case == "missing sub":
        token = forge(world, drop="sub")
    elif case == "missing exp":
        token = forge(world, drop="exp")
    elif case == "missing aud":
        token = forge(world, drop="aud")
    elif case == "HS512":
        token = jwt.encode(claims_of(forge(world)), REGISTRY_KEY, algorithm="HS512")
    elif case == "edited access":
        # A real JWT for pull only, its payload edited to add push, the signature kept.
        real = V2(world.url, None).jwt(
            world.tokens["pull_a"].secret, f"repository:{world.names['A']}/app:pull,push"
        )
        header, _payload, signature = real.split(".")
        claims = claims_of(real)
        assert claims["access"][0]["actions"] == ["pull"]
        claims["access"][0]["actions"] = ["delete", "pull", "push"]
        token = f"{header}.{_b64(claims)}.{signature}"
    else:
        token = "not.a.jwt"
    assert_v2_401(_tags(world, bearer(token)))
    assert_v2_401(V2(world.url, bearer(token)).request("GET", "/v2/"), invalid_token=False)
    started = V2(world.url, bearer(token)).request(
        "POST", f"/v2/{world.names['A']}/app/blobs/uploads/"
    )
    assert_v2_401(started)


def test_ping_with_an_invalid_jwt_says_invalid_token(world: World) -> None:
    assert_v2_401(V2(world.url, bearer(forge(world, aud="x"))).request("GET", "/v2/"))


def test_a_jwt_for_one_repository_does_not_open_another(world: World) -> None:
    token = V2(world.url, None).jwt(
        world.tokens["admin1"].secret, f"repository:{world.names['A']}/app:pull,push,delete"
    )
    assert _tags(world, bearer(token)).status_code == 200
    for path in (
        f"/v2/{world.names['A']}/other/tags/list",
        f"/v2/{world.names['B']}/app/tags/list",
        f"/v2/{world.names['C']}/app/tags/list",
    ):
        answer = V2(world.url, bearer(token)).request("GET", path)
        assert_v2_401(answer, invalid_token=False)
        assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]


def test_a_validly_signed_jwt_of_one_account_cannot_name_another(world: World) -> None:
    """Even the signature-valid JWT the registry issued for account 2 grants only what its
    access list says: account 2's admin asking for A gets nothing for A."""
    token = V2(world.url, None).jwt(
        world.tokens["admin2"].secret, f"repository:{world.names['A']}/app:pull,push,delete"
    )
    assert claims_of(token)["access"] == []
    assert_v2_401(_tags(world, bearer(token)), invalid_token=False)


def test_an_upload_capability_is_not_a_bearer_token(world: World) -> None:
    owner = world.owner_v2("A")
    started = owner.request("POST", f"/v2/{world.names['A']}/app/blobs/uploads/")
    assert started.status_code == 202
    capability = parse_qs(urlsplit(started.headers["Location"]).query)["_state"][0]
    client = V2(world.url, bearer(capability))
    assert_v2_401(client.request("GET", "/v2/"), invalid_token=False)
    assert_v2_401(client.request("GET", f"/v2/{world.names['A']}/app/tags/list"))
    # and a capability of one session does not open another session
    other = owner.request("POST", f"/v2/{world.names['A']}/app/blobs/uploads/")
    other_path = urlsplit(other.headers["Location"]).path
    answer = V2(world.url, None).request("GET", other_path, params={"_state": capability})
    assert answer.status_code == 404 and error_code(answer) == "BLOB_UPLOAD_UNKNOWN"
    assert_api_401(Api(world.url, capability, check=False).get("/api/v1/registries"))


# --------------------------------------------------------------------------- API tokens


def _all_doors(world: World, secret: str) -> Iterator[tuple[str, requests.Response]]:
    repo = f"{world.names['A']}/app"
    yield "ping", V2(world.url, basic(secret)).request("GET", "/v2/")
    yield "tags", V2(world.url, basic(secret)).request("GET", f"/v2/{repo}/tags/list")
    yield (
        "token GET",
        requests.get(
            f"{world.url}/v2/token",
            params={"scope": f"repository:{repo}:pull"},
            headers={"Authorization": basic(secret)},
            timeout=30,
        ),
    )
    yield (
        "token POST",
        requests.post(
            f"{world.url}/v2/token",
            data={"grant_type": "password", "username": secret, "password": secret},
            timeout=30,
        ),
    )
    yield (
        "token refresh",
        requests.post(
            f"{world.url}/v2/token",
            data={"grant_type": "refresh_token", "refresh_token": secret},
            timeout=30,
        ),
    )
    yield "api", Api(world.url, secret, check=False).get("/api/v1/registries")


def _assert_refused_everywhere(world: World, secret: str) -> None:
    for door, answer in _all_doors(world, secret):
        if door == "api":
            assert_api_401(answer)
        else:
            assert answer.status_code == 401, (door, answer.status_code, answer.text)
            assert error_code(answer) == "UNAUTHORIZED", (door, answer.text)


def test_unknown_token_is_refused(world: World) -> None:
    _assert_refused_everywhere(world, "pst_" + "A" * 43)
    _assert_refused_everywhere(world, "nonsense")


def test_expired_api_token_is_refused(world: World) -> None:
    admin = Api(world.url, world.tokens["admin1"].secret, check=False)
    created = admin.create_token(["admin"], expiry_seconds=1)
    time.sleep(1.5)
    _assert_refused_everywhere(world, created["token"])


def test_revoked_api_token_is_refused(world: World) -> None:
    admin = Api(world.url, world.tokens["admin1"].secret, check=False)
    created = admin.create_token(["admin"])
    for door, answer in _all_doors(world, created["token"]):
        assert answer.status_code == 200, door
    admin.delete(f"/api/v1/tokens/{created['id']}", expect=204)
    _assert_refused_everywhere(world, created["token"])


@pytest.mark.parametrize(
    "header",
    [
        "Basic %%%not-base64%%%",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Digest abc",
        "Bearer",
    ],
)
def test_malformed_authorization_is_refused(world: World, header: str) -> None:
    for path in ("/v2/", f"/v2/{world.names['A']}/app/tags/list", "/v2/token"):
        answer = requests.get(world.url + path, headers={"Authorization": header}, timeout=30)
        assert answer.status_code == 401, (header, path, answer.status_code, answer.text)
        assert error_code(answer) == "UNAUTHORIZED"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert_api_401(
        Api(world.url, None, check=False).get(
            "/api/v1/registries", headers={"Authorization": header}
        )
    )


# --------------------------------------------------------------------------- JWT lifetime


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    env = {"PORTSIDE_SIGNING_KEY": SIGNING_KEY, "PORTSIDE_TOKEN_TTL_SECONDS": "3"}
    with start_registry(
        tmp_path_factory.mktemp("short-jwt"), registry="shortjwt", extra_env=env
    ) as running:
        yield running


def test_a_jwt_outlives_its_revoked_api_token_only_until_it_expires(
    short_lived: RunningRegistry,
) -> None:
    """Expected behaviour: JWTs are checked without a database read, so one issued before
    its API token was revoked keeps working for the rest of its (short) lifetime."""
    admin = Api(short_lived.url, short_lived.token, check=False)
    created = admin.create_token(["pull"], ["shortjwt"])
    V2.basic(short_lived.url, short_lived.token).push_image("shortjwt/app", "v1")
    issued = V2(short_lived.url, None).jwt(created["token"], "repository:shortjwt/app:pull")
    claims = claims_of(issued)
    assert claims["exp"] - claims["iat"] == 3
    admin.delete(f"/api/v1/tokens/{created['id']}", expect=204)
    client = V2(short_lived.url, bearer(issued))
    assert client.request("GET", "/v2/shortjwt/app/tags/list").status_code == 200
    time.sleep(max(0.0, claims["exp"] - time.time()) + 1.2)
    assert_v2_401(client.request("GET", "/v2/shortjwt/app/tags/list"))
    assert V2.basic(short_lived.url, created["token"]).request("GET", "/v2/").status_code == 401


def test_default_jwt_lifetime_is_five_minutes(world: World) -> None:
    token = V2(world.url, None).jwt(world.tokens["admin1"].secret)
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 300
    answer = requests.get(
        f"{world.url}/v2/token",
        headers={"Authorization": basic(world.tokens["admin1"].secret)},
        timeout=30,
    )
    assert answer.json()["expires_in"] == 300
