"""A WSGI stand-in for the deployed front door, plus the upload host.

Deployed, ``/v2/`` and ``/api/v1/`` go CloudFront -> API Gateway REST (Lambda proxy) -> the
Chalice Lambda. This gateway does to each request and answer what that chain does, in its
order, so that tests through it prove the deployed path:

1. API Gateway, request side: bodies over 10 MB are refused (plain-text 413) before anything
   else; paths outside the API's resources get 403 "Missing Authentication Token"; the request
   headers AWS does not pass to a Lambda are dropped; the whole body is buffered into a proxy
   event (bodies of the API's binary media types base64-encoded, as API Gateway does); an
   event over Lambda's 6 MB invocation limit gets API Gateway's 413.
2. The Lambda (the Chalice app) runs in a worker thread under API Gateway's 29 s integration
   timeout (504); a failed or oversized (over 6 MB) Lambda answer becomes API Gateway's 502.
3. API Gateway, response side: the header remapping AWS documents for Lambda integrations
   (``WWW-Authenticate`` becomes ``x-amzn-Remapped-WWW-Authenticate``, ...), its own ``Date``,
   a default ``Content-Type`` and its own ``Content-Length`` framing of the body it sends (so a
   HEAD answer says 0; the Lambda's value survives only as ``x-amzn-Remapped-Content-Length``).
4. CloudFront's origin-response trigger: ``portside_edge.origin_response.handler`` on a
   CloudFront-shaped event, with Lambda@Edge's header rules enforced (a function that touches a
   read-only or disallowed header gets CloudFront's 502). It runs on every answer of the API
   origin, API Gateway's own included, as CloudFront runs it. ``edge_fix=False``
   (``PORTSIDE_LOCAL_EDGE_FIX=off``) leaves it out: clients then see what they would on AWS
   without the fix (``docker login`` fails with 401).

API Gateway's own answers are ``portside_edge.gateway_responses``, the definitions the stack
configures. Upload bodies (PATCH/PUT on an upload session, POST with ``digest``) stand for
the upload host behind its ALB, which remaps nothing: they stream from the socket into the
same ``V2Api`` dispatcher, and its answers reach the client as it sent them. With
``upload_host=False`` (``PORTSIDE_LOCAL_UPLOAD_HOST=off``, the ``lite`` stage, deployed without
an upload host) there is no such path: upload bodies go through API Gateway like any request,
so a layer over 10 MB can only arrive through the direct-upload extension.

On both paths a request body whose framing is broken (not validly chunked, or both
``Transfer-Encoding`` and ``Content-Length``: RFC 9112 6.3) is refused with a 400 and the
spec's JSON error of the resource it was sent to, having stored nothing;
``http_server.FramingGateway`` then closes the connection, whose framing is lost.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl

from chalice.app import Chalice

from chalicelib.api.routes import api_error_response
from chalicelib.http.chalice_views import BINARY_TYPES
from chalicelib.http.errors import error_response
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.errors import (
    BadRequestError,
    BlobUploadInvalidError,
    ManifestInvalidError,
    RegistryError,
)
from chalicelib.registry.names import is_decimal
from portside_edge import origin_response
from portside_edge.gateway_responses import (
    API_PAYLOAD_LIMIT,
    API_PAYLOAD_TOO_LARGE,
    INTEGRATION_FAILURE,
    INTEGRATION_TIMEOUT,
    INTEGRATION_TIMEOUT_SECONDS,
    LAMBDA_PAYLOAD_LIMIT,
    LAMBDA_REQUEST_TOO_LARGE,
    MISSING_AUTHENTICATION_TOKEN,
    GatewayAnswer,
)

EDGE_FIX_ENV = "PORTSIDE_LOCAL_EDGE_FIX"
UPLOAD_HOST_ENV = "PORTSIDE_LOCAL_UPLOAD_HOST"
_UPLOAD_SESSION = re.compile(r"^/v2/.+/blobs/uploads/[A-Za-z0-9-]+$")
_UPLOAD_START = re.compile(r"^/v2/.+/blobs/uploads/?$")

# API Gateway's table of headers "dropped, remapped, or otherwise modified" for REST APIs
# ("Amazon API Gateway important notes"), its Lambda integration columns. Request side: never
# in the event.
REQUEST_DROPPED = frozenset(
    {
        "connection",
        "content-md5",
        "expect",
        "max-forwards",
        "proxy-authenticate",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "www-authenticate",
    }
)
# Response side: renamed to x-amzn-Remapped-<name> (Date and Server then carry API Gateway's
# own value, if any, under their name).
RESPONSE_REMAPPED = frozenset(
    {
        "authorization",
        "connection",
        "content-md5",
        "date",
        "max-forwards",
        "server",
        "user-agent",
        "www-authenticate",
    }
)
RESPONSE_DROPPED = frozenset(
    {"expect", "host", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade", "via"}
)
# AWS's table says a Lambda's Content-Length passes; captures of live REST APIs show it as
# x-amzn-Remapped-Content-Length next to API Gateway's own, and for a body-less HEAD answer
# the behaviour is not documented. The gateway takes the reading that loses the most: API
# Gateway frames what it sends, and the Lambda's value is only a remapped header.
RESPONSE_FRAMED = "content-length"
REMAPPED_PREFIX = "x-amzn-Remapped-"

# Lambda@Edge (origin-response): headers not exposed to the function, which it may not add,
# and headers it may read but not change. Either mistake makes CloudFront answer 502.
EDGE_DISALLOWED = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "upgrade",
        "x-accel-buffering",
        "x-accel-charset",
        "x-accel-limit-rate",
        "x-accel-redirect",
        "x-amzn-auth",
        "x-amzn-cf-billing",
        "x-amzn-cf-id",
        "x-amzn-cf-xff",
        "x-amzn-errortype",
        "x-amzn-fle-profile",
        "x-amzn-header-count",
        "x-amzn-header-order",
        "x-amzn-lambda-integration-tag",
        "x-amzn-requestid",
        "x-cache",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
EDGE_DISALLOWED_PREFIXES = ("x-amz-cf-", "x-edge-")
EDGE_READ_ONLY = frozenset({"transfer-encoding", "via"})
EDGE_VALIDATION_FAILED = b"The Lambda function result failed validation."

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
HeaderList = list[tuple[str, str]]


@dataclass
class LambdaContext:
    function_name: str = "portside-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:portside-local"
    aws_request_id: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Answer:
    """An HTTP answer on its way to the client; headers in order, repeated names allowed."""

    status: int
    headers: HeaderList = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def is_upload_body(method: str, path: str, query: Mapping[str, str]) -> bool:
    if method in ("PATCH", "PUT") and _UPLOAD_SESSION.match(path):
        return True
    return method == "POST" and bool(_UPLOAD_START.match(path)) and "digest" in query


class RequestBody(io.BufferedIOBase):
    """A request body as the dispatchers read it (``wsgi.input`` underneath).

    cheroot decodes a chunked body while it is read and raises ``ValueError`` when the bytes
    are not chunks (a bad size line, a chunk not followed by CRLF, a body cut short), deep
    inside whatever was reading: the dispatcher took it for a bug and answered 500. Here it
    becomes ``malformed``, the spec's 400 for the resource the body was sent to, which the
    service's read loops already treat as any refused body: nothing saved, and what the
    request wrote itself removed.
    """

    def __init__(self, stream: Any, malformed: type[RegistryError]) -> None:
        super().__init__()
        self._stream = stream
        self._malformed = malformed

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        try:
            # cheroot's readers take None, not -1, for "everything".
            data: bytes = self._stream.read(None if size is None or size < 0 else size)
        except ValueError as exc:
            raise self._malformed(f"the request body is not validly chunked: {exc}") from exc
        return data


def malformed_body_error(method: str, path: str, query: Mapping[str, str]) -> type[RegistryError]:
    """The spec's error for a body that cannot be read as framed, by what it was sent to."""
    if is_upload_body(method, path, query) or _UPLOAD_START.match(path):
        return BlobUploadInvalidError
    if "/manifests/" in path and path.startswith("/v2/"):
        return ManifestInvalidError
    return BadRequestError


