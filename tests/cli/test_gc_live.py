"""``portside registry gc start --wait`` against the real local runtime (``portside serve``):
the user's path of the issue, end to end. Delete a tag, collect, see the freed bytes and the
storage figure drop; the image still tagged is untouched."""

from __future__ import annotations

import os

import pytest
import requests

from tests.support.server import RunningRegistry

from .conftest import Cli, push
from .oci import pull_manifest, push_image, sha256

LAYER = 256 * 1024


@pytest.mark.timeout(300)
def test_start_wait_frees_a_deleted_tags_layer_and_the_storage_figure_drops(
    cli: Cli, server: RunningRegistry, new_registry: str
) -> None:
    auth = (server.token, server.token)
    kept = push(server, new_registry, "app", "v2")
    gone_layer = os.urandom(LAYER)

    gone = push_image(server.url, new_registry, "app", "v1", auth, layer=gone_layer)
    cli("tag", "delete", new_registry, "app", "v1", "--force").ok()
    before = cli("registry", "get", new_registry, "-o", "json").ok().json()

    out = cli(
        "registry", "gc", "start", new_registry, "--wait", "--poll-interval", "0.2", "-o", "json"
    ).ok()
    final = out.json()
    assert final["status"] == "succeeded"
    assert final["manifests_deleted"] == 1
    assert final["blobs_deleted"] == 1  # the deleted tag's layer; the shared config stays
    assert final["freed_bytes"] >= LAYER
    assert "succeeded" in out.stderr and "freed" in out.stderr

    after = cli("registry", "get", new_registry, "-o", "json").ok().json()
    assert after["storage_usage_bytes"] == before["storage_usage_bytes"] - final["freed_bytes"]

    # The tagged image is whole; the untagged one is gone with its layer.
    assert pull_manifest(server.url, new_registry, "app", "v2", auth).status_code == 200
    assert pull_manifest(server.url, new_registry, "app", gone.digest, auth).status_code == 404
    layer = requests.get(
        f"{server.url}/v2/{new_registry}/app/blobs/{sha256(gone_layer)}", auth=auth, timeout=30
    )
    assert layer.status_code == 404
    listed = cli("registry", "gc", "list", new_registry, "-o", "json").ok().json()
    assert [item["uuid"] for item in listed] == [final["uuid"]]
    assert kept.digest
