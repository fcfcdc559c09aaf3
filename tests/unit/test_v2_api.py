"""The /v2/ dispatcher over the in-memory stores: routing, auth, error bodies, uploads."""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.errors import ERROR_TABLE
from chalicelib.registry.manifests import OCI_INDEX, OCI_MANIFEST
from chalicelib.registry.service import RegistryService

from .builders import image_manifest, make_token, make_v2_api, push_blob, sha256
from .conftest import ACCOUNT, FOREIGN_REGISTRY, REGISTRY, SIBLING_REGISTRY, named, named_path, rid

BASE = "https://registry.example.test"
NAME = f"{REGISTRY}/team/app"


class Client:
    """Builds HttpRequest objects for V2Api.handle, with Basic auth by default."""

    def __init__(self, api: V2Api, token: str | None) -> None:
        self.api = api
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        auth: bool = True,
        content_length: int | None = -1,
    ) -> HttpResponse:
        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if auth and self.token is not None:
            basic = base64.b64encode(f"{self.token}:{self.token}".encode()).decode()
            all_headers["authorization"] = f"Basic {basic}"
        length = len(body) if content_length == -1 else content_length
        request = HttpRequest(
            method, path, query or {}, all_headers, io.BytesIO(body), length, BASE
        )
        return self.api.handle(request)


@pytest.fixture
def api(service: RegistryService, store: MemoryMetadataStore) -> V2Api:
    return make_v2_api(service, store)


@pytest.fixture
def client(api: V2Api, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"push"}))


@pytest.fixture
def reader(api: V2Api, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"pull"}))


def error_of(response: HttpResponse) -> dict[str, Any]:
    """Assert ``response`` is a spec error document and return its single error."""
    assert response.headers["Content-Type"] == "application/json"
    doc = json.loads(response.body)
    assert set(doc) == {"errors"}
    assert len(doc["errors"]) == 1
    error = doc["errors"][0]
    assert set(error) == {"code", "message", "detail"}
    assert error["code"] in ERROR_TABLE
    assert isinstance(error["message"], str)
    assert error["message"]
    assert response.headers["Content-Length"] == str(len(response.body))
    return dict(error)


def push_manifest(client: Client, tag: str = "v1") -> bytes:
    service = client.api.service
    target = named_path(NAME)
    push_blob(service, target, b"config")
    push_blob(service, target, b"layer")
    body = image_manifest(b"config", [b"layer"])
    response = client(
        "PUT", f"/v2/{NAME}/manifests/{tag}", headers={"Content-Type": OCI_MANIFEST}, body=body
    )
    assert response.status == 201, response.body
    return body


# ------------------------------------------------------------------ errors


def test_ping_requires_credentials_and_challenges_with_www_authenticate(
    client: Client,
) -> None:
    anonymous = client("GET", "/v2/", auth=False)
    assert anonymous.status == 401
    assert error_of(anonymous)["code"] == "UNAUTHORIZED"
    assert anonymous.headers["WWW-Authenticate"]
    assert anonymous.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    ok = client("GET", "/v2/")
    assert ok.status == 200
    assert ok.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"pst_x:pst_x").decode()],
)
def test_bad_credentials_are_401_with_challenge(client: Client, authorization: str) -> None:
    response = client("GET", "/v2/", headers={"Authorization": authorization}, auth=False)
    assert response.status == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"
    assert "WWW-Authenticate" in response.headers


def test_errors_are_spec_json_bodies_with_the_table_status(client: Client, reader: Client) -> None:
    digest = sha256(b"nothing")
    cases: list[tuple[HttpResponse, str]] = [
        (client("GET", f"/v2/{NAME}/blobs/{digest}"), "BLOB_UNKNOWN"),
        (client("GET", f"/v2/{NAME}/manifests/nope"), "MANIFEST_UNKNOWN"),
        (client("GET", "/v2/Bad/App/manifests/v1"), "NAME_INVALID"),
        (client("GET", f"/v2/{FOREIGN_REGISTRY}/app/tags/list"), "NAME_UNKNOWN"),
        (client("GET", f"/v2/{NAME}/tags/list"), "NAME_UNKNOWN"),
        (reader("DELETE", f"/v2/{NAME}/manifests/v1"), "DENIED"),
        (reader("POST", f"/v2/{NAME}/blobs/uploads/"), "DENIED"),
        (client("GET", f"/v2/{NAME}/blobs/sha256:123"), "DIGEST_INVALID"),
        (client("GET", "/v2/_catalog", query={"n": "many"}), "PAGINATION_NUMBER_INVALID"),
        (client("GET", f"/v2/{NAME}/blobs/uploads/nosuch"), "BLOB_UPLOAD_UNKNOWN"),
        (client("GET", f"/v2/{NAME}/tags/list", auth=False), "UNAUTHORIZED"),
        (
            client("PUT", f"/v2/{NAME}/manifests/v1", body=b"{}", headers={"Content-Type": ""}),
            "MANIFEST_INVALID",
        ),
    ]
    for response, code in cases:
        error = error_of(response)
        assert error["code"] == code, (code, response.body)
        assert response.status == ERROR_TABLE[code][0], code


