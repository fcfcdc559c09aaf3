"""Registry JWTs (the Docker token-auth protocol): what a grant allows, how tokens are issued
and verified, and the /v2/ API with Bearer tokens and the token endpoint."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.auth import (
    AccessGrant,
    Action,
    Authenticator,
    Principal,
    RegistryTokens,
    RequestedScope,
    UploadCapability,
    derive_key,
    hash_token,
)
from chalicelib.registry.errors import BlobUploadUnknownError, UnauthorizedError
from chalicelib.registry.service import RegistryService

from .builders import KEY, make_token, push_blob, push_image, sha256
from .conftest import ACCOUNT, FOREIGN_REGISTRY, REGISTRY, SIBLING_REGISTRY, named

OTHER_KEY = "another-signing-key-also-at-least-32-bytes"
SERVICE = "portside"
BASE = "https://registry.example.test"
TTL = timedelta(minutes=5)
X = named(REGISTRY, "team/app")
Y = named(REGISTRY, "team/other")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def tokens() -> RegistryTokens:
    return RegistryTokens(KEY, SERVICE, TTL)


@pytest.fixture
def authenticator(store: MemoryMetadataStore) -> Authenticator:
    return Authenticator(store)


def principal(
    store: MemoryMetadataStore, scopes: set[str], registries: set[str] | None = None
) -> Principal:
    record = store.get_token_by_hash(hash_token(make_token(store, ACCOUNT, scopes, registries)))
    assert record is not None
    return Principal(record)


def grant_for(
    tokens: RegistryTokens,
    authenticator: Authenticator,
    who: Principal,
    *scopes: str,
) -> AccessGrant:
    return tokens.grant(who, RequestedScope.parse_all(list(scopes)), authenticator)


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def valid_claims(**overrides: Any) -> dict[str, Any]:
    issued = now()
    claims: dict[str, Any] = {
        "iss": "portside",
        "sub": "tok-1",
        "aud": SERVICE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + TTL,
        "jti": "j",
        "access": [{"type": "repository", "name": str(X), "actions": ["pull"]}],
        "account": ACCOUNT,
        "registries": None,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


def sign(claims: dict[str, Any], key: bytes | str = b"", algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or derive_key(KEY, "registry-jwt"), algorithm=algorithm)


# ====================================================================== requested scopes


def test_parse_all_reads_repeated_and_space_separated_scopes() -> None:
    scopes = RequestedScope.parse_all(
        [
            "repository:acme/team/app:pull,push",
            "repository:acme/base:pull registry:catalog:*",
        ]
    )
    assert scopes == [
        RequestedScope("repository", "acme/team/app", frozenset({"pull", "push"})),
        RequestedScope("repository", "acme/base", frozenset({"pull"})),
        RequestedScope("registry", "catalog", frozenset({"*"})),
    ]


def test_parse_all_keeps_colons_inside_the_name_and_drops_malformed_items() -> None:
    scopes = RequestedScope.parse_all(
        ["repository:host:5000/app:pull", "repository", "repository:acme/app", "repository::pull"]
    )
    assert scopes == [RequestedScope("repository", "host:5000/app", frozenset({"pull"}))]
    assert RequestedScope.parse_all(["repository:acme/app:"]) == [
        RequestedScope("repository", "acme/app", frozenset())
    ]
    assert RequestedScope.parse_all([]) == []
    assert RequestedScope.parse_all(["   "]) == []


# ====================================================================== grants


def test_a_pull_only_token_asking_pull_and_push_gets_pull(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    reader = principal(store, {"pull"})
    grant = grant_for(tokens, authenticator, reader, f"repository:{X}:pull,push")
    assert grant.repositories == {str(X): frozenset({"pull"})}
    assert grant.allows(X, Action.PULL)
    assert not grant.allows(X, Action.PUSH)
    assert grant.token_id == reader.token.token_id
    assert grant.account_id == ACCOUNT


@pytest.mark.parametrize(
    ("scopes", "granted"),
    [
        ({"pull"}, {"pull"}),
        ({"push"}, {"pull", "push", "delete"}),
        ({"admin"}, {"pull", "push", "delete"}),
    ],
)
def test_star_expands_to_every_action_the_token_may_do(
    tokens: RegistryTokens,
    authenticator: Authenticator,
    store: MemoryMetadataStore,
    scopes: set[str],
    granted: set[str],
) -> None:
    grant = grant_for(tokens, authenticator, principal(store, scopes), f"repository:{X}:*")
    assert grant.repositories == {str(X): frozenset(granted)}


def test_asked_actions_are_intersected_and_unknown_ones_dropped(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    pusher = principal(store, {"push"})
    grant = grant_for(tokens, authenticator, pusher, f"repository:{X}:pull,fly,admin")
    assert grant.repositories == {str(X): frozenset({"pull"})}
    both = grant_for(
        tokens, authenticator, pusher, f"repository:{X}:pull", f"repository:{X}:delete"
    )
    assert both.repositories == {str(X): frozenset({"pull", "delete"})}


def test_repositories_of_invisible_registries_get_nothing(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    limited = principal(store, {"admin"}, registries={SIBLING_REGISTRY})
    grant = grant_for(
        tokens,
        authenticator,
        limited,
        f"repository:{X}:pull",
        f"repository:{FOREIGN_REGISTRY}/app:pull",
        "repository:nosuch/app:pull",
        f"repository:{SIBLING_REGISTRY}/app:pull",
    )
    assert grant.repositories == {f"{SIBLING_REGISTRY}/app": frozenset({"pull"})}
    assert grant.registries == frozenset({SIBLING_REGISTRY})
    assert not grant.allows(X, Action.PULL)


def test_a_deleted_registry_gets_nothing(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    store.mark_registry_deleting(REGISTRY)
    grant = grant_for(tokens, authenticator, principal(store, {"admin"}), f"repository:{X}:pull")
    assert grant.repositories == {}


def test_malformed_and_foreign_kind_scopes_are_ignored(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    grant = grant_for(
        tokens,
        authenticator,
        principal(store, {"admin"}),
        "garbage",
        "repository:Acme/App:pull",
        "repository:noregistry:pull",
        "registry:other:*",
        f"blob:{X}:pull",
    )
    assert grant.repositories == {}
    assert grant.catalog is False


def test_catalog_scope_is_granted_only_when_asked(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    reader = principal(store, {"pull"})
    assert grant_for(tokens, authenticator, reader, "registry:catalog:*").catalog is True
    assert grant_for(tokens, authenticator, reader, f"repository:{X}:pull").catalog is False


# ====================================================================== issue and verify


def test_issue_then_verify_round_trips_the_grant(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    limited = principal(store, {"push"}, registries={REGISTRY})
    grant = grant_for(
        tokens, authenticator, limited, f"repository:{X}:pull,push", "registry:catalog:*"
    )
    issued = now()
    token = tokens.issue(grant, issued)
    assert tokens.verify(token) == grant
    claims = claims_of(token)
    assert claims["iss"] == "portside"
    assert claims["aud"] == SERVICE
    assert claims["sub"] == limited.token.token_id
    assert claims["account"] == ACCOUNT
    assert claims["registries"] == [REGISTRY]
    assert claims["exp"] - claims["iat"] == TTL.total_seconds()
    assert claims["access"] == [
        {"type": "repository", "name": str(X), "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_each_issued_token_is_unique(tokens: RegistryTokens) -> None:
    grant = AccessGrant("tok", ACCOUNT, None, {})
    issued = now()
    assert tokens.issue(grant, issued) != tokens.issue(grant, issued)


def test_verify_rejects_a_token_signed_with_another_key(tokens: RegistryTokens) -> None:
    other = RegistryTokens(OTHER_KEY, SERVICE, TTL)
    token = other.issue(AccessGrant("tok", ACCOUNT, None, {str(X): frozenset({"pull"})}), now())
    with pytest.raises(UnauthorizedError, match="invalid registry token"):
        tokens.verify(token)


def test_verify_rejects_an_unsigned_token(tokens: RegistryTokens) -> None:
    unsigned = jwt.encode(valid_claims(), None, algorithm="none")
    with pytest.raises(UnauthorizedError):
        tokens.verify(unsigned)


@pytest.mark.filterwarnings("ignore:The HMAC key")
def test_verify_rejects_another_algorithm_even_with_the_right_key(
    tokens: RegistryTokens,
) -> None:
    with pytest.raises(UnauthorizedError):
        tokens.verify(sign(valid_claims(), algorithm="HS512"))


def test_verify_rejects_an_expired_token(tokens: RegistryTokens) -> None:
    token = tokens.issue(AccessGrant("tok", ACCOUNT, None, {}), now() - TTL - timedelta(minutes=1))
    with pytest.raises(UnauthorizedError, match="expired"):
        tokens.verify(token)


def test_verify_rejects_a_token_not_yet_valid(tokens: RegistryTokens) -> None:
    later = now() + timedelta(hours=1)
    with pytest.raises(UnauthorizedError):
        tokens.verify(sign(valid_claims(nbf=later, iat=later, exp=later + TTL)))


def test_verify_rejects_another_audience(tokens: RegistryTokens) -> None:
    elsewhere = RegistryTokens(KEY, "another-service", TTL)
    token = elsewhere.issue(AccessGrant("tok", ACCOUNT, None, {}), now())
    with pytest.raises(UnauthorizedError, match=r"(?i)audience"):
        tokens.verify(token)


def test_verify_rejects_another_issuer(tokens: RegistryTokens) -> None:
    with pytest.raises(UnauthorizedError, match=r"(?i)issuer"):
        tokens.verify(sign(valid_claims(iss="someone-else")))


@pytest.mark.parametrize("claim", ["exp", "iat", "aud", "iss", "sub", "account"])
def test_verify_rejects_missing_claims(tokens: RegistryTokens, claim: str) -> None:
    tokens.verify(sign(valid_claims()))  # the full set verifies
    with pytest.raises(UnauthorizedError):
        tokens.verify(sign(valid_claims(**{claim: ...})))


@pytest.mark.parametrize(
    "access",
    [
        [{"name": "acme/app", "actions": ["pull"]}],
        [{"type": "repository", "actions": ["pull"]}],
        [{"type": "repository", "name": "acme/app", "actions": 5}],
        ["repository:acme/app:pull"],
        "repository",
    ],
)
def test_verify_rejects_malformed_access_claims(tokens: RegistryTokens, access: Any) -> None:
    with pytest.raises(UnauthorizedError, match="malformed"):
        tokens.verify(sign(valid_claims(access=access)))


def test_verify_rejects_a_tampered_payload(
    tokens: RegistryTokens, authenticator: Authenticator, store: MemoryMetadataStore
) -> None:
    grant = grant_for(tokens, authenticator, principal(store, {"pull"}), f"repository:{X}:pull")
    header, payload, signature = tokens.issue(grant, now()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"][0]["actions"] = ["pull", "push", "delete"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(UnauthorizedError, match=r"(?i)signature"):
        tokens.verify(f"{header}.{forged}.{signature}")
    with pytest.raises(UnauthorizedError):
        tokens.verify("not.a.jwt")


def test_registry_and_upload_keys_are_derived_apart() -> None:
    assert derive_key(KEY, "registry-jwt") != derive_key(KEY, "upload-capability")
    assert derive_key(KEY, "registry-jwt") == derive_key(KEY, "registry-jwt")
    assert derive_key(KEY, "registry-jwt") != derive_key(OTHER_KEY, "registry-jwt")
    assert len(derive_key(KEY, "registry-jwt")) == 32


def test_an_upload_capability_is_not_a_registry_token(tokens: RegistryTokens) -> None:
    capability = UploadCapability(KEY, timedelta(hours=1)).issue("up-1", X, now())
    with pytest.raises(UnauthorizedError):
        tokens.verify(capability)
    # Even with every registry claim, the upload key's signature does not verify here.
    forged = sign(valid_claims(), key=derive_key(KEY, "upload-capability"))
    with pytest.raises(UnauthorizedError, match=r"(?i)signature"):
        tokens.verify(forged)


def test_a_registry_token_is_not_an_upload_capability(tokens: RegistryTokens) -> None:
    capabilities = UploadCapability(KEY, timedelta(hours=1))
    registry_token = tokens.issue(AccessGrant("tok", ACCOUNT, None, {}), now())
    with pytest.raises(BlobUploadUnknownError):
        capabilities.verify(registry_token, "up-1", X)
    forged = sign({"sid": "up-1", "repo": str(X), "exp": now() + TTL})
    with pytest.raises(BlobUploadUnknownError, match="rejected"):
        capabilities.verify(forged, "up-1", X)


# ====================================================================== /v2/ with Bearer


@pytest.fixture
def api(service: RegistryService, authenticator: Authenticator, tokens: RegistryTokens) -> V2Api:
    return V2Api(service, authenticator, UploadCapability(KEY, timedelta(hours=1)), tokens)


def call(
    api: V2Api,
    method: str,
    path: str,
    authorization: str | None = None,
    query: dict[str, str] | None = None,
    query_lists: dict[str, list[str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> HttpResponse:
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["authorization"] = authorization
    if content_type is not None:
        headers["content-type"] = content_type
    request = HttpRequest(
        method,
        path,
        query or {},
        headers,
        io.BytesIO(body),
        len(body),
        BASE,
        query_lists=query_lists or {},
    )
    return api.handle(request)


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{secret}:{secret}".encode()).decode()


def bearer(token: str) -> str:
    return f"Bearer {token}"


def fetch_token(api: V2Api, secret: str, *scopes: str) -> str:
    response = call(api, "GET", "/v2/token", basic(secret), query_lists={"scope": list(scopes)})
    assert response.status == 200, response.body
    return str(json.loads(response.body)["token"])


def challenge(scope: str | None = None, error: str | None = None) -> str:
    value = f'Bearer realm="{BASE}/v2/token",service="{SERVICE}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def error_code(response: HttpResponse) -> str:
    return str(json.loads(response.body)["errors"][0]["code"])


@pytest.fixture
def app(service: RegistryService) -> bytes:
    return push_image(service, X, "v1", "app")


@pytest.mark.parametrize(
    ("method", "path", "actions"),
    [
        ("GET", f"/v2/{X}/tags/list", "pull"),
        ("GET", f"/v2/{X}/manifests/v1", "pull"),
        ("HEAD", f"/v2/{X}/manifests/v1", "pull"),
        ("HEAD", f"/v2/{X}/blobs/sha256:{'0' * 64}", "pull"),
        ("POST", f"/v2/{X}/blobs/uploads/", "pull,push"),
        ("PUT", f"/v2/{X}/manifests/v2", "pull,push"),
        ("DELETE", f"/v2/{X}/manifests/v1", "delete"),
    ],
)
def test_anonymous_requests_get_a_bearer_challenge_naming_the_scope(
    api: V2Api, method: str, path: str, actions: str
) -> None:
    response = call(api, method, path)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == challenge(f"repository:{X}:{actions}")


def test_anonymous_ping_and_catalog_challenges(api: V2Api) -> None:
    ping = call(api, "GET", "/v2/")
    assert ping.status == 401
    assert ping.headers["WWW-Authenticate"] == challenge()
    catalog = call(api, "GET", "/v2/_catalog")
    assert catalog.status == 401
    assert catalog.headers["WWW-Authenticate"] == challenge("registry:catalog:*")


def test_challenge_realm_uses_the_public_url(
    service: RegistryService, authenticator: Authenticator, tokens: RegistryTokens
) -> None:
    public = V2Api(
        service,
        authenticator,
        UploadCapability(KEY, timedelta(hours=1)),
        tokens,
        public_url="https://cr.example.com",
    )
    response = call(public, "GET", f"/v2/{X}/tags/list")
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer realm="https://cr.example.com/v2/token"'
    )


def test_get_token_with_basic_returns_a_short_lived_jwt(
    api: V2Api, store: MemoryMetadataStore
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    response = call(
        api,
        "GET",
        "/v2/token",
        basic(secret),
        query={"service": SERVICE},
        query_lists={"scope": [f"repository:{X}:pull,push", "registry:catalog:*"]},
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    doc = json.loads(response.body)
    assert set(doc) == {"token", "access_token", "expires_in", "issued_at"}
    assert doc["token"] == doc["access_token"]
    assert doc["expires_in"] == 300
    assert doc["issued_at"].endswith("Z")
    issued = datetime.fromisoformat(doc["issued_at"].replace("Z", "+00:00"))
    assert abs(issued - now()) < timedelta(minutes=1)
    grant = api.tokens.verify(doc["token"])
    assert grant.repositories == {str(X): frozenset({"pull"})}
    assert grant.catalog is True
    record = store.get_token_by_hash(hash_token(secret))
    assert record is not None
    assert record.last_used_at is not None  # use at the token endpoint is recorded


def test_get_token_single_scope_from_the_plain_query(
    api: V2Api, store: MemoryMetadataStore
) -> None:
    secret = make_token(store, ACCOUNT, {"push"})
    response = call(api, "GET", "/v2/token", basic(secret), query={"scope": f"repository:{X}:*"})
    grant = api.tokens.verify(json.loads(response.body)["token"])
    assert grant.repositories == {str(X): frozenset({"pull", "push", "delete"})}


def test_get_token_without_scope_grants_no_repository(
    api: V2Api, store: MemoryMetadataStore
) -> None:
    token = fetch_token(api, make_token(store, ACCOUNT, {"admin"}))
    grant = api.tokens.verify(token)
    assert grant.repositories == {}
    assert grant.catalog is False


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer something", basic("pst_unknown"), "Basic !!!"],
)
def test_get_token_needs_a_valid_api_token_with_basic(
    api: V2Api, authorization: str | None
) -> None:
    response = call(api, "GET", "/v2/token", authorization)
    assert response.status == 401
    assert error_code(response) == "UNAUTHORIZED"


def test_get_token_with_an_expired_api_token_is_refused(
    api: V2Api, store: MemoryMetadataStore
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"}, expires_at=now() - timedelta(seconds=1))
    assert call(api, "GET", "/v2/token", basic(secret)).status == 401


def form(**fields: str | list[str]) -> bytes:
    return urlencode(fields, doseq=True).encode()


def test_post_token_password_grant(api: V2Api, store: MemoryMetadataStore) -> None:
    secret = make_token(store, ACCOUNT, {"push"})
    body = form(
        grant_type="password",
        username="ci",
        password=secret,
        service=SERVICE,
        client_id="docker",
        scope=[f"repository:{X}:pull", f"repository:{Y}:push"],
    )
    response = call(
        api, "POST", "/v2/token", body=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status == 200, response.body
    grant = api.tokens.verify(json.loads(response.body)["access_token"])
    assert grant.repositories == {str(X): frozenset({"pull"}), str(Y): frozenset({"push"})}


def test_post_token_password_may_be_sent_as_the_username(
    api: V2Api, store: MemoryMetadataStore
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    body = form(grant_type="password", username=secret, scope=f"repository:{X}:pull")
    response = call(api, "POST", "/v2/token", body=body)
    assert response.status == 200
    assert api.tokens.verify(json.loads(response.body)["token"]).allows(X, Action.PULL)


def test_post_token_refresh_token_grant(api: V2Api, store: MemoryMetadataStore) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    body = form(grant_type="refresh_token", refresh_token=secret, scope=f"repository:{X}:pull")
    response = call(api, "POST", "/v2/token", body=body)
    assert response.status == 200
    assert api.tokens.verify(json.loads(response.body)["token"]).allows(X, Action.PULL)


@pytest.mark.parametrize("grant_type", ["client_credentials", "authorization_code", ""])
def test_post_token_refuses_other_grant_types(
    api: V2Api, store: MemoryMetadataStore, grant_type: str
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    body = form(grant_type=grant_type, password=secret, refresh_token=secret)
    response = call(api, "POST", "/v2/token", body=body)
    assert response.status == 405
    assert error_code(response) == "UNSUPPORTED"
    assert "token" not in json.loads(response.body)


@pytest.mark.parametrize(
    "fields",
    [
        {"grant_type": "password"},
        {"grant_type": "refresh_token"},
        {"grant_type": "password", "password": "pst_unknown"},
        {"grant_type": "refresh_token", "refresh_token": "pst_unknown"},
    ],
)
def test_post_token_needs_valid_credentials(api: V2Api, fields: dict[str, str]) -> None:
    response = call(api, "POST", "/v2/token", body=form(**fields))
    assert response.status == 401
    assert error_code(response) == "UNAUTHORIZED"


def test_a_pull_jwt_on_x_reads_x_only(
    api: V2Api, store: MemoryMetadataStore, service: RegistryService, app: bytes
) -> None:
    push_image(service, Y, "v1", "other")
    token = fetch_token(api, make_token(store, ACCOUNT, {"push"}), f"repository:{X}:pull")
    auth = bearer(token)

    tags = call(api, "GET", f"/v2/{X}/tags/list", auth)
    assert tags.status == 200
    assert json.loads(tags.body)["tags"] == ["v1"]
    assert call(api, "GET", f"/v2/{X}/manifests/v1", auth).body == app

    push = call(api, "POST", f"/v2/{X}/blobs/uploads/", auth)
    assert push.status == 401
    assert push.headers["WWW-Authenticate"] == challenge(
        f"repository:{X}:pull,push", "insufficient_scope"
    )
    assert json.loads(push.body)["errors"][0]["detail"] == [
        {"Type": "repository", "Name": str(X), "Action": "push"}
    ]

    other = call(api, "GET", f"/v2/{Y}/tags/list", auth)
    assert other.status == 401
    assert other.headers["WWW-Authenticate"] == challenge(
        f"repository:{Y}:pull", "insufficient_scope"
    )
    deleting = call(api, "DELETE", f"/v2/{X}/manifests/v1", auth)
    assert deleting.status == 401
    assert 'error="insufficient_scope"' in deleting.headers["WWW-Authenticate"]
    assert store.get_tag(X, "v1") is not None


def test_a_push_jwt_uploads_a_blob(api: V2Api, store: MemoryMetadataStore) -> None:
    token = fetch_token(api, make_token(store, ACCOUNT, {"push"}), f"repository:{X}:pull,push")
    data = b"pushed with a bearer token"

    response = call(
        api,
        "POST",
        f"/v2/{X}/blobs/uploads/",
        bearer(token),
        query={"digest": sha256(data)},
        body=data,
    )
    assert response.status == 201, response.body
    assert store.get_blob_link(X, sha256(data)) is not None


def test_an_invalid_bearer_token_is_invalid_token(api: V2Api) -> None:
    response = call(api, "GET", f"/v2/{X}/tags/list", bearer("not-a-jwt"))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == challenge(
        f"repository:{X}:pull", "invalid_token"
    )
    forged = RegistryTokens(OTHER_KEY, SERVICE, TTL).issue(
        AccessGrant("t", ACCOUNT, None, {str(X): frozenset({"pull"})}), now()
    )
    assert call(api, "GET", f"/v2/{X}/tags/list", bearer(forged)).status == 401


def test_an_upload_capability_cannot_be_used_as_a_bearer_token(api: V2Api) -> None:
    capability = api.capability.issue("up-1", X, now())
    response = call(api, "GET", f"/v2/{X}/tags/list", bearer(capability))
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_an_issued_jwt_outlives_the_revocation_of_its_api_token(
    api: V2Api, store: MemoryMetadataStore, app: bytes
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    token = fetch_token(api, secret, f"repository:{X}:pull")
    store.delete_token(hash_token(secret))  # revoked: no new JWTs ...
    assert call(api, "GET", "/v2/token", basic(secret)).status == 401
    # ... but the one issued lives out its few minutes, with no database read.
    assert call(api, "GET", f"/v2/{X}/manifests/v1", bearer(token)).status == 200


def test_catalog_needs_the_catalog_grant(
    api: V2Api, store: MemoryMetadataStore, service: RegistryService
) -> None:
    push_blob(service, X, b"x")
    push_blob(service, named(SIBLING_REGISTRY, "y"), b"y")
    push_blob(service, named(FOREIGN_REGISTRY, "z"), b"z")
    secret = make_token(store, ACCOUNT, {"pull"})
    without = call(
        api, "GET", "/v2/_catalog", bearer(fetch_token(api, secret, f"repository:{X}:pull"))
    )
    assert without.status == 401
    assert without.headers["WWW-Authenticate"] == challenge(
        "registry:catalog:*", "insufficient_scope"
    )
    with_catalog = call(
        api, "GET", "/v2/_catalog", bearer(fetch_token(api, secret, "registry:catalog:*"))
    )
    assert with_catalog.status == 200
    assert json.loads(with_catalog.body) == {"repositories": [f"{SIBLING_REGISTRY}/y", str(X)]}


def test_catalog_jwt_of_a_limited_token_lists_only_its_registries(
    api: V2Api, store: MemoryMetadataStore, service: RegistryService
) -> None:
    push_blob(service, X, b"x")
    push_blob(service, named(SIBLING_REGISTRY, "y"), b"y")
    secret = make_token(store, ACCOUNT, {"pull"}, registries={SIBLING_REGISTRY})
    response = call(
        api, "GET", "/v2/_catalog", bearer(fetch_token(api, secret, "registry:catalog:*"))
    )
    assert json.loads(response.body) == {"repositories": [f"{SIBLING_REGISTRY}/y"]}


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_catalog_hides_a_deleted_registry(
    api: V2Api, store: MemoryMetadataStore, service: RegistryService, kind: str
) -> None:
    push_blob(service, X, b"x")
    push_blob(service, named(SIBLING_REGISTRY, "y"), b"y")
    secret = make_token(store, ACCOUNT, {"pull"})
    store.mark_registry_deleting(REGISTRY)
    auth = (
        basic(secret) if kind == "basic" else bearer(fetch_token(api, secret, "registry:catalog:*"))
    )
    response = call(api, "GET", "/v2/_catalog", auth)
    assert json.loads(response.body) == {"repositories": [f"{SIBLING_REGISTRY}/y"]}


def _collecting(store: MemoryMetadataStore, read_only: bool) -> None:
    # What begin_collection / finish_collection leave on the record (registry.gc).
    record = store.registries[REGISTRY]
    record.read_only, record.gc_active = read_only, ("gc-1" if read_only else None)


def test_no_write_scope_is_granted_while_a_read_only_collection_runs(
    tokens: RegistryTokens, store: MemoryMetadataStore
) -> None:
    cached = Authenticator(store, registry_ttl=timedelta(minutes=5))
    pusher = principal(store, {"push"})
    assert grant_for(tokens, cached, pusher, f"repository:{X}:pull,push").allows(X, Action.PUSH)
    _collecting(store, True)
    cached.forget_registry(REGISTRY)
    during = grant_for(tokens, cached, pusher, f"repository:{X}:pull,push,delete")
    assert during.repositories == {str(X): frozenset({"pull"})}
    # Once it ends, pushes are granted at once, even from a record cached during it.
    _collecting(store, False)
    after = grant_for(tokens, cached, pusher, f"repository:{X}:pull,push")
    assert after.allows(X, Action.PUSH)
