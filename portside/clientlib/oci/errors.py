"""Errors of the distribution client (all ``ClientError``: one line on a terminal)."""

from __future__ import annotations

from typing import Any

from ..errors import ClientError


class RegistryError(ClientError):
    """The registry answered with an error status (``code`` from its OCI error body)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DigestMismatch(ClientError):
    """Bytes that do not hash to the digest (or size) that names them."""


def describe_error(method: str, url: str, status: int, body: Any) -> tuple[str, str | None]:
    """``(message, code)`` for an error answer, from an OCI ``{"errors": [...]}`` body."""
    code = None
    detail = ""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code") or "") or None
            detail = str(errors[0].get("message") or "")
    text = f"{method} {url}: HTTP {status}"
    if code:
        text += f" {code}"
    if detail:
        text += f": {detail}"
    return text, code
