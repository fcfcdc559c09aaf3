"""``portside registry``: create, get, list, delete, validate-name, options (the subscription
tiers) and ``registry subscription`` get/update."""

from __future__ import annotations

from typing import Any

import click

from portside.cli.context import CliState, confirm, force_option, global_options, pass_state
from portside.cli.gc import gc
from portside.cli.output import dollars, human_size, human_time, yes_no
from portside.cli.policies import immutability, retention
from portside.cli.usage import usage
from portside.clientlib import ApiClient, ApiError, ClientError
from portside.clientlib.api import JSON

TIERS = ("starter", "basic", "professional")

REASON_TEXT = {
    "OverRepositoryLimit": "more repositories than the tier includes",
    "OverStorageLimit": "more storage than the tier includes",
}


@click.group()
def registry() -> None:
    """Create, inspect and delete registries; plans and subscriptions."""


registry.add_command(gc)  # with `gc schedule` from portside.cli.policies
registry.add_command(retention)
registry.add_command(immutability)
registry.add_command(usage)  # usage and billing exports (portside.cli.usage)


def _of_limit(count: Any, included: Any) -> str:
    if included == 0:
        return f"{count} (unlimited)"
    if isinstance(included, int):
        return f"{count} of {included}"
    return str(count)


def _quota_note(quota: Any, resource: str) -> str:
    """`` (84%, hard limit)`` from ``registry get``'s quota figures (docs/quotas.md); a
    limit that is not hard is billed beyond (overage)."""
    figures = quota.get(resource) if isinstance(quota, dict) else None
    if not isinstance(figures, dict) or figures.get("percent") is None:
        return ""
    kind = "hard limit" if figures.get("hard") else "overage billed beyond"
    level = figures.get("threshold_level")
    warning = f", over {level}%" if isinstance(level, int) and level else ""
    return f" ({figures['percent']:g}%, {kind}{warning})"


def _tier(subscription: Any) -> JSON:
    tier = subscription.get("tier") if isinstance(subscription, dict) else None
    return tier if isinstance(tier, dict) else {}


def _tier_label(tier: JSON) -> str:
    slug = tier.get("slug")
    name = tier.get("name")
    if name and slug and str(name).lower() != str(slug).lower():
        return f"{name} ({slug})"
    return str(slug or name or "-")


def _registry_details(item: JSON) -> list[tuple[str, str]]:
    tier = _tier(item.get("subscription"))
    included_storage = tier.get("included_storage_bytes")
    storage = human_size(item.get("storage_usage_bytes"))
    if isinstance(included_storage, int) and included_storage > 0:
        storage = f"{storage} of {human_size(included_storage)}"
    storage += _quota_note(item.get("quota"), "storage")
    return [
        ("Name", str(item.get("name", "-"))),
        ("Tier", _tier_label(tier)),
        ("Price", f"{dollars(tier.get('monthly_price_in_cents'))}/month"),
        (
            "Repositories",
            _of_limit(item.get("repository_count", "-"), tier.get("included_repositories"))
            + _quota_note(item.get("quota"), "repositories"),
        ),
        ("Storage", storage),
        ("Storage measured", human_time(item.get("storage_usage_bytes_updated_at"))),
        ("Created", human_time(item.get("created_at"))),
    ]


def _show_registry(state: CliState, item: JSON) -> None:
    if state.printer.json:
        state.printer.emit_json(item)
    else:
        state.printer.details(_registry_details(item))


@registry.command("create")
@click.argument("name")
@click.option(
    "--tier",
    type=click.Choice(TIERS),
    required=True,
    help="Subscription tier (see `portside registry options`).",
)
@global_options
@pass_state
def registry_create(state: CliState, name: str, tier: str) -> None:
    """Create the registry NAME on a subscription tier."""
    _show_registry(state, state.client().create_registry(name, tier))


@registry.command("get")
@click.argument("name")
@global_options
@pass_state
def registry_get(state: CliState, name: str) -> None:
    """Show a registry: tier, repositories, storage used."""
    _show_registry(state, state.client().get_registry(name))


@registry.command("list")
@global_options
@pass_state
def registry_list(state: CliState) -> None:
    """List the registries the token can see."""
    items = state.client().list_registries()
    printer = state.printer
    if printer.json:
        printer.emit_json(items)
        return
    printer.table(
        ["NAME", "TIER", "REPOSITORIES", "STORAGE", "CREATED"],
        (
            [
                str(item.get("name", "-")),
                str(_tier(item.get("subscription")).get("slug", "-")),
                str(item.get("repository_count", "-")),
                human_size(item.get("storage_usage_bytes")),
                human_time(item.get("created_at")),
            ]
            for item in items
        ),
        no_wrap=["NAME"],
        empty="No registries.",
    )


@registry.command("delete")
@click.argument("name")
@force_option()
@global_options
@pass_state
def registry_delete(state: CliState, name: str, force: bool) -> None:
    """Delete a registry and everything in it (removed in the background)."""
    confirm(force, f"Delete registry {name} with all its repositories, tags and manifests?")
    state.client().delete_registry(name)
    state.printer.note(
        f"Deleting registry {name}: its content is removed in the background, "
        "then the name is free again."
    )


@registry.command("validate-name")
@click.argument("name")
@global_options
@pass_state
def registry_validate_name(state: CliState, name: str) -> None:
    """Check that NAME is a valid registry name and still free (exit status 1 if not)."""
    state.client().validate_registry_name(name)
    state.printer.note(f"{name} is a valid registry name and is available.")


