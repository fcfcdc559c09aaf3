"""Registry credentials from docker's config.json the way docker/cli finds them: the host's
``credHelpers`` helper, else the ``credsStore`` helper, and ``auths`` only when no helper
applies; helpers are ``docker-credential-<name> get`` programs on PATH (tiny shell scripts
here). Identity tokens (``<token>``) go through the OAuth2 refresh-token grant."""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from portside.clientlib import ClientError
from portside.clientlib.oci.credentials import docker_credentials
from portside.clientlib.oci.registry import Credentials, RegistryClient
from tests.support.server import RunningRegistry

from .conftest import Cli
from .fake_http import read_body, serve
from .images import gzip_layer, layout_blobs, oci_layout

HOST = "registry.example.com:5000"


@dataclass
class Helpers:
    """Writes ``docker-credential-<name>`` scripts into a directory on PATH; each logs the
    server address it was asked about."""

    bin_dir: Path
    log: Path

    def write(
        self, name: str, answers: dict[str, dict[str, str]], failure: str | None = None
    ) -> None:
        cases = "".join(
            f"  {shlex.quote(server)}) printf '%s' {shlex.quote(json.dumps(answer))} ;;\n"
            for server, answer in answers.items()
        )
        otherwise = (
            f"echo {shlex.quote(failure)} >&2; exit 1"
            if failure
            else "echo 'credentials not found in native keychain'; exit 1"
        )
        script = self.bin_dir / f"docker-credential-{name}"
        script.write_text(
            "#!/bin/sh\n"
            '[ "$1" = get ] || exit 2\n'
            "server=$(cat)\n"
            f'echo "{name} $server" >> {shlex.quote(str(self.log))}\n'
            'case "$server" in\n'
            f"{cases}"
            f"  *) {otherwise} ;;\n"
            "esac\n"
        )
        script.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helpers:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return Helpers(bin_dir, tmp_path / "helper-calls.log")