def test_missing_blob_detail_reaches_the_client(client: Client) -> None:
    body = image_manifest(b"config", [b"layer"])
    response = client(
        "PUT", f"/v2/{NAME}/manifests/v1", headers={"Content-Type": OCI_MANIFEST}, body=body
    )
    assert response.status == 400
    error = error_of(response)
    assert error["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert error["detail"]["blobs"] == sorted([sha256(b"config"), sha256(b"layer")])


def test_oversized_manifest_body_is_413(client: Client) -> None:
    body = b'{"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = client(
        "PUT", f"/v2/{NAME}/manifests/v1", headers={"Content-Type": OCI_MANIFEST}, body=body
    )
    assert response.status == 413
    error_of(response)


def test_head_responses_have_empty_bodies(client: Client) -> None:
    body = push_manifest(client)
    found = client("HEAD", f"/v2/{NAME}/manifests/v1")
    assert found.status == 200
    assert found.body == b""
    assert found.headers["Content-Length"] == str(len(body))
    assert found.headers["Docker-Content-Digest"] == sha256(body)
    missing = client("HEAD", f"/v2/{NAME}/manifests/v2")
    assert missing.status == 404
    assert missing.body == b""
    anonymous = client("HEAD", "/v2/", auth=False)
    assert anonymous.status == 401
    assert anonymous.body == b""
    assert "WWW-Authenticate" in anonymous.headers


@pytest.mark.parametrize("path", ["/v2/acme/app/bogus", "/v3/", "/", "/v2/acme/app/blobs/x/y"])
def test_unknown_route_is_404_json(client: Client, path: str) -> None:
    response = client("GET", path)
    assert response.status == 404
    assert error_of(response)["code"] in ("NOT_FOUND", "NAME_UNKNOWN")


def test_wrong_method_is_405_with_allow(client: Client) -> None:
    response = client("POST", f"/v2/{NAME}/manifests/v1")
    assert response.status == 405
    error_of(response)
    assert response.headers["Allow"] == "DELETE, GET, HEAD, PUT"
    patch_root = client("PATCH", "/v2/")
    assert patch_root.status == 405
    assert patch_root.headers["Allow"] == "GET, HEAD"


