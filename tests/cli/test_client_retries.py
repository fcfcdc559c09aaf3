"""RegistryClient against fake servers that fail transiently: 429/502/503/504 answers and
dropped connections are retried (with backoff, honouring Retry-After) only for requests safe
to repeat, and a blob download cut mid-body continues from the bytes it already has."""

from __future__ import annotations

import io
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from portside.clientlib.oci import RegistryError, parse_reference, uploaders
from portside.clientlib.oci.model import Blob
from portside.clientlib.oci.registry import RegistryClient
from portside.clientlib.oci.transfer import pull
from portside.clientlib.oci.uploaders import DirectUploader

from .fake_http import WsgiApp, read_body, serve
from .images import layout_blobs, sha256

SCOPE = "repository:reg/app:pull,push"
Answer = tuple[str, dict[str, str], bytes]
OK: Answer = ("200 OK", {}, b"{}")


@dataclass
class Scripted:
    """Answers each ``(method, path)`` from a script (the last entry repeats), recording
    every request: ``(method, path, headers)``."""

    script: dict[tuple[str, str], list[Answer]]
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        read_body(environ)
        headers = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k[:5] == "HTTP_"
        }
        with self.lock:
            self.seen.append((method, path, headers))
            answers = self.script.get((method, path)) or [("404 Not Found", {}, b"{}")]
            status, extra, body = answers.pop(0) if len(answers) > 1 else answers[0]
        start(status, [("Content-Length", str(len(body))), *extra.items()])
        return [body]

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.seen if (m, p) == (method, path))


@contextmanager
def scripted(
    script: dict[tuple[str, str], list[Answer]], **client: Any
) -> Iterator[tuple[Scripted, RegistryClient]]:
    fake = Scripted(script)
    with serve(fake) as url:
        yield fake, RegistryClient(url.removeprefix("http://"), backoff=0.01, **client)


def _error(status: str) -> Answer:
    return (status, {}, json.dumps({"errors": [{"code": "UNAVAILABLE"}]}).encode())


MANIFEST = ("GET", "/v2/reg/app/manifests/v1")
UPLOADS = ("POST", "/v2/reg/app/blobs/uploads/")


def test_a_503_then_a_200_is_retried_and_succeeds() -> None:
    manifest = b'{"schemaVersion":2,"layers":[]}'
    answers = [_error("503 Service Unavailable"), ("200 OK", {}, manifest)]
    with scripted({MANIFEST: answers}) as (fake, client):
        body, _, _ = client.get_manifest("reg/app", "v1", SCOPE)
    assert body == manifest
    assert fake.count(*MANIFEST) == 2


@pytest.mark.parametrize("status", ["502 Bad Gateway", "504 Gateway Timeout", "429 Slow Down"])
def test_transient_answers_four_times_fail_saying_how_many_attempts(status: str) -> None:
    attempts = r"HTTP \d+ UNAVAILABLE \(after 4 attempts\)"
    with (
        scripted({MANIFEST: [_error(status)]}) as (fake, client),
        pytest.raises(RegistryError, match=attempts),
    ):
        client.get_manifest("reg/app", "v1", SCOPE)
    assert fake.count(*MANIFEST) == 4


def test_a_404_is_not_retried() -> None:
    missing: Answer = ("404 Not Found", {}, b"{}")
    with (
        scripted({MANIFEST: [missing]}) as (fake, client),
        pytest.raises(RegistryError, match="HTTP 404") as caught,
    ):
        client.get_manifest("reg/app", "v1", SCOPE)
    assert "attempts" not in str(caught.value)
    assert fake.count(*MANIFEST) == 1


