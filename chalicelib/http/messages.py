"""Framework-neutral HTTP request and response, so one dispatcher serves the Chalice app
(API Gateway events) and the streaming upload host (WSGI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass
class HttpRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # keys lower-cased
    body: BinaryIO
    content_length: int | None
    base_url: str  # scheme://host the client used

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
