"""The one place where errors become HTTP responses with the spec's JSON body."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger

from chalicelib.registry.errors import RegistryError

from .messages import HttpResponse

logger = Logger(service="portside", child=True)


def error_response(error: RegistryError, method: str = "GET") -> HttpResponse:
    body = json.dumps(
        {"errors": [{"code": error.code, "message": error.message, "detail": error.detail}]}
    ).encode()
    headers = {"Content-Type": "application/json", **error.headers}
    headers["Content-Length"] = str(len(body))
    return HttpResponse(error.status, headers, b"" if method == "HEAD" else body)


def internal_error_response(exc: BaseException, method: str = "GET") -> HttpResponse:
    logger.exception("unhandled error", extra={"error": type(exc).__name__})
    error = RegistryError("internal error")
    return error_response(error, method)