def test_a_post_is_retried_only_when_marked_idempotent() -> None:
    answers = [_error("503 Service Unavailable"), ("202 Accepted", {"Location": "/u/1"}, b"")]
    with scripted({UPLOADS: list(answers)}) as (fake, client):
        # Starting an upload session is a POST nobody marked idempotent: sent once.
        with pytest.raises(RegistryError, match="HTTP 503") as caught:
            client.start_upload("reg/app", SCOPE)
        assert "attempts" not in str(caught.value)
        assert fake.count(*UPLOADS) == 1
    with scripted({UPLOADS: list(answers)}) as (fake, client):
        url = client.url("/v2/reg/app/blobs/uploads/")
        answer = client.request("POST", url, SCOPE, ok=(202,), idempotent=True)
        assert answer.status_code == 202
        assert fake.count(*UPLOADS) == 2


def test_a_patch_of_upload_data_is_never_sent_twice() -> None:
    data = os.urandom(3000)
    script = {
        UPLOADS: [("202 Accepted", {"Location": "/u/1"}, b"")],
        ("PATCH", "/u/1"): [_error("503 Service Unavailable"), ("202 Accepted", {}, b"")],
    }
    with scripted(script) as (fake, client), pytest.raises(RegistryError, match="HTTP 503"):
        client.upload_blob(
            "reg/app", sha256(data), len(data), lambda: io.BytesIO(data), SCOPE, None, 1000
        )
    assert fake.count("PATCH", "/u/1") == 1


def test_retry_after_is_honoured_and_capped() -> None:
    manifest = b'{"schemaVersion":2,"layers":[]}'
    busy = ("429 Too Many Requests", {"Retry-After": "1"}, b"{}")
    with scripted({MANIFEST: [busy, ("200 OK", {}, manifest)]}) as (fake, client):
        started = time.monotonic()
        client.get_manifest("reg/app", "v1", SCOPE)
        assert time.monotonic() - started >= 1.0  # not the 0.01 s backoff
    assert fake.count(*MANIFEST) == 2

    slept: list[float] = []
    overlong = ("503 Service Unavailable", {"Retry-After": "3600"}, b"{}")
    with scripted({MANIFEST: [overlong, ("200 OK", {}, manifest)]}, retry_after_cap=0.2) as (
        fake,
        client,
    ):
        client.sleep = slept.append
        client.get_manifest("reg/app", "v1", SCOPE)
    assert slept == [0.2]


class _DropFirst(socketserver.BaseRequestHandler):
    """Closes the first connection without answering; answers 200 to the others."""

    connections = 0

    def handle(self) -> None:
        type(self).connections += 1
        if type(self).connections == 1:
            return
        request = b""
        while b"\r\n\r\n" not in request:
            request += self.request.recv(4096)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")


def test_a_dropped_connection_is_retried_and_a_refused_one_fails_after_4_attempts() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _DropFirst)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RegistryClient(f"127.0.0.1:{server.server_address[1]}", backoff=0.01)
        client.request("GET", client.url("/v2/"))
        assert _DropFirst.connections == 2
    finally:
        server.shutdown()
        server.server_close()

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RegistryClient(f"127.0.0.1:{port}", backoff=0.01)
    slept: list[float] = []
    client.sleep = slept.append
    with pytest.raises(RegistryError, match=r"unreachable .*\(after 4 attempts\)"):
        client.request("GET", client.url("/v2/"))
    assert len(slept) == 3


