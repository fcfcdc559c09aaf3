"""Hostile input at the HTTP and parsing layer (issue 9): each request here once ended in a
500, a misleading error or an unbounded amount of work. Now each gets the spec's error."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.api.routes import ManagementApi
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import MAX_TOKEN_FORM, V2Api
from chalicelib.registry.auth import (
    MAX_SCOPE_REGISTRIES,
    MAX_SCOPES,
    Authenticator,
    RegistryTokens,
    RequestedScope,
)
from chalicelib.registry.errors import BadRequestError, ManifestInvalidError
from chalicelib.registry.management import ManagementService, Page
from chalicelib.registry.manifests import OCI_MANIFEST, parse_manifest
from chalicelib.registry.names import is_decimal
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.service import RegistryService
from chalicelib.registry.untrusted_json import (
    MAX_JSON_DEPTH,
    JsonTooDeepError,
    exceeds_depth,
    loads,
)

from .builders import KEY, START, FakeClock, encode, image_manifest, make_token, make_v2_api, sha256
from .conftest import ACCOUNT, REGISTRY

BASE = "https://registry.example.test"
NAME = f"{REGISTRY}/team/app"
DEEP = b"[" * 100_000  # the manifest: 100 KB of "["


class CountingStore(MemoryMetadataStore):
    """The in-memory store, counting registry reads (the cost of a token request)."""

    def __init__(self) -> None:
        super().__init__()
        self.registry_reads = 0

    def get_registry(self, name: str) -> RegistryRecord | None:
        self.registry_reads += 1
        return super().get_registry(name)


@pytest.fixture
def counting_store() -> CountingStore:
    store = CountingStore()
    store.put_registry(RegistryRecord(name=REGISTRY, account_id=ACCOUNT, created_at=START))
    return store


@pytest.fixture
def v2(service: RegistryService, store: MemoryMetadataStore) -> V2Api:
    return make_v2_api(service, store)


@pytest.fixture
def basic(store: MemoryMetadataStore) -> str:
    secret = make_token(store, ACCOUNT, {"push"})
    return "Basic " + base64.b64encode(f"{secret}:{secret}".encode()).decode()


def call(
    api: V2Api,
    method: str,
    path: str,
    authorization: str | None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
) -> HttpResponse:
    all_headers = dict(headers or {})
    if authorization:
        all_headers["authorization"] = authorization
    request = HttpRequest(
        method,
        path,
        {k: v[-1] for k, v in (query or {}).items()},
        all_headers,
        io.BytesIO(body),
        len(body),
        BASE,
        query or {},
    )
    return api.handle(request)


def push_blobs(api: V2Api, authorization: str, *blobs: bytes) -> None:
    """Monolithic uploads through the API (which binds the name to its registry)."""
    for data in blobs:
        response = call(
            api,
            "POST",
            f"/v2/{NAME}/blobs/uploads/",
            authorization,
            data,
            {"content-type": "application/octet-stream"},
            {"digest": [sha256(data)]},
        )
        assert response.status == 201, response.body


def spec_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is the spec's error document with ``status`` and ``code``."""
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    doc = json.loads(response.body)
    assert list(doc) == ["errors"]
    (error,) = doc["errors"]
    assert set(error) == {"code", "message", "detail"}
    assert error["code"] == code, error
    return dict(error)


# ---------------------------------------------------------------- nested JSON


