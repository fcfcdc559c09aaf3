"""The ``portside`` command line: the top-level group and ``main``.

``portside serve`` runs the registry locally; every other command talks to the management
API (``/api/v1``) over HTTP (see docs/cli.md). Each noun has its module: ``auth`` (auth,
login, docker-config), ``registries``, ``repositories``, ``tags``, ``manifests``, ``tokens``,
``accounts`` (the operator's) and ``serve``; ``context`` holds the shared state and options,
``output`` the printing.
Importing this package never imports boto3, moto or the registry core: ``serve`` imports the
local runtime when it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from portside.cli import (
    accounts,
    auth,
    manifests,
    registries,
    repositories,
    serve,
    tags,
    tokens,
    transfer,
)
from portside.cli.context import global_options
from portside.clientlib import ClientError


class PortsideGroup(click.Group):
    """Turns client errors (API answers, unreachable API, bad settings) into one line on
    stderr, ``Error: <message>``, and exit status 1 — never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            raise click.ClickException(exc.message) from None
        except BrokenPipeError:
            # `portside ... | head`: the reader left; stop quietly, without a traceback at exit.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)


@click.group(cls=PortsideGroup)
@global_options
@click.version_option(package_name="portside", prog_name="portside")
def main() -> None:
    """Portside: a serverless, multi-tenant OCI registry for AWS.

    Settings: flags, then PORTSIDE_API_URL / PORTSIDE_TOKEN, then the config file written by
    `portside auth init`.
    """


for _command in (
    auth.auth,
    auth.login,
    auth.docker_config,
    registries.registry,
    repositories.repository,
    tags.tag,
    manifests.manifest,
    tokens.token,
    accounts.account,
    serve.serve,
    transfer.push_command,
    transfer.pull_command,
):
    main.add_command(_command)
