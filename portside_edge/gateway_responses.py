"""API Gateway's own answers on the Portside REST API: one definition for the stack (which
configures the customizable ones as gateway responses) and the local gateway (which answers
exactly these, so that tests see what clients will see on AWS).

For the stack: every answer in ``STACK_GATEWAY_RESPONSES`` becomes an entry of the API's
``x-amazon-apigateway-gateway-responses`` (in its OpenAPI body, so that a change redeploys
the stage) for ``answer.response_type``, with
``StatusCode = answer.stack_status_code()`` (absent for ``DEFAULT_5XX``: it keeps the status
of the failure it stands for) and ``ResponseTemplates = answer.templates()``. The other
answers are AWS's defaults, listed because the local gateway gives them too:

* ``REQUEST_TOO_LARGE`` (413) cannot be customized: API Gateway's documentation says so
  ("Customizing the default gateway response for 413 REQUEST_TOO_LARGE isn't currently
  supported") and a configured one is ignored. Clients get AWS's body.
* A request body over 10 MB is refused before the API is even selected, in plain text.
* ``MISSING_AUTHENTICATION_TOKEN`` (403) is what a path outside ``/v2`` and ``/api/v1`` gets;
  no registry client goes there, so AWS's answer stays.

The bodies of AWS's own answers are as captured from live APIs (API Gateway does not document
them byte for byte).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# API Gateway refuses request bodies over 10 MB (10,485,760 bytes), whatever the integration.
API_PAYLOAD_LIMIT = 10 * 1024 * 1024
# A synchronous Lambda invocation's request (the whole proxy event, binary bodies base64-encoded
# inside it) and its response are limited to 6 MB each (6,291,456 bytes).
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
# API Gateway REST waits at most 29 s for its integration (the default, and what Portside uses).
INTEGRATION_TIMEOUT_SECONDS = 29


def _oci_error(code: str, message: str, detail: object = None) -> bytes:
    """The distribution spec's error body."""
    return json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()


@dataclass(frozen=True)
class GatewayAnswer:
    """An answer API Gateway gives itself, without (or instead of) the Lambda's."""

    # API Gateway's GatewayResponse type; None for an answer that is not a gateway response.
    response_type: str | None
    status: int
    body: bytes
    content_type: str = "application/json"
    # Headers API Gateway adds to this answer (beyond Content-Type and x-amzn-RequestId).
    headers: tuple[tuple[str, str], ...] = ()
    # True: the stack configures this body; False: AWS's default answer, listed for the local
    # gateway only.
    configured: bool = False

    def templates(self) -> dict[str, str]:
        """``ResponseTemplates`` of the GatewayResponse (a static body: no VTL in it)."""
        return {self.content_type: self.body.decode()}

    def stack_status_code(self) -> str | None:
        # DEFAULT_5XX with no status keeps each failure's own 5xx (502 for a Lambda error).
        return None if self.response_type == "DEFAULT_5XX" else str(self.status)


# Configured by the stack: OCI error bodies, so that registry clients show a useful message.
INTEGRATION_TIMEOUT = GatewayAnswer(
    response_type="INTEGRATION_TIMEOUT",
    status=504,
    body=_oci_error(
        "UNAVAILABLE",
        "the registry did not answer within API Gateway's integration timeout; retry",
        {"timeout_seconds": INTEGRATION_TIMEOUT_SECONDS},
    ),
    configured=True,
)
# The Lambda failed (an unhandled error, a crash, or a response over 6 MB): API Gateway answers
# 502. Configured as DEFAULT_5XX so that every other 5xx of API Gateway's own reads the same.
INTEGRATION_FAILURE = GatewayAnswer(
    response_type="DEFAULT_5XX",
    status=502,
    body=_oci_error("UNKNOWN", "the registry failed to answer; retry"),
    configured=True,
)
THROTTLED = GatewayAnswer(
    response_type="THROTTLED",
    status=429,
    body=_oci_error("TOOMANYREQUESTS", "too many requests; retry later"),
    configured=True,
)

# AWS's own answers, which the stack cannot or does not change.
LAMBDA_REQUEST_TOO_LARGE = GatewayAnswer(
    response_type="REQUEST_TOO_LARGE",
    status=413,
    body=b'{"message": "Request Too Long"}',
    headers=(("x-amzn-ErrorType", "BadRequestException"),),
)
MISSING_AUTHENTICATION_TOKEN = GatewayAnswer(
    response_type="MISSING_AUTHENTICATION_TOKEN",
    status=403,
    body=b'{"message":"Missing Authentication Token"}',
    headers=(("x-amzn-ErrorType", "MissingAuthenticationTokenException"),),
)
API_PAYLOAD_TOO_LARGE = GatewayAnswer(
    response_type=None,
    status=413,
    body=f"HTTP content length exceeded {API_PAYLOAD_LIMIT} bytes.".encode(),
    content_type="text; charset=utf-8",
)

ALL_ANSWERS = (
    INTEGRATION_TIMEOUT,
    INTEGRATION_FAILURE,
    THROTTLED,
    LAMBDA_REQUEST_TOO_LARGE,
    MISSING_AUTHENTICATION_TOKEN,
    API_PAYLOAD_TOO_LARGE,
)
STACK_GATEWAY_RESPONSES = tuple(answer for answer in ALL_ANSWERS if answer.configured)
