"""`portside push` / `portside pull` against the real local Portside, standard protocol:
generated OCI layouts and docker-save archives pushed, pulled back to OCI layouts and
compared blob by blob."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.server import RunningRegistry

from .conftest import Cli
from .images import (
    docker_save_archive,
    gzip_layer,
    layer_tar,
    layout_blobs,
    oci_index_layout,
    oci_layout,
    sha256,
)

STANDARD = ("--upload", "standard", "--quiet")


def _ref(server: RunningRegistry, registry: str, repository: str, tag: str) -> str:
    return f"{server.host}/{registry}/{repository}:{tag}"


def test_push_oci_layout_then_pull_back_byte_for_byte(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    # One layer over the chunk size: it goes up in PATCH chunks.
    descriptor = oci_layout(source, [gzip_layer(3000), gzip_layer(300_000)], tag="v1")
    ref = _ref(server, new_registry, "app", "v1")

    pushed = cli("push", str(source), ref, *STANDARD, "--chunk-size", "65536", "-o", "json")
    result = pushed.ok().json()
    assert result["digest"] == descriptor["digest"]
    assert sorted(set(result["blobs"].values())) == ["uploaded"]
    assert len(result["blobs"]) == 3

    dest = tmp_path / "pulled"
    cli("pull", ref, str(dest), "--quiet").ok()
    assert layout_blobs(dest) == layout_blobs(source)
    index = json.loads((dest / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["digest"] == descriptor["digest"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # Again: every blob is already there.
    again = cli("push", f"oci:{source}:v1", ref, *STANDARD, "-o", "json").ok().json()
    assert set(again["blobs"].values()) == {"exists"}


def test_push_docker_save_archive(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    layers = [layer_tar(5000), gzip_layer(20_000)]
    archive = tmp_path / "image.tar"
    config = docker_save_archive(archive, layers, "example/app:1.0")
    ref = _ref(server, new_registry, "from-docker", "1.0")

    out = cli("push", f"docker-archive:{archive}", ref, *STANDARD).ok()
    assert f"Pushed {ref} sha256:" in out.stdout

    dest = tmp_path / "pulled"
    cli("pull", ref, str(dest), "--quiet").ok()
    blobs = layout_blobs(dest)
    for blob in [config, *layers]:
        assert blobs[sha256(blob)] == blob
    index = json.loads((dest / "index.json").read_text())
    manifest = json.loads(blobs[index["manifests"][0]["digest"]])
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ]
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(x) for x in layers]

    # A plain file path is read as an archive too.
    cli("push", str(archive), _ref(server, new_registry, "plain-path", "x"), *STANDARD).ok()


def test_push_mounts_blobs_from_another_repository(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    oci_layout(source, [gzip_layer(4000)], tag="v1")
    cli("push", str(source), _ref(server, new_registry, "first", "v1"), *STANDARD).ok()
    second = _ref(server, new_registry, "second", "v1")
    out = cli(
        "push",
        str(source),
        second,
        *STANDARD,
        "--mount-from",
        f"{new_registry}/first",
        "-o",
        "json",
    )
    assert set(out.ok().json()["blobs"].values()) == {"mounted"}
    cli("pull", second, str(tmp_path / "pulled"), "--quiet").ok()
    assert layout_blobs(tmp_path / "pulled") == layout_blobs(source)


def test_push_and_pull_an_index_with_every_platform(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    digest = oci_index_layout(
        source, {"amd64": [gzip_layer(2000)], "arm64": [gzip_layer(2500)]}, tag="multi"
    )
    ref = _ref(server, new_registry, "multi", "multi")
    cli("push", str(source), ref, *STANDARD).ok()

    dest = tmp_path / "pulled"
    by_digest = f"{server.host}/{new_registry}/multi@{digest}"
    out = cli("pull", by_digest, str(dest), "-o", "json", "--quiet").ok().json()
    assert out["digest"] == digest
    assert layout_blobs(dest) == layout_blobs(source)
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_pull_refuses_a_non_empty_destination_and_unknown_tags(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    oci_layout(source, [gzip_layer(100)], tag="v1")
    ref = _ref(server, new_registry, "app", "v1")
    cli("push", str(source), ref, *STANDARD).ok()
    line = cli("pull", ref, str(source), "--quiet").failed()
    assert "not an empty directory" in line
    missing = cli("pull", _ref(server, new_registry, "app", "nope"), str(tmp_path / "d")).failed()
    assert "MANIFEST_UNKNOWN" in missing
    assert not (tmp_path / "d").exists()


def test_push_without_credentials_is_refused(
    bare_cli: Cli, server: RunningRegistry, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    oci_layout(source, [gzip_layer(100)])
    ref = _ref(server, server.registry, "app", "v1")
    line = bare_cli("push", str(source), ref, *STANDARD).failed()
    assert "401" in line or "UNAUTHORIZED" in line
    # --username/--password: the API token as both (HTTP Basic to the token endpoint).
    bare_cli("push", str(source), ref, *STANDARD, "-u", server.token, "-p", server.token).ok()


def test_push_auto_uses_direct_uploads_when_the_server_offers_them(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    """Integration with the server side of direct uploads (advertised on GET /v2/)."""
    source = tmp_path / "src"
    oci_layout(source, [os.urandom(6 << 20), gzip_layer(1000)], tag="v1")  # two S3 parts
    ref = _ref(server, new_registry, "direct", "v1")
    out = cli("push", str(source), ref, "-o", "json").ok()
    assert "Using direct uploads" in out.stderr
    assert set(out.json()["blobs"].values()) == {"uploaded"}
    blobs = layout_blobs(source)
    manifests = {
        item["digest"] for item in json.loads((source / "index.json").read_text())["manifests"]
    }
    assert out.json()["sent_bytes"] == sum(
        len(data) for digest, data in blobs.items() if digest not in manifests
    )
    again = cli("push", str(source), ref, "-o", "json").ok()
    assert set(again.json()["blobs"].values()) == {"exists"}
    assert again.json()["sent_bytes"] == 0
    dest = tmp_path / "pulled"
    cli("pull", ref, str(dest), "--quiet").ok()
    assert layout_blobs(dest) == blobs