def _auth(user: str, secret: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _answer(user: str, secret: str, server: str = HOST) -> dict[str, str]:
    return {"ServerURL": server, "Username": user, "Secret": secret}


def test_the_hosts_credhelpers_entry_wins_over_credsstore_and_auths(helpers: Helpers) -> None:
    helpers.write("perhost", {HOST: _answer("from-perhost", "p1")})
    helpers.write("test", {HOST: _answer("from-store", "p2")})
    config = {
        "credHelpers": {HOST: "perhost"},
        "credsStore": "test",
        "auths": {HOST: _auth("from-auths", "p3")},
    }
    assert docker_credentials(HOST, config) == Credentials("from-perhost", "p1")
    # The helper got the host on stdin; the default store was never asked.
    assert helpers.calls() == [f"perhost {HOST}"]


def test_credsstore_serves_hosts_without_a_credhelpers_entry_before_auths(
    helpers: Helpers,
) -> None:
    helpers.write("perhost", {})
    helpers.write("test", {HOST: _answer("from-store", "p2")})
    config = {
        "credHelpers": {"other.example.com": "perhost"},
        "credsStore": "test",
        "auths": {HOST: _auth("from-auths", "p3")},
    }
    assert docker_credentials(HOST, config) == Credentials("from-store", "p2")
    assert helpers.calls() == [f"test {HOST}"]
    # An empty credHelpers entry means "no helper" for that host: auths, as in docker.
    config["credHelpers"] = {HOST: ""}
    assert docker_credentials(HOST, config) == Credentials("from-auths", "p3")
    # Docker Hub's credentials live under its v1 index URL, and the helper is asked for it.
    hub = "https://index.docker.io/v1/"
    helpers.write("test", {hub: _answer("hub-user", "hub-secret", hub)})
    assert docker_credentials("registry-1.docker.io", {"credsStore": "test"}) == Credentials(
        "hub-user", "hub-secret"
    )


def test_a_helper_without_credentials_means_anonymous_not_auths(helpers: Helpers) -> None:
    helpers.write("test", {"someone-else.example.com": _answer("x", "y")})
    config = {"credsStore": "test", "auths": {HOST: _auth("from-auths", "p3")}}
    assert docker_credentials(HOST, config) is None
    assert helpers.calls() == [f"test {HOST}"]


def test_a_missing_helper_binary_is_a_clear_error(helpers: Helpers) -> None:
    with pytest.raises(ClientError) as raised:
        docker_credentials(HOST, {"credHelpers": {HOST: "nothere"}}, Path("/x/config.json"))
    message = str(raised.value)
    assert "docker-credential-nothere" in message and "not on PATH" in message
    assert "credHelpers of /x/config.json" in message


def test_a_failing_helper_is_an_error_with_its_message(helpers: Helpers) -> None:
    helpers.write("test", {}, failure="the keychain is locked")
    with pytest.raises(ClientError, match=r"docker-credential-test get .*: the keychain is locked"):
        docker_credentials(HOST, {"credsStore": "test"})


def test_identity_tokens_from_helpers_and_auths(helpers: Helpers) -> None:
    helpers.write("test", {HOST: _answer("<token>", "refresh-me")})
    assert docker_credentials(HOST, {"credsStore": "test"}) == Credentials(
        "", "refresh-me", identity_token=True
    )
    auths = {f"https://{HOST}/v1/": {"auth": "", "identitytoken": "from-auths"}}
    assert docker_credentials(HOST, {"auths": auths}) == Credentials(
        "", "from-auths", identity_token=True
    )


@dataclass
class FakeOAuthRegistry:
    """A Bearer registry whose token endpoint takes only the OAuth2 refresh-token form."""

    forms: list[dict[str, list[str]]]
    token_auth: list[str | None]

    def __call__(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        base = f"http://{environ['HTTP_HOST']}"
        if path == "/token" and method == "POST":
            self.token_auth.append(environ.get("HTTP_AUTHORIZATION"))
            self.forms.append(parse_qs(read_body(environ).decode()))
            return _json(start, "200 OK", {"access_token": "jwt", "expires_in": 300})
        if path == "/token":
            return _json(start, "400 Bad Request", {"errors": [{"code": "UNSUPPORTED"}]})
        if environ.get("HTTP_AUTHORIZATION") == "Bearer jwt":
            return _json(start, "200 OK", {})
        challenge = f'Bearer realm="{base}/token",service="fake-service"'
        return _json(start, "401 Unauthorized", {"errors": []}, challenge)


def _json(start: Any, status: str, body: Any, challenge: str | None = None) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if challenge:
        headers.append(("WWW-Authenticate", challenge))
    start(status, headers)
    return [data]


@pytest.fixture
def oauth_registry() -> Iterator[tuple[FakeOAuthRegistry, str]]:
    fake = FakeOAuthRegistry([], [])
    with serve(fake) as url:
        yield fake, url.removeprefix("http://")


def test_an_identity_token_is_traded_with_the_refresh_token_grant(
    oauth_registry: tuple[FakeOAuthRegistry, str],
) -> None:
    fake, host = oauth_registry
    client = RegistryClient(host, Credentials("", "refresh-me", identity_token=True))
    scope = "repository:reg/app:pull,push"
    client.request("GET", client.url("/v2/reg/app/tags/list"), scope)
    assert fake.forms == [
        {
            "grant_type": ["refresh_token"],
            "refresh_token": ["refresh-me"],
            "client_id": ["portside"],
            "scope": [scope],
            "service": ["fake-service"],
        }
    ]
    assert fake.token_auth == [None]  # the token travels in the form only


def _docker_config(cli: Cli, config: dict[str, Any]) -> None:
    cli.docker_dir.mkdir(parents=True, exist_ok=True)
    (cli.docker_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("identity", [False, True], ids=["password", "identity-token"])
def test_push_and_pull_with_credentials_from_a_helper(
    bare_cli: Cli,
    server: RunningRegistry,
    helpers: Helpers,
    tmp_path: Path,
    identity: bool,
) -> None:
    """The API token as docker-credential-test hands it out (as a password, or as an identity
    token), and no other credentials anywhere."""
    user = "<token>" if identity else server.token
    helpers.write("test", {server.host: _answer(user, server.token, server.host)})
    _docker_config(bare_cli, {"credsStore": "test", "auths": {server.host: {}}})
    source = tmp_path / "src"
    oci_layout(source, [gzip_layer(3000)], tag="v1")
    ref = f"{server.host}/{server.registry}/from-helper-{int(identity)}:v1"

    bare_cli("push", str(source), ref, "--upload", "standard", "--quiet").ok()
    bare_cli("pull", ref, str(tmp_path / "pulled"), "--quiet").ok()
    assert layout_blobs(tmp_path / "pulled") == layout_blobs(source)
    assert set(helpers.calls()) == {f"test {server.host}"}


def test_push_with_a_missing_helper_fails_in_one_line(
    bare_cli: Cli, server: RunningRegistry, helpers: Helpers, tmp_path: Path
) -> None:
    _docker_config(bare_cli, {"credHelpers": {server.host: "nothere"}})
    source = tmp_path / "src"
    oci_layout(source, [gzip_layer(100)])
    line = bare_cli("push", str(source), f"{server.host}/{server.registry}/app:v1").failed()
    assert "docker-credential-nothere" in line and "not on PATH" in line