def test_unexpected_exception_becomes_a_500_spec_body(
    client: Client, service: RegistryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("storage exploded")

    monkeypatch.setattr(service, "stat_blob", explode)
    response = client("HEAD", f"/v2/{NAME}/blobs/{sha256(b'x')}")
    assert response.status == 500
    assert response.body == b""
    response = client("GET", f"/v2/{NAME}/manifests/{sha256(b'x')}")
    assert response.status != 500  # only the patched method fails
    monkeypatch.setattr(service, "resolve_manifest", explode)
    response = client("GET", f"/v2/{NAME}/manifests/v1")
    assert response.status == 500
    error = error_of(response)
    assert ERROR_TABLE[error["code"]][0] == 500
    assert "storage exploded" not in response.body.decode()  # internals are not leaked
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# ------------------------------------------------------------------ uploads


def start(client: Client) -> tuple[str, dict[str, str]]:
    response = client("POST", f"/v2/{NAME}/blobs/uploads/")
    assert response.status == 202, response.body
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == BASE
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return parts.path, query


def test_upload_location_carries_a_state_capability_that_authorizes_patch_and_put(
    client: Client, store: MemoryMetadataStore, blobs: MemoryBlobStore
) -> None:
    path, query = start(client)
    assert set(query) == {"_state"}
    data = os.urandom(3000)
    patched = client(
        "PATCH",
        path,
        query=query,
        body=data,
        headers={"Content-Type": "application/octet-stream"},
        auth=False,
    )
    assert patched.status == 202, patched.body
    assert patched.headers["Range"] == f"0-{len(data) - 1}"
    assert "_state=" in patched.headers["Location"]
    status = client("GET", path, query=query, auth=False)
    assert status.status == 204
    assert status.headers["Range"] == f"0-{len(data) - 1}"

    done = client(
        "PUT", path, query={**query, "digest": sha256(data)}, auth=False, content_length=0
    )
    assert done.status == 201, done.body
    assert done.headers["Docker-Content-Digest"] == sha256(data)
    assert done.headers["Location"] == f"{BASE}/v2/{NAME}/blobs/{sha256(data)}"

    head = client("HEAD", f"/v2/{NAME}/blobs/{sha256(data)}")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(data))
    get = client("GET", f"/v2/{NAME}/blobs/{sha256(data)}")
    assert get.status == 307
    link = get.headers["Location"].removeprefix("memory://").split("?")[0]
    assert link.startswith(f"registries/{rid(REGISTRY)}/blobs/")  # where the upload left the bytes


def test_tampered_or_foreign_state_does_not_authorize_an_upload(client: Client) -> None:
    path, query = start(client)
    other_path, other_query = start(client)
    tampered = query["_state"][:-3] + ("abc" if not query["_state"].endswith("abc") else "xyz")
    for state in (tampered, other_query["_state"]):
        response = client("PATCH", path, query={"_state": state}, body=b"data", auth=False)
        assert response.status == 404
        assert error_of(response)["code"] == "BLOB_UPLOAD_UNKNOWN"
    without = client("PATCH", path, body=b"data", auth=False)
    assert without.status == 401
    assert "WWW-Authenticate" in without.headers
    assert other_path != path


def test_upload_with_credentials_and_no_state_is_authorized_by_the_token(
    client: Client, reader: Client
) -> None:
    path, _ = start(client)
    assert client("PATCH", path, body=b"abc").status == 202
    denied = reader("PATCH", path, body=b"def")
    assert denied.status == 403


def test_out_of_order_chunk_is_416_with_range_and_location(client: Client) -> None:
    path, query = start(client)
    client("PATCH", path, query=query, body=b"0123456789", auth=False)
    response = client(
        "PATCH",
        path,
        query=query,
        body=b"abc",
        headers={"Content-Range": "20-22"},
        auth=False,
    )
    assert response.status == 416
    assert error_of(response)["code"] == "RANGE_INVALID"
    assert response.headers["Range"] == "0-9"
    assert "/blobs/uploads/" in response.headers["Location"]


def test_complete_with_wrong_digest_is_digest_invalid_and_forgets_the_upload(
    client: Client,
) -> None:
    path, query = start(client)
    client("PATCH", path, query=query, body=b"payload", auth=False)
    response = client("PUT", path, query={**query, "digest": sha256(b"other")}, auth=False)
    assert response.status == 400
    assert error_of(response)["code"] == "DIGEST_INVALID"
    status = client("GET", path, query=query, auth=False)
    assert status.status == 404
    assert client("HEAD", f"/v2/{NAME}/blobs/{sha256(b'other')}").status == 404


def test_put_without_digest_is_upload_invalid(client: Client) -> None:
    path, query = start(client)
    response = client("PUT", path, query=query, auth=False)
    assert response.status == 400
    assert error_of(response)["code"] == "BLOB_UPLOAD_INVALID"


def test_cancelled_upload_is_gone(client: Client) -> None:
    path, query = start(client)
    assert client("DELETE", path, query=query, auth=False).status == 204
    assert client("GET", path, query=query, auth=False).status == 404


def test_monolithic_post_with_digest_creates_the_blob(client: Client) -> None:
    data = b"monolithic"
    response = client(
        "POST", f"/v2/{NAME}/blobs/uploads/", query={"digest": sha256(data)}, body=data
    )
    assert response.status == 201
    assert client("HEAD", f"/v2/{NAME}/blobs/{sha256(data)}").status == 200


