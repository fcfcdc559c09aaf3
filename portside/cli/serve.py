"""``portside serve``: the whole registry on this machine.

The local runtime (and with it boto3, moto and the registry core) is imported only when the
command runs, so that every other command starts without them.
"""

from __future__ import annotations

import os

import click


@click.command()
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
