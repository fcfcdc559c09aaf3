"""The real local server under many parallel connections, and under request bodies whose
framing is broken, over raw sockets (no HTTP library that would fix the request up)."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.api.helpers import OCI_MANIFEST, V2

from .invariants import Registry, location_of, sha256_of

PARALLEL_CONNECTIONS = 64


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after this answer


def _read_answer(sock: socket.socket) -> RawAnswer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    # Whatever follows the answer on this connection: nothing and a close, or a wait.
    sock.settimeout(2)
    try:
        closed = sock.recv(65536) == b""
    except TimeoutError:
        closed = False
    return RawAnswer(int(status_line.split()[1]), headers, body[:length], closed)


def _send(url: str, authorization: str, head: str, body: bytes) -> RawAnswer:
    """Send ``head`` (request line and headers, without Host and Authorization) and
    ``body`` exactly as given, and read the answer."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        request_line, *rest = head.strip().split("\n")
        lines = [request_line.strip(), f"Host: {address.netloc}", f"Authorization: {authorization}"]
        lines += [line.strip() for line in rest if line.strip()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return _read_answer(sock)


def _path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:{token}".encode()).decode()


def _code(answer: RawAnswer) -> str:
    body = json.loads(answer.body)
    return str(body["errors"][0]["code"])


# Two ways a body is not what Transfer-Encoding: chunked promises: a plain body sent with
# both headers (RFC 9112 6.3: the server refuses it or reads it as chunked), and a chunk
# whose size line is not hexadecimal.
PLAIN_WITH_BOTH_HEADERS = "plain-body-with-content-length"
NOT_HEX = "chunk-size-not-hex"


def _malformed(kind: str, body: bytes) -> tuple[str, bytes]:
    """Extra headers and the bytes sent for a malformed chunked ``body``."""
    if kind == PLAIN_WITH_BOTH_HEADERS:
        return f"Transfer-Encoding: chunked\nContent-Length: {len(body)}", body
    return "Transfer-Encoding: chunked", b"zz\r\n" + body + b"\r\n0\r\n\r\n"


MALFORMED_KINDS = [PLAIN_WITH_BOTH_HEADERS, NOT_HEX]


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_malformed_chunked_patch_is_a_400_and_leaves_the_session_as_it_was(
    registry: Registry, v2: V2, kind: str
) -> None:
    name = registry.repo("framing")
    started = v2.request("POST", f"/v2/{name}/blobs/uploads/")
    first = os.urandom(1000)
    patched = v2.request(
        "PATCH",
        location_of(started),
        data=first,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert patched.status_code == 202
    location = location_of(patched)
    headers, raw = _malformed(kind, b"bytes that never arrive")
    answer = _send(
        registry.server.url,
        _basic(registry.server.token),
        f"PATCH {_path_of(location)} HTTP/1.1\nContent-Type: application/octet-stream\n{headers}",
        raw,
    )
    assert answer.status == 400, answer
    assert answer.headers["content-type"] == "application/json"
    assert _code(answer) == "BLOB_UPLOAD_INVALID"
    assert answer.closed, "the connection's framing is lost: the server must close it"
    # The session is as it was: the next valid PATCH continues it, and it completes.
    status = v2.request("GET", location)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(first) - 1}"
    second = os.urandom(500)
    more = v2.request(
        "PATCH", location, data=second, headers={"Content-Type": "application/octet-stream"}
    )
    assert more.status_code == 202, more.text
    done = v2.request(
        "PUT", location_of(more), params={"digest": sha256_of(first + second)}, data=b""
    )
    assert done.status_code == 201, done.text
    registry.check()


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_malformed_chunked_monolithic_upload_is_a_400_and_stores_nothing(
    registry: Registry, v2: V2, kind: str
) -> None:
    name = registry.repo("framing")
    body = os.urandom(2000)
    digest = sha256_of(body)
    headers, raw = _malformed(kind, body)
    answer = _send(
        registry.server.url,
        _basic(registry.server.token),
        f"POST /v2/{name}/blobs/uploads/?digest={digest} HTTP/1.1\n"
        f"Content-Type: application/octet-stream\n{headers}",
        raw,
    )
    assert answer.status == 400, answer
    assert _code(answer) == "BLOB_UPLOAD_INVALID"
    assert answer.closed
    assert v2.request("HEAD", f"/v2/{name}/blobs/{digest}").status_code == 404
    registry.check()


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_malformed_chunked_manifest_is_a_400_and_stores_nothing(
    registry: Registry, v2: V2, kind: str
) -> None:
    name = registry.repo("framing")
    image = v2.push_image(name, "v1")
    headers, raw = _malformed(kind, image.manifest)
    answer = _send(
        registry.server.url,
        _basic(registry.server.token),
        f"PUT /v2/{name}/manifests/v2 HTTP/1.1\nContent-Type: {OCI_MANIFEST}\n{headers}",
        raw,
    )
    assert answer.status == 400, answer
    assert _code(answer) == "MANIFEST_INVALID"
    assert answer.closed
    assert v2.manifest_status(name, "v2") == 404
    registry.check()


def test_a_validly_chunked_body_keeps_the_connection_open(registry: Registry, v2: V2) -> None:
    """The fix closes only connections whose framing is lost."""
    name = registry.repo("framing")
    body = os.urandom(3000)
    digest = sha256_of(body)
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:1000], body[1000:])
    )
    answer = _send(
        registry.server.url,
        _basic(registry.server.token),
        f"POST /v2/{name}/blobs/uploads/?digest={digest} HTTP/1.1\n"
        "Content-Type: application/octet-stream\nTransfer-Encoding: chunked",
        chunked + b"0\r\n\r\n",
    )
    assert answer.status == 201, answer
    assert not answer.closed
    assert v2.request("HEAD", f"/v2/{name}/blobs/{digest}").status_code == 200


def test_many_parallel_connections_all_get_answers(registry: Registry) -> None:
    """More connections at once than worker threads (and far more than cheroot's default
    listen backlog of 5): each waits its turn instead of being dropped."""
    address = urlsplit(registry.server.url)
    barrier = threading.Barrier(PARALLEL_CONNECTIONS)
    answers: list[int | str] = []
    lock = threading.Lock()

    def connect() -> None:
        barrier.wait(30)
        try:
            # A short connect timeout: a dropped SYN is retried only after 1 s.
            with socket.create_connection((address.hostname, address.port), timeout=0.9) as s:
                s.settimeout(30)
                s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
                outcome: int | str = _read_answer(s).status
        except OSError as exc:
            outcome = repr(exc)
        with lock:
            answers.append(outcome)

    threads = [threading.Thread(target=connect) for _ in range(PARALLEL_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # 401: the spec's answer to an anonymous /v2/ (the challenge to authenticate).
    assert answers == [401] * PARALLEL_CONNECTIONS, sorted(map(str, answers))
