"""`portside push` from gzip-compressed `docker save` archives (detected by their bytes, not
their name) and from stdin (`docker save IMAGE | portside push - REF`), against the real local
Portside, pulled back byte for byte; the temporary file they are spooled to never outlives
the command."""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from pathlib import Path

import pytest

from portside.cli import transfer
from tests.support.server import RunningRegistry

from .conftest import Cli
from .images import docker_save_archive, gzip_layer, layer_tar, layout_blobs, sha256

QUIET = ("--upload", "standard", "--quiet")


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temporary directory, for this test: where spooled archives go."""
    directory = tmp_path / "system-tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def _archive(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A docker 20.10-style `docker save` tar; the config and layer bytes."""
    layers = [layer_tar(5000), gzip_layer(20_000)]
    path = tmp_path / "plain.tar"
    config = docker_save_archive(path, layers, "example/app:1.0")
    return path, [config, *layers]


def _pull_and_check(cli: Cli, ref: str, dest: Path, contents: list[bytes], digest: str) -> None:
    out = cli("pull", ref, str(dest), "--quiet", "-o", "json").ok().json()
    assert out["digest"] == digest
    blobs = layout_blobs(dest)
    for data in contents:
        assert blobs[sha256(data)] == data
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest


@pytest.mark.parametrize("name", ["image.tar.gz", "image.tar"])
def test_push_a_gzip_compressed_docker_save_archive_whatever_its_name(
    cli: Cli,
    server: RunningRegistry,
    new_registry: str,
    tmp_path: Path,
    spool_dir: Path,
    name: str,
) -> None:
    plain, contents = _archive(tmp_path)
    compressed = tmp_path / name
    compressed.write_bytes(gzip.compress(plain.read_bytes()))
    base = f"{server.host}/{new_registry}"

    expected = cli("push", str(plain), f"{base}/plain:1.0", *QUIET, "-o", "json").ok().json()
    for source, repository in [(str(compressed), "gz"), (f"docker-archive:{compressed}", "gz2")]:
        pushed = cli("push", source, f"{base}/{repository}:1.0", *QUIET, "-o", "json").ok()
        # The same image as the uncompressed archive: same manifest, same blobs.
        assert pushed.json()["digest"] == expected["digest"]
        assert pushed.json()["blobs"].keys() == expected["blobs"].keys()
        dest = tmp_path / f"pulled-{repository}"
        _pull_and_check(cli, f"{base}/{repository}:1.0", dest, contents, expected["digest"])
    assert list(spool_dir.iterdir()) == []


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_push_a_docker_save_archive_from_stdin(
    cli: Cli,
    server: RunningRegistry,
    new_registry: str,
    tmp_path: Path,
    spool_dir: Path,
    compressed: bool,
) -> None:
    plain, contents = _archive(tmp_path)
    data = plain.read_bytes()
    data = gzip.compress(data) if compressed else data
    base = f"{server.host}/{new_registry}"
    expected = cli("push", str(plain), f"{base}/plain:1.0", *QUIET, "-o", "json").ok().json()

    ref = f"{base}/stdin:1.0"
    out = cli("push", "-", ref, *QUIET, "-o", "json", input=data)  # type: ignore[arg-type]
    assert out.ok().json()["digest"] == expected["digest"]
    _pull_and_check(cli, ref, tmp_path / "pulled", contents, expected["digest"])
    # docker-archive:- is stdin too.
    again = cli("push", "docker-archive:-", ref, *QUIET, "-o", "json", input=data)  # type: ignore[arg-type]
    assert set(again.ok().json()["blobs"].values()) == {"exists"}
    assert list(spool_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        pytest.param(b"", "stdin is empty", id="empty"),
        pytest.param(
            b"\x1f\x8b" + b"not really gzip" * 10, "not a valid gzip stream", id="bad-gzip"
        ),
        pytest.param(None, "not a valid gzip stream", id="truncated-gzip"),
        pytest.param(
            gzip.compress(b"hello" * 1000), "stdin is not a tar archive", id="gzip-not-tar"
        ),
        pytest.param(b"just some text" * 100, "stdin is not a tar archive", id="not-tar"),
    ],
)
def test_a_bad_archive_on_stdin_fails_in_one_line_and_leaves_no_temporary_file(
    cli: Cli,
    server: RunningRegistry,
    new_registry: str,
    tmp_path: Path,
    spool_dir: Path,
    stdin: bytes | None,
    reason: str,
) -> None:
    if stdin is None:
        plain, _ = _archive(tmp_path)
        whole = gzip.compress(plain.read_bytes())
        stdin = whole[: len(whole) // 2]
    ref = f"{server.host}/{new_registry}/bad:1"
    line = cli("push", "-", ref, *QUIET, input=stdin).failed()  # type: ignore[arg-type]
    assert reason in line
    assert list(spool_dir.iterdir()) == []


def test_a_temporary_file_is_removed_when_the_push_fails_half_way(
    bare_cli: Cli, server: RunningRegistry, tmp_path: Path, spool_dir: Path
) -> None:
    plain, _ = _archive(tmp_path)
    ref = f"{server.host}/{server.registry}/app:1"
    # No credentials: the registry refuses the upload after the archive was spooled.
    line = bare_cli(
        "push",
        "-",
        ref,
        *QUIET,
        input=gzip.compress(plain.read_bytes()),  # type: ignore[arg-type]
    ).failed()
    assert "401" in line or "UNAUTHORIZED" in line
    assert list(spool_dir.iterdir()) == []


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_push_from_stdin_refuses_a_terminal(
    cli: Cli, server: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "_stdin", lambda: _Terminal())
    line = cli("push", "-", f"{server.host}/{server.registry}/app:1", *QUIET).failed()
    assert "stdin, which is a terminal" in line
