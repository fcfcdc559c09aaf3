"""The local gateway behaves like the deployed front door: API Gateway's limits and header
remapping, then the CloudFront origin-response function."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chalice import Chalice

from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.http.chalice_views import BINARY_TYPES, v2_blueprint
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.service import RegistryService
from portside.local import gateway as gateway_module
from portside.local.gateway import (
    LocalGateway,
    edge_fix_from_env,
    integration_response,
    upload_host_from_env,
)
from portside_edge import gateway_responses as answers
from portside_edge import origin_response

from .builders import make_token, make_v2_api, sha256
from .conftest import ACCOUNT, REGISTRY

NAME = f"{REGISTRY}/team/app"
MIB = 1024 * 1024


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def call(
    app: Callable[..., Any],
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "registry.test",
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            environ["CONTENT_TYPE"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, header_list: list[tuple[str, str]]) -> None:
        started.append((status, header_list))

    out = b"".join(app(environ, start_response))
    status, header_list = started[0]
    return Reply(int(status.split()[0]), header_list, out)


class FakeLambda:
    """Stands in for the Chalice app where the test needs a Lambda that misbehaves."""

    def __init__(self, behaviour: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.behaviour = behaviour
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: object) -> dict[str, Any]:
        self.events.append(event)
        return self.behaviour(event)


def no_upload_api() -> V2Api:
    raise AssertionError("no upload body in this test")


@pytest.fixture
def v2(service: RegistryService, store: MemoryMetadataStore) -> V2Api:
    return make_v2_api(service, store)


@pytest.fixture
def registry_app(v2: V2Api) -> Callable[[], Chalice]:
    def factory() -> Chalice:
        app = Chalice(app_name="portside-unit")
        app.api.binary_types = list(BINARY_TYPES)
        app.register_blueprint(v2_blueprint(lambda: v2))
        return app

    return factory


@pytest.fixture
def gateways(registry_app: Callable[[], Chalice], v2: V2Api) -> Iterator[dict[bool, LocalGateway]]:
    """The same Lambda (and upload host) behind the front door with and without the edge
    function."""
    yield {
        fix: LocalGateway(registry_app, lambda: v2, edge_fix=fix, lambda_workers=2)
        for fix in (True, False)
    }


def fake_gateway(lambda_: FakeLambda, **options: Any) -> LocalGateway:
    return LocalGateway(lambda: lambda_, no_upload_api, lambda_workers=2, **options)  # type: ignore[arg-type,return-value]


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:{token}".encode()).decode()}


def test_the_bearer_challenge_reaches_the_client_only_through_the_edge_function(
    gateways: dict[bool, LocalGateway],
) -> None:
    fixed = call(gateways[True], "GET", "/v2/")
    assert fixed.status == 401
    challenge = fixed.header("WWW-Authenticate") or ""
    assert challenge.startswith('Bearer realm="http://registry.test/v2/token"'), fixed.headers
    assert "x-amzn-remapped-www-authenticate" not in fixed.names()
    assert fixed.header("x-amzn-RequestId")

    unfixed = call(gateways[False], "GET", "/v2/")
    assert unfixed.status == 401
    assert "www-authenticate" not in unfixed.names()
    assert unfixed.header("x-amzn-Remapped-WWW-Authenticate") == fixed.header("WWW-Authenticate")
    assert json.loads(unfixed.body)["errors"][0]["code"] == "UNAUTHORIZED"


def test_head_of_a_blob_carries_its_size_and_digest_only_with_the_edge_function(
    gateways: dict[bool, LocalGateway], store: MemoryMetadataStore
) -> None:
    data = b"layer bytes " * 1000
    digest = sha256(data)
    auth = basic(make_token(store, ACCOUNT, {"push"}))
    # A monolithic upload: an upload body, so it goes to the upload host, not the Lambda.
    pushed = call(
        gateways[True],
        "POST",
        f"/v2/{NAME}/blobs/uploads/",
        query=f"digest={digest}",
        headers={**auth, "Content-Type": "application/octet-stream"},
        body=data,
    )
    assert pushed.status == 201, pushed.body

    fixed = call(gateways[True], "HEAD", f"/v2/{NAME}/blobs/{digest}", headers=auth)
    assert fixed.status == 200
    assert fixed.header("Content-Length") == str(len(data))
    assert fixed.header("Docker-Content-Digest") == digest
    assert fixed.body == b""
    assert not [n for n in fixed.names() if n.startswith("portside-original-")]

    # API Gateway frames the empty body it holds; the blob's size is only a remapped header.
    unfixed = call(gateways[False], "HEAD", f"/v2/{NAME}/blobs/{digest}", headers=auth)
    assert unfixed.header("Content-Length") == "0"
    assert unfixed.header("x-amzn-Remapped-Content-Length") == str(len(data))
    assert unfixed.header("Docker-Content-Digest") == digest


def test_api_gateway_remaps_and_drops_the_response_headers_aws_lists_for_lambda() -> None:
    result = {
        "statusCode": 200,
        "headers": {
            "Date": "Mon, 01 Jan 2024 00:00:00 GMT",
            "Server": "portside",
            "Connection": "close",
            "Authorization": "x",
            "User-Agent": "y",
            "Content-MD5": "z",
            "Max-Forwards": "1",
            "WWW-Authenticate": "Bearer realm=r",
            "Via": "1.1 somewhere",
            "Upgrade": "h2c",
            "Trailer": "Expires",
            "Content-Length": "5",
            "Docker-Content-Digest": "sha256:" + "b" * 64,
        },
        "body": "hello",
    }
    answer = integration_response(result, "GET", "req-1")
    names = {k for k, _ in answer.headers}
    for remapped in (
        "Date",
        "Server",
        "Connection",
        "Authorization",
        "User-Agent",
        "Content-MD5",
        "Max-Forwards",
        "WWW-Authenticate",
        "Content-Length",
    ):
        assert f"x-amzn-Remapped-{remapped}" in names, remapped
    assert not {"Via", "Upgrade", "Trailer", "Server", "Connection", "WWW-Authenticate"} & names
    assert answer.header("Docker-Content-Digest") == "sha256:" + "b" * 64
    # API Gateway's own Date, framing, request id, and its default Content-Type.
    assert answer.header("Date") != "Mon, 01 Jan 2024 00:00:00 GMT"
    assert answer.header("Content-Length") == "5"
    assert answer.header("x-amzn-RequestId") == "req-1"
    assert answer.header("Content-Type") == "application/json"


def test_multi_value_headers_win_over_single_ones_as_api_gateway_merges() -> None:
    result = {
        "statusCode": 200,
        "headers": {"Link": "<a>", "X-One": "1"},
        "multiValueHeaders": {"link": ["<b>", "<c>"]},
        "body": "",
    }
    answer = integration_response(result, "GET", "r")
    assert [v for k, v in answer.headers if k.lower() == "link"] == ["<b>", "<c>"]
    assert answer.header("X-One") == "1"


def test_a_body_over_10_mb_is_refused_in_plain_text_before_the_lambda_runs() -> None:
    lambda_ = FakeLambda(lambda event: {"statusCode": 201, "body": ""})
    reply = call(
        fake_gateway(lambda_),
        "PUT",
        f"/v2/{NAME}/manifests/v1",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        body=b"{" + b" " * answers.API_PAYLOAD_LIMIT + b"}",
    )
    assert reply.status == 413
    assert reply.body == b"HTTP content length exceeded 10485760 bytes."
    assert reply.header("Content-Type") == "text; charset=utf-8"
    assert lambda_.events == []


def test_base64_inflation_of_a_binary_body_crosses_lambdas_6_mb_limit_text_does_not() -> None:
    size = int(4.6 * MIB)  # 6.13 MB once base64-encoded, 4.8 MB as text
    lambda_ = FakeLambda(lambda event: {"statusCode": 400, "body": "{}"})
    gateway = fake_gateway(lambda_)
    path = f"/v2/{NAME}/manifests/v1"

    binary = call(
        gateway, "PUT", path, headers={"Content-Type": "application/octet-stream"}, body=b"a" * size
    )
    assert binary.status == 413
    assert binary.body == answers.LAMBDA_REQUEST_TOO_LARGE.body
    assert binary.header("x-amzn-ErrorType") == "BadRequestException"
    assert lambda_.events == []

    text = call(
        gateway, "PUT", path, headers={"Content-Type": "application/json"}, body=b"a" * size
    )
    assert text.status == 400
    (event,) = lambda_.events
    assert event["isBase64Encoded"] is False
    assert len(event["body"]) == size


def test_binary_media_types_reach_the_lambda_base64_encoded() -> None:
    lambda_ = FakeLambda(lambda event: {"statusCode": 202, "body": ""})
    call(
        fake_gateway(lambda_),
        "PUT",
        f"/v2/{NAME}/manifests/v1",
        headers={"Content-Type": "application/octet-stream"},
        body=b"\x00\xff",
    )
    assert lambda_.events[0]["isBase64Encoded"] is True
    assert lambda_.events[0]["body"] == "AP8="


def test_request_headers_aws_never_passes_to_a_lambda_are_dropped() -> None:
    lambda_ = FakeLambda(lambda event: {"statusCode": 200, "body": "{}"})
    call(
        fake_gateway(lambda_),
        "GET",
        "/v2/",
        headers={"Expect": "100-continue", "Max-Forwards": "3", "X-Custom": "kept"},
    )
    headers = lambda_.events[0]["headers"]
    assert "expect" not in headers and "max-forwards" not in headers
    assert headers["x-custom"] == "kept"


def test_a_lambda_slower_than_29_s_gets_the_integration_timeout_answer() -> None:
    def slow(event: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.5)
        return {"statusCode": 200, "body": "{}"}

    reply = call(fake_gateway(FakeLambda(slow), integration_timeout=0.05), "GET", "/v2/")
    assert reply.status == 504
    assert reply.body == answers.INTEGRATION_TIMEOUT.body
    assert json.loads(reply.body)["errors"][0]["code"] == "UNAVAILABLE"
    assert answers.INTEGRATION_TIMEOUT_SECONDS == 29
    assert LocalGateway.__init__.__kwdefaults__["integration_timeout"] == 29  # type: ignore[index]


def test_a_failed_or_oversized_lambda_answer_becomes_api_gateways_502() -> None:
    def crash(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("Runtime.HandlerNotFound")

    crashed = call(fake_gateway(FakeLambda(crash)), "GET", "/v2/")
    assert crashed.status == 502
    assert crashed.body == answers.INTEGRATION_FAILURE.body

    huge = FakeLambda(lambda event: {"statusCode": 200, "body": "x" * (6 * MIB + 1)})
    oversized = call(fake_gateway(huge), "GET", "/v2/")
    assert oversized.status == 502
    assert oversized.body == answers.INTEGRATION_FAILURE.body


def test_a_path_outside_the_api_gets_missing_authentication_token() -> None:
    lambda_ = FakeLambda(lambda event: {"statusCode": 200, "body": ""})
    reply = call(fake_gateway(lambda_), "GET", "/metrics")
    assert reply.status == 403
    assert reply.body == b'{"message":"Missing Authentication Token"}'
    assert lambda_.events == []


def test_upload_bodies_stream_to_the_upload_host_and_its_answers_are_not_remapped() -> None:
    seen: list[bytes] = []

    class UploadHost:
        def handle(self, request: HttpRequest) -> HttpResponse:
            seen.append(request.body.read())
            return HttpResponse(
                202, {"WWW-Authenticate": "Bearer realm=x", "Content-Length": "0", "Range": "0-2"}
            )

    lambda_ = FakeLambda(lambda event: {"statusCode": 500, "body": ""})
    gateway = LocalGateway(lambda: lambda_, UploadHost, edge_fix=False)  # type: ignore[arg-type,return-value]
    reply = call(gateway, "PATCH", f"/v2/{NAME}/blobs/uploads/abc-123", body=b"abc")
    assert reply.status == 202
    assert seen == [b"abc"]
    assert reply.header("WWW-Authenticate") == "Bearer realm=x"
    assert not [n for n in reply.names() if n.startswith("x-amzn-")]
    assert lambda_.events == []


def test_without_an_upload_host_upload_bodies_meet_api_gateways_limits_like_any_request() -> None:
    """The lite stage: no upload-host stand-in, so a PATCH is a Lambda event (and a 10 MB
    body is API Gateway's 413 before the Lambda runs)."""
    lambda_ = FakeLambda(lambda event: {"statusCode": 202, "body": ""})
    gateway = fake_gateway(lambda_, upload_host=False, edge_fix=False)
    path = f"/v2/{NAME}/blobs/uploads/abc-123"
    small = call(gateway, "PATCH", path, body=b"abc")
    assert small.status == 202
    assert [event["httpMethod"] for event in lambda_.events] == ["PATCH"]
    big = call(gateway, "PATCH", path, body=b"a" * (answers.API_PAYLOAD_LIMIT + 1))
    assert big.status == 413
    assert big.body == b"HTTP content length exceeded 10485760 bytes."
    assert len(lambda_.events) == 1


def test_the_upload_host_is_on_unless_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PORTSIDE_LOCAL_UPLOAD_HOST", raising=False)
    assert upload_host_from_env() is True
    monkeypatch.setenv("PORTSIDE_LOCAL_UPLOAD_HOST", "off")
    assert upload_host_from_env() is False


def test_an_edge_function_touching_a_header_lambda_edge_forbids_gets_cloudfronts_502(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = origin_response.handler

    def adds_via(event: dict[str, Any], context: object) -> dict[str, Any]:
        response = real(event, context)
        response["headers"]["via"] = [{"key": "Via", "value": "1.1 edge"}]
        return response

    monkeypatch.setattr(gateway_module.origin_response, "handler", adds_via)
    lambda_ = FakeLambda(lambda event: {"statusCode": 200, "body": "{}"})
    assert call(fake_gateway(lambda_), "GET", "/v2/").status == 502


def test_the_edge_fix_is_on_unless_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PORTSIDE_LOCAL_EDGE_FIX", raising=False)
    assert edge_fix_from_env() is True
    for off in ("off", "OFF", "0", "false"):
        monkeypatch.setenv("PORTSIDE_LOCAL_EDGE_FIX", off)
        assert edge_fix_from_env() is False
    monkeypatch.setenv("PORTSIDE_LOCAL_EDGE_FIX", "on")
    assert edge_fix_from_env() is True


def test_the_stack_configures_oci_bodies_but_never_the_413_aws_refuses_to_customize() -> None:
    configured = {a.response_type: a for a in answers.STACK_GATEWAY_RESPONSES}
    assert set(configured) == {"INTEGRATION_TIMEOUT", "DEFAULT_5XX", "THROTTLED"}
    assert "REQUEST_TOO_LARGE" not in configured
    for answer in configured.values():
        (error,) = json.loads(answer.body)["errors"]
        assert set(error) == {"code", "message", "detail"}
        assert answer.templates() == {"application/json": answer.body.decode()}
    assert configured["DEFAULT_5XX"].stack_status_code() is None
    assert configured["INTEGRATION_TIMEOUT"].stack_status_code() == "504"
