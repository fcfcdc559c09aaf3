"""Standard-protocol chunked uploads resume: after every chunk the registry acknowledged, the
session's Location is kept in a state file; the next push asks the session how much it holds
(``GET`` the Location: ``Range: 0-<last byte>``) and sends only the rest, or starts over when
the session is gone or its Range cannot be trusted."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from portside.clientlib.oci import RegistryError
from portside.clientlib.oci.model import Blob
from portside.clientlib.oci.registry import Credentials, RegistryClient
from portside.clientlib.oci.uploaders import StandardUploader
from tests.support.server import RunningRegistry

from .conftest import Cli
from .fake_http import read_body, serve
from .images import layout_blobs, oci_layout, sha256

CHUNK = 65536  # the CLI's smallest --chunk-size


class _BreaksAfter(io.BytesIO):
    """The blob's bytes, until ``limit`` of them have been read: then the source fails."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.limit = limit

    def read(self, size: int | None = -1) -> bytes:
        left = self.limit - self.tell()
        if left <= 0:
            raise OSError("the source went away")
        return super().read(left if size is None or size < 0 else min(size, left))


def _interrupted_upload(
    client: RegistryClient, repository: str, data: bytes, limit: int, state_dir: Path
) -> None:
    """A standard upload of ``data`` in CHUNK chunks whose source fails after ``limit``."""
    broken = Blob(sha256(data), len(data), "x", lambda: _BreaksAfter(data, limit))
    uploader = StandardUploader(client, CHUNK, state_dir=state_dir)
    with pytest.raises((OSError, RegistryError)):
        uploader.upload(repository, broken, f"repository:{repository}:pull,push", lambda _: None)


