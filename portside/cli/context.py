"""Shared state, option decorators and prompts of the ``portside`` commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from portside.cli.output import OUTPUT_FORMATS, Printer
from portside.clientlib import ApiClient, ResolvedSettings, resolve_settings
from portside.clientlib.api import JSON

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """Global options (from the top-level group or the command itself) and the lazy client."""

    api_url_flag: str | None = None
    token_flag: str | None = None
    config_flag: Path | None = None
    output: str = "table"
    _client: ApiClient | None = field(default=None, repr=False)

    def settings(self) -> ResolvedSettings:
        return resolve_settings(self.api_url_flag, self.token_flag, self.config_flag)

    def client(self) -> ApiClient:
        if self._client is None:
            api_url, token = self.settings().require()
            self._client = ApiClient(api_url, token)
        return self._client

    @property
    def printer(self) -> Printer:
        return Printer(self.output)


pass_state = click.make_pass_decorator(CliState, ensure=True)

# The API's ceiling for a token's lifetime (one year), checked here so that a typo fails before
# any request.
MAX_EXPIRY_SECONDS = 31_536_000


def expiry_option(help_text: str) -> Callable[[F], F]:
    """``--expiry-seconds``: the lifetime of a token the command mints (1 s to one year)."""
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


def _setter(attribute: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        state = ctx.ensure_object(CliState)
        setattr(state, attribute, value)

    return callback


def global_options(func: F) -> F:
    """``--api-url``, ``--token``, ``--config`` and ``--output``, accepted before or after the
    command name (``portside -o json registry list`` and ``portside registry list -o json``)."""
    decorators = [
        click.option(
            "--api-url",
            metavar="URL",
            expose_value=False,
            callback=_setter("api_url_flag"),
            help="Portside API base URL [env PORTSIDE_API_URL, then the config file].",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            expose_value=False,
            callback=_setter("token_flag"),
            help="API token [env PORTSIDE_TOKEN, then the config file].",
        ),
        click.option(
            "--config",
            "config_path",
            metavar="PATH",
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            callback=_setter("config_flag"),
            help="Config file [env PORTSIDE_CONFIG, default ~/.config/portside/config.json].",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(OUTPUT_FORMATS),
            expose_value=False,
            callback=_setter("output"),
            help="table (for people, the default) or json (the API's objects, for scripts).",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def pagination_options(func: F) -> F:
    func = click.option(
        "--page-token",
        metavar="TOKEN",
        default=None,
        help="Fetch the single page that starts at this token (from a previous page).",
    )(func)
    func = click.option(
        "--per-page",
        type=click.IntRange(1, 200),
        default=None,
        help="Fetch a single page of this many items (1-200) instead of every page.",
    )(func)
    return func


def print_list(
    state: CliState,
    path: str,
    key: str,
    per_page: int | None,
    page_token: str | None,
    columns: Sequence[str],
    row: Callable[[JSON], Sequence[str]],
    *,
    no_wrap: Iterable[str] = (),
    empty: str,
) -> None:
    """Print a paginated list: every page by default, one page with --per-page/--page-token.

    JSON output is the array of the API's items (all pages); for a single page it is the
    API's page object itself, so that scripts see ``links.next_page_token``.
    """
    client = state.client()
    printer = state.printer
    if per_page is None and page_token is None:
        items = client.collect(path, key)
        if printer.json:
            printer.emit_json(items)
        else:
            printer.table(columns, (row(item) for item in items), no_wrap=no_wrap, empty=empty)
        return
    page = client.page(path, key, per_page=per_page, page_token=page_token)
    if printer.json:
        printer.emit_json(page.raw)
        return
    printer.table(columns, (row(item) for item in page.items), no_wrap=no_wrap, empty=empty)
    if page.next_page_token:
        printer.info(f"More results: add --page-token {page.next_page_token}")
