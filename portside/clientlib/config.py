"""Where the CLI finds its API URL and token.

Precedence, highest first: command-line flags (``--api-url``, ``--token``), environment
(``PORTSIDE_API_URL``, ``PORTSIDE_TOKEN``), then the config file written by
``portside auth init`` (``$PORTSIDE_CONFIG`` or ``~/.config/portside/config.json``, mode 0600).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .files import write_json_private

ENV_API_URL = "PORTSIDE_API_URL"
ENV_TOKEN = "PORTSIDE_TOKEN"
ENV_CONFIG = "PORTSIDE_CONFIG"


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$PORTSIDE_CONFIG``, else ``$XDG_CONFIG_HOME/portside/config.json`` (``~/.config``)."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "portside" / "config.json"


def normalize_api_url(raw: str) -> str:
    """Validate an API base URL and drop a trailing ``/`` or ``/api/v1``."""
    url = raw.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"invalid API URL {raw!r}: expected http://HOST[:PORT] or https://HOST[:PORT]"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"invalid API URL {raw!r}: it must not have a query or fragment")
    return url


@dataclass(frozen=True)
class ClientConfig:
    """The content of the config file."""

    api_url: str | None = None
    token: str | None = None

    @classmethod
    def load(cls, path: Path) -> ClientConfig:
        """Read the file; a missing file is an empty config."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        api_url = data.get("api_url")
        token = data.get("token")
        if api_url is not None and not isinstance(api_url, str):
            raise ConfigError(f"config file {path}: api_url must be a string")
        if token is not None and not isinstance(token, str):
            raise ConfigError(f"config file {path}: token must be a string")
        return cls(api_url=api_url or None, token=token or None)

    def save(self, path: Path) -> None:
        """Write the file atomically with mode 0600 (its directory is created 0700)."""
        write_json_private(path, {"api_url": self.api_url, "token": self.token})


@dataclass(frozen=True)
class ResolvedSettings:
    """Effective settings and where each came from (``flag``, ``env``, ``config`` or None)."""

    api_url: str | None
    api_url_source: str | None
    token: str | None
    token_source: str | None
    config_path: Path

    def require(self) -> tuple[str, str]:
        """The API URL and token, or a ConfigError that says how to provide them."""
        if not self.api_url:
            raise ConfigError(
                "no API URL: pass --api-url, set PORTSIDE_API_URL or run `portside auth init`"
            )
        if not self.token:
            raise ConfigError(
                "no API token: pass --token, set PORTSIDE_TOKEN or run `portside auth init`"
            )
        return normalize_api_url(self.api_url), self.token


def resolve_settings(
    api_url_flag: str | None,
    token_flag: str | None,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedSettings:
    """Apply the precedence flags > environment > config file. Empty values count as unset."""
    env = os.environ if environ is None else environ
    path = config_path or default_config_path(env)

    api_url, api_url_source = _first(api_url_flag, env.get(ENV_API_URL))
    token, token_source = _first(token_flag, env.get(ENV_TOKEN))
    if api_url is None or token is None:
        stored = ClientConfig.load(path)
        if api_url is None and stored.api_url:
            api_url, api_url_source = stored.api_url, "config"
        if token is None and stored.token:
            token, token_source = stored.token, "config"
    return ResolvedSettings(api_url, api_url_source, token, token_source, path)


def _first(flag: str | None, env_value: str | None) -> tuple[str | None, str | None]:
    if flag:
        return flag, "flag"
    if env_value:
        return env_value, "env"
    return None, None
