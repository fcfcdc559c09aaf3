"""The ``portside`` commands that talk to the management API (everything but ``serve``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from portside.cli.context import (
    CliState,
    global_options,
    pagination_options,
    pass_state,
    print_list,
)
from portside.cli.output import (
    dollars,
    human_size,
    human_time,
    join,
    short_digest,
    yes_no,
)
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

F = TypeVar("F", bound=Callable[..., Any])

TIERS = ("starter", "basic", "professional")
SCOPES = ("pull", "push", "admin")
MAX_EXPIRY_SECONDS = 31_536_000

REASON_TEXT = {
    "OverRepositoryLimit": "more repositories than the tier includes",
    "OverStorageLimit": "more storage than the tier includes",
}

MEDIA_TYPES = {
    "application/vnd.oci.image.manifest.v1+json": "OCI manifest",
    "application/vnd.oci.image.index.v1+json": "OCI index",
    "application/vnd.docker.distribution.manifest.v2+json": "Docker manifest v2",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list",
}


def expiry_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--expiry-seconds",
        type=click.IntRange(1, MAX_EXPIRY_SECONDS),
        default=None,
        help=help_text,
    )


def force_option() -> Callable[[F], F]:
    return click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")


def confirm(force: bool, question: str) -> None:
    """Ask on stderr (so stdout stays clean); no answer or "no" aborts with exit status 1."""
    if not force:
        click.confirm(question, abort=True, err=True)


# ======================================================================================
# auth


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


# ======================================================================================
# login and docker-config


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


# ======================================================================================
# registry


@click.group()
def registry() -> None:
    """Create, inspect and delete registries; plans and subscriptions."""


def _of_limit(count: Any, included: Any) -> str:
    if included == 0:
        return f"{count} (unlimited)"
    if isinstance(included, int):
        return f"{count} of {included}"
    return str(count)


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
    return [
        ("Name", str(item.get("name", "-"))),
        ("Tier", _tier_label(tier)),
        ("Price", f"{dollars(tier.get('monthly_price_in_cents'))}/month"),
        (
            "Repositories",
            _of_limit(item.get("repository_count", "-"), tier.get("included_repositories")),
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


# ======================================================================================
# repositories, tags, manifests


@click.group()
def repository() -> None:
    """List and delete repositories of a registry."""


@repository.command("list")
@click.argument("registry_name", metavar="REGISTRY")
@pagination_options
@global_options
@pass_state
def repository_list(
    state: CliState, registry_name: str, per_page: int | None, page_token: str | None
) -> None:
    """List the repositories of REGISTRY with their tag and manifest counts."""

    def row(item: JSON) -> Sequence[str]:
        latest = item.get("latest_manifest")
        latest = latest if isinstance(latest, dict) else {}
        return [
            str(item.get("name", "-")),
            str(item.get("tag_count", "-")),
            str(item.get("manifest_count", "-")),
            short_digest(latest.get("digest")),
            human_size(latest.get("size_bytes")),
            human_time(latest.get("updated_at")),
        ]

    print_list(
        state,
        state.client().repositories_path(registry_name),
        "repositories",
        per_page,
        page_token,
        ["NAME", "TAGS", "MANIFESTS", "LATEST MANIFEST", "SIZE", "UPDATED"],
        row,
        no_wrap=["NAME", "LATEST MANIFEST"],
        empty="No repositories.",
    )


@repository.command("delete")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("name", metavar="REPOSITORY")
@force_option()
@global_options
@pass_state
def repository_delete(state: CliState, registry_name: str, name: str, force: bool) -> None:
    """Delete REPOSITORY with its tags and manifests (blobs go at the next garbage collection)."""
    confirm(force, f"Delete repository {registry_name}/{name} with all its tags and manifests?")
    state.client().delete_repository(registry_name, name)
    state.printer.note(f"Deleted repository {registry_name}/{name}.")


@click.group()
def tag() -> None:
    """List and delete tags of a repository."""


@tag.command("list")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("repository_name", metavar="REPOSITORY")
@pagination_options
@global_options
@pass_state
def tag_list(
    state: CliState,
    registry_name: str,
    repository_name: str,
    per_page: int | None,
    page_token: str | None,
) -> None:
    """List the tags of REPOSITORY with their manifest digests and sizes."""
    print_list(
        state,
        state.client().tags_path(registry_name, repository_name),
        "tags",
        per_page,
        page_token,
        ["TAG", "MANIFEST DIGEST", "COMPRESSED SIZE", "SIZE", "UPDATED"],
        lambda item: [
            str(item.get("tag", "-")),
            str(item.get("manifest_digest", "-")),
            human_size(item.get("compressed_size_bytes")),
            human_size(item.get("size_bytes")),
            human_time(item.get("updated_at")),
        ],
        no_wrap=["MANIFEST DIGEST"],
        empty="No tags.",
    )


@tag.command("delete")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("repository_name", metavar="REPOSITORY")
@click.argument("name", metavar="TAG")
@force_option()
@global_options
@pass_state
def tag_delete(
    state: CliState, registry_name: str, repository_name: str, name: str, force: bool
) -> None:
    """Remove TAG from REPOSITORY (the manifest it points at stays)."""
    confirm(force, f"Delete tag {registry_name}/{repository_name}:{name}?")
    state.client().delete_tag(registry_name, repository_name, name)
    state.printer.note(f"Deleted tag {registry_name}/{repository_name}:{name}.")


@click.group()
def manifest() -> None:
    """List and delete manifests of a repository."""


@manifest.command("list")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("repository_name", metavar="REPOSITORY")
@pagination_options
@global_options
@pass_state
def manifest_list(
    state: CliState,
    registry_name: str,
    repository_name: str,
    per_page: int | None,
    page_token: str | None,
) -> None:
    """List the manifests of REPOSITORY with their tags, blobs and sizes."""
    print_list(
        state,
        state.client().manifests_path(registry_name, repository_name),
        "manifests",
        per_page,
        page_token,
        ["DIGEST", "TYPE", "TAGS", "BLOBS", "COMPRESSED SIZE", "SIZE", "UPDATED"],
        lambda item: [
            str(item.get("digest", "-")),
            MEDIA_TYPES.get(str(item.get("media_type")), str(item.get("media_type", "-"))),
            join(item.get("tags")),
            str(len(item["blobs"])) if isinstance(item.get("blobs"), list) else "-",
            human_size(item.get("compressed_size_bytes")),
            human_size(item.get("size_bytes")),
            human_time(item.get("updated_at")),
        ],
        no_wrap=["DIGEST"],
        empty="No manifests.",
    )


@manifest.command("delete")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("repository_name", metavar="REPOSITORY")
@click.argument("digest", metavar="DIGEST")
@force_option()
@global_options
@pass_state
def manifest_delete(
    state: CliState, registry_name: str, repository_name: str, digest: str, force: bool
) -> None:
    """Delete the manifest DIGEST and every tag pointing at it."""
    confirm(
        force,
        f"Delete manifest {registry_name}/{repository_name}@{digest} and every tag on it?",
    )
    state.client().delete_manifest(registry_name, repository_name, digest)
    state.printer.note(f"Deleted manifest {registry_name}/{repository_name}@{digest}.")


# ======================================================================================
# tokens


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


COMMANDS: tuple[click.Command, ...] = (
    auth,
    login,
    docker_config,
    registry,
    repository,
    tag,
    manifest,
    token,
)

__all__ = ["COMMANDS"]
