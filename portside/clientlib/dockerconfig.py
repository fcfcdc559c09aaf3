"""Reading, merging and writing docker's ``config.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .files import write_json_private

__all__ = [
    "credential_helper_for",
    "docker_config_path",
    "load_docker_config",
    "merge_auths",
    "write_json_private",
]


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (docker's own rule)."""
    env = os.environ if environ is None else environ
    directory = env.get("DOCKER_CONFIG")
    base = Path(directory).expanduser() if directory else Path.home() / ".docker"
    return base / "config.json"


def load_docker_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read docker config {path}: {exc.strerror or exc}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"docker config {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"docker config {path} must hold a JSON object")
    return data


def merge_auths(existing: dict[str, Any], new_auths: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with each of ``new_auths`` set (replacing that host's entry), all else kept."""
    merged = dict(existing)
    current = merged.get("auths")
    auths = dict(current) if isinstance(current, dict) else {}
    auths.update(new_auths)
    merged["auths"] = auths
    return merged


def credential_helper_for(config: Mapping[str, Any], host: str) -> str | None:
    """The credential helper docker would use for ``host`` instead of ``auths``, if any."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
        return str(helpers[host])
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None