def framing_refusal(environ: Mapping[str, Any], request: HttpRequest) -> HttpResponse | None:
    """A 400 for a request that carries both ``Transfer-Encoding`` and ``Content-Length``.

    RFC 9112 (6.3) lets a server refuse such a request (it is how requests are smuggled past
    a proxy that reads the other header) and asks it to close the connection after
    answering. Refused before its body is read, it changes nothing; the unread chunks make
    ``FramingGateway`` close the connection.
    """
    if not (environ.get("HTTP_TRANSFER_ENCODING") and environ.get("CONTENT_LENGTH")):
        return None
    error = malformed_body_error(request.method, request.path, request.query)(
        "a request may not carry both Transfer-Encoding and Content-Length"
    )
    return error_answer(request.path, error)


def error_answer(path: str, error: RegistryError) -> HttpResponse:
    """``error`` in the error format of the API that ``path`` belongs to."""
    if path.startswith("/api/v1/"):
        return api_error_response(error)
    answer = error_response(error)
    answer.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")
    return answer


def _switch(name: str) -> bool:
    return os.environ.get(name, "on").strip().lower() not in ("off", "0", "false", "no")


def edge_fix_from_env() -> bool:
    """The edge fix runs unless ``PORTSIDE_LOCAL_EDGE_FIX`` says ``off`` (or 0/false/no)."""
    return _switch(EDGE_FIX_ENV)


