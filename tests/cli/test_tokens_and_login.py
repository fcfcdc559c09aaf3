"""token create/list/revoke; login and docker-config."""

from __future__ import annotations

import base64
import json
import stat

from tests.support.server import RunningRegistry

from .conftest import Cli, push, unique_name
from .oci import pull_manifest, try_start_upload


def test_token_create_prints_the_secret_once_and_list_never(cli: Cli, new_registry: str) -> None:
    name = unique_name("tok")
    out = cli(
        "token",
        "create",
        "--name",
        name,
        "--scope",
        "pull",
        "--scope",
        "push",
        "--registry",
        new_registry,
        "--expiry-seconds",
        "3600",
    ).ok()
    secret_lines = [line.strip() for line in out.stdout.splitlines() if line.startswith("    ")]
    assert len(secret_lines) == 1, out.stdout
    secret = secret_lines[0]
    assert out.stdout.count(secret) == 1
    assert "only this once" in out.stdout
    assert name in out.stdout and new_registry in out.stdout

    listed = cli("token", "list", "-o", "json").ok()
    assert secret not in listed.stdout
    entry = next(t for t in listed.json() if t["name"] == name)
    assert sorted(entry["scopes"]) == ["pull", "push"]
    assert entry["registries"] == [new_registry]
    assert entry["expires_at"]
    assert "token" not in entry

    table = cli("token", "list").ok().stdout
    assert secret not in table
    row = next(line for line in table.splitlines() if name in line)
    assert entry["id"] in row and "pull" in row

    # the new token works, limited to its registry
    mine = cli.with_env(PORTSIDE_TOKEN=secret)
    visible = {r["name"] for r in mine("registry", "list", "-o", "json").ok().json()}
    assert visible == {new_registry}


def test_token_revoke_then_the_token_fails_with_one_line(
    cli: Cli, server: RunningRegistry, new_registry: str
) -> None:
    created = (
        cli("token", "create", "--name", unique_name("tok"), "--scope", "admin", "-o", "json")
        .ok()
        .json()
    )
    secret, token_id = created["token"], created["id"]
    as_new = cli.with_env(PORTSIDE_TOKEN=secret)
    as_new("registry", "list").ok()
    push(server, new_registry, "r", "v1")
    assert pull_manifest(server.url, new_registry, "r", "v1", (secret, secret)).status_code == 200

    out = cli("token", "revoke", token_id).ok()
    assert token_id in out.stdout
    assert token_id not in {t["id"] for t in cli("token", "list", "-o", "json").ok().json()}

    line = as_new("registry", "list").failed()
    assert "Traceback" not in line
    assert pull_manifest(server.url, new_registry, "r", "v1", (secret, secret)).status_code == 401
    cli("token", "revoke", "no-such-token-id").failed()


def test_token_create_needs_a_scope(cli: Cli) -> None:
    out = cli("token", "create", "--name", "x")
    assert out.exit_code == 2  # usage error from the CLI itself
    assert "--scope" in out.stderr


def _auth_entry(config: dict[str, object], host: str) -> tuple[str, str]:
    auths = config["auths"]
    assert isinstance(auths, dict)
    decoded = base64.b64decode(auths[host]["auth"]).decode()
    user, _, password = decoded.partition(":")
    return user, password


def test_login_merges_a_pull_only_credential_into_the_docker_config(
    cli: Cli, server: RunningRegistry, new_registry: str
) -> None:
    pushed = push(server, new_registry, "team/app", "v1")
    cli.docker_dir.mkdir()
    path = cli.docker_dir / "config.json"
    path.write_text(
        json.dumps(
            {"auths": {"other.example.com": {"auth": "b3RoZXI6c2VjcmV0"}}, "psFormat": "table"}
        )
    )

    out = cli("login", new_registry).ok()
    assert server.host in out.stdout and "read-only" in out.stdout

    config = json.loads(path.read_text())
    assert config["psFormat"] == "table"
    assert config["auths"]["other.example.com"] == {"auth": "b3RoZXI6c2VjcmV0"}
    user, password = _auth_entry(config, server.host)
    assert user == password and user
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    auth = (user, password)
    pulled = pull_manifest(server.url, new_registry, "team/app", "v1", auth)
    assert pulled.status_code == 200 and pulled.content == pushed.manifest
    assert try_start_upload(server.url, new_registry, "team/app", auth).status_code in (401, 403)


def test_login_read_write_can_push(cli: Cli, server: RunningRegistry, new_registry: str) -> None:
    cli("login", new_registry, "--read-write", "--expiry-seconds", "600").ok()
    config = json.loads((cli.docker_dir / "config.json").read_text())
    user, password = _auth_entry(config, server.host)
    assert try_start_upload(server.url, new_registry, "rw", (user, password)).status_code == 202
    # and logging in again replaces the entry
    cli("login", new_registry).ok()
    again = json.loads((cli.docker_dir / "config.json").read_text())
    assert _auth_entry(again, server.host) != (user, password)


def test_login_to_an_unknown_registry_fails(cli: Cli) -> None:
    cli("login", unique_name()).failed()
    assert not (cli.docker_dir / "config.json").exists()


def test_docker_config_prints_or_writes(
    cli: Cli, server: RunningRegistry, new_registry: str
) -> None:
    printed = cli("docker-config", new_registry).ok().json()
    assert list(printed["auths"]) == [server.host]

    target = cli.home / "ci" / "config.json"
    out = cli("docker-config", new_registry, "--read-write", "--write", str(target)).ok()
    assert str(target) in out.stdout
    written = json.loads(target.read_text())
    user, password = _auth_entry(written, server.host)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert try_start_upload(server.url, new_registry, "ci", (user, password)).status_code == 202