def test_direct_upload_parts_and_complete_posts_are_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The direct-upload routes marked idempotent survive a 502 each."""
    monkeypatch.setattr(uploaders, "S3_MIN_PART_SIZE", 1024)
    data = os.urandom(3 * 1024)
    digest = sha256(data)
    held: dict[int, bytes] = {}
    failed: set[str] = set()

    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        body = read_body(environ)
        action = path.rsplit("/", 1)[1]
        if method == "POST" and action in ("parts", "complete") and action not in failed:
            failed.add(action)
            start("502 Bad Gateway", [("Content-Length", "0")])
            return [b""]
        answer: dict[str, Any] = {}
        if path.startswith("/s3/"):
            held[int(action)] = body
        elif method == "POST" and action == "direct-uploads":
            answer = {"upload_id": "up1", "part_size": 1024, "part_count": 3, "parts": []}
        elif action == "parts":
            base = f"http://{environ['HTTP_HOST']}/s3"
            numbers = json.loads(body)["numbers"]
            answer = {"parts": [{"number": n, "url": f"{base}/{n}"} for n in numbers]}
        elif action == "complete":
            assert b"".join(held[n] for n in sorted(held)) == data
            answer = {"status": "committed"}
        status = {"direct-uploads": "202 Accepted", "complete": "201 Created"}.get(action, "200 OK")
        raw = json.dumps(answer).encode()
        location = [("Location", "/v2/reg/app/_portside/direct-uploads/up1")]
        start(status, [("Content-Length", str(len(raw))), ("ETag", '"e"'), *location])
        return [raw]

    with serve(app) as url:
        client = RegistryClient(url.removeprefix("http://"), backoff=0.01)
        blob = Blob(digest, len(data), "x", lambda: io.BytesIO(data))
        assert DirectUploader(client, tmp_path).upload("reg/app", blob, SCOPE, lambda _: None) == (
            "uploaded"
        )
    assert failed == {"parts", "complete"}
    assert sorted(held) == [1, 2, 3]


# ---------------------------------------------------------------- downloads cut mid-body


@dataclass
class CutStorage:
    """Blob bytes behind a redirect; the first GET of each blob stops after ``cut`` bytes
    (Content-Length announces them all). ``ranges``: whether Range requests are answered."""

    blobs: dict[str, bytes]
    cut: int
    ranges: bool
    # (digest, Range asked, body bytes answered) for every request
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        digest = environ["PATH_INFO"].rsplit("/", 1)[1]
        data = self.blobs[digest]
        asked = environ.get("HTTP_RANGE")
        first = all(d != digest for d, _, _ in self.requests)
        if asked and self.ranges:
            offset = int(asked.removeprefix("bytes=").rstrip("-"))
            content_range = f"bytes {offset}-{len(data) - 1}/{len(data)}"
            start(
                "206 Partial Content",
                [("Content-Length", str(len(data) - offset)), ("Content-Range", content_range)],
            )
            self.requests.append((digest, asked, len(data) - offset))
            return [data[offset:]]
        start("200 OK", [("Content-Length", str(len(data)))])
        body = data[: self.cut] if first and len(data) > self.cut else data
        self.requests.append((digest, asked, len(body)))
        return [body]


def _registry(manifest: bytes, storage: list[str]) -> WsgiApp:
    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path.endswith("/manifests/v1"):
            media = "application/vnd.oci.image.manifest.v1+json"
            start("200 OK", [("Content-Length", str(len(manifest))), ("Content-Type", media)])
            return [manifest]
        digest = path.rsplit("/", 1)[1]
        start("307 Temporary Redirect", [("Location", f"{storage[0]}/o/{digest}")])
        return [b""]

    return app


@pytest.mark.parametrize("ranges", [True, False], ids=["range-honoured", "range-ignored"])
def test_a_download_cut_mid_body_resumes_and_the_layout_is_byte_identical(
    ranges: bool, tmp_path: Path
) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(3 << 20)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    cut = (3 << 20) // 2
    storage = CutStorage({sha256(config): config, sha256(layer): layer}, cut, ranges)
    where: list[str] = []
    with serve(storage) as storage_url, serve(_registry(manifest, where)) as registry_url:
        where.append(storage_url)
        client = RegistryClient(registry_url.removeprefix("http://"), backoff=0.01)
        host = client.host
        pull(client, parse_reference(f"{host}/reg/app:v1"), tmp_path / "out")
    assert layout_blobs(tmp_path / "out") == {
        sha256(manifest): manifest,
        sha256(config): config,
        sha256(layer): layer,
    }
    # The layer was asked for twice: the second time from the bytes the client had written
    # (whole reads of 1 MiB: the partial one in flight when the connection dropped is lost).
    again = len(layer) - (1 << 20) if ranges else len(layer)
    assert [
        (asked, served) for digest, asked, served in storage.requests if digest == sha256(layer)
    ] == [
        (None, cut),
        ("bytes=1048576-", again),
    ]
