"""``portside registry usage``: a registry's usage and charge for a month, and (operator)
the monthly billing export (docs/billing.md).

  portside registry usage [NAME] [--month YYYY-MM] [--json]
  portside registry usage export --month YYYY-MM [--provisional]

``usage NAME`` is short for ``usage show NAME`` (a registry named ``export`` is shown with
``usage show export``). NAME may be left out when the token sees a single registry.
"""

from __future__ import annotations

import re
from typing import Any

import click

from portside.cli.context import CliState, global_options, pass_state
from portside.cli.gc import resolve_registry
from portside.cli.output import dollars, human_size
from portside.clientlib.api import JSON

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class UsageGroup(click.Group):
    """Runs ``show`` when the first argument names no subcommand (a registry, an option,
    or nothing), so that ``usage NAME`` and ``usage export`` both read naturally."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


def _month(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not MONTH.match(value):
        raise click.BadParameter("use YYYY-MM, e.g. 2026-11")
    return value


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliState).output = "json"


json_option = click.option(
    "--json",
    "json_output",
    is_flag=True,
    expose_value=False,
    callback=_json_flag,
    help="Print the API's JSON (same as -o json).",
)


@click.group("usage", cls=UsageGroup)
def usage() -> None:
    """A registry's usage and charge for a month; the monthly billing export."""


def _obj(item: JSON, key: str) -> JSON:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _of(value: Any, included: Any, note: str = "") -> str:
    text = human_size(value)
    if _int(included):
        text += f" of {human_size(included)} included{note}"
    return text


def _status(item: JSON) -> str:
    if item.get("final"):
        return "final"
    if item.get("projected"):
        days = item.get("projected_days")
        return f"projected ({days} of {item.get('days_in_period')} days from current storage)"
    return "not final yet (access logs may still arrive)"


def _plans(item: JSON) -> str:
    periods = item.get("plans")
    if not isinstance(periods, list) or not periods:
        return str(item.get("plan") or "-")
    return ", ".join(
        f"{p.get('plan')} {p.get('first_day')}..{p.get('last_day')} ({p.get('days')} days)"
        for p in periods
        if isinstance(p, dict)
    )


def usage_details(item: JSON) -> list[tuple[str, str]]:
    allowances = _obj(item, "allowances")
    cap = " (hard cap)" if allowances.get("bandwidth_hard_cap") else ""
    storage_now = item.get("storage_now_bytes")
    return [
        ("Registry", str(item.get("registry", "-"))),
        ("Period", f"{item.get('period', '-')}: {_status(item)}"),
        ("Plan", _plans(item)),
        (
            "Storage now",
            "- (registry deleted)"
            if storage_now is None
            else _of(storage_now, allowances.get("included_storage_bytes")),
        ),
        ("Storage", f"{item.get('storage_gib_months', '-')} GiB-months"),
        ("Peak storage", human_size(item.get("peak_storage_bytes"))),
        (
            "Outbound",
            _of(item.get("outbound_bytes"), allowances.get("included_bandwidth_bytes"), cap),
        ),
        ("Pulls", str(item.get("pulls", "-"))),
        ("Pushes", str(item.get("pushes", "-"))),
        ("Blob downloads", _coverage(_obj(item, "log_coverage"))),
    ]


def _coverage(coverage: JSON) -> str:
    """Presigned downloads the logs show against the redirects the API issued: far fewer
    logged than issued means logs are missing (docs/metering.md, "Log coverage")."""
    logged, issued = coverage.get("blob_downloads_logged"), coverage.get("blob_redirects")
    if logged is None or issued is None:
        return "-"
    return f"{logged} logged of {issued} redirected"


def charge_rows(item: JSON) -> list[list[str]]:
    charges = _obj(item, "charges")
    label = (
        "Total (final)"
        if item.get("final")
        else "Total (projected)"
        if item.get("projected")
        else "Total (so far)"
    )
    return [
        ["Plan price (prorated per day)", dollars(charges.get("plan_price_cents"))],
        [
            f"Storage overage ({charges.get('overage_gib_months', '-')} GiB-months)",
            dollars(charges.get("overage_charge_cents")),
        ],
        [label, dollars(charges.get("total_cents"))],
    ]


@usage.command("show")
@click.argument("name", required=False)
@click.option("--month", callback=_month, default=None, help="YYYY-MM (default: this month).")
@json_option
@global_options
@pass_state
def usage_show(state: CliState, name: str | None, month: str | None) -> None:
    """Show a registry's usage and charge for a month."""
    item = state.client().get_usage(resolve_registry(state, name), month)
    printer = state.printer
    if printer.json:
        printer.emit_json(item)
        return
    printer.details(usage_details(item))
    printer.table(["CHARGE", "AMOUNT"], charge_rows(item), no_wrap=["AMOUNT"])


@usage.command("export")
@click.option("--month", callback=_month, required=True, help="The month, YYYY-MM.")
@click.option(
    "--provisional",
    is_flag=True,
    help="Export a month that is not final yet (its access logs may still arrive).",
)
@json_option
@global_options
@pass_state
def usage_export(state: CliState, month: str, provisional: bool) -> None:
    """Write the month's billing export (CSV, JSON Lines, manifest); operator only."""
    result = state.client().create_billing_export(month, provisional)
    printer = state.printer
    if printer.json:
        printer.emit_json(result)
        return
    keys, totals = _obj(result, "keys"), _obj(result, "totals")
    kind = "final" if result.get("final") else "provisional"
    printer.details(
        [
            ("Period", f"{result.get('period', '-')} ({kind})"),
            ("Rows", str(result.get("rows", "-"))),
            *((f"{file.upper()} key", str(key)) for file, key in keys.items()),
            ("Storage", f"{totals.get('storage_gib_months', '-')} GiB-months"),
            ("Outbound", human_size(totals.get("outbound_bytes"))),
            ("Plan price", dollars(totals.get("plan_price_cents"))),
            ("Storage overage", dollars(totals.get("overage_charge_cents"))),
            ("Total", dollars(totals.get("total_cents"))),
        ]
    )
