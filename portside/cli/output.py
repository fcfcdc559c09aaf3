"""How the ``portside`` CLI prints: rich tables for people, the API's JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

OUTPUT_FORMATS = ("table", "json")
# Width used when stdout is not a terminal (pipes, files) and $COLUMNS is unset, so that tables
# are not squeezed into 80 columns.
PIPE_WIDTH = 200

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(value: Any) -> str:
    """Bytes as ``1.5 MiB`` (binary units); ``-`` when missing."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(size)} B"
            text = f"{size:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_time(value: Any, missing: str = "-") -> str:
    """An RFC 3339 timestamp as ``2026-01-02 03:04:05 UTC``; other strings unchanged."""
    if not isinstance(value, str) or not value:
        return missing
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dollars(cents: Any) -> str:
    if not isinstance(cents, int) or isinstance(cents, bool):
        return "-"
    return f"${cents / 100:,.2f}"


def short_digest(digest: Any, length: int = 12) -> str:
    """``sha256:0123456789ab`` for tables where the full digest would not fit."""
    if not isinstance(digest, str) or not digest:
        return "-"
    algorithm, _, encoded = digest.partition(":")
    if not encoded:
        return digest
    return f"{algorithm}:{encoded[:length]}"


def yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "-"


def join(values: Any, empty: str = "-") -> str:
    if isinstance(values, list) and values:
        return ", ".join(str(value) for value in values)
    return empty


def _console(err: bool = False) -> Console:
    stream = sys.stderr if err else sys.stdout
    width: int | None = None
    if not os.environ.get("COLUMNS") and not stream.isatty():
        width = PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


class Printer:
    """Everything a command prints goes through here, so ``--output json`` stays clean."""

    def __init__(self, output: str) -> None:
        if output not in OUTPUT_FORMATS:
            raise click.BadParameter(f"unknown output format {output!r}")
        self.output = output

    @property
    def json(self) -> bool:
        return self.output == "json"

    def emit_json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, sort_keys=False))

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[str]],
        *,
        no_wrap: Iterable[str] = (),
        empty: str | None = None,
    ) -> None:
        """A table (table output only); ``empty`` is printed instead when there is no row."""
        materialized = [list(row) for row in rows]
        if not materialized and empty:
            self.note(empty)
            return
        keep = set(no_wrap)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column, no_wrap=column in keep, overflow="fold")
        for row in materialized:
            table.add_row(*row)
        _console().print(table)

    def details(self, pairs: Iterable[tuple[str, str]]) -> None:
        """A two-column key/value table for one object."""
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(key, value)
        _console().print(table)

    def note(self, text: str) -> None:
        """A human message on stdout (table output only; nothing in JSON output)."""
        if not self.json:
            click.echo(text)

    def info(self, text: str) -> None:
        """A message on stderr, whatever the output format."""
        click.echo(text, err=True)