def upload_host_from_env() -> bool:
    """The upload-host stand-in serves upload bodies unless ``PORTSIDE_LOCAL_UPLOAD_HOST``
    says ``off``: the ``lite`` stage, where they meet API Gateway's limits like any request."""
    return _switch(UPLOAD_HOST_ENV)


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _status_line(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Unknown')}"


class LocalGateway:
    def __init__(
        self,
        app_factory: Callable[[], Chalice],
        upload_api: Callable[[], V2Api],
        *,
        edge_fix: bool = True,
        upload_host: bool = True,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
        lambda_workers: int = 16,
        access_log: Callable[[float, str, str, str, int, int, str], None] | None = None,
    ):
        # API Gateway's access log: (request time, request id, method, path, status, response
        # length, client ip) of each answer it gives (access_logs.LocalAccessLogs.api_record).
        self._access_log = access_log
        self._app_factory = app_factory
        self._upload_api = upload_api
        self._edge_fix = edge_fix
        # Without an upload host (the lite stage) the API's upload Locations name the API
        # itself, so upload bodies take the same way as every other request.
        self._upload_host = upload_host
        self._timeout = integration_timeout
        self._local = threading.local()
        # Lambda invocations run here, so that API Gateway's timeout can answer while the
        # function goes on (as a Lambda does after API Gateway gave up on it).
        self._lambdas = ThreadPoolExecutor(lambda_workers, thread_name_prefix="local-lambda")

    def _app(self) -> Chalice:
        # Chalice stores the current request on the app object: one app per worker thread.
        app: Chalice | None = getattr(self._local, "app", None)
        if app is None:
            app = self._local.app = self._app_factory()
        return app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = wsgi_request(environ)
        refused = framing_refusal(environ, request)
        if refused is not None:
            return reply(start_response, refused.status, refused.headers, refused.body)
        if self._upload_host and is_upload_body(request.method, request.path, request.query):
            response = self._upload_api().handle(request)
            return reply(start_response, response.status, response.headers, response.body)
        started = time.time()
        answer = self._api_gateway(environ, request)
        if self._access_log is not None:
            self._access_log(
                started,
                answer.header("x-amzn-RequestId") or str(uuid.uuid4()),
                request.method,
                request.path,
                answer.status,
                len(answer.body),
                environ.get("REMOTE_ADDR") or "-",
            )
        if self._edge_fix:
            answer = cloudfront_origin_response(answer, request, environ.get("QUERY_STRING", ""))
        return send(start_response, answer, request.method)

    def _api_gateway(self, environ: dict[str, Any], request: HttpRequest) -> Answer:
        method, path = request.method, request.path
        try:
            body = (
                request.body.read(API_PAYLOAD_LIMIT + 1) if method not in ("GET", "HEAD") else b""
            )
        except RegistryError as error:
            # The front door could not read the body: the Lambda is never invoked.
            refused = error_answer(path, error)
            return Answer(refused.status, list(refused.headers.items()), refused.body)
        if len(body) > API_PAYLOAD_LIMIT:
            return gateway_answer(API_PAYLOAD_TOO_LARGE, request_id=None)
        request_id = str(uuid.uuid4())
        if path.startswith("/api/v1/"):
            # The management API matches the path as sent (%2F inside repository names).
            raw_path = (environ.get("REQUEST_URI") or path).split("?", 1)[0]
            if raw_path.startswith("/api/v1/"):
                path = raw_path
        elif not path.startswith("/v2"):
            return gateway_answer(MISSING_AUTHENTICATION_TOKEN, request_id)
        headers = {k: v for k, v in request.headers.items() if k not in REQUEST_DROPPED}
        # API Gateway tells the Lambda how the client connected.
        headers.setdefault("x-forwarded-proto", environ.get("wsgi.url_scheme", "http"))
        event = _proxy_event(
            method, path, request.query_lists, headers, body, text_body=_is_text(headers, body)
        )
        event["requestContext"]["requestId"] = request_id
        if len(json.dumps(event).encode()) > LAMBDA_PAYLOAD_LIMIT:
            return gateway_answer(LAMBDA_REQUEST_TOO_LARGE, request_id)
        invocation = self._lambdas.submit(self._invoke, event, request_id)
        try:
            result = invocation.result(timeout=self._timeout)
        except FutureTimeout:
            return gateway_answer(INTEGRATION_TIMEOUT, request_id)
        except Exception:
            return gateway_answer(INTEGRATION_FAILURE, request_id)
        if len(json.dumps(result, default=str).encode()) > LAMBDA_PAYLOAD_LIMIT:
            return gateway_answer(INTEGRATION_FAILURE, request_id)
        return integration_response(result, method, request_id)

    def _invoke(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._app()(event, LambdaContext(aws_request_id=request_id))
        return result


def _is_text(headers: Mapping[str, str], body: bytes) -> bool:
    """API Gateway passes a body as text unless its type is one of the API's binary media
    types. A body that is not UTF-8 goes base64 here whatever its type (AWS does not say what
    it does with one; nothing Portside serves through the Lambda sends such a body)."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in BINARY_TYPES:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def gateway_answer(answer: GatewayAnswer, request_id: str | None) -> Answer:
    """One of API Gateway's own answers, as the stack configures it (or AWS's default)."""
    headers: HeaderList = [("Content-Type", answer.content_type), *answer.headers]
    headers.append(("Date", formatdate(usegmt=True)))
    if request_id is not None:
        headers.append(("x-amzn-RequestId", request_id))
    headers.append(("Content-Length", str(len(answer.body))))
    return Answer(answer.status, headers, answer.body)


def integration_response(result: Mapping[str, Any], method: str, request_id: str) -> Answer:
    """What API Gateway makes of a Lambda proxy result: the body it holds, the Lambda's
    headers after AWS's remapping, and API Gateway's own Date, framing and request id."""
    raw = result.get("body") or b""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    if method == "HEAD":
        body = b""
    headers: HeaderList = []
    for name, value in _lambda_headers(result):
        lower = name.lower()
        if lower in RESPONSE_DROPPED:
            continue
        if lower in RESPONSE_REMAPPED or lower == RESPONSE_FRAMED:
            headers.append((REMAPPED_PREFIX + name, value))
        else:
            headers.append((name, value))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    headers.append(("Date", formatdate(usegmt=True)))
    headers.append(("x-amzn-RequestId", request_id))
    headers.append(("Content-Length", str(len(body))))
    return Answer(int(result.get("statusCode") or 200), headers, body)


def _lambda_headers(result: Mapping[str, Any]) -> HeaderList:
    """``multiValueHeaders`` win over ``headers`` for the same name, as API Gateway merges."""
    multi = result.get("multiValueHeaders") or {}
    pairs = [(name, str(v)) for name, values in multi.items() for v in values]
    multi_names = {name.lower() for name in multi}
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in multi_names:
            pairs.append((name, str(value)))
    return pairs


def cloudfront_origin_response(answer: Answer, request: HttpRequest, query_string: str) -> Answer:
    """Run the edge function on the origin's answer the way CloudFront invokes it."""
    exposed: dict[str, list[dict[str, str]]] = {}
    hidden: HeaderList = []
    for name, value in answer.headers:
        if _edge_disallowed(name):
            hidden.append((name, value))
        else:
            exposed.setdefault(name.lower(), []).append({"key": name, "value": value})
    before = {name: list(entries) for name, entries in exposed.items()}
    event = {
        "Records": [
            {
                "cf": {
                    "config": {
                        "distributionDomainName": "local.cloudfront.net",
                        "distributionId": "LOCAL",
                        "eventType": "origin-response",
                        "requestId": str(uuid.uuid4()),
                    },
                    "request": {
                        "clientIp": "127.0.0.1",
                        "headers": {},
                        "method": request.method,
                        "querystring": query_string,
                        "uri": request.path,
                    },
                    "response": {
                        "status": str(answer.status),
                        "statusDescription": _status_line(answer.status).split(" ", 1)[1],
                        "headers": exposed,
                    },
                }
            }
        ]
    }
    result = origin_response.handler(event, None)
    after: dict[str, list[dict[str, str]]] = result.get("headers", {})
    if not _edge_result_valid(before, after):
        failed = [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(EDGE_VALIDATION_FAILED))),
        ]
        return Answer(502, failed, EDGE_VALIDATION_FAILED)
    headers = [(e.get("key") or name, e["value"]) for name, es in after.items() for e in es]
    return Answer(int(result.get("status", answer.status)), headers + hidden, answer.body)


