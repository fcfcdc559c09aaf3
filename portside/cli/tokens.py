"""``portside token``: create (the secret is printed once), list and revoke API tokens."""

from __future__ import annotations

from typing import Any

import click

from portside.cli.context import (
    CliState,
    expiry_option,
    global_options,
    pagination_options,
    pass_state,
    print_list,
)
from portside.cli.output import human_time, join
from portside.clientlib import ApiClient
from portside.clientlib.api import JSON

SCOPES = ("pull", "push", "admin")


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


def _registries_text(value: Any) -> str:
    return "all" if value is None else join(value, empty="none")


def _token_details(item: JSON) -> list[tuple[str, str]]:
    return [
        ("ID", str(item.get("id", "-"))),
        ("Name", str(item.get("name", "-"))),
        ("Scopes", join(item.get("scopes"))),
        ("Registries", _registries_text(item.get("registries"))),
        ("Created", human_time(item.get("created_at"))),
        ("Expires", human_time(item.get("expires_at"), missing="never")),
    ]


@token.command("create")
@click.option("--name", required=True, help="A name to recognise the token by (1-100 chars).")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    required=True,
    help="pull, push (includes pull and delete) or admin; repeat for several.",
)
@click.option(
    "--registry",
    "registries",
    metavar="NAME",
    multiple=True,
    help="Limit the token to this registry; repeat for several (default: every registry).",
)
@expiry_option("Lifetime in seconds, at most one year (default: never expires).")
@global_options
@pass_state
def token_create(
    state: CliState,
    name: str,
    scopes: tuple[str, ...],
    registries: tuple[str, ...],
    expiry_seconds: int | None,
) -> None:
    """Create an API token; its secret is printed this once only."""
    unique_scopes = list(dict.fromkeys(scopes))
    item = state.client().create_token(
        name, unique_scopes, list(dict.fromkeys(registries)) or None, expiry_seconds
    )
    printer = state.printer
    if printer.json:
        printer.emit_json(item)
        return
    printer.details(_token_details(item))
    secret = item.get("token")
    click.echo()
    click.echo("Token secret (shown only this once; store it now, it cannot be retrieved):")
    click.echo()
    click.echo(f"    {secret}")
    click.echo()


@token.command("list")
@pagination_options
@global_options
@pass_state
def token_list(state: CliState, per_page: int | None, page_token: str | None) -> None:
    """List API tokens (never their secrets)."""
    print_list(
        state,
        ApiClient.tokens_path,
        "tokens",
        per_page,
        page_token,
        ["ID", "NAME", "SCOPES", "REGISTRIES", "CREATED", "EXPIRES", "LAST USED"],
        lambda item: [
            str(item.get("id", "-")),
            str(item.get("name", "-")),
            join(item.get("scopes")),
            _registries_text(item.get("registries")),
            human_time(item.get("created_at")),
            human_time(item.get("expires_at"), missing="never"),
            human_time(item.get("last_used_at"), missing="never"),
        ],
        no_wrap=["ID"],
        empty="No tokens.",
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@global_options
@pass_state
def token_revoke(state: CliState, token_id: str) -> None:
    """Revoke the token ID (see `portside token list`); it stops working at once."""
    state.client().revoke_token(token_id)
    state.printer.note(f"Revoked token {token_id}.")
