"""Errors the client raises; each carries a message fit for one line on a terminal."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Anything that should end a CLI command with ``Error: <message>`` and exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ClientError):
    """Missing or unusable settings (API URL, token, config file)."""


class ApiUnreachable(ClientError):
    """No HTTP answer at all: connection refused, DNS failure, timeout, TLS failure."""

    def __init__(self, api_url: str, reason: str) -> None:
        super().__init__(f"the Portside API at {api_url} is unreachable ({reason})")
        self.api_url = api_url
        self.reason = reason


class ApiError(ClientError):
    """The API answered with an error status.

    ``error_id`` and ``message`` come from the API's ``{"id", "message"}`` body when it has
    one; ``body`` keeps the whole decoded body (e.g. ``eligibility_reasons``).
    """

    def __init__(
        self,
        status: int,
        error_id: str | None,
        message: str,
        body: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        # The API's own message, without hints the client added to ``message``.
        self.detail = detail or message
        self.status = status
        self.error_id = error_id
        self.body: dict[str, Any] = body or {}

    @property
    def eligibility_reasons(self) -> list[str]:
        reasons = self.body.get("eligibility_reasons")
        if isinstance(reasons, list):
            return [str(reason) for reason in reasons]
        return []