def _edge_disallowed(name: str) -> bool:
    lower = name.lower()
    return lower in EDGE_DISALLOWED or lower.startswith(EDGE_DISALLOWED_PREFIXES)


def _edge_result_valid(
    before: Mapping[str, list[dict[str, str]]], after: Mapping[str, list[dict[str, str]]]
) -> bool:
    if any(_edge_disallowed(name) for name in after):
        return False
    return all(before.get(name) == after.get(name) for name in EDGE_READ_ONLY)


def send(start_response: StartResponse, answer: Answer, method: str) -> Iterable[bytes]:
    """Write an answer as it is: a HEAD answer keeps whatever Content-Length it carries."""
    start_response(_status_line(answer.status), list(answer.headers))
    return [b"" if method == "HEAD" else answer.body]


def wsgi_request(environ: dict[str, Any]) -> HttpRequest:
    """The request as the dispatchers see it, its body still streaming from the socket."""
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    headers = request_headers(environ)
    proto = headers.get("x-forwarded-proto", environ.get("wsgi.url_scheme", "http"))
    length_text = environ.get("CONTENT_LENGTH") or ""
    method = environ["REQUEST_METHOD"].upper()
    path = environ.get("PATH_INFO", "/") or "/"
    query = dict(pairs)
    return HttpRequest(
        method=method,
        path=path,
        query=query,
        headers=headers,
        # A BinaryIO to its readers (they only call read()).
        body=cast(
            BinaryIO, RequestBody(environ["wsgi.input"], malformed_body_error(method, path, query))
        ),
        content_length=int(length_text) if is_decimal(length_text) else None,
        base_url=f"{proto}://{headers.get('host', 'localhost')}",
        query_lists=query_lists(pairs),
    )


