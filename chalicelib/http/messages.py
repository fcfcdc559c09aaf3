"""Framework-neutral HTTP request and response, so one dispatcher serves the Chalice app
(API Gateway events) and the streaming upload host (WSGI)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO


@dataclass
class HttpRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # keys lower-cased
    body: BinaryIO
    content_length: int | None
    base_url: str  # scheme://host the client used
    # Every value of repeated query parameters (``scope`` at the token endpoint).
    query_lists: Mapping[str, list[str]] = field(default_factory=dict)

    def query_values(self, name: str) -> list[str]:
        values = self.query_lists.get(name)
        if values:
            return list(values)
        value = self.query.get(name)
        return [value] if value is not None else []

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    """A JSON body with its Content-Type and Content-Length (the management API's)."""
    data = json.dumps(body).encode()
    out = {"Content-Type": "application/json", **(headers or {})}
    out["Content-Length"] = str(len(data))
    return HttpResponse(status, out, data)
