"""Fixtures for the CLI tests: one real `portside serve` for the session, an isolated CLI.

The CLI runs in-process through click's CliRunner against the real server over a socket (no
HTTP mocking). Every invocation gets a private HOME, PORTSIDE_CONFIG and DOCKER_CONFIG so the
user's own settings are never read or written. Tests isolate themselves by creating registries
with unique names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from portside.cli import main
from tests.support.server import RunningRegistry, start_registry

from .oci import Pushed, push_image

SETTINGS_ENV = ("PORTSIDE_API_URL", "PORTSIDE_TOKEN", "PORTSIDE_CONFIG", "DOCKER_CONFIG")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with start_registry(tmp_path_factory.mktemp("cli-server"), registry="cli-boot") as running:
        yield running


@dataclass
class Outcome:
    """A finished CLI run."""

    exit_code: int
    stdout: str
    stderr: str
    result: Result = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.stdout)

    def ok(self) -> Outcome:
        assert self.exit_code == 0, (
            f"exit {self.exit_code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )
        return self

    def failed(self) -> str:
        """Assert the run failed the CLI way (one `Error:` line on stderr, exit 1); the line."""
        assert self.exit_code == 1, (
            f"exit {self.exit_code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.stderr}"
        assert lines[0].startswith("Error: "), lines[0]
        assert "Traceback" not in self.stderr + self.stdout
        return lines[0]


@dataclass
class Cli:
    """Runs `portside` in-process with a private environment."""

    home: Path
    env: dict[str, str | None]

    @property
    def config_path(self) -> Path:
        return self.home / "portside-config.json"

    @property
    def docker_dir(self) -> Path:
        return self.home / "docker"

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Outcome:
        runner = CliRunner(env={**self.env, **(env or {})})
        result = runner.invoke(
            main, list(args), input=input, catch_exceptions=False, prog_name="portside"
        )
        return Outcome(result.exit_code, result.stdout, result.stderr, result)

    def with_env(self, **values: str | None) -> Cli:
        return Cli(self.home, {**self.env, **values})


@pytest.fixture
def bare_cli(tmp_path: Path) -> Cli:
    """No API URL or token anywhere (private, empty config file location)."""
    home = tmp_path / "home"
    home.mkdir()
    env: dict[str, str | None] = {name: None for name in SETTINGS_ENV}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        PORTSIDE_CONFIG=str(home / "portside-config.json"),
        DOCKER_CONFIG=str(home / "docker"),
        COLUMNS="250",
    )
    return Cli(home, env)


@pytest.fixture
def cli(bare_cli: Cli, server: RunningRegistry) -> Cli:
    """Configured through the environment with the server's all-scopes admin token."""
    return bare_cli.with_env(PORTSIDE_API_URL=server.url, PORTSIDE_TOKEN=server.token)


def unique_name(prefix: str = "cli") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def new_registry(cli: Cli) -> str:
    """A fresh professional registry created through the CLI."""
    name = unique_name()
    cli("registry", "create", name, "--tier", "professional").ok()
    return name


def push(server: RunningRegistry, registry: str, repository: str, tag: str) -> Pushed:
    return push_image(server.url, registry, repository, tag, (server.token, server.token))