def test_an_interrupted_chunked_push_resumes_and_sends_only_the_rest(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    """Against the real local Portside: two chunks are acknowledged, the third breaks in the
    middle; `portside push` then sends the other three chunks only, and the image pulls back
    byte for byte."""
    layer = os.urandom(5 * CHUNK + 1000)
    source = tmp_path / "src"
    oci_layout(source, [layer], tag="v1")
    cache = tmp_path / "cache"
    state_dir = cache / "portside" / "standard-uploads"
    repository = f"{new_registry}/resume"
    client = RegistryClient(server.host, Credentials(server.token, server.token))

    _interrupted_upload(client, repository, layer, 2 * CHUNK + 5000, state_dir)
    [state] = list(state_dir.iterdir())
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert json.loads(state.read_text())["offset"] == 2 * CHUNK

    ref = f"{server.host}/{repository}:v1"
    push = ("push", str(source), ref, "--upload", "standard", "--chunk-size", str(CHUNK))
    pushed = cli.with_env(XDG_CACHE_HOME=str(cache))(*push, "--quiet", "-o", "json")
    result = pushed.ok().json()
    config = next(d for d, b in layout_blobs(source).items() if b"architecture" in b)
    assert result["blobs"] == {sha256(layer): "uploaded", config: "uploaded"}
    # What went on the wire (StandardUploader.sent): the config and the layer after 2 chunks.
    assert result["sent_bytes"] == len(layer) - 2 * CHUNK + len(layout_blobs(source)[config])
    assert list(state_dir.iterdir()) == []  # dropped once the blob was committed

    dest = tmp_path / "pulled"
    cli("pull", ref, str(dest), "--quiet").ok()
    assert layout_blobs(dest) == layout_blobs(source)


def test_resume_state_of_a_blob_the_registry_already_has_is_dropped(
    cli: Cli, server: RunningRegistry, new_registry: str, tmp_path: Path
) -> None:
    """A push killed after the registry committed a blob, before the client dropped its
    state: the next push finds the blob (HEAD) and drops the state it will never need."""
    layer = os.urandom(3 * CHUNK)
    source = tmp_path / "src"
    oci_layout(source, [layer], tag="v1")
    cache = tmp_path / "cache"
    state_dir = cache / "portside" / "standard-uploads"
    repository = f"{new_registry}/leftover"
    client = RegistryClient(server.host, Credentials(server.token, server.token))
    _interrupted_upload(client, repository, layer, CHUNK + 10, state_dir)
    assert len(list(state_dir.iterdir())) == 1
    ref = f"{server.host}/{repository}:v1"
    # Another client pushes the image meanwhile (no state of its own).
    cli.with_env(XDG_CACHE_HOME=str(tmp_path / "other"))("push", str(source), ref, "-q").ok()

    again = cli.with_env(XDG_CACHE_HOME=str(cache))(
        "push", str(source), ref, "--upload", "standard", "-q", "-o", "json"
    )
    assert set(again.ok().json()["blobs"].values()) == {"exists"}
    assert list(state_dir.iterdir()) == []


# ---------------------------------------------------------------- a fake registry


@dataclass
class FakeUploads:
    """The distribution spec's upload routes over plain HTTP, no auth. ``status``: what
    ``GET`` on a session answers instead of the truth (``(status line, headers)``)."""

    sessions: dict[str, bytearray] = field(default_factory=dict)
    committed: dict[str, bytes] = field(default_factory=dict)
    patches: list[tuple[str, str]] = field(default_factory=list)  # accepted: (session, range)
    created: int = 0
    status: tuple[str, dict[str, str]] | None = None

    def __call__(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        body = read_body(environ)
        if method == "HEAD":
            return self._answer(start, "404 Not Found")
        if method == "POST":
            self.created += 1
            name = f"s{self.created}"
            self.sessions[name] = bytearray()
            return self._answer(start, "202 Accepted", {"Location": f"/up/{name}"})
        name = path.rsplit("/", 1)[1]
        held = self.sessions.get(name)
        if held is None:
            return self._answer(start, "404 Not Found", body=b'{"errors":[{"code":"UNKNOWN"}]}')
        progress = {"Location": f"/up/{name}", "Range": f"0-{max(len(held) - 1, 0)}"}
        if method == "GET":
            line, headers = self.status or ("204 No Content", progress)
            return self._answer(start, line, headers)
        if method == "PATCH":
            content_range = environ["HTTP_CONTENT_RANGE"]
            first = int(content_range.split("-")[0])
            if first != len(held):
                return self._answer(start, "416 Range Not Satisfiable")
            if len(body) != int(environ["CONTENT_LENGTH"]):
                return self._answer(start, "400 Bad Request")  # a torn body is not kept
            held += body
            self.patches.append((name, content_range))
            progress["Range"] = f"0-{len(held) - 1}"
            return self._answer(start, "202 Accepted", progress)
        assert method == "PUT"
        held += body
        digest = re.search(r"digest=([^&]+)", environ["QUERY_STRING"])
        assert digest and digest[1].replace("%3A", ":") == sha256(bytes(held))
        self.committed[sha256(bytes(held))] = bytes(held)
        del self.sessions[name]
        return self._answer(start, "201 Created")

    @staticmethod
    def _answer(
        start: Any, line: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> list[bytes]:
        start(line, [("Content-Length", str(len(body))), *(headers or {}).items()])
        return [body]


START_OVER = {
    "the session is gone": ("forget", None),
    "the range is shorter than acknowledged": (None, ("204 No Content", {"Range": "0-99"})),
    "the range is past the blob": (None, ("204 No Content", {"Range": f"0-{10 * CHUNK}"})),
    "no range at all": (None, ("204 No Content", {})),
    "the range is ambiguous 0-0": (None, ("204 No Content", {"Range": "0-0"})),
}


@pytest.mark.parametrize("case", list(START_OVER))
def test_a_session_that_cannot_be_resumed_is_started_over(case: str, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 10)
    fake = FakeUploads()
    state_dir = tmp_path / "state"
    with serve(fake) as url:
        client = RegistryClient(url.removeprefix("http://"))
        _interrupted_upload(client, "reg/app", data, 2 * CHUNK + 7, state_dir)
        assert [r for _, r in fake.patches] == [f"0-{CHUNK - 1}", f"{CHUNK}-{2 * CHUNK - 1}"]
        assert len(list(state_dir.iterdir())) == 1  # kept for a resume
        forget, fake.status = START_OVER[case]
        if forget:
            fake.sessions.clear()
        fake.patches.clear()

        uploader = StandardUploader(client, CHUNK, state_dir=state_dir)
        blob = Blob(sha256(data), len(data), "x", lambda: io.BytesIO(data))
        shown: list[int] = []
        assert uploader.upload("reg/app", blob, "", shown.append) == "uploaded"
    assert fake.committed == {sha256(data): data}
    # A new session, every chunk from the first byte.
    assert {name for name, _ in fake.patches} == {"s2"}
    assert fake.patches[0][1] == f"0-{CHUNK - 1}"
    assert uploader.sent.total == len(data) == sum(shown)
    assert list(state_dir.iterdir()) == []


def test_a_session_holding_more_than_the_state_says_resumes_from_its_range(
    tmp_path: Path,
) -> None:
    """The registry acknowledged a chunk the client never recorded: its Range decides."""
    data = os.urandom(4 * CHUNK + 10)
    fake = FakeUploads()
    state_dir = tmp_path / "state"
    with serve(fake) as url:
        client = RegistryClient(url.removeprefix("http://"))
        _interrupted_upload(client, "reg/app", data, 3 * CHUNK + 7, state_dir)
        [state] = list(state_dir.iterdir())
        state.write_text(json.dumps({**json.loads(state.read_text()), "offset": CHUNK}))
        fake.patches.clear()

        uploader = StandardUploader(client, CHUNK, state_dir=state_dir)
        blob = Blob(sha256(data), len(data), "x", lambda: io.BytesIO(data))
        shown: list[int] = []
        assert uploader.upload("reg/app", blob, "", shown.append) == "uploaded"
    assert fake.committed == {sha256(data): data}
    assert fake.patches == [
        ("s1", f"{3 * CHUNK}-{4 * CHUNK - 1}"),
        ("s1", f"{4 * CHUNK}-{4 * CHUNK + 9}"),
    ]
    assert uploader.sent.total == CHUNK + 10
    assert sum(shown) == len(data)  # the display counts what the session already held