def reply(
    start_response: StartResponse, status: int, headers: dict[str, str], body: bytes
) -> Iterable[bytes]:
    """Send a response; a HEAD answer keeps the Content-Length of what a GET would send."""
    header_list = [(k, v) for k, v in headers.items() if k.lower() != "content-length"]
    length = headers.get("Content-Length") or headers.get("content-length")
    header_list.append(("Content-Length", length if length is not None else str(len(body))))
    start_response(_status_line(status), header_list)
    return [body]


def query_lists(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for k, v in pairs:
        lists.setdefault(k, []).append(v)
    return lists


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def _proxy_event(
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: dict[str, str],
    body: bytes,
    *,
    text_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy integration event, as Lambda would receive it. The body
    is base64-encoded unless ``text_body`` (API Gateway sends text bodies as they are)."""
    prefix = "/api/v1" if path.startswith("/api/v1/") else "/v2"
    rest = path[len(prefix) :].lstrip("/")
    resource = f"{prefix}/{{proxy+}}" if rest else prefix
    multi_query = {k: list(v) for k, v in query.items()}
    if not body:
        event_body: str | None = None
    elif text_body:
        event_body = body.decode("utf-8")
    else:
        event_body = base64.b64encode(body).decode("ascii")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": rest} if rest else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": event_body,
        "isBase64Encoded": bool(body) and not text_body,
    }