def test_mount_within_a_registry_is_201_and_across_registries_falls_back_to_upload(
    client: Client, service: RegistryService
) -> None:
    digest = push_blob(service, named(REGISTRY, "source"), b"layer")
    mounted = client(
        "POST",
        f"/v2/{NAME}/blobs/uploads/",
        query={"mount": digest, "from": f"{REGISTRY}/source"},
    )
    assert mounted.status == 201
    assert mounted.headers["Docker-Content-Digest"] == digest

    other = push_blob(service, named(SIBLING_REGISTRY, "source"), b"sibling")
    fallback = client(
        "POST",
        f"/v2/{NAME}/blobs/uploads/",
        query={"mount": other, "from": f"{SIBLING_REGISTRY}/source"},
    )
    assert fallback.status == 202
    assert "_state=" in fallback.headers["Location"]


# ------------------------------------------------------------------ manifests, discovery


def test_manifest_put_then_get_round_trips_with_headers(client: Client) -> None:
    body = push_manifest(client)
    got = client("GET", f"/v2/{NAME}/manifests/v1")
    assert got.status == 200
    assert got.body == body
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == sha256(body)
    by_digest = client("GET", f"/v2/{NAME}/manifests/{sha256(body)}")
    assert by_digest.body == body
    assert client("DELETE", f"/v2/{NAME}/manifests/{sha256(body)}").status == 202
    assert client("GET", f"/v2/{NAME}/manifests/v1").status == 404


def test_tag_list_paginates_with_a_link_header(client: Client) -> None:
    body = push_manifest(client, "a")
    for tag in ("b", "c"):
        client("PUT", f"/v2/{NAME}/manifests/{tag}", body=body, headers={"Content-Type": ""})
    first = client("GET", f"/v2/{NAME}/tags/list", query={"n": "2"})
    assert json.loads(first.body) == {"name": NAME, "tags": ["a", "b"]}
    assert first.headers["Link"] == f'</v2/{NAME}/tags/list?n=2&last=b>; rel="next"'
    rest = client("GET", f"/v2/{NAME}/tags/list", query={"n": "2", "last": "b"})
    assert json.loads(rest.body)["tags"] == ["c"]
    assert "Link" not in rest.headers


def test_catalog_lists_only_registries_of_the_token(
    client: Client, service: RegistryService, store: MemoryMetadataStore, api: V2Api
) -> None:
    push_blob(service, named(REGISTRY, "x"), b"a")
    push_blob(service, named(SIBLING_REGISTRY, "y"), b"b")
    push_blob(service, named(FOREIGN_REGISTRY, "z"), b"c")
    everything = json.loads(client("GET", "/v2/_catalog").body)
    assert everything == {"repositories": ["acme-b/y", "acme/x"]}
    limited = Client(api, make_token(store, ACCOUNT, {"pull"}, registries={REGISTRY}))
    assert json.loads(limited("GET", "/v2/_catalog").body) == {"repositories": ["acme/x"]}
    paged = client("GET", "/v2/_catalog", query={"n": "1"})
    assert json.loads(paged.body) == {"repositories": ["acme-b/y"]}
    assert paged.headers["Link"] == '</v2/_catalog?n=1&last=acme-b%2Fy>; rel="next"'


def test_referrers_endpoint_answers_an_index_and_reports_the_filter(client: Client) -> None:
    subject = push_manifest(client)
    service = client.api.service
    target = named_path(NAME)
    push_blob(service, target, b"{}")
    artifact = image_manifest(
        b"{}",
        [],
        subject={"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)},
        artifactType="application/vnd.example.sig",
    )
    put = client(
        "PUT",
        f"/v2/{NAME}/manifests/{sha256(artifact)}",
        body=artifact,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status == 201
    assert put.headers["OCI-Subject"] == sha256(subject)
    listed = client("GET", f"/v2/{NAME}/referrers/{sha256(subject)}")
    assert listed.headers["Content-Type"] == OCI_INDEX
    doc = json.loads(listed.body)
    assert doc["mediaType"] == OCI_INDEX
    assert [m["digest"] for m in doc["manifests"]] == [sha256(artifact)]
    filtered = client(
        "GET",
        f"/v2/{NAME}/referrers/{sha256(subject)}",
        query={"artifactType": "application/other"},
    )
    assert json.loads(filtered.body)["manifests"] == []
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
