"""The Chalice app driven with API Gateway proxy events, as Lambda receives them."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from chalice import Chalice

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.http.chalice_views import BINARY_TYPES, v2_blueprint
from chalicelib.http.v2 import V2Api
from chalicelib.registry.manifests import OCI_MANIFEST
from chalicelib.registry.service import RegistryService
from portside.local.gateway import LambdaContext, _proxy_event, query_lists

from .builders import image_manifest, make_token, make_v2_api, push_blob, sha256
from .conftest import ACCOUNT, REGISTRY, named_path

NAME = f"{REGISTRY}/team/app"
HOST = "abc123.execute-api.us-east-1.amazonaws.com"


class EventClient:
    def __init__(self, app: Chalice, token: str) -> None:
        self.app = app
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> dict[str, Any]:
        basic = base64.b64encode(f"{self.token}:{self.token}".encode()).decode()
        all_headers = {
            "host": HOST,
            "x-forwarded-proto": "https",
            "authorization": f"Basic {basic}",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        event = _proxy_event(method, path, query_lists(query or []), all_headers, body)
        result: dict[str, Any] = self.app(event, LambdaContext(aws_request_id="req-1"))
        return result


def body_bytes(result: dict[str, Any]) -> bytes:
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        return base64.b64decode(raw)
    return raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)


@pytest.fixture
def api(service: RegistryService, store: MemoryMetadataStore) -> V2Api:
    return make_v2_api(service, store)


@pytest.fixture
def app(api: V2Api) -> Chalice:
    chalice_app = Chalice(app_name="portside-unit")
    chalice_app.api.binary_types = list(BINARY_TYPES)
    chalice_app.register_blueprint(v2_blueprint(lambda: api))
    return chalice_app


@pytest.fixture
def call(app: Chalice, store: MemoryMetadataStore) -> EventClient:
    return EventClient(app, make_token(store, ACCOUNT, {"push"}))


def test_ping_through_the_root_route(call: EventClient) -> None:
    result = call("GET", "/v2/")
    assert result["statusCode"] == 200
    assert json.loads(body_bytes(result)) == {}
    assert result["headers"]["Docker-Distribution-API-Version"] == "registry/2.0"


def test_manifest_put_then_get_round_trips_byte_exact_through_events(
    call: EventClient, service: RegistryService
) -> None:
    repo = named_path(NAME)
    push_blob(service, repo, b"config")
    push_blob(service, repo, b"layer")
    # non-ASCII text and unusual spacing must survive base64 in and text out unchanged
    body = image_manifest(b"config", [b"layer"], annotations={"title": "caf\u00e9 \u2603"})
    body = body.replace(b'{"annotations"', b'{ "annotations"', 1)
    put = call("PUT", f"/v2/{NAME}/manifests/v1", headers={"Content-Type": OCI_MANIFEST}, body=body)
    assert put["statusCode"] == 201, body_bytes(put)
    assert put["headers"]["Docker-Content-Digest"] == sha256(body)
    assert put["headers"]["Location"] == f"https://{HOST}/v2/{NAME}/manifests/{sha256(body)}"

    got = call("GET", f"/v2/{NAME}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert got["statusCode"] == 200
    assert not got.get("isBase64Encoded")
    assert isinstance(got["body"], str)
    assert body_bytes(got) == body
    assert got["headers"]["Content-Type"] == OCI_MANIFEST
    assert got["headers"]["Docker-Content-Digest"] == sha256(body)


def test_binary_blob_patch_through_events_is_stored_exactly(
    call: EventClient, blobs: MemoryBlobStore, store: MemoryMetadataStore
) -> None:
    data = bytes(range(256)) * 16 + os.urandom(4096) + b"\xff\xfe\x00\r\n"
    started = call("POST", f"/v2/{NAME}/blobs/uploads/")
    assert started["statusCode"] == 202, body_bytes(started)
    location = urlsplit(started["headers"]["Location"])
    assert location.netloc == HOST
    query = parse_qsl(location.query)
    assert [k for k, _ in query] == ["_state"]

    patched = call(
        "PATCH",
        location.path,
        query=query,
        headers={"Content-Type": "application/octet-stream"},
        body=data,
    )
    assert patched["statusCode"] == 202, body_bytes(patched)
    assert patched["headers"]["Range"] == f"0-{len(data) - 1}"

    done = call("PUT", location.path, query=[*query, ("digest", sha256(data))])
    assert done["statusCode"] == 201, body_bytes(done)
    link = store.get_blob_link(named_path(NAME), sha256(data))
    assert link is not None
    assert link.key is not None and blobs.objects[link.key] == data
    assert link.size == len(data)


def test_errors_through_events_are_spec_json(call: EventClient) -> None:
    result = call("GET", f"/v2/{NAME}/manifests/missing")
    assert result["statusCode"] == 404
    doc = json.loads(body_bytes(result))
    assert doc["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    crash = call("GET", f"/v2/{NAME}/tags/list", query=[("n", "-1")])
    assert crash["statusCode"] == 400
    assert json.loads(body_bytes(crash))["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


def test_unexpected_exception_in_a_view_is_a_spec_500_not_chalice_bare_error(
    call: EventClient, service: RegistryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "resolve_manifest", explode)
    result = call("GET", f"/v2/{NAME}/manifests/v1")
    assert result["statusCode"] == 500
    doc = json.loads(body_bytes(result))
    assert set(doc["errors"][0]) == {"code", "message", "detail"}


@pytest.mark.parametrize("path", ["/v2/", f"/v2/{NAME}/tags/list"])
def test_options_reaches_the_dispatcher_and_answers_the_spec_405(
    call: EventClient, path: str
) -> None:
    # Without OPTIONS among the routes' methods Chalice answers it itself, in its own body.
    result = call("OPTIONS", path)
    assert result["statusCode"] == 405, body_bytes(result)
    doc = json.loads(body_bytes(result))
    assert doc["errors"][0]["code"] == "UNSUPPORTED"
    assert set(doc["errors"][0]) == {"code", "message", "detail"}
