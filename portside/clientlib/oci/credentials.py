"""Registry credentials from docker's ``config.json``, found the way docker finds them.

- A credential helper applies to a host when ``credHelpers`` names one for it, else when
  ``credsStore`` names the default one. It is then the only place looked in: credentials it
  does not have are no credentials (docker does not fall back to ``auths`` either). A
  ``credHelpers`` entry set to ``""`` means "no helper" for that host.
- Without a helper, the ``auths`` entry for the host (``auth``: base64 ``user:password``, or
  ``username``/``password``, or an ``identitytoken``).

A helper is the program ``docker-credential-<name>`` on ``PATH``, run as ``<program> get``
with the server address on stdin; it answers ``{"ServerURL", "Username", "Secret"}`` or exits
non-zero saying ``credentials not found``. The username ``<token>`` marks an identity token
(an OAuth2 refresh token), which the client trades for registry tokens with the refresh-token
grant of the token endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..dockerconfig import credential_helper_for
from ..errors import ClientError
from .registry import Credentials

HELPER_PREFIX = "docker-credential-"
IDENTITY_TOKEN_USERNAME = "<token>"
HELPER_TIMEOUT = 60.0
# Docker keeps Docker Hub's credentials under its v1 index URL, not a host name.
DOCKER_HUB_ADDRESS = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def server_address(host: str) -> str:
    """The key docker files ``host``'s credentials under (and hands credential helpers)."""
    return DOCKER_HUB_ADDRESS if host in DOCKER_HUB_HOSTS else host


def docker_credentials(
    host: str, config: Mapping[str, Any], config_path: Path | str = "config.json"
) -> Credentials | None:
    """The credentials docker would use for ``host`` under ``config`` (None: anonymous)."""
    address = server_address(host)
    helper = credential_helper_for(config, address)
    if helper:
        helpers = config.get("credHelpers")
        key = "credHelpers" if isinstance(helpers, dict) and address in helpers else "credsStore"
        return helper_credentials(helper, address, f"{key} of {config_path}")
    auths = config.get("auths")
    return auths_credentials(auths, host) if isinstance(auths, dict) else None


def helper_credentials(helper: str, address: str, origin: str = "") -> Credentials | None:
    """Ask ``docker-credential-<helper>`` for ``address``'s credentials (None: it has none)."""
    name = HELPER_PREFIX + helper
    where = f" (named by {origin})" if origin else ""
    program = shutil.which(name)
    if program is None:
        raise ClientError(f"the docker credential helper {name}{where} is not on PATH")
    try:
        done = subprocess.run(
            [program, "get"],
            input=address.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClientError(
            f"{name} get {address} gave no answer within {HELPER_TIMEOUT:.0f} seconds"
        ) from exc
    except OSError as exc:
        raise ClientError(f"cannot run {program}: {exc.strerror or exc}") from exc
    output = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        errors = done.stderr.decode("utf-8", "replace").strip()
        if "credentials not found" in f"{output}\n{errors}".lower():
            return None
        said = (errors or output).splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ClientError(f"{name} get {address} failed: {said[0][:300]}")
    try:
        answer = json.loads(output)
    except ValueError as exc:
        raise ClientError(f"{name} get {address} did not answer JSON") from exc
    if not isinstance(answer, dict):
        raise ClientError(f"{name} get {address} did not answer a JSON object")
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    if username == IDENTITY_TOKEN_USERNAME:
        return Credentials("", secret, identity_token=True)
    return Credentials(username if isinstance(username, str) else "", secret)


def auths_credentials(auths: Mapping[str, Any], host: str) -> Credentials | None:
    """``auths``' entry for ``host``: its exact key first, then any key (a URL such as
    ``https://host/v1/``) whose host name is ``host``."""
    exact = [key for key in (host, server_address(host)) if key in auths]
    others = [key for key in auths if key not in exact and _hostname(key) == host]
    for key in [*exact, *others]:
        entry = auths[key]
        found = _entry_credentials(entry) if isinstance(entry, dict) else None
        if found is not None:
            return found
    return None


def _hostname(key: str) -> str:
    """docker's reading of an ``auths`` key: drop the scheme and any path."""
    if "://" in key:
        return urlsplit(key).netloc
    return key.split("/", 1)[0]


def _entry_credentials(entry: Mapping[str, Any]) -> Credentials | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials("", token, identity_token=True)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, _, secret = base64.b64decode(auth).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, secret)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and (username or password):
        return Credentials(username, password)
    return None
