"""``portside account``: the operator's commands. Onboard a tenant (its first admin token is
printed once), list, show, suspend, resume and delete accounts, and read an account's audit
trail. Every one needs a token with the operator scope."""

from __future__ import annotations

import click

from portside.cli.context import (
    CliState,
    confirm,
    force_option,
    global_options,
    pagination_options,
    pass_state,
    print_list,
)
from portside.cli.output import human_size, human_time
from portside.clientlib import ApiClient
from portside.clientlib.api import JSON


@click.group()
def account() -> None:
    """Onboard, list, suspend, resume and delete tenant accounts (operator tokens only)."""


def _metadata_text(value: object) -> str:
    if not isinstance(value, dict) or not value:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))


def _account_details(item: JSON) -> list[tuple[str, str]]:
    return [
        ("ID", str(item.get("id", "-"))),
        ("Name", str(item.get("name", "-"))),
        ("Status", str(item.get("status", "-"))),
        ("Contact", str(item.get("contact") or "-")),
        ("Metadata", _metadata_text(item.get("metadata"))),
        ("Registries", str(item.get("registry_count", "-"))),
        ("Storage", human_size(item.get("storage_usage_bytes"))),
        ("Created", human_time(item.get("created_at"))),
        ("Suspended", human_time(item.get("suspended_at"), missing="no")),
    ]


def _show(state: CliState, item: JSON) -> None:
    if state.printer.json:
        state.printer.emit_json(item)
    else:
        state.printer.details(_account_details(item))


def _metadata(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--meta")
        out[key] = text
    return out


@account.command("create")
@click.argument("name")
@click.option("--contact", metavar="TEXT", help="Who to reach about the account (email...).")
@click.option(
    "--meta",
    "meta",
    metavar="KEY=VALUE",
    multiple=True,
    help="Free-form metadata (a customer id, a plan...); repeat for several.",
)
@global_options
@pass_state
def account_create(state: CliState, name: str, contact: str | None, meta: tuple[str, ...]) -> None:
    """Onboard a tenant account NAME; prints its first admin token, this once only."""
    created = state.client().create_account(name, contact, _metadata(meta) or None)
    printer = state.printer
    if printer.json:
        printer.emit_json(created)
        return
    printer.details(_account_details(created["account"]))
    click.echo()
    click.echo("Admin token of the account (shown only this once; hand it to the tenant):")
    click.echo()
    click.echo(f"    {created['token'].get('token')}")
    click.echo()


@account.command("list")
@pagination_options
@global_options
@pass_state
def account_list(state: CliState, per_page: int | None, page_token: str | None) -> None:
    """List every account with its registries and storage."""
    print_list(
        state,
        ApiClient.accounts_path,
        "accounts",
        per_page,
        page_token,
        ["ID", "NAME", "STATUS", "REGISTRIES", "STORAGE", "CREATED"],
        lambda item: [
            str(item.get("id", "-")),
            str(item.get("name", "-")),
            str(item.get("status", "-")),
            str(item.get("registry_count", "-")),
            human_size(item.get("storage_usage_bytes")),
            human_time(item.get("created_at")),
        ],
        no_wrap=["ID"],
        empty="No accounts.",
    )


@account.command("get")
@click.argument("account_id", metavar="ID")
@global_options
@pass_state
def account_get(state: CliState, account_id: str) -> None:
    """Show the account ID."""
    _show(state, state.client().get_account(account_id))


@account.command("suspend")
@click.argument("account_id", metavar="ID")
@global_options
@pass_state
def account_suspend(state: CliState, account_id: str) -> None:
    """Suspend the account ID: its tokens and pushes are refused at once (registry tokens
    already issued keep pulling until they expire); its images stay stored."""
    item = state.client().suspend_account(account_id)
    if state.printer.json:
        state.printer.emit_json(item)
        return
    state.printer.note(f"Suspended account {account_id} ({item.get('name', '-')}).")


@account.command("resume")
@click.argument("account_id", metavar="ID")
@global_options
@pass_state
def account_resume(state: CliState, account_id: str) -> None:
    """Lift the suspension of the account ID."""
    item = state.client().resume_account(account_id)
    if state.printer.json:
        state.printer.emit_json(item)
        return
    state.printer.note(f"Resumed account {account_id} ({item.get('name', '-')}).")


@account.command("delete")
@click.argument("account_id", metavar="ID")
@force_option()
@global_options
@pass_state
def account_delete(state: CliState, account_id: str, force: bool) -> None:
    """Delete the account ID: revoke its tokens and delete its registries."""
    confirm(
        force,
        f"Delete account {account_id}, revoke all its tokens and delete all its registries?",
    )
    state.client().delete_account(account_id)
    state.printer.note(
        f"Deleted account {account_id}: its tokens are revoked; its registries are removed "
        "in the background, then their names are free again."
    )


@account.command("audit")
@click.argument("account_id", metavar="ID")
@pagination_options
@global_options
@pass_state
def account_audit(
    state: CliState, account_id: str, per_page: int | None, page_token: str | None
) -> None:
    """What operators did to the account ID, oldest first (kept after a delete)."""
    print_list(
        state,
        ApiClient.account_audit_path(account_id),
        "audit",
        per_page,
        page_token,
        ["WHEN", "ACTION", "BY", "DETAIL"],
        lambda item: [
            human_time(item.get("at")),
            str(item.get("action", "-")),
            str((item.get("actor") or {}).get("name", "-")),
            _metadata_text(item.get("detail")),
        ],
        empty="No audit entries.",
    )
