"""``portside repository``: list (with tag and manifest counts) and delete."""

from __future__ import annotations

from collections.abc import Sequence

import click

from portside.cli.context import (
    CliState,
    confirm,
    force_option,
    global_options,
    pagination_options,
    pass_state,
    print_list,
)
from portside.cli.output import human_size, human_time, short_digest
from portside.clientlib.api import JSON


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
