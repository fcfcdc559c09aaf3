"""A WSGI stand-in for API Gateway in front of the Chalice app, plus the upload host.

Requests become API Gateway REST proxy events for the Chalice app, as on AWS. Upload
bodies (PATCH/PUT on an upload session, POST with ``digest``) never go through an event:
they stream from the socket into the same ``V2Api`` dispatcher, as on the upload host.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from chalice.app import Chalice

from chalicelib.http.messages import HttpRequest
from chalicelib.http.v2 import V2Api
from chalicelib.registry.names import is_decimal

# API Gateway refuses request bodies over 10 MB; so do we, to behave the same locally.
MAX_EVENT_BODY = 10 * 1024 * 1024
_UPLOAD_SESSION = re.compile(r"^/v2/.+/blobs/uploads/[A-Za-z0-9-]+$")
_UPLOAD_START = re.compile(r"^/v2/.+/blobs/uploads/?$")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class LambdaContext:
    function_name: str = "portside-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:portside-local"
    aws_request_id: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def is_upload_body(method: str, path: str, query: Mapping[str, str]) -> bool:
    if method in ("PATCH", "PUT") and _UPLOAD_SESSION.match(path):
        return True
    return method == "POST" and bool(_UPLOAD_START.match(path)) and "digest" in query


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
}


def _status_line(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Unknown')}"


class LocalGateway:
    def __init__(self, app_factory: Callable[[], Chalice], upload_api: Callable[[], V2Api]):
        self._app_factory = app_factory
        self._upload_api = upload_api
        self._local = threading.local()

    def _app(self) -> Chalice:
        # Chalice stores the current request on the app object: one app per server thread.
        app: Chalice | None = getattr(self._local, "app", None)
        if app is None:
            app = self._local.app = self._app_factory()
        return app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = wsgi_request(environ)
        method, path, headers = request.method, request.path, dict(request.headers)
        if is_upload_body(method, path, request.query):
            response = self._upload_api().handle(request)
            return reply(start_response, response.status, response.headers, response.body)

        body = (
            environ["wsgi.input"].read(MAX_EVENT_BODY + 1) if method not in ("GET", "HEAD") else b""
        )
        if len(body) > MAX_EVENT_BODY:
            payload = b'{"message":"Request Too Long"}'
            return reply(start_response, 413, {"Content-Type": "application/json"}, payload)
        if path.startswith("/api/v1/"):
            # The management API matches the path as sent (%2F inside repository names).
            raw_path = (environ.get("REQUEST_URI") or path).split("?", 1)[0]
            if raw_path.startswith("/api/v1/"):
                path = raw_path
        elif not path.startswith("/v2"):
            payload = b'{"message":"Missing Authentication Token"}'
            return reply(start_response, 403, {"Content-Type": "application/json"}, payload)
        # API Gateway tells the Lambda how the client connected.
        headers.setdefault("x-forwarded-proto", environ.get("wsgi.url_scheme", "http"))
        event = _proxy_event(method, path, request.query_lists, headers, body)
        result = self._app()(
            event, LambdaContext(aws_request_id=event["requestContext"]["requestId"])
        )
        out_headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(str(v) for v in values)
        raw = result.get("body") or b""
        if result.get("isBase64Encoded"):
            payload = base64.b64decode(raw)
        else:
            payload = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        if method == "HEAD":
            payload = b""
        return reply(start_response, int(result["statusCode"]), out_headers, payload)


def wsgi_request(environ: dict[str, Any]) -> HttpRequest:
    """The request as the dispatchers see it, its body still streaming from the socket."""
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    headers = request_headers(environ)
    proto = headers.get("x-forwarded-proto", environ.get("wsgi.url_scheme", "http"))
    length_text = environ.get("CONTENT_LENGTH") or ""
    return HttpRequest(
        method=environ["REQUEST_METHOD"].upper(),
        path=environ.get("PATH_INFO", "/") or "/",
        query=dict(pairs),
        headers=headers,
        body=environ["wsgi.input"],
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
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy integration event, as Lambda would receive it."""
    prefix = "/api/v1" if path.startswith("/api/v1/") else "/v2"
    rest = path[len(prefix) :].lstrip("/")
    resource = f"{prefix}/{{proxy+}}" if rest else prefix
    multi_query = {k: list(v) for k, v in query.items()}
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
        "body": base64.b64encode(body).decode("ascii") if body else None,
        "isBase64Encoded": bool(body),
    }