def test_exceeds_depth_counts_nesting_outside_strings_only() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert not exceeds_depth(at_limit)
    assert exceeds_depth("[" + at_limit + "]")
    assert exceeds_depth('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1))
    brackets_in_strings = json.dumps(["[" * 500, '\\"{' * 500, "{" * 500])
    assert not exceeds_depth(brackets_in_strings)
    # Unclosed openers count: the decoder recurses into them before it can fail.
    assert exceeds_depth("[" * (MAX_JSON_DEPTH + 1))
    # Siblings do not add up: many shallow arrays are fine.
    assert not exceeds_depth("[" + ",".join(["[1]"] * 10_000) + "]")


def test_exceeds_depth_is_linear_on_unterminated_strings() -> None:
    """An unterminated string full of escaped quotes is the worst case for a naive string
    pattern (quadratic backtracking); this input of 4 MiB must take well under a second."""
    text = '"' + '\\"' * (2 * 1024 * 1024)
    started = time.perf_counter()
    assert not exceeds_depth(text + "[" * 10)
    assert time.perf_counter() - started < 1.0


def test_loads_refuses_deep_documents_as_value_errors() -> None:
    with pytest.raises(JsonTooDeepError):
        loads(DEEP)
    with pytest.raises(ValueError):
        loads(b"\xff")
    assert loads(b'{"a": ["[[[", {"b": 1}]}') == {"a": ["[[[", {"b": 1}]}


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b'{"schemaVersion": 2, "annotations": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
    ],
    ids=["100k-of-open-brackets", "deep-object-inside-a-manifest"],
)
def test_deeply_nested_manifest_is_manifest_invalid_not_a_500(
    v2: V2Api, basic: str, store: MemoryMetadataStore, body: bytes
) -> None:
    response = call(
        v2,
        "PUT",
        f"/v2/{NAME}/manifests/v1",
        basic,
        body,
        {"content-type": OCI_MANIFEST},
    )
    error = spec_error(response, 400, "MANIFEST_INVALID")
    assert "deeper than" in error["message"]
    spec_error(call(v2, "GET", f"/v2/{NAME}/tags/list", basic), 404, "NAME_UNKNOWN")


def test_a_manifest_nested_within_the_limit_is_accepted(v2: V2Api, basic: str) -> None:
    push_blobs(v2, basic, b"config", b"layer")
    # The deepest point: manifest object, an annotation-like unknown field, then arrays.
    nesting = MAX_JSON_DEPTH - 1
    doc = json.loads(image_manifest(b"config", [b"layer"]))
    doc["org.example.extension"] = json.loads("[" * (nesting - 1) + "]" * (nesting - 1))
    response = call(
        v2, "PUT", f"/v2/{NAME}/manifests/v1", basic, encode(doc), {"content-type": OCI_MANIFEST}
    )
    assert response.status == 201, response.body
    assert response.headers["Docker-Content-Digest"] == sha256(encode(doc))


def test_descriptor_sizes_beyond_int64_are_manifest_invalid() -> None:
    doc = json.loads(image_manifest(b"config", [b"layer"]))
    doc["layers"][0]["size"] = 2**63
    with pytest.raises(ManifestInvalidError, match="size"):
        parse_manifest(encode(doc), OCI_MANIFEST)
    doc["layers"][0]["size"] = 2**63 - 1
    assert parse_manifest(encode(doc), OCI_MANIFEST).blobs[1].size == 2**63 - 1


@pytest.fixture
def management(
    store: MemoryMetadataStore, blobs: MemoryBlobStore, service: RegistryService, clock: FakeClock
) -> ManagementApi:
    return ManagementApi(
        ManagementService(store, blobs, service, Authenticator(store), clock=clock)
    )


def _nested_token(depth: int) -> str:
    return base64.urlsafe_b64encode(b"[" * depth).decode().rstrip("=")


@pytest.mark.parametrize("depth", [1_500, 100_000], ids=["short-token", "100k-token"])
@pytest.mark.parametrize("path", ["/api/v1/tokens", f"/api/v1/registries/{REGISTRY}/repositories"])
def test_page_token_of_nested_arrays_is_bad_request_not_a_500(
    management: ManagementApi, store: MemoryMetadataStore, path: str, depth: int
) -> None:
    secret = make_token(store, ACCOUNT, {"admin"})
    request = HttpRequest(
        "GET",
        path,
        {"page_token": _nested_token(depth)},
        {"authorization": f"Bearer {secret}"},
        io.BytesIO(b""),
        0,
        BASE,
    )
    response = management.handle(request)
    assert response.status == 400, response.body
    assert json.loads(response.body)["id"] == "bad_request"


def test_page_parse_refuses_a_nested_token_of_any_length() -> None:
    for depth in (MAX_JSON_DEPTH + 1, 1_000, 1_500):
        with pytest.raises(BadRequestError, match="page_token"):
            Page.parse(None, _nested_token(depth))