def _reasons(reasons: Any) -> str:
    if not isinstance(reasons, list) or not reasons:
        return "-"
    return ", ".join(REASON_TEXT.get(str(r), str(r)) for r in reasons)


def _tier_row(option: JSON) -> list[str]:
    repositories = option.get("included_repositories")
    transfer = human_size(option.get("included_bandwidth_bytes"))
    if option.get("bandwidth_hard_cap"):
        transfer += " (hard cap)"
    overage = (
        f"{dollars(option.get('storage_overage_price_in_cents'))}/GiB-month"
        if option.get("allow_storage_overage")
        else "not allowed"
    )
    eligible = option.get("eligible")
    return [
        str(option.get("slug", "-")),
        str(option.get("name", "-")),
        dollars(option.get("monthly_price_in_cents")),
        "unlimited"
        if repositories == 0
        else str(repositories if repositories is not None else "-"),
        human_size(option.get("included_storage_bytes")),
        transfer,
        overage,
        yes_no(eligible),
        _reasons(option.get("eligibility_reasons")) if eligible is False else "",
    ]


@registry.command("options")
@click.option(
    "--registry",
    "registry_name",
    metavar="NAME",
    help="Judge eligibility against this registry's usage (default: a new, empty registry).",
)
@global_options
@pass_state
def registry_options(state: CliState, registry_name: str | None) -> None:
    """List the subscription tiers: price, what they include, and whether usage fits."""
    options = state.client().registry_options(registry_name)
    tiers = options.get("subscription_tiers")
    items: list[JSON] = tiers if isinstance(tiers, list) else []
    printer = state.printer
    if printer.json:
        printer.emit_json(items)
        return
    printer.table(
        [
            "TIER",
            "NAME",
            "PRICE/MONTH",
            "REPOSITORIES",
            "STORAGE",
            "TRANSFER/MONTH",
            "STORAGE OVERAGE",
            "ELIGIBLE",
            "REASONS",
        ],
        (_tier_row(item) for item in items),
        empty="No subscription tiers.",
    )
    if registry_name:
        printer.info(f"Eligibility judged against the usage of registry {registry_name}.")


@registry.group("subscription")
def subscription() -> None:
    """Show or change a registry's subscription tier."""


def _show_subscription(state: CliState, item: JSON) -> None:
    printer = state.printer
    if printer.json:
        printer.emit_json(item)
        return
    tier = _tier(item)
    repositories = tier.get("included_repositories")
    transfer = human_size(tier.get("included_bandwidth_bytes"))
    if tier.get("bandwidth_hard_cap"):
        transfer += " (hard cap)"
    printer.details(
        [
            ("Tier", _tier_label(tier)),
            ("Price", f"{dollars(tier.get('monthly_price_in_cents'))}/month"),
            ("Repositories", "unlimited" if repositories == 0 else str(repositories)),
            ("Storage", human_size(tier.get("included_storage_bytes"))),
            ("Transfer", f"{transfer}/month"),
            (
                "Storage overage",
                f"{dollars(tier.get('storage_overage_price_in_cents'))}/GiB-month"
                if tier.get("allow_storage_overage")
                else "not allowed",
            ),
            ("Created", human_time(item.get("created_at"))),
            ("Updated", human_time(item.get("updated_at"))),
        ]
    )


@subscription.command("get")
@click.argument("name")
@global_options
@pass_state
def subscription_get(state: CliState, name: str) -> None:
    """Show the subscription of registry NAME."""
    _show_subscription(state, state.client().get_subscription(name))


def _refusal(client: ApiClient, registry_name: str, tier_slug: str, exc: ApiError) -> str:
    """The API's message plus, per reason, the registry's usage against the tier's limits."""
    reasons = exc.eligibility_reasons
    details: list[str] = []
    usage: JSON = {}
    tier: JSON = {}
    try:  # best effort: the refusal is reported even if these lookups fail
        usage = client.get_registry(registry_name)
        tiers = client.registry_options(registry_name).get("subscription_tiers") or []
        tier = next((t for t in tiers if isinstance(t, dict) and t.get("slug") == tier_slug), {})
    except ClientError:
        pass
    for reason in reasons:
        if reason == "OverRepositoryLimit" and usage and tier:
            details.append(
                f"{usage.get('repository_count')} repositories, {tier_slug} includes "
                f"{tier.get('included_repositories')}"
            )
        elif reason == "OverStorageLimit" and usage and tier:
            details.append(
                f"{human_size(usage.get('storage_usage_bytes'))} stored, {tier_slug} includes "
                f"{human_size(tier.get('included_storage_bytes'))}"
            )
        else:
            details.append(REASON_TEXT.get(reason, reason))
    message = exc.message.rstrip(".")
    if details:
        named = any(reason in message for reason in reasons)
        message += f" ({'' if named else 'reasons: '}{'; '.join(details)})"
    return message


@subscription.command("update")
@click.argument("name")
@click.option("--tier", type=click.Choice(TIERS), required=True, help="The new tier.")
@global_options
@pass_state
def subscription_update(state: CliState, name: str, tier: str) -> None:
    """Move registry NAME to another tier (refused, with reasons, if its usage does not fit)."""
    client = state.client()
    try:
        item = client.update_subscription(name, tier)
    except ApiError as exc:
        if exc.eligibility_reasons:
            raise ClientError(_refusal(client, name, tier, exc)) from exc
        raise
    _show_subscription(state, item)
