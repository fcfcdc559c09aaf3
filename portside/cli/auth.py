"""``portside auth`` (init, show), ``portside login`` and ``portside docker-config``: where the
CLI's own credentials come from, and the docker credentials it mints for a registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from portside.cli.context import CliState, expiry_option, global_options, pass_state
from portside.clientlib import ApiClient, ApiError, ClientConfig, ClientError, ConfigError
from portside.clientlib.api import JSON
from portside.clientlib.config import normalize_api_url
from portside.clientlib.dockerconfig import (
    credential_helper_for,
    docker_config_path,
    load_docker_config,
    merge_auths,
    write_json_private,
)


@click.group()
def auth() -> None:
    """Store the API URL and token the other commands use."""


def _read_token(token: str | None) -> str:
    if token == "-":
        value = sys.stdin.read().strip()
        if not value:
            raise ConfigError("no token on standard input")
        return value
    if token:
        return token.strip()
    value = str(click.prompt("API token", hide_input=True)).strip()
    if not value:
        raise ConfigError("the token must not be empty")
    return value


@auth.command("init")
@click.option(
    "--api-url", metavar="URL", help="Portside API base URL, e.g. https://registry.example.com."
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="API token; '-' reads it from standard input; omitted, it is asked for (hidden).",
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file [env PORTSIDE_CONFIG, default ~/.config/portside/config.json].",
)
@click.option("--no-verify", is_flag=True, help="Save without checking the token against the API.")
@pass_state
def auth_init(
    state: CliState,
    api_url: str | None,
    token: str | None,
    config_path: Path | None,
    no_verify: bool,
) -> None:
    """Save the API URL and token in the config file (mode 0600).

    \b
    portside auth init --api-url https://registry.example.com
    echo "$TOKEN" | portside auth init --api-url http://127.0.0.1:5000 --token -
    """
    if config_path is not None:
        state.config_flag = config_path
    path = state.settings().config_path
    url = api_url or state.api_url_flag
    if not url:
        if token == "-":
            raise ConfigError("pass --api-url when the token comes from standard input")
        default = os.environ.get("PORTSIDE_API_URL") or ClientConfig.load(path).api_url
        url = str(click.prompt("API URL", default=default))
    url = normalize_api_url(url)
    secret = _read_token(token or state.token_flag)

    registries: list[JSON] | None = None
    if not no_verify:
        try:
            registries = ApiClient(url, secret).list_registries()
        except ApiError as exc:
            refused = f"the API refused the token: {exc.detail}; nothing was saved"
            raise ClientError(refused) from exc
        except ClientError as exc:
            raise ClientError(
                f"{exc.message}; nothing was saved (use --no-verify to save anyway)"
            ) from exc

    ClientConfig(api_url=url, token=secret).save(path)
    printer = state.printer
    printer.note(f"Saved the API URL {url} and the token in {path} (mode 0600).")
    if registries is not None:
        names = ", ".join(str(r.get("name")) for r in registries) or "none"
        printer.note(f"The token can see {len(registries)} registries: {names}.")


@auth.command("show")
@global_options
@pass_state
def auth_show(state: CliState) -> None:
    """Show which API URL and token the commands would use, and where they come from."""
    settings = state.settings()
    token = settings.token
    masked = f"{token[:8]}…" if token and len(token) > 12 else ("(set)" if token else "-")
    sources = {"flag": "flag", "env": "environment", "config": str(settings.config_path)}
    if state.printer.json:
        state.printer.emit_json(
            {
                "api_url": settings.api_url,
                "api_url_source": settings.api_url_source,
                "token_set": bool(token),
                "token_source": settings.token_source,
                "config_path": str(settings.config_path),
            }
        )
        return
    state.printer.details(
        [
            ("API URL", settings.api_url or "-"),
            ("  from", sources.get(settings.api_url_source or "", "-")),
            ("Token", masked),
            ("  from", sources.get(settings.token_source or "", "-")),
            ("Config file", str(settings.config_path)),
        ]
    )


# login and docker-config: a new docker credential for one registry, minted by the API.


def _credentials(
    state: CliState, registry: str, read_write: bool, expiry_seconds: int | None
) -> JSON:
    return state.client().docker_credentials(registry, read_write, expiry_seconds)


def _describe_access(read_write: bool, expiry_seconds: int | None) -> str:
    access = "read-write" if read_write else "read-only"
    lifetime = f"expires in {expiry_seconds} s" if expiry_seconds else "never expires"
    return f"{access}; the token {lifetime}"


@click.command()
@click.argument("registry")
@click.option("--read-write", is_flag=True, help="Allow push (and delete) too; default pull only.")
@expiry_option("Lifetime of the minted token in seconds (default: never expires).")
@global_options
@pass_state
def login(state: CliState, registry: str, read_write: bool, expiry_seconds: int | None) -> None:
    """Log docker in to REGISTRY: merge a new scoped credential into docker's config.json.

    The file is $DOCKER_CONFIG/config.json (default ~/.docker/config.json); its other
    entries are kept.
    """
    config = _credentials(state, registry, read_write, expiry_seconds)
    auths: dict[str, Any] = config["auths"]
    path = docker_config_path()
    existing = load_docker_config(path)
    write_json_private(path, merge_auths(existing, auths))
    for host in auths:
        helper = credential_helper_for(existing, host)
        if helper:
            state.printer.info(
                f"Warning: {path} names the credential helper {helper!r}; docker uses it "
                f"instead of the saved credential for {host}"
            )
        state.printer.note(
            f"Logged in to {host} for registry {registry} "
            f"({_describe_access(read_write, expiry_seconds)}); credentials saved in {path}."
        )


@click.command("docker-config")
@click.argument("registry")
@click.option("--read-write", is_flag=True, help="Allow push (and delete) too; default pull only.")
@expiry_option("Lifetime of the minted token in seconds (default: never expires).")
@click.option(
    "--write",
    "write_path",
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the config.json to PATH (mode 0600, replacing it) instead of printing it.",
)
@global_options
@pass_state
def docker_config(
    state: CliState,
    registry: str,
    read_write: bool,
    expiry_seconds: int | None,
    write_path: Path | None,
) -> None:
    """Print a docker config.json with a new credential for REGISTRY (e.g. for CI or k8s)."""
    config = _credentials(state, registry, read_write, expiry_seconds)
    if write_path is None:
        state.printer.emit_json(config)
        return
    write_json_private(write_path, config)
    hosts = ", ".join(config["auths"])
    state.printer.note(
        f"Wrote a docker config for {hosts} "
        f"({_describe_access(read_write, expiry_seconds)}) to {write_path}."
    )
