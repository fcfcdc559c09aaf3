"""The ``portside`` command line.

``portside serve`` runs the registry locally; every other command talks to the management
API (``/api/v1``) over HTTP (see docs/cli.md). Importing this module never imports boto3,
moto or the registry core: ``serve`` imports the local runtime when it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from portside.cli.commands import COMMANDS
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


for _command in COMMANDS:
    main.add_command(_command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=int,
    default=lambda: int(os.environ.get("PORT", "5000")),
    show_default="5000 or $PORT",
)
@click.option(
    "--registry",
    envvar="PORTSIDE_BOOTSTRAP_REGISTRY",
    default=None,
    help="Registry to create at start (default: demo).",
)
@click.option(
    "--token",
    envvar="PORTSIDE_BOOTSTRAP_TOKEN",
    default=None,
    help="API token to create at start (default: a new one, printed).",
)
@click.option(
    "--aws-endpoint-url",
    envvar="PORTSIDE_AWS_ENDPOINT_URL",
    default=None,
    help="Use this AWS endpoint (e.g. a moto server of your own) instead of starting moto.",
)
def serve(
    host: str, port: int, registry: str | None, token: str | None, aws_endpoint_url: str | None
) -> None:
    """Run the registry locally on an embedded AWS stand-in (moto on loopback)."""
    from portside.local.runtime import serve as run

    run(host, port, registry, token, aws_endpoint_url=aws_endpoint_url)


if __name__ == "__main__":
    main()