def test_jwts_with_deeply_nested_headers_are_refused_as_credentials(v2: V2Api) -> None:
    """A JWT's header is JSON decoded before its signature is checked (PyJWT refuses deep
    nesting itself): as a Bearer token it is 401, as an upload capability 404."""
    header = base64.urlsafe_b64encode(DEEP).decode().rstrip("=")
    forged = f"{header}.e30.c2ln"
    bearer = call(v2, "GET", f"/v2/{NAME}/tags/list", f"Bearer {forged}")
    spec_error(bearer, 401, "UNAUTHORIZED")
    upload = call(
        v2,
        "PATCH",
        f"/v2/{NAME}/blobs/uploads/0b7c6c1e-0000-4000-8000-000000000000",
        None,
        b"x",
        query={"_state": [forged]},
    )
    spec_error(upload, 404, "BLOB_UPLOAD_UNKNOWN")


# ---------------------------------------------------------------- numbers too long for int()


def test_is_decimal_refuses_more_digits_than_any_request_needs() -> None:
    assert is_decimal("9" * 18)
    assert not is_decimal("9" * 19)
    assert not is_decimal("9" * 5_000)  # int() would raise ValueError: a 500


def test_overlong_numbers_in_queries_and_headers_are_client_errors(
    v2: V2Api, basic: str, management: ManagementApi, store: MemoryMetadataStore
) -> None:
    huge = "9" * 5_000
    tags = call(v2, "GET", f"/v2/{NAME}/tags/list", basic, query={"n": [huge]})
    spec_error(tags, 400, "PAGINATION_NUMBER_INVALID")
    started = call(v2, "POST", f"/v2/{NAME}/blobs/uploads/", basic)
    assert started.status == 202
    location = started.headers["Location"].removeprefix(BASE)
    path, _, state = location.partition("?_state=")
    patch = call(
        v2,
        "PATCH",
        path,
        basic,
        b"abc",
        {"content-range": f"0-{huge}"},
        {"_state": [state]},
    )
    spec_error(patch, 416, "RANGE_INVALID")
    secret = make_token(store, ACCOUNT, {"admin"})
    request = HttpRequest(
        "GET",
        "/api/v1/tokens",
        {"per_page": huge},
        {"authorization": f"Bearer {secret}"},
        io.BytesIO(b""),
        0,
        BASE,
    )
    assert management.handle(request).status == 400


# ---------------------------------------------------------------- the token endpoint


def test_token_request_with_too_many_scopes_is_refused_before_any_registry_read(
    counting_store: CountingStore,
) -> None:
    api = make_v2_api(RegistryService(counting_store, MemoryBlobStore()), counting_store)
    secret = make_token(counting_store, ACCOUNT, {"pull"})
    basic = "Basic " + base64.b64encode(f"{secret}:{secret}".encode()).decode()
    scopes = [f"repository:{REGISTRY}/r{i}:pull" for i in range(1_000)]
    response = call(api, "GET", "/v2/token", basic, query={"scope": scopes})
    error = spec_error(response, 400, "BAD_REQUEST")
    assert f"at most {MAX_SCOPES} scopes" in error["message"]
    assert counting_store.registry_reads == 0
    # Space-separated scopes (the OAuth2 form) count one by one as well.
    form = f"grant_type=password&password={secret}&scope=" + "+".join(scopes)
    posted = call(api, "POST", "/v2/token", None, form.encode())
    spec_error(posted, 400, "BAD_REQUEST")


def test_token_request_reads_each_registry_once(counting_store: CountingStore) -> None:
    authenticator = Authenticator(counting_store)
    tokens = RegistryTokens(KEY, "portside", timedelta(minutes=5))
    principal = authenticator.authenticate_secret(
        make_token(counting_store, ACCOUNT, {"pull"}), START
    )
    scopes = [f"repository:{REGISTRY}/r{i}:pull" for i in range(MAX_SCOPES - 5)]
    scopes += [f"repository:nosuch/r{i}:pull" for i in range(5)]
    grant = tokens.grant(principal, RequestedScope.parse_all(scopes), authenticator)
    assert len(grant.repositories) == MAX_SCOPES - 5
    assert counting_store.registry_reads == 2  # one per registry named, not one per scope


