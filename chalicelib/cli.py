"""The ``portside`` command line."""

from __future__ import annotations

import os

import click


@click.group()
def main() -> None:
    """Portside: a serverless, multi-tenant OCI registry for AWS."""


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
def serve(host: str, port: int, registry: str | None, token: str | None) -> None:
    """Run the registry locally on an embedded AWS stand-in (moto on loopback)."""
    from chalicelib.local.runtime import serve as run

    run(host, port, registry, token)


if __name__ == "__main__":
    main()
