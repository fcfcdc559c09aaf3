"""HTTP client for the Portside management API (``/api/v1``), used by the ``portside`` CLI.

Only ``requests`` and the standard library: importing this package never pulls in boto3,
chalice or the registry core.
"""

from __future__ import annotations

from .api import ApiClient, Page
from .config import ClientConfig, ResolvedSettings, default_config_path, resolve_settings
from .errors import ApiError, ApiUnreachable, ClientError, ConfigError

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "ClientConfig",
    "ClientError",
    "ConfigError",
    "Page",
    "ResolvedSettings",
    "default_config_path",
    "resolve_settings",
]