def test_token_request_naming_too_many_registries_is_refused(
    counting_store: CountingStore,
) -> None:
    authenticator = Authenticator(counting_store)
    tokens = RegistryTokens(KEY, "portside", timedelta(minutes=5))
    principal = authenticator.authenticate_secret(
        make_token(counting_store, ACCOUNT, {"pull"}), START
    )
    scopes = [f"repository:reg{i}/app:pull" for i in range(MAX_SCOPE_REGISTRIES + 1)]
    with pytest.raises(BadRequestError, match=f"at most {MAX_SCOPE_REGISTRIES} registries"):
        tokens.grant(principal, RequestedScope.parse_all(scopes), authenticator)
    assert counting_store.registry_reads == 0
    within = tokens.grant(principal, RequestedScope.parse_all(scopes[:-1]), authenticator)
    assert within.repositories == {}  # none of them exists: nothing granted, no error
    assert counting_store.registry_reads == MAX_SCOPE_REGISTRIES


def test_oversized_token_form_is_413_about_the_token_request(v2: V2Api) -> None:
    form = b"grant_type=password&password=" + b"x" * MAX_TOKEN_FORM
    error = spec_error(call(v2, "POST", "/v2/token", None, form), 413, "BAD_REQUEST")
    assert "token request" in error["message"]
    assert "manifest" not in error["message"]


# ---------------------------------------------------------------- references in paths


@pytest.mark.parametrize("reference", ["-bad", ".hidden", "x" * 129, "tag!", "é"])
def test_get_and_head_of_an_invalid_tag_are_manifest_unknown(
    v2: V2Api, basic: str, reference: str
) -> None:
    path = f"/v2/{NAME}/manifests/{reference}"
    spec_error(call(v2, "GET", path, basic), 404, "MANIFEST_UNKNOWN")
    head = call(v2, "HEAD", path, basic)
    assert head.status == 404
    assert head.body == b""
    spec_error(call(v2, "DELETE", path, basic), 404, "MANIFEST_UNKNOWN")


def test_put_of_an_invalid_tag_is_still_refused_as_invalid(v2: V2Api, basic: str) -> None:
    push_blobs(v2, basic, b"config", b"layer")
    body = image_manifest(b"config", [b"layer"])
    response = call(
        v2, "PUT", f"/v2/{NAME}/manifests/-bad", basic, body, {"content-type": OCI_MANIFEST}
    )
    error = spec_error(response, 400, "MANIFEST_INVALID")
    assert "tag" in error["message"]


@pytest.mark.parametrize(
    "digest", ["notadigest", "sha256:XYZ", "sha256:" + "a" * 63, "sha256:a!b", "md5:abc", ":"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_malformed_blob_digests_are_digest_invalid_not_unknown_routes(
    v2: V2Api, basic: str, digest: str, method: str
) -> None:
    response = call(v2, method, f"/v2/{NAME}/blobs/{digest}", basic)
    assert response.status == 400
    if method != "HEAD":
        spec_error(response, 400, "DIGEST_INVALID")


def test_malformed_referrers_digest_is_digest_invalid(v2: V2Api, basic: str) -> None:
    response = call(v2, "GET", f"/v2/{NAME}/referrers/not-a-digest", basic)
    spec_error(response, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("upload", ["bad!id", "a" * 129, "x.y", "%00"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_malformed_upload_ids_are_blob_upload_unknown(
    v2: V2Api, basic: str, upload: str, method: str
) -> None:
    response = call(
        v2,
        method,
        f"/v2/{NAME}/blobs/uploads/{upload}",
        basic,
        query={"digest": [sha256(b"")]},
    )
    spec_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


def test_unknown_methods_answer_405_spec_json_naming_the_allowed_ones(
    v2: V2Api, basic: str
) -> None:
    for method in ("OPTIONS", "TRACE", "PATCH"):
        response = call(v2, method, f"/v2/{NAME}/manifests/v1", basic)
        error = spec_error(response, 405, "UNSUPPORTED")
        assert method in error["message"]
        assert error["detail"]["allowed"] == ["DELETE", "GET", "HEAD", "PUT"]
        assert response.headers["Allow"] == "DELETE, GET, HEAD, PUT"
