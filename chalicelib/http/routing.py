"""Route tables of our own: Chalice hands every /v2/ and /api/v1/ request to one greedy
route, and the dispatchers match paths here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from chalicelib.registry.errors import MethodNotAllowedError, RouteNotFoundError

H = TypeVar("H")


@dataclass(frozen=True)
class Route(Generic[H]):
    pattern: re.Pattern[str]
    methods: dict[str, H]


def route(pattern: str, **methods: H) -> Route[H]:
    return Route(re.compile(pattern), methods)


def match_route(routes: tuple[Route[H], ...], method: str, path: str) -> tuple[H, dict[str, str]]:
    """The first route whose pattern matches ``path``: its handler for ``method`` and the
    pattern's named groups; 404 when no pattern matches, 405 (with Allow) when the method
    does not."""
    for candidate in routes:
        found = candidate.pattern.match(path)
        if found is None:
            continue
        handler = candidate.methods.get(method)
        if handler is None:
            allowed = ", ".join(sorted(candidate.methods))
            raise MethodNotAllowedError(
                f"method {method} is not allowed here; allowed: {allowed}",
                detail={"method": method, "allowed": sorted(candidate.methods)},
                headers={"Allow": allowed},
            )
        return handler, found.groupdict()
    raise RouteNotFoundError(f"no such endpoint: {method} {path}")
