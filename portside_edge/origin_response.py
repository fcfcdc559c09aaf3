"""CloudFront origin-response function for the API distribution (Lambda@Edge).

Deploy: Lambda@Edge function, runtime Python 3.12 (3.11 works too), in us-east-1, asset
directory ``portside_edge/``, handler ``origin_response.handler``, associated with the
behaviour of the API distribution that reaches API Gateway (its one default behaviour) as an
*origin-response* trigger (not viewer-response: CloudFront does not run viewer-response
functions, nor any CloudFront Function, when the origin answered 400 or above, and the 401
is the answer that matters). No body access and no environment variables are needed.

Why it exists: API Gateway REST APIs rename some headers of an integration's response (AWS
documents ``WWW-Authenticate``, ``Authorization``, ``Connection``, ``Content-MD5``, ``Date``,
``Max-Forwards``, ``Server`` and ``User-Agent`` as remapped to ``x-amzn-Remapped-<name>`` for
Lambda integrations). docker, podman and containerd read the Bearer challenge from
``WWW-Authenticate`` on the 401 of ``GET /v2/``; without it ``docker login`` fails. And API
Gateway answers a body-less ``HEAD`` with a ``Content-Length`` of its own framing, while
docker and containerd take a blob's or manifest's size from the ``Content-Length`` of its HEAD.

What it does:

* restores ``WWW-Authenticate`` from ``x-amzn-Remapped-WWW-Authenticate``, or from the copy
  the Lambda also sends as ``Portside-Original-WWW-Authenticate`` (older CloudFront
  documentation hid every ``X-Amzn-*`` header from edge functions; the copy makes the fix
  independent of that);
* on a ``HEAD``, sets ``Content-Length`` to the length the Lambda declared
  (``Portside-Original-Content-Length``, else ``x-amzn-Remapped-Content-Length``). Lambda@Edge
  allows this: only ``Transfer-Encoding`` and ``Via`` are read-only in origin-response events.
  On other methods CloudFront frames the body it has, which is the same length;
* removes the ``Portside-Original-*`` carriers and the remapped copies it restored, so that
  clients see each header once.

Other remapped headers (``Date``, ``Server``, ...) are left as API Gateway sent them: no
registry client reads them, and ``Date`` is API Gateway's own in either case.
"""

from __future__ import annotations

from typing import Any

# The prefix API Gateway gives a header it renames.
REMAPPED_PREFIX = "x-amzn-remapped-"
# The prefix under which the Lambda sends its own copy (chalicelib.http.chalice_views).
CARRIED_PREFIX = "portside-original-"

WWW_AUTHENTICATE = "WWW-Authenticate"
CONTENT_LENGTH = "Content-Length"

# CloudFront's header map: lower-case name -> [{"key": name as sent, "value": value}, ...].
Headers = dict[str, list[dict[str, str]]]


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    record = event["Records"][0]["cf"]
    response: dict[str, Any] = record["response"]
    method = str(record.get("request", {}).get("method", "GET")).upper()
    headers: Headers = response.setdefault("headers", {})
    restore_challenge(headers)
    if method == "HEAD":
        restore_head_length(headers)
    for name in list(headers):
        if name.startswith(CARRIED_PREFIX):
            del headers[name]
    return response


def restore_challenge(headers: Headers) -> None:
    """Give the client the ``WWW-Authenticate`` challenge the Lambda sent."""
    name = WWW_AUTHENTICATE.lower()
    values = _values(headers, REMAPPED_PREFIX + name) or _values(headers, CARRIED_PREFIX + name)
    headers.pop(REMAPPED_PREFIX + name, None)
    if values and name not in headers:
        headers[name] = [{"key": WWW_AUTHENTICATE, "value": value} for value in values]


def restore_head_length(headers: Headers) -> None:
    """A HEAD answer carries the length a GET would send (the blob's or manifest's size)."""
    name = CONTENT_LENGTH.lower()
    declared = _values(headers, CARRIED_PREFIX + name) or _values(headers, REMAPPED_PREFIX + name)
    headers.pop(REMAPPED_PREFIX + name, None)
    length = declared[0].strip() if declared else ""
    if length.isascii() and length.isdigit():
        headers[name] = [{"key": CONTENT_LENGTH, "value": length}]


def _values(headers: Headers, name: str) -> list[str]:
    return [entry["value"] for entry in headers.get(name, []) if entry.get("value")]
