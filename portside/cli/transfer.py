"""``portside push`` and ``portside pull``: images between local sources (OCI layouts,
``docker save`` archives, the docker daemon) and any OCI registry, with a rich progress
display (plain lines when stderr is not a terminal)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from portside.cli.context import CliState, global_options, pass_state
from portside.cli.output import human_size, short_digest
from portside.clientlib import ClientError
from portside.clientlib.config import normalize_api_url
from portside.clientlib.dockerconfig import docker_config_path, load_docker_config
from portside.clientlib.oci import parse_reference
from portside.clientlib.oci.credentials import docker_credentials
from portside.clientlib.oci.registry import Credentials, RegistryClient
from portside.clientlib.oci.sources import open_source
from portside.clientlib.oci.transfer import WORKERS, ProgressSink, TransferResult, pull, push
from portside.clientlib.oci.uploaders import STRATEGIES, select_uploader

OUTCOME_TEXT = {
    "exists": "already present",
    "mounted": "mounted",
    "uploaded": "uploaded",
    "downloaded": "downloaded",
}


class PlainSink:
    """One line per blob on stderr (``quiet``: nothing)."""

    def __init__(self, verb: str, quiet: bool) -> None:
        self.verb = verb
        self.quiet = quiet
        self.lock = threading.Lock()

    def _say(self, text: str) -> None:
        if not self.quiet:
            with self.lock:
                click.echo(text, err=True)

    def begin(self, total_bytes: int) -> None:
        pass

    def start(self, digest: str, label: str, size: int) -> Callable[[int], None]:
        self._say(f"{short_digest(digest)}: {self.verb} {human_size(size)}")
        return lambda _count: None

    def finish(self, digest: str, outcome: str, size: int) -> None:
        self._say(f"{short_digest(digest)}: {OUTCOME_TEXT.get(outcome, outcome)}")

    def note(self, text: str) -> None:
        self._say(text)


class RichSink:
    """A bar per blob (bytes, rate, ETA) and an overall bar."""

    def __init__(self, progress: Progress, verb: str) -> None:
        self.progress = progress
        self.verb = verb
        self.total: TaskID | None = None
        self.tasks: dict[str, TaskID] = {}

    def begin(self, total_bytes: int) -> None:
        self.total = self.progress.add_task(f"[bold]{self.verb} total", total=total_bytes)

    def _overall(self, count: int) -> None:
        if self.total is not None:
            self.progress.advance(self.total, count)

    def start(self, digest: str, label: str, size: int) -> Callable[[int], None]:
        task = self.progress.add_task(short_digest(digest), total=size or None)
        self.tasks[digest] = task

        def advance(count: int) -> None:
            self.progress.advance(task, count)
            self._overall(count)

        return advance

    def finish(self, digest: str, outcome: str, size: int) -> None:
        text = f"{short_digest(digest)} {OUTCOME_TEXT.get(outcome, outcome)}"
        task = self.tasks.get(digest)
        if task is None:  # skipped before any byte moved
            self.progress.add_task(text, total=size or 1, completed=size or 1)
            self._overall(size)
            return
        self.progress.update(task, description=text, completed=size or 1, total=size or 1)

    def note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)


@contextmanager
def _sink(verb: str, quiet: bool) -> Iterator[ProgressSink]:
    if quiet or not sys.stderr.isatty():
        yield PlainSink(verb, quiet)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
    )
    with progress:
        yield RichSink(progress, verb)


def registry_credentials(
    state: CliState, host: str, username: str | None, password: str | None
) -> Credentials | None:
    """``--username/--password``; else the CLI's API token when the registry is the API's
    host (never sent to another host); else docker's config.json for the host, as docker
    reads it: its credential helper (``credHelpers``, else ``credsStore``) when one applies,
    otherwise the ``auths`` entry."""
    if username or password:
        if not (username and password):
            raise ClientError("pass both --username and --password")
        return Credentials(username, password)
    settings = state.settings()
    api_host = urlsplit(normalize_api_url(settings.api_url)).netloc if settings.api_url else None
    if settings.token and api_host == host:
        return Credentials(settings.token, settings.token)
    path = docker_config_path()
    return docker_credentials(host, load_docker_config(path), path)


def _connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--username", "-u", metavar="USER", help="Registry user name."),
        click.option(
            "--password",
            "-p",
            metavar="PASSWORD",
            envvar="PORTSIDE_REGISTRY_PASSWORD",
            help="Registry password or token [env PORTSIDE_REGISTRY_PASSWORD].",
        ),
        click.option(
            "--plain-http/--https",
            default=None,
            help="Talk HTTP (default: only to localhost and 127.0.0.0/8).",
        ),
        click.option("--insecure", is_flag=True, help="Do not verify the registry's TLS cert."),
        click.option(
            "--jobs",
            "-j",
            type=click.IntRange(1, 32),
            default=WORKERS,
            show_default=True,
            help="Blobs transferred at once.",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress; only the result."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _client(
    state: CliState,
    host: str,
    username: str | None,
    password: str | None,
    plain_http: bool | None,
    insecure: bool,
) -> RegistryClient:
    credentials = registry_credentials(state, host, username, password)
    return RegistryClient(host, credentials, plain_http=plain_http, insecure=insecure)


def _report(state: CliState, verb: str, where: str, result: TransferResult) -> None:
    pushed = verb == "Pushed"
    if state.printer.json:
        document: dict[str, Any] = {
            "reference": where,
            "digest": result.digest,
            "media_type": result.media_type,
            "blobs": result.outcomes,
        }
        if pushed:
            document["sent_bytes"] = result.sent_bytes
        state.printer.emit_json(document)
        return
    counts = ", ".join(
        f"{result.count(outcome)} {OUTCOME_TEXT[outcome]}"
        for outcome in OUTCOME_TEXT
        if result.count(outcome)
    )
    sent = f"; {human_size(result.sent_bytes)} sent" if pushed else ""
    state.printer.note(f"{verb} {where} {result.digest} ({counts or 'no blobs'}{sent}).")


@click.command("push")
@click.argument("source")
@click.argument("dest_ref", metavar="DEST_REF")
@_connection_options
@click.option(
    "--upload",
    "strategy",
    type=click.Choice(STRATEGIES),
    default="auto",
    show_default=True,
    help="Blob uploads: direct (presigned S3, when the registry offers it) or standard.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1 << 16),
    default=64 << 20,
    show_default=True,
    help="Standard uploads: blobs larger than this go in PATCH chunks of this size.",
)
@click.option(
    "--mount-from",
    "mount_from",
    metavar="REPOSITORY",
    multiple=True,
    help="Try a cross-repository mount from this repository of the same registry host first.",
)
@global_options
@pass_state
def push_command(
    state: CliState,
    source: str,
    dest_ref: str,
    username: str | None,
    password: str | None,
    plain_http: bool | None,
    insecure: bool,
    jobs: int,
    quiet: bool,
    strategy: str,
    chunk_size: int,
    mount_from: tuple[str, ...],
) -> None:
    """Push an image from SOURCE to DEST_REF (HOST/REGISTRY/REPOSITORY[:TAG]).

    \b
    SOURCE: DIR (an OCI layout), FILE (a docker save archive, plain or gzip),
            - (a docker save archive on stdin), oci:DIR[:TAG],
            docker-archive:FILE or docker-daemon:IMAGE.
    Works with any OCI registry; blobs it already has are skipped.
    """
    ref = parse_reference(dest_ref)
    stdin = _stdin()
    if source in ("-", "docker-archive:-") and stdin.isatty():
        raise ClientError(
            "SOURCE - reads a docker save archive from stdin, which is a terminal: pipe one in "
            "(docker save IMAGE | portside push - REF)"
        )
    client = _client(state, ref.host, username, password, plain_http, insecure)
    with open_source(source, stdin) as image:
        uploader = select_uploader(
            client,
            strategy,
            state_dir=_cache_dir() / "direct-uploads",
            chunk_size=chunk_size,
            mount_from=mount_from,
            standard_state_dir=_cache_dir() / "standard-uploads",
        )
        with _sink("push", quiet) as sink:
            if uploader.name == "direct":
                sink.note("Using direct uploads (direct-uploads/v1).")
            try:
                result = push(client, ref, image, uploader, sink, jobs)
            except OSError as exc:
                raise ClientError(f"cannot read {source}: {exc}") from exc
    _report(state, "Pushed", str(ref), result)


@click.command("pull")
@click.argument("ref_text", metavar="REF")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@_connection_options
@global_options
@pass_state
def pull_command(
    state: CliState,
    ref_text: str,
    dest: Path,
    username: str | None,
    password: str | None,
    plain_http: bool | None,
    insecure: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Pull REF (HOST/REGISTRY/REPOSITORY[:TAG|@DIGEST]) into DEST as an OCI image layout.

    An index is pulled with every platform. Every blob is verified against its digest;
    DEST must not exist (or be empty), and stays untouched when the pull fails.
    """
    ref = parse_reference(ref_text)
    client = _client(state, ref.host, username, password, plain_http, insecure)
    with _sink("pull", quiet) as sink:
        try:
            result = pull(client, ref, dest, sink, jobs)
        except OSError as exc:
            raise ClientError(f"cannot write {dest}: {exc}") from exc
    _report(state, "Pulled", f"{ref} into {dest}", result)


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "portside"
