"""``portside tag``: list (with manifest digests and sizes) and delete."""

from __future__ import annotations

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
from portside.cli.output import human_size, human_time


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
