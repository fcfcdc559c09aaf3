"""repository, tag and manifest list/delete after pushing content over /v2/."""

from __future__ import annotations

from urllib.parse import quote

import requests

from portside.clientlib import ApiClient
from tests.support.server import RunningRegistry

from .conftest import Cli, push
from .oci import pull_manifest


def test_repository_list_shows_counts_and_the_latest_manifest(
    cli: Cli, server: RunningRegistry, new_registry: str
) -> None:
    first = push(server, new_registry, "team/api", "v1")
    latest = push(server, new_registry, "team/api", "v2")
    push(server, new_registry, "web", "latest")

    repos = cli("repository", "list", new_registry, "-o", "json").ok().json()
    by_name = {repo["name"]: repo for repo in repos}
    assert set(by_name) == {"team/api", "web"}
    api = by_name["team/api"]
    assert api["tag_count"] == 2 and api["manifest_count"] == 2
    assert api["latest_manifest"]["digest"] == latest.digest
    assert first.digest != latest.digest

    table = cli("repository", "list", new_registry).ok().stdout
    for header in ("NAME", "TAGS", "MANIFESTS", "LATEST MANIFEST", "SIZE", "UPDATED"):
        assert header in table
    row = next(line for line in table.splitlines() if "team/api" in line)
    assert latest.digest[:19] in row  # sha256: + 12 hex
    assert "KiB" in row  # human-readable size


def test_tag_list_and_delete(cli: Cli, server: RunningRegistry, new_registry: str) -> None:
    v1 = push(server, new_registry, "team/api", "v1")
    push(server, new_registry, "team/api", "v2")

    tags = cli("tag", "list", new_registry, "team/api", "-o", "json").ok().json()
    assert [t["tag"] for t in tags] == ["v1", "v2"]
    assert tags[0]["manifest_digest"] == v1.digest
    assert isinstance(tags[0]["size_bytes"], int)  # raw bytes in JSON

    table = cli("tag", "list", new_registry, "team/api").ok().stdout
    row = next(line for line in table.splitlines() if line.lstrip().startswith("v1"))
    assert v1.digest in row and "KiB" in row

    assert cli("tag", "delete", new_registry, "team/api", "v1", input="n\n").exit_code == 1
    assert len(cli("tag", "list", new_registry, "team/api", "-o", "json").ok().json()) == 2
    cli("tag", "delete", new_registry, "team/api", "v1", "--force").ok()
    tags = cli("tag", "list", new_registry, "team/api", "-o", "json").ok().json()
    assert [t["tag"] for t in tags] == ["v2"]
    auth = (server.token, server.token)
    assert pull_manifest(server.url, new_registry, "team/api", "v1", auth).status_code == 404
    # the manifest stays, by digest
    assert pull_manifest(server.url, new_registry, "team/api", v1.digest, auth).status_code == 200

    cli("tag", "delete", new_registry, "team/api", "nope", "--force").failed()


def test_manifest_list_and_delete(cli: Cli, server: RunningRegistry, new_registry: str) -> None:
    one = push(server, new_registry, "app", "a")
    push(server, new_registry, "app", "b")  # a different random layer: another manifest
    # a second tag on the first manifest
    auth = (server.token, server.token)
    requests.put(
        f"{server.url}/v2/{new_registry}/app/manifests/also-a",
        data=one.manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        auth=auth,
        timeout=30,
    ).raise_for_status()

    manifests = cli("manifest", "list", new_registry, "app", "-o", "json").ok().json()
    assert len(manifests) == 2
    entry = next(m for m in manifests if m["digest"] == one.digest)
    assert sorted(entry["tags"]) == ["a", "also-a"]
    assert len(entry["blobs"]) == 2
    assert entry["compressed_size_bytes"] == one.layer_size + one.config_size

    table = cli("manifest", "list", new_registry, "app").ok().stdout
    row = next(line for line in table.splitlines() if one.digest in line)
    assert "OCI manifest" in row and "also-a" in row

    cli("manifest", "delete", new_registry, "app", one.digest, "--force").ok()
    manifests = cli("manifest", "list", new_registry, "app", "-o", "json").ok().json()
    assert one.digest not in {m["digest"] for m in manifests}
    tags = {t["tag"] for t in cli("tag", "list", new_registry, "app", "-o", "json").ok().json()}
    assert tags == {"b"}  # the manifest's tags went with it
    assert pull_manifest(server.url, new_registry, "app", one.digest, auth).status_code == 404


def test_repository_delete(cli: Cli, server: RunningRegistry, new_registry: str) -> None:
    push(server, new_registry, "team/gone", "v1")
    push(server, new_registry, "kept", "v1")
    refused = cli("repository", "delete", new_registry, "team/gone", input="n\n")
    assert refused.exit_code == 1
    cli("repository", "delete", new_registry, "team/gone", input="y\n").ok()
    names = {r["name"] for r in cli("repository", "list", new_registry, "-o", "json").ok().json()}
    assert names == {"kept"}
    auth = (server.token, server.token)
    assert pull_manifest(server.url, new_registry, "team/gone", "v1", auth).status_code == 404
    cli("tag", "list", new_registry, "team/gone").failed()


def test_single_pages_and_following_next_page_token(
    cli: Cli, server: RunningRegistry, new_registry: str
) -> None:
    for tag in ("t1", "t2", "t3"):
        push(server, new_registry, "paged/repo", tag)

    first = cli("tag", "list", new_registry, "paged/repo", "--per-page", "2", "-o", "json").ok()
    page = first.json()
    assert [t["tag"] for t in page["tags"]] == ["t1", "t2"]
    next_token = page["links"]["next_page_token"]
    second = (
        cli(
            "tag",
            "list",
            new_registry,
            "paged/repo",
            "--per-page",
            "2",
            "--page-token",
            next_token,
            "-o",
            "json",
        )
        .ok()
        .json()
    )
    assert [t["tag"] for t in second["tags"]] == ["t3"]
    assert not second.get("links", {}).get("next_page_token")

    table = cli("tag", "list", new_registry, "paged/repo", "--per-page", "2").ok()
    assert "t1" in table.stdout and "t3" not in table.stdout
    assert f"--page-token {next_token}" in table.stderr

    # the default (every page) is what the client library collects across pages of one
    client = ApiClient(server.url, server.token)
    path = client.tags_path(new_registry, "paged/repo")
    assert f"/repositories/{quote('paged/repo', safe='')}/tags" in path
    assert [t["tag"] for t in client.collect(path, "tags", per_page=1)] == ["t1", "t2", "t3"]
    everything = cli("tag", "list", new_registry, "paged/repo", "-o", "json").ok().json()
    assert [t["tag"] for t in everything] == ["t1", "t2", "t3"]


def test_a_pull_token_cannot_delete(cli: Cli, server: RunningRegistry, new_registry: str) -> None:
    push(server, new_registry, "ro", "v1")
    reader = server.create_token(["pull"], [new_registry])
    as_reader = cli.with_env(PORTSIDE_TOKEN=reader)
    assert len(as_reader("tag", "list", new_registry, "ro", "-o", "json").ok().json()) == 1
    as_reader("tag", "delete", new_registry, "ro", "v1", "--force").failed()
    assert len(cli("tag", "list", new_registry, "ro", "-o", "json").ok().json()) == 1
