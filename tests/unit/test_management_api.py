"""The /api/v1 dispatcher over the in-memory stores: routing (with %2F-encoded repository
names), authentication, body validation and the JSON error bodies."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.api.routes import API_ERRORS, MAX_BODY, ManagementApi
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.registry.auth import Authenticator, hash_token
from chalicelib.registry.errors import ERROR_TABLE
from chalicelib.registry.management import ManagementService
from chalicelib.registry.service import RegistryService

from .builders import START, FakeClock, make_token, push_image, sha256
from .conftest import ACCOUNT, FOREIGN_REGISTRY, REGISTRY, named

BASE = "https://registry.example.test"
API = "/api/v1"
TEAM_API = named(REGISTRY, "team/api")


@pytest.fixture
def mgmt(
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    service: RegistryService,
    clock: FakeClock,
) -> ManagementService:
    return ManagementService(store, blobs, service, Authenticator(store), clock=clock)


@pytest.fixture
def api(mgmt: ManagementService) -> ManagementApi:
    return ManagementApi(mgmt)


class Client:
    def __init__(self, api: ManagementApi, token: str | None) -> None:
        self.api = api
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
        authorization: str | None = None,
    ) -> HttpResponse:
        headers: dict[str, str] = {}
        if authorization is not None:
            headers["authorization"] = authorization
        elif self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        body = (
            raw if raw is not None else b"" if json_body is None else json.dumps(json_body).encode()
        )
        request = HttpRequest(method, path, query or {}, headers, io.BytesIO(body), len(body), BASE)
        return self.api.handle(request)


@pytest.fixture
def admin(api: ManagementApi, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"admin"}))


@pytest.fixture
def reader(api: ManagementApi, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"pull"}))


def doc(response: HttpResponse) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == str(len(response.body))
    parsed = json.loads(response.body)
    assert isinstance(parsed, dict)
    return parsed


def error(response: HttpResponse, status: int, error_id: str) -> str:
    assert response.status == status, response.body
    body = doc(response)
    assert body["id"] == error_id
    assert isinstance(body["message"], str)
    assert body["message"]
    return str(body["message"])


@pytest.fixture
def pushed(service: RegistryService) -> bytes:
    body = push_image(service, TEAM_API, "v1", "api")
    service.put_manifest(TEAM_API, "v2", body, "application/vnd.oci.image.manifest.v1+json")
    return body


# ====================================================================== routing


def test_encoded_slash_in_a_repository_name_reaches_list_tags(admin: Client, pushed: bytes) -> None:
    response = admin("GET", f"{API}/registries/{REGISTRY}/repositories/team%2Fapi/tags")
    assert response.status == 200
    body = doc(response)
    assert [t["tag"] for t in body["tags"]] == ["v1", "v2"]
    assert {t["repository"] for t in body["tags"]} == {"team/api"}
    assert body["links"] == {}


def test_encoded_repository_name_reaches_manifests_and_deletions(
    admin: Client, pushed: bytes, store: MemoryMetadataStore
) -> None:
    base = f"{API}/registries/{REGISTRY}/repositories/team%2Fapi"
    manifests = doc(admin("GET", f"{base}/manifests"))["manifests"]
    assert [m["digest"] for m in manifests] == [sha256(pushed)]
    assert manifests[0]["repository"] == "team/api"

    assert admin("DELETE", f"{base}/tags/v1").status == 204
    assert store.get_tag(TEAM_API, "v1") is None
    digest = sha256(pushed).replace(":", "%3A")
    assert admin("DELETE", f"{base}/manifests/{digest}").status == 204
    assert store.get_manifest(TEAM_API, sha256(pushed)) is None
    assert admin("DELETE", base).status == 204
    assert not store.repository_exists(TEAM_API)


def test_a_repository_named_like_a_route_segment_stays_one_name(
    admin: Client, service: RegistryService
) -> None:
    repo = named(REGISTRY, "team/tags")
    push_image(service, repo, "v1", "tags")
    response = admin("GET", f"{API}/registries/{REGISTRY}/repositories/team%2Ftags/tags")
    assert response.status == 200
    assert [t["repository"] for t in doc(response)["tags"]] == ["team/tags"]


def test_a_raw_slash_in_the_repository_name_still_reaches_it(admin: Client, pushed: bytes) -> None:
    response = admin("GET", f"{API}/registries/{REGISTRY}/repositories/team/api/tags")
    assert response.status == 200
    assert [t["tag"] for t in doc(response)["tags"]] == ["v1", "v2"]


def test_repository_listing_shows_the_decoded_name(admin: Client, pushed: bytes) -> None:
    body = doc(admin("GET", f"{API}/registries/{REGISTRY}/repositories"))
    [repo] = body["repositories"]
    assert repo["name"] == "team/api"
    assert repo["tag_count"] == 2
    assert repo["manifest_count"] == 1
    assert repo["latest_manifest"]["digest"] == sha256(pushed)


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/nothing",
        f"{API}/registries/{REGISTRY}/bogus",
        f"{API}/registries/{REGISTRY}/subscription/extra",
        "/api/v2/registries",
        f"{API}",
    ],
)
def test_unknown_route_is_404_not_found(admin: Client, path: str) -> None:
    error(admin("GET", path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", f"{API}/registries", "GET, POST"),
        ("GET", f"{API}/registries/validate-name", "POST"),
        ("POST", f"{API}/registries/options", "GET"),
        ("PATCH", f"{API}/registries/{REGISTRY}", "DELETE, GET"),
        ("GET", f"{API}/registries/{REGISTRY}/repositories/team%2Fapi/tags/v1", "DELETE"),
        ("POST", f"{API}/registries/{REGISTRY}/repositories/team%2Fapi/tags", "GET"),
        ("GET", f"{API}/tokens/abc", "DELETE"),
    ],
)
def test_wrong_method_is_405_with_allow(admin: Client, method: str, path: str, allow: str) -> None:
    response = admin(method, path)
    error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == allow


def test_openapi_document_is_served_without_auth(api: ManagementApi) -> None:
    response = Client(api, None)("GET", f"{API}/openapi.yaml")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/yaml"
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.body.startswith(b"openapi: 3")
    assert b"/api/v1/registries" in response.body


# ====================================================================== authentication


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer    ",
        "Token pst_x",
        "Basic " + base64.b64encode(b"pst_x:pst_x").decode(),
        "Bearer pst_unknown",
    ],
)
def test_missing_or_invalid_bearer_is_401(api: ManagementApi, authorization: str | None) -> None:
    client = Client(api, None)
    response = client("GET", f"{API}/registries", authorization=authorization)
    error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="Portside API"'


def test_expired_token_is_401(api: ManagementApi, store: MemoryMetadataStore) -> None:
    secret = make_token(store, ACCOUNT, {"admin"}, expires_at=START)
    error(Client(api, secret)("GET", f"{API}/registries"), 401, "unauthorized")


def test_bearer_scheme_is_case_insensitive(api: ManagementApi, store: MemoryMetadataStore) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    response = Client(api, None)("GET", f"{API}/registries", authorization=f"bearer {secret}")
    assert response.status == 200


def test_using_the_api_records_last_use(
    admin: Client, store: MemoryMetadataStore, clock: FakeClock
) -> None:
    assert admin.token is not None
    record = store.get_token_by_hash(hash_token(admin.token))
    assert record is not None
    clock.advance(timedelta(hours=1))
    admin("GET", f"{API}/registries")
    record = store.get_token_by_hash(hash_token(admin.token))  # reads are snapshots
    assert record is not None
    assert record.last_used_at == START + timedelta(hours=1)


# ====================================================================== bodies


def test_create_registry_answers_201_with_the_registry(admin: Client) -> None:
    response = admin(
        "POST", f"{API}/registries", {"name": "newco", "subscription_tier_slug": "basic"}
    )
    assert response.status == 201
    registry = doc(response)["registry"]
    assert registry["name"] == "newco"
    assert registry["subscription"]["tier"]["slug"] == "basic"
    names = [r["name"] for r in doc(admin("GET", f"{API}/registries"))["registries"]]
    assert "newco" in names


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"", "JSON object"),
        (b"null", "JSON object"),
        (b'["name"]', "JSON object"),
        (b'"acme"', "JSON object"),
        (b'{"name": "x", "subscription_tier_slug": "basic", "owner": "me"}', "unknown field"),
        (b'{"name": "x"}', "missing field"),
        (b"{}", "missing field"),
    ],
)
def test_malformed_bodies_are_400(admin: Client, raw: bytes, message: str) -> None:
    response = admin("POST", f"{API}/registries", raw=raw)
    assert message in error(response, 400, "bad_request")


def test_oversized_body_is_400(admin: Client) -> None:
    raw = json.dumps({"name": "x" * (MAX_BODY + 1)}).encode()
    assert "too large" in error(
        admin("POST", f"{API}/registries/validate-name", raw=raw), 400, "bad_request"
    )


def test_deeply_nested_body_is_400(admin: Client) -> None:
    raw = b"[" * 60_000 + b"]" * 5_000  # within MAX_BODY
    assert len(raw) <= MAX_BODY
    error(admin("POST", f"{API}/registries", raw=raw), 400, "bad_request")


def test_unknown_and_missing_token_fields_are_400(admin: Client) -> None:
    unknown = admin("POST", f"{API}/tokens", {"name": "x", "scopes": ["pull"], "secret": "s"})
    assert "secret" in error(unknown, 400, "bad_request")
    missing = admin("POST", f"{API}/tokens", {"name": "x"})
    assert "scopes" in error(missing, 400, "bad_request")


# ====================================================================== error mapping


def test_domain_errors_map_to_the_api_ids(admin: Client, reader: Client) -> None:
    error(
        reader("POST", f"{API}/registries", {"name": "x", "subscription_tier_slug": "basic"}),
        403,
        "forbidden",
    )
    error(admin("GET", f"{API}/registries/{FOREIGN_REGISTRY}"), 404, "not_found")
    error(admin("GET", f"{API}/registries/{REGISTRY}/repositories/nope/tags"), 404, "not_found")
    error(admin("POST", f"{API}/registries/validate-name", {"name": REGISTRY}), 409, "conflict")
    error(
        admin("POST", f"{API}/registries/validate-name", {"name": "Bad_Name"}),
        422,
        "unprocessable_entity",
    )
    error(admin("GET", f"{API}/tokens", query={"per_page": "0"}), 400, "bad_request")
    error(admin("GET", f"{API}/tokens", query={"page_token": "%%%"}), 400, "bad_request")


def test_validate_name_of_a_free_name_is_204(admin: Client) -> None:
    response = admin("POST", f"{API}/registries/validate-name", {"name": "free-name"})
    assert response.status == 204
    assert response.body == b""


def test_every_mapped_code_is_a_known_error_code() -> None:
    assert set(API_ERRORS) <= set(ERROR_TABLE)
    for status, error_id in API_ERRORS.values():
        assert 400 <= status < 500
        assert error_id


def test_refused_downgrade_is_409_with_eligibility_reasons(
    admin: Client, store: MemoryMetadataStore
) -> None:
    store.registries[REGISTRY].repository_count = 3
    response = admin("POST", f"{API}/registries/{REGISTRY}/subscription", {"tier_slug": "starter"})
    error(response, 409, "conflict")
    assert doc(response)["eligibility_reasons"] == ["OverRepositoryLimit"]
    upgrade = admin("POST", f"{API}/registries/{REGISTRY}/subscription", {"tier_slug": "basic"})
    assert upgrade.status == 200
    assert doc(upgrade)["subscription"]["tier"]["slug"] == "basic"


def test_options_report_eligibility_for_a_registry(
    reader: Client, store: MemoryMetadataStore
) -> None:
    store.registries[REGISTRY].repository_count = 2
    response = reader("GET", f"{API}/registries/options", query={"registry": REGISTRY})
    tiers = doc(response)["options"]["subscription_tiers"]
    assert [(t["slug"], t["eligible"]) for t in tiers] == [
        ("starter", False),
        ("basic", True),
        ("professional", True),
    ]


def test_unexpected_exception_is_a_500_json_body(
    admin: Client, mgmt: ManagementService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database exploded")

    monkeypatch.setattr(mgmt, "list_registries", explode)
    response = admin("GET", f"{API}/registries")
    assert response.status == 500
    assert response.body  # never a bare 500
    doc(response)
    assert b"database exploded" not in response.body


def test_unexpected_exception_uses_the_documented_server_error_body(
    admin: Client, mgmt: ManagementService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database exploded")

    monkeypatch.setattr(mgmt, "list_registries", explode)
    error(admin("GET", f"{API}/registries"), 500, "server_error")


# ====================================================================== tokens and credentials


def test_token_lifecycle_over_the_api(admin: Client, api: ManagementApi) -> None:
    created = admin(
        "POST", f"{API}/tokens", {"name": "ci", "scopes": ["pull"], "registries": [REGISTRY]}
    )
    assert created.status == 201
    token = doc(created)["token"]
    secret = token["token"]
    assert secret.startswith("pst_")
    assert token["registries"] == [REGISTRY]

    listed = admin("GET", f"{API}/tokens")
    assert secret.encode() not in listed.body
    assert hash_token(secret).encode() not in listed.body
    assert token["id"] in [t["id"] for t in doc(listed)["tokens"]]

    ci = Client(api, secret)
    assert ci("GET", f"{API}/registries").status == 200
    assert admin("DELETE", f"{API}/tokens/{token['id']}").status == 204
    error(ci("GET", f"{API}/registries"), 401, "unauthorized")
    error(admin("DELETE", f"{API}/tokens/{token['id']}"), 404, "not_found")


def test_token_list_paginates_with_links(admin: Client) -> None:
    for i in range(3):
        admin("POST", f"{API}/tokens", {"name": f"t{i}", "scopes": ["pull"]})
    first = doc(admin("GET", f"{API}/tokens", query={"per_page": "2"}))
    assert len(first["tokens"]) == 2
    token = first["links"]["next_page_token"]
    rest = doc(admin("GET", f"{API}/tokens", query={"per_page": "2", "page_token": token}))
    assert len(rest["tokens"]) == 2  # 3 created + the admin's own
    assert rest["links"] == {}
    ids = [t["id"] for t in first["tokens"] + rest["tokens"]]
    assert len(set(ids)) == 4


def test_docker_credentials_over_the_api(admin: Client, api: ManagementApi) -> None:
    response = admin(
        "GET",
        f"{API}/registries/{REGISTRY}/docker-credentials",
        query={"read_write": "true", "expiry_seconds": "3600"},
    )
    assert response.status == 200
    config = doc(response)
    auth = config["auths"]["registry.example.test"]["auth"]
    secret = base64.b64decode(auth).decode().split(":")[0]
    minted = api.service.authenticate(secret)
    assert minted.token.scopes == frozenset({"pull", "push"})
    assert minted.token.registries == frozenset({REGISTRY})
    assert minted.token.expires_at == START + timedelta(hours=1)


def test_docker_credentials_use_the_configured_registry_host(
    mgmt: ManagementService, store: MemoryMetadataStore
) -> None:
    api = ManagementApi(mgmt, registry_host="cr.example.com")
    client = Client(api, make_token(store, ACCOUNT, {"admin"}))
    config = doc(client("GET", f"{API}/registries/{REGISTRY}/docker-credentials"))
    assert list(config["auths"]) == ["cr.example.com"]
    secret = base64.b64decode(config["auths"]["cr.example.com"]["auth"]).decode().split(":")[0]
    assert mgmt.authenticate(secret).token.scopes == frozenset({"pull"})


@pytest.mark.parametrize(
    ("query", "status", "error_id"),
    [
        ({"read_write": "yes"}, 400, "bad_request"),
        ({"expiry_seconds": "soon"}, 422, "unprocessable_entity"),
        ({"expiry_seconds": "0"}, 422, "unprocessable_entity"),
        ({"expiry_seconds": "-5"}, 422, "unprocessable_entity"),
    ],
)
def test_docker_credentials_parameters_are_validated(
    admin: Client, query: dict[str, str], status: int, error_id: str
) -> None:
    response = admin("GET", f"{API}/registries/{REGISTRY}/docker-credentials", query=query)
    error(response, status, error_id)


def test_docker_credentials_superscript_expiry_is_422(admin: Client) -> None:
    response = admin(
        "GET",
        f"{API}/registries/{REGISTRY}/docker-credentials",
        query={"expiry_seconds": "²"},
    )
    error(response, 422, "unprocessable_entity")


def test_superscript_per_page_is_400(admin: Client) -> None:
    error(admin("GET", f"{API}/tokens", query={"per_page": "²"}), 400, "bad_request")
