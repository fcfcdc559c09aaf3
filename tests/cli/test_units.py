"""Pure functions of the CLI and its client library (no server needed)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from portside.cli.output import human_size, human_time, short_digest
from portside.clientlib import ClientConfig, ConfigError, resolve_settings
from portside.clientlib.api import ApiClient, segment
from portside.clientlib.config import default_config_path, normalize_api_url
from portside.clientlib.dockerconfig import (
    credential_helper_for,
    docker_config_path,
    merge_auths,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (500 * 1024 * 1024, "500 MiB"),
        (5 * 1024**3, "5 GiB"),
        (None, "-"),
        (True, "-"),
    ],
)
def test_human_size(value: object, text: str) -> None:
    assert human_size(value) == text


def test_human_time_and_digests() -> None:
    assert human_time("2026-11-28T12:00:00Z") == "2026-11-28 12:00:00 UTC"
    assert human_time("2026-11-28T14:00:00+02:00") == "2026-11-28 12:00:00 UTC"
    assert human_time(None, missing="never") == "never"
    assert human_time("soon") == "soon"
    assert short_digest("sha256:" + "a" * 64) == "sha256:" + "a" * 12


def test_paths_encode_slashes_in_repository_names() -> None:
    assert segment("team/api") == "team%2Fapi"
    assert ApiClient.repository_path("acme", "team/a b") == (
        "/registries/acme/repositories/team%2Fa%20b"
    )


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://r.example.com/", "https://r.example.com"),
        ("https://r.example.com/api/v1/", "https://r.example.com"),
    ],
)
def test_normalize_api_url(raw: str, url: str) -> None:
    assert normalize_api_url(raw) == url


@pytest.mark.parametrize("raw", ["r.example.com", "ftp://x", "http://", "http://x/?a=b"])
def test_normalize_api_url_refuses(raw: str) -> None:
    with pytest.raises(ConfigError):
        normalize_api_url(raw)


def test_config_file_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "config.json"
    ClientConfig("http://h", "t").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ClientConfig.load(path) == ClientConfig("http://h", "t")
    assert ClientConfig.load(tmp_path / "missing.json") == ClientConfig()


def test_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ClientConfig.load(path)


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    ClientConfig("http://file", "file-token").save(path)
    env = {"PORTSIDE_CONFIG": str(path)}

    s = resolve_settings(None, None, environ=env)
    assert (s.api_url, s.api_url_source, s.token, s.token_source) == (
        "http://file",
        "config",
        "file-token",
        "config",
    )
    env_set = {**env, "PORTSIDE_API_URL": "http://env", "PORTSIDE_TOKEN": "env-token"}
    s = resolve_settings(None, None, environ=env_set)
    assert (s.api_url, s.token, s.token_source) == ("http://env", "env-token", "env")
    s = resolve_settings("http://flag", "flag-token", environ=env_set)
    assert (s.api_url, s.token, s.api_url_source) == ("http://flag", "flag-token", "flag")
    # empty values count as unset
    s = resolve_settings("", None, environ={**env, "PORTSIDE_TOKEN": ""})
    assert (s.api_url, s.token) == ("http://file", "file-token")


def test_default_paths() -> None:
    assert default_config_path({"PORTSIDE_CONFIG": "/x/c.json"}) == Path("/x/c.json")
    assert default_config_path({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/portside/config.json")
    assert docker_config_path({"DOCKER_CONFIG": "/d"}) == Path("/d/config.json")


def test_merge_auths_keeps_other_entries() -> None:
    existing: dict[str, Any] = {
        "auths": {"a.example": {"auth": "x"}, "h:5000": {"auth": "old"}},
        "k": 1,
    }
    merged = merge_auths(existing, {"h:5000": {"auth": "new"}})
    assert merged == {"auths": {"a.example": {"auth": "x"}, "h:5000": {"auth": "new"}}, "k": 1}
    assert existing["auths"]["h:5000"] == {"auth": "old"}  # input untouched
    assert merge_auths({}, {"h": {"auth": "y"}}) == {"auths": {"h": {"auth": "y"}}}
    assert json.dumps(merged)


def test_credential_helpers_are_detected() -> None:
    assert credential_helper_for({"credsStore": "desktop"}, "h") == "desktop"
    assert credential_helper_for({"credHelpers": {"h": "ecr-login"}}, "h") == "ecr-login"
    assert credential_helper_for({"auths": {}}, "h") is None
