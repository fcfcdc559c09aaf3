"""auth init, settings precedence, error reporting, and the installed console script."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import RunningRegistry

from .conftest import Cli

PORTSIDE = Path(sys.executable).with_name("portside")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _registry_names(outcome_json: object) -> set[str]:
    assert isinstance(outcome_json, list)
    return {item["name"] for item in outcome_json}


def test_auth_init_writes_a_private_config_that_later_commands_use(
    bare_cli: Cli, server: RunningRegistry
) -> None:
    out = bare_cli("auth", "init", "--api-url", server.url, "--token", server.token).ok()
    assert str(bare_cli.config_path) in out.stdout
    assert server.token not in out.stdout + out.stderr

    mode = stat.S_IMODE(bare_cli.config_path.stat().st_mode)
    assert mode == 0o600
    saved = json.loads(bare_cli.config_path.read_text())
    assert saved == {"api_url": server.url, "token": server.token}

    listed = bare_cli("registry", "list", "--output", "json").ok()
    assert server.registry in _registry_names(listed.json())


def test_auth_init_tightens_an_existing_file_and_strips_api_v1(
    bare_cli: Cli, server: RunningRegistry
) -> None:
    bare_cli.config_path.write_text("{}")
    os.chmod(bare_cli.config_path, 0o644)
    bare_cli("auth", "init", "--api-url", f"{server.url}/api/v1/", "--token", server.token).ok()
    assert stat.S_IMODE(bare_cli.config_path.stat().st_mode) == 0o600
    assert json.loads(bare_cli.config_path.read_text())["api_url"] == server.url


def test_auth_init_reads_the_token_from_stdin(bare_cli: Cli, server: RunningRegistry) -> None:
    bare_cli(
        "auth", "init", "--api-url", server.url, "--token", "-", input=server.token + "\n"
    ).ok()
    assert json.loads(bare_cli.config_path.read_text())["token"] == server.token


def test_auth_init_prompts_for_the_token_without_echoing_it(
    bare_cli: Cli, server: RunningRegistry
) -> None:
    out = bare_cli("auth", "init", "--api-url", server.url, input=server.token + "\n").ok()
    assert "API token" in out.stdout + out.stderr
    assert server.token not in out.stdout + out.stderr
    assert json.loads(bare_cli.config_path.read_text())["token"] == server.token


def test_auth_init_refuses_a_token_the_api_rejects(bare_cli: Cli, server: RunningRegistry) -> None:
    line = bare_cli("auth", "init", "--api-url", server.url, "--token", "pst_bogus").failed()
    assert "nothing was saved" in line
    assert not bare_cli.config_path.exists()
    # --no-verify saves without asking the API
    bare_cli("auth", "init", "--api-url", server.url, "--token", "pst_bogus", "--no-verify").ok()
    assert json.loads(bare_cli.config_path.read_text())["token"] == "pst_bogus"


def test_auth_init_against_an_unreachable_api_saves_nothing(bare_cli: Cli) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    line = bare_cli("auth", "init", "--api-url", url, "--token", "x").failed()
    assert url in line and "unreachable" in line
    assert not bare_cli.config_path.exists()


def test_environment_overrides_the_config_file_and_flags_override_both(
    bare_cli: Cli, server: RunningRegistry
) -> None:
    dead_url = f"http://127.0.0.1:{_free_port()}"
    bare_cli("auth", "init", "--api-url", dead_url, "--token", "pst_from_file", "--no-verify").ok()

    # config only: the dead URL is used
    assert dead_url in bare_cli("registry", "list").failed()

    # env API URL beats the file; the file's (bad) token is still used -> 401 from the API
    env_url = bare_cli.with_env(PORTSIDE_API_URL=server.url)
    line = env_url("registry", "list").failed()
    assert "unreachable" not in line

    # env token beats the file's token
    env_both = env_url.with_env(PORTSIDE_TOKEN=server.token)
    assert server.registry in _registry_names(
        env_both("registry", "list", "-o", "json").ok().json()
    )

    # flags beat the environment: a bad --token fails, a good one wins over a bad env token
    env_both("--token", "pst_bogus", "registry", "list").failed()
    bad_env = env_url.with_env(PORTSIDE_TOKEN="pst_bogus")
    good = bad_env("--token", server.token, "-o", "json", "registry", "list").ok()
    assert server.registry in _registry_names(good.json())
    # ... given after the command name too
    good = bad_env("registry", "list", "--token", server.token, "-o", "json").ok()
    assert server.registry in _registry_names(good.json())
    # --api-url beats PORTSIDE_API_URL
    assert dead_url in env_both("--api-url", dead_url, "registry", "list").failed()


def test_auth_show_reports_sources_without_the_secret(
    bare_cli: Cli, server: RunningRegistry
) -> None:
    bare_cli("auth", "init", "--api-url", server.url, "--token", server.token).ok()
    shown = bare_cli.with_env(PORTSIDE_TOKEN=server.token)("auth", "show", "-o", "json").ok().json()
    assert shown["api_url"] == server.url
    assert shown["api_url_source"] == "config"
    assert shown["token_source"] == "env"
    table = bare_cli("auth", "show").ok().stdout
    assert server.token not in table


def test_missing_settings_say_how_to_provide_them(bare_cli: Cli) -> None:
    line = bare_cli("registry", "list").failed()
    assert "PORTSIDE_API_URL" in line and "auth init" in line
    line = bare_cli.with_env(PORTSIDE_API_URL="http://127.0.0.1:9")("registry", "list").failed()
    assert "PORTSIDE_TOKEN" in line


def test_an_unreachable_api_is_one_line_and_exit_1(bare_cli: Cli) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    line = bare_cli("--api-url", url, "--token", "t", "registry", "list").failed()
    assert line == f"Error: the Portside API at {url} is unreachable (connection refused)"


def test_an_api_error_is_the_api_message_on_one_line(cli: Cli) -> None:
    line = cli("registry", "get", "no-such-registry-here").failed()
    assert len(line) > len("Error: ")


def test_a_bad_api_url_is_refused(bare_cli: Cli) -> None:
    line = bare_cli(
        "--api-url", "registry.example.com", "--token", "t", "registry", "list"
    ).failed()
    assert "invalid API URL" in line


@pytest.fixture
def script_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTSIDE_", "DOCKER_"))}
    env.update(HOME=str(tmp_path), PORTSIDE_CONFIG=str(tmp_path / "config.json"))
    return env


def test_the_installed_console_script(
    server: RunningRegistry, script_env: dict[str, str], tmp_path: Path
) -> None:
    assert PORTSIDE.exists(), PORTSIDE
    init = subprocess.run(
        [str(PORTSIDE), "auth", "init", "--api-url", server.url, "--token", "-"],
        input=server.token,
        capture_output=True,
        text=True,
        env=script_env,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600

    listed = subprocess.run(
        [str(PORTSIDE), "--output", "json", "registry", "list"],
        capture_output=True,
        text=True,
        env=script_env,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert server.registry in {r["name"] for r in json.loads(listed.stdout)}

    table = subprocess.run(
        [str(PORTSIDE), "registry", "list"],
        capture_output=True,
        text=True,
        env=script_env,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert "NAME" in table.stdout and server.registry in table.stdout

    missing = subprocess.run(
        [str(PORTSIDE), "registry", "get", "no-such-registry-here"],
        capture_output=True,
        text=True,
        env=script_env,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stdout == ""
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), missing.stderr

    dead = f"http://127.0.0.1:{_free_port()}"
    unreachable = subprocess.run(
        [str(PORTSIDE), "--api-url", dead, "registry", "list"],
        capture_output=True,
        text=True,
        env=script_env,
        timeout=60,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.strip() == (
        f"Error: the Portside API at {dead} is unreachable (connection refused)"
    )


def test_importing_the_cli_loads_neither_aws_libraries_nor_the_registry_core() -> None:
    # `import portside.cli` imports every command module; only `serve`, when it runs, may load
    # the local runtime (and with it boto3, moto and chalicelib).
    code = (
        "import sys, portside.cli;"
        "mods = ('boto3', 'botocore', 'moto', 'chalice', 'pynamodb', 'chalicelib',"
        " 'portside.local');"
        "bad = [m for m in mods if any(k == m or k.startswith(m + '.') for k in sys.modules)];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
