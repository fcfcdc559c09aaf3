"""``portside manifest``: list (with tags, blobs and sizes) and delete."""

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
from portside.cli.output import human_size, human_time, join

MEDIA_TYPES = {
    "application/vnd.oci.image.manifest.v1+json": "OCI manifest",
    "application/vnd.oci.image.index.v1+json": "OCI index",
    "application/vnd.docker.distribution.manifest.v2+json": "Docker manifest v2",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list",
}


@click.group()
def manifest() -> None:
    """List and delete manifests of a repository."""


@manifest.command("list")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("repository_name", metavar="REPOSITORY")
@pagination_options
@global_options
@pass_state
def manifest_list(
    state: CliState,
    registry_name: str,
    repository_name: str,
    per_page: int | None,
    page_token: str | None,
) -> None:
    """List the manifests of REPOSITORY with their tags, blobs and sizes."""
    print_list(
        state,
        state.client().manifests_path(registry_name, repository_name),
        "manifests",
        per_page,
        page_token,
        ["DIGEST", "TYPE", "TAGS", "BLOBS", "COMPRESSED SIZE", "SIZE", "UPDATED"],
        lambda item: [
            str(item.get("digest", "-")),
            MEDIA_TYPES.get(str(item.get("media_type")), str(item.get("media_type", "-"))),
            join(item.get("tags")),
            str(len(item["blobs"])) if isinstance(item.get("blobs"), list) else "-",
            human_size(item.get("compressed_size_bytes")),
            human_size(item.get("size_bytes")),
            human_time(item.get("updated_at")),
        ],
        no_wrap=["DIGEST"],
        empty="No manifests.",
    )


@manifest.command("delete")
@click.argument("registry_name", metavar="REGISTRY")
@click.argument("repository_name", metavar="REPOSITORY")
@click.argument("digest", metavar="DIGEST")
@force_option()
@global_options
@pass_state
def manifest_delete(
    state: CliState, registry_name: str, repository_name: str, digest: str, force: bool
) -> None:
    """Delete the manifest DIGEST and every tag pointing at it."""
    confirm(
        force,
        f"Delete manifest {registry_name}/{repository_name}@{digest} and every tag on it?",
    )
    state.client().delete_manifest(registry_name, repository_name, digest)
    state.printer.note(f"Deleted manifest {registry_name}/{repository_name}@{digest}.")
