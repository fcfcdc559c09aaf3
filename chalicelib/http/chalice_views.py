"""The Chalice side of /v2/: one greedy route feeding our own route table."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Protocol

from chalice.app import Blueprint, Request, Response

from .messages import HttpRequest, HttpResponse
from .telemetry import logger
from .v2 import V2Api

# OPTIONS too: otherwise Chalice answers it itself, with a body that is not the spec's JSON.
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Request bodies of these types reach the Lambda base64-encoded (API Gateway binaryMediaTypes);
# responses never use them, since Chalice refuses a binary response to a request whose Accept
# header does not name a binary type.
BINARY_TYPES = [
    "application/octet-stream",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
]


class RequestHandler(Protocol):
    """What a blueprint feeds: the /v2 dispatcher or the management API's route table (this
    layer does not import either's package: imports point down, to ``messages``)."""

    def handle(self, request: HttpRequest) -> HttpResponse: ...


def to_http_request(request: Request, prefix: str = "/v2") -> HttpRequest:
    proxy = (request.uri_params or {}).get("proxy")
    headers = {k.lower(): v for k, v in request.headers.items()}
    raw = request.raw_body or b""
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    proto = headers.get("x-forwarded-proto", "https")
    host = headers.get("host", "localhost")
    params = request.query_params
    query = dict(params or {})
    query_lists = {k: list(params.getlist(k)) for k in params} if params else {}
    return HttpRequest(
        method=request.method.upper(),
        path=_path(request, prefix, proxy),
        query=query,
        headers=headers,
        body=io.BytesIO(body),
        content_length=len(body),
        base_url=f"{proto}://{host}",
        query_lists=query_lists,
    )


def _path(request: Request, prefix: str, proxy: str | None) -> str:
    # The management API matches the path as sent (with %2F inside repository names), which
    # the event's ``path`` keeps; /v2 names never contain encoded characters.
    if prefix != "/v2":
        raw = request.to_original_event().get("path")
        if isinstance(raw, str) and raw.startswith(prefix):
            return raw
    return f"{prefix}/{proxy}" if proxy else f"{prefix}/"


# API Gateway renames WWW-Authenticate (to x-amzn-Remapped-WWW-Authenticate) and frames
# Content-Length itself, so a HEAD answer would lose the size docker reads from it. The Lambda
# sends both again under names API Gateway passes through; the CloudFront origin-response
# function (portside_edge/origin_response.py, which uses the same names) restores them.
CARRIED_PREFIX = "Portside-Original-"
CARRIED_HEADERS = ("WWW-Authenticate", "Content-Length")


def to_chalice_response(response: HttpResponse) -> Response:
    content_type = response.headers.get("Content-Type", "")
    # Manifests are UTF-8 JSON (checked on push), so as text they pass through byte for byte.
    body = response.body if content_type in BINARY_TYPES else response.body.decode("utf-8")
    headers: dict[str, str | list[str]] = dict(response.headers)
    for name in CARRIED_HEADERS:
        if name in response.headers:
            headers[CARRIED_PREFIX + name] = response.headers[name]
    return Response(body=body, status_code=response.status, headers=headers)


def v2_blueprint(api: Callable[[], V2Api]) -> Blueprint:
    bp = Blueprint(__name__)

    def handle() -> Response:
        request = bp.current_request
        # Log lines of this invocation carry API Gateway's request id.
        logger.set_correlation_id((request.context or {}).get("requestId"))
        return to_chalice_response(api().handle(to_http_request(request)))

    # Clients send manifests, blobs and forms under many media types; the dispatcher
    # validates bodies itself, so Chalice must not refuse any Content-Type.
    @bp.route("/v2", methods=METHODS, content_types=["*/*"])
    def v2_root() -> Response:
        return handle()

    @bp.route("/v2/{proxy+}", methods=METHODS, content_types=["*/*"])
    def v2_proxy() -> Response:
        return handle()

    return bp


def management_blueprint(api: Callable[[], RequestHandler]) -> Blueprint:
    bp = Blueprint(__name__)

    @bp.route("/api/v1/{proxy+}", methods=METHODS, content_types=["*/*"])
    def management_proxy() -> Response:
        request = bp.current_request
        logger.set_correlation_id((request.context or {}).get("requestId"))
        return to_chalice_response(api().handle(to_http_request(request, "/api/v1")))

    return bp
