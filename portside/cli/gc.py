"""``portside registry gc``: start, follow, list and cancel garbage collections.

``gc start --wait`` (and ``gc get --wait``) follow a collection until it ends by polling
``GET .../garbage-collection`` about once a second: on a terminal a live rich display (phase,
items scanned, manifests and blobs deleted, bytes freed, elapsed time), otherwise one line
per status change, both on stderr so that stdout carries only the final record. When the
active collection disappears (404, or another one took its place) its final record is read
from the history. Exit status: 0 if it succeeded, 1 if it failed or was cancelled, 130 if
the user stopped watching with Ctrl-C (the collection keeps running).

The ``gc`` group is importable (``from portside.cli.gc import gc``) so that other modules
can hang subcommands under it.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import click
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from portside.cli.context import (
    CliState,
    global_options,
    pagination_options,
    pass_state,
    print_list,
)
from portside.cli.output import human_size, human_time
from portside.clientlib import ApiClient, ApiError, ClientError
from portside.clientlib.api import JSON
from portside.clientlib.errors import ApiUnreachable

# The API's strings (chalicelib/registry/gc.py), DigitalOcean's names.
TYPE_MANIFESTS = "untagged manifests only"
TYPE_BLOBS = "unreferenced blobs only"
TYPE_BOTH = "untagged manifests and unreferenced blobs"
MODE_READ_ONLY = "read-only"
MODE_ONLINE = "online"

SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
CANCELLING = "cancelling"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})
# The phases an active collection goes through, in order; the bar shows how far along it is.
PHASES = (
    "requested",
    "waiting for write JWTs to expire",
    "scanning manifests",
    "deleting unreferenced blobs",
)

DEFAULT_POLL_INTERVAL = 1.0
# Consecutive failed polls (API unreachable, 5xx, 429) tolerated before giving up: a
# collection runs for minutes, a blip in the network must not end the watch.
MAX_POLL_FAILURES = 10
# How far back the history is searched for the final record of the watched collection, and
# how often: the history may briefly lag behind the active record.
HISTORY_PAGE = 20
HISTORY_PAGES = 5
HISTORY_ATTEMPTS = 5

EXIT_INTERRUPTED = 130


@click.group("gc")
def gc() -> None:
    """Garbage collection: free the storage of untagged manifests and unreferenced blobs.

    REGISTRY may be left out when the token sees a single registry.
    """


# ------------------------------------------------------------------------------ helpers


def resolve_registry(state: CliState, name: str | None) -> str:
    """NAME, or the only registry the token can see."""
    if name:
        return name
    names = sorted(
        str(item["name"]) for item in state.client().list_registries() if item.get("name")
    )
    if len(names) == 1:
        return names[0]
    if not names:
        raise ClientError("the token sees no registry; create one with `portside registry create`")
    shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
    raise click.UsageError(f"name the registry: the token sees {len(names)} ({shown})")


def collection_type(include_untagged_manifests: bool, exclude_unreferenced_blobs: bool) -> str:
    """The API's type for the flags of ``gc start``."""
    if include_untagged_manifests and not exclude_unreferenced_blobs:
        return TYPE_BOTH
    if include_untagged_manifests:
        return TYPE_MANIFESTS
    if not exclude_unreferenced_blobs:
        return TYPE_BLOBS
    raise click.UsageError(
        "--exclude-untagged-manifests with --exclude-unreferenced-blobs leaves nothing to collect"
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _progress(item: JSON) -> JSON:
    progress = item.get("progress")
    return progress if isinstance(progress, dict) else {}


def items_scanned(item: JSON) -> int:
    progress = _progress(item)
    if "items_scanned" in progress:
        return _count(progress["items_scanned"])
    return sum(
        _count(progress.get(key))
        for key in (
            "repositories_scanned",
            "manifests_scanned",
            "blobs_scanned",
            "objects_scanned",
        )
    )


def _deleted(item: JSON) -> str:
    return (
        f"{_count(item.get('manifests_deleted')):,} manifests, "
        f"{_count(item.get('blobs_deleted')):,} blobs deleted"
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """``3h 2m 1s``, ``2m 5s``, ``42s``."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _duration(item: JSON) -> str | None:
    """How long a finished collection ran, by the server's clock."""
    created = _parse_time(item.get("created_at"))
    updated = _parse_time(item.get("updated_at"))
    if created is None or updated is None:
        return None
    return human_duration((updated - created).total_seconds())


def _details(item: JSON) -> list[tuple[str, str]]:
    progress = _progress(item)
    breakdown = ", ".join(
        f"{_count(progress.get(key + '_scanned')):,} {key}"
        for key in ("repositories", "manifests", "blobs", "objects")
    )
    status = str(item.get("status", "-"))
    pairs = [
        ("UUID", str(item.get("uuid", "-"))),
        ("Registry", str(item.get("registry_name", "-"))),
        ("Status", status),
        ("Type", str(item.get("type", "-"))),
        ("Mode", str(item.get("mode", "-"))),
        ("Started by", str(item.get("trigger", "-"))),
        ("Scanned", f"{items_scanned(item):,} items ({breakdown})"),
        ("Manifests deleted", f"{_count(item.get('manifests_deleted')):,}"),
        ("Blobs deleted", f"{_count(item.get('blobs_deleted')):,}"),
        ("Freed", human_size(item.get("freed_bytes"))),
    ]
    if item.get("error"):
        pairs.append(("Error", str(item["error"])))
    pairs += [
        ("Created", human_time(item.get("created_at"))),
        ("Updated", human_time(item.get("updated_at"))),
    ]
    duration = _duration(item)
    if duration is not None and status in FINAL_STATUSES:
        pairs.append(("Duration", duration))
    return pairs


def _show(state: CliState, item: JSON) -> None:
    if state.printer.json:
        state.printer.emit_json(item)
    else:
        state.printer.details(_details(item))


def _looks_like_uuid(value: str) -> bool:
    try:
        return str(uuidlib.UUID(value)) == value.lower()
    except ValueError:
        return False


# ------------------------------------------------------------------------------ watching

# Looked up at call time, so that a test can stand in for the wait between polls.
_sleep = time.sleep


class Display(Protocol):
    """Shows a watched collection's progress."""

    def update(self, item: JSON) -> None: ...

    def close(self) -> None: ...


def status_line(item: JSON, elapsed: float) -> str:
    """One line for a status change: ``[0:00:03] scanning manifests: …``."""
    minutes, secs = divmod(max(0, int(elapsed)), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"[{hours}:{minutes:02d}:{secs:02d}] {item.get('status', '?')}: "
        f"{items_scanned(item):,} items scanned, {_deleted(item)}, "
        f"{human_size(_count(item.get('freed_bytes')))} freed"
    )


class LineDisplay:
    """Without a terminal (CI logs, pipes): one line per status change."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self._console = console
        self._clock = clock
        self._started = clock()
        self._status: str | None = None

    def update(self, item: JSON) -> None:
        status = str(item.get("status", "?"))
        if status == self._status:
            return
        self._status = status
        self._console.print(
            status_line(item, self._clock() - self._started),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        pass


# The mark that replaces the spinner once a collection has ended.
END_MARKS = {SUCCEEDED: "[green]✓[/]", FAILED: "[red]✗[/]", CANCELLED: "[yellow]-[/]"}


class _EndingSpinner(SpinnerColumn):
    """A spinner while the collection runs, then the mark of how it ended."""

    def render(self, task: Task) -> RenderableType:
        mark = task.fields.get("mark")
        return Text.from_markup(mark) if mark else super().render(task)


class LiveDisplay:
    """On a terminal: a live line with a bar over the phases, redrawn at every poll."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            _EndingSpinner(),
            TextColumn("[bold]{task.fields[phase]}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[scanned]} items scanned"),
            TextColumn("·"),
            TextColumn("{task.fields[deleted]}"),
            TextColumn("·"),
            TextColumn("[bold]{task.fields[freed]}[/] freed"),
            TextColumn("·"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(
            "gc",
            total=len(PHASES),
            phase="starting",
            scanned="0",
            deleted="0 manifests, 0 blobs deleted",
            freed="0 B",
        )
        self._progress.start()

    def update(self, item: JSON) -> None:
        status = str(item.get("status", "?"))
        fields: dict[str, Any] = {
            "phase": status,
            "scanned": f"{items_scanned(item):,}",
            "deleted": _deleted(item),
            "freed": human_size(_count(item.get("freed_bytes"))),
        }
        if status in PHASES:
            fields["completed"] = PHASES.index(status)
        elif status == SUCCEEDED:
            fields["completed"] = len(PHASES)
        self._progress.update(self._task, **fields)
        if status in FINAL_STATUSES:
            self._progress.update(self._task, mark=END_MARKS[status])
            self._progress.stop_task(self._task)

    def close(self) -> None:
        self._progress.stop()


def make_display(console: Console) -> Display:
    """The live display on a real terminal, status lines anywhere else."""
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveDisplay(console)
    return LineDisplay(console)


def _transient(exc: ClientError) -> bool:
    if isinstance(exc, ApiUnreachable):
        return True
    return isinstance(exc, ApiError) and (exc.status >= 500 or exc.status == 429)


def _final_record(client: ApiClient, registry: str, gc_uuid: str) -> JSON | None:
    """The watched collection as the history has it (newest first, so near the top)."""
    token: str | None = None
    for _ in range(HISTORY_PAGES):
        page = client.list_garbage_collections(registry, per_page=HISTORY_PAGE, page_token=token)
        for item in page.items:
            if item.get("uuid") == gc_uuid:
                return item
        token = page.next_page_token
        if not token:
            return None
    return None


def watch(
    client: ApiClient,
    registry: str,
    item: JSON,
    display: Display,
    interval: float,
    sleep: Callable[[float], None] | None = None,
) -> JSON:
    """Follow collection ``item`` until it ends; its final record."""
    gc_uuid = str(item.get("uuid"))
    display.update(item)
    failures = 0
    history_misses = 0
    while str(item.get("status")) not in FINAL_STATUSES:
        (sleep or _sleep)(interval)
        try:
            active = client.get_active_garbage_collection(registry)
            if active is not None and active.get("uuid") == gc_uuid:
                item = active
            else:
                # Ended: gone (404), or a newer collection (a schedule) already took its place.
                final = _final_record(client, registry, gc_uuid)
                if final is None or str(final.get("status")) not in FINAL_STATUSES:
                    history_misses += 1
                    if history_misses >= HISTORY_ATTEMPTS:
                        raise ClientError(
                            f"garbage collection {gc_uuid} is no longer active and its final "
                            f"record is not in the history of registry {registry}"
                        )
                    continue
                item = final
            failures = 0
        except ClientError as exc:
            if not _transient(exc):
                raise
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise
            continue
        display.update(item)
    return item


def _finish(state: CliState, registry: str, item: JSON) -> None:
    """Print the final record; a failed or cancelled collection ends with exit status 1."""
    _show(state, item)
    status = str(item.get("status"))
    gc_uuid = item.get("uuid")
    if status == FAILED:
        raise ClientError(
            f"garbage collection {gc_uuid} of registry {registry} failed: "
            f"{item.get('error') or 'no reason given'}"
        )
    if status == CANCELLED:
        raise ClientError(f"garbage collection {gc_uuid} of registry {registry} was cancelled")
    duration = _duration(item)
    state.printer.info(
        f"Garbage collection {gc_uuid} succeeded"
        + (f" in {duration}" if duration else "")
        + f": {_deleted(item)}, {human_size(_count(item.get('freed_bytes')))} freed."
    )


def _wait(state: CliState, registry: str, item: JSON, interval: float) -> None:
    console = Console(stderr=True, highlight=False)
    display = make_display(console)
    try:
        final = watch(state.client(), registry, item, display, interval)
    except KeyboardInterrupt:
        display.close()
        gc_uuid = item.get("uuid")
        state.printer.info(
            f"\nStopped watching. Garbage collection {gc_uuid} keeps running: follow it with "
            f"`portside registry gc get {registry} --wait`, cancel it with "
            f"`portside registry gc cancel {registry} {gc_uuid}`."
        )
        click.get_current_context().exit(EXIT_INTERRUPTED)
    display.close()
    _finish(state, registry, final)


def _poll_interval_option(func: Callable[..., Any]) -> Callable[..., Any]:
    # Hidden: the tests poll a stub much faster than a person needs.
    return click.option(
        "--poll-interval",
        type=click.FloatRange(min=0),
        default=DEFAULT_POLL_INTERVAL,
        hidden=True,
    )(func)


def _registry_argument(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("registry_name", metavar="[REGISTRY]", required=False)(func)


# ------------------------------------------------------------------------------ commands


@gc.command("start")
@_registry_argument
@click.option(
    "--include-untagged-manifests",
    "include_untagged_manifests",
    flag_value=True,
    default=True,
    help="Delete manifests no tag reaches (the default).",
)
@click.option(
    "--exclude-untagged-manifests",
    "include_untagged_manifests",
    flag_value=False,
    help="Keep untagged manifests (and the blobs they reference).",
)
@click.option(
    "--exclude-unreferenced-blobs",
    is_flag=True,
    help="Keep blobs no manifest references (default: delete them).",
)
@click.option(
    "--online",
    is_flag=True,
    help="Keep the registry writable while it runs (default: read-only until it ends).",
)
@click.option("--wait", is_flag=True, help="Show its progress until it ends.")
@_poll_interval_option
@global_options
@pass_state
def gc_start(
    state: CliState,
    registry_name: str | None,
    include_untagged_manifests: bool,
    exclude_unreferenced_blobs: bool,
    online: bool,
    wait: bool,
    poll_interval: float,
) -> None:
    """Start a garbage collection of REGISTRY.

    One collection runs at a time per registry; a second start is refused.
    """
    gc_type = collection_type(include_untagged_manifests, exclude_unreferenced_blobs)
    registry = resolve_registry(state, registry_name)
    client = state.client()
    try:
        item = client.start_garbage_collection(
            registry, gc_type, MODE_ONLINE if online else MODE_READ_ONLY
        )
    except ApiError as exc:
        if exc.status == 409:
            raise ClientError(_already_running(client, registry, exc)) from exc
        raise
    if wait:
        _wait(state, registry, item, poll_interval)
        return
    _show(state, item)
    state.printer.note(f"Follow it with `portside registry gc get {registry} --wait`.")


def _already_running(client: ApiClient, registry: str, exc: ApiError) -> str:
    """The 409's message, naming the active collection and what to do about it."""
    try:  # best effort: the refusal is reported even if this lookup fails
        active = client.get_active_garbage_collection(registry)
    except ClientError:
        active = None
    if active is None:
        return exc.message
    gc_uuid = active.get("uuid")
    return (
        f"registry {registry} already has an active garbage collection: {gc_uuid} "
        f"({active.get('status')}, started {human_time(active.get('created_at'))}). "
        f"Follow it with `portside registry gc get {registry} --wait` or cancel it with "
        f"`portside registry gc cancel {registry} {gc_uuid}`."
    )


@gc.command("get")
@_registry_argument
@click.option("--wait", is_flag=True, help="Show its progress until it ends.")
@_poll_interval_option
@global_options
@pass_state
def gc_get(state: CliState, registry_name: str | None, wait: bool, poll_interval: float) -> None:
    """Show the active garbage collection of REGISTRY, with its progress."""
    registry = resolve_registry(state, registry_name)
    item = state.client().get_active_garbage_collection(registry)
    if item is None:
        if state.printer.json:
            state.printer.emit_json(None)
        state.printer.note(
            f"No garbage collection is running on registry {registry}; "
            f"past ones: `portside registry gc list {registry}`."
        )
        return
    if wait:
        _wait(state, registry, item, poll_interval)
        return
    _show(state, item)


@gc.command("list")
@_registry_argument
@pagination_options
@global_options
@pass_state
def gc_list(
    state: CliState, registry_name: str | None, per_page: int | None, page_token: str | None
) -> None:
    """List the garbage collections of REGISTRY, newest first."""
    registry = resolve_registry(state, registry_name)

    def row(item: JSON) -> Sequence[str]:
        return [
            str(item.get("uuid", "-")),
            str(item.get("status", "-")),
            str(item.get("type", "-")),
            str(item.get("mode", "-")),
            f"{_count(item.get('manifests_deleted')):,}",
            f"{_count(item.get('blobs_deleted')):,}",
            human_size(item.get("freed_bytes")),
            human_time(item.get("created_at")),
        ]

    print_list(
        state,
        state.client().garbage_collections_path(registry),
        "garbage_collections",
        per_page,
        page_token,
        ["UUID", "STATUS", "TYPE", "MODE", "MANIFESTS", "BLOBS", "FREED", "STARTED"],
        row,
        no_wrap=["UUID", "STARTED"],
        empty="No garbage collections.",
    )


@gc.command("cancel")
@_registry_argument
@click.argument("gc_uuid", metavar="[UUID]", required=False)
@global_options
@pass_state
def gc_cancel(state: CliState, registry_name: str | None, gc_uuid: str | None) -> None:
    """Cancel the active garbage collection of REGISTRY.

    UUID defaults to the active collection's; a single argument that is a UUID names a
    collection of the only registry the token sees.
    """
    if gc_uuid is None and registry_name is not None and _looks_like_uuid(registry_name):
        registry_name, gc_uuid = None, registry_name
    registry = resolve_registry(state, registry_name)
    client = state.client()
    if gc_uuid is None:
        active = client.get_active_garbage_collection(registry)
        if active is None:
            raise ClientError(f"no garbage collection is running on registry {registry}")
        gc_uuid = str(active.get("uuid"))
    try:
        item = client.cancel_garbage_collection(registry, gc_uuid)
    except ApiError as exc:
        if exc.status == 409:
            raise ClientError(
                f"garbage collection {gc_uuid} is not active any more ({exc.detail})"
            ) from exc
        raise
    _show(state, item)
    if item.get("status") == CANCELLING:
        state.printer.note(
            "Cancelling: it stops at the end of its current step; follow it with "
            f"`portside registry gc get {registry} --wait`."
        )
