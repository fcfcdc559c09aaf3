"""Request bodies whose framing is broken are the spec's 400 and change nothing, and the
local HTTP server closes such connections and queues (never drops) parallel clients.

The gateway is driven as cheroot drives it: ``wsgi.input`` is cheroot's own chunked-body
reader over the bytes a client sent."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from chalice.app import Chalice
from cheroot.server import ChunkedRFile

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.http.chalice_views import BINARY_TYPES, v2_blueprint
from chalicelib.http.v2 import V2Api
from chalicelib.registry.errors import RegistryError
from chalicelib.registry.service import RegistryService
from portside.local.gateway import LocalGateway, RequestBody, malformed_body_error
from portside.local.http_server import wsgi_server

from .builders import make_token, make_v2_api, sha256
from .conftest import ACCOUNT, REGISTRY, named

NAME = f"{REGISTRY}/team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NOT_CHUNKED = b"this is not a chunked body\r\n"


def chunked(*parts: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


class Invocations:
    """The Lambda, counting its invocations (to prove a refused body never reached it)."""

    def __init__(self, factory: Callable[[], Chalice]) -> None:
        self.factory = factory
        self.count = 0

    def __call__(self) -> Chalice:
        app = self.factory()

        def invoke(event: dict[str, Any], context: object) -> Any:
            self.count += 1
            return app(event, context)

        return invoke  # type: ignore[return-value]


@pytest.fixture
def v2(service: RegistryService, store: MemoryMetadataStore) -> V2Api:
    return make_v2_api(service, store)


@pytest.fixture
def lambdas(v2: V2Api) -> Invocations:
    def factory() -> Chalice:
        app = Chalice(app_name="portside-unit")
        app.api.binary_types = list(BINARY_TYPES)
        app.register_blueprint(v2_blueprint(lambda: v2))
        return app

    return Invocations(factory)


@pytest.fixture
def gateway(lambdas: Invocations, v2: V2Api) -> LocalGateway:
    return LocalGateway(lambdas, lambda: v2, lambda_workers=2)


@pytest.fixture
def auth(store: MemoryMetadataStore) -> str:
    token = make_token(store, ACCOUNT, {"pull", "push"})
    return "Basic " + base64.b64encode(f"{token}:{token}".encode()).decode()


def call(
    app: Callable[..., Iterable[bytes]],
    method: str,
    path: str,
    sent: bytes,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    transfer_chunked: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """Call ``app`` as cheroot would for a request whose body bytes are ``sent``."""
    stream = io.BytesIO(sent)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": ChunkedRFile(stream, 0) if transfer_chunked else stream,
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "registry.test",
    }
    if transfer_chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name.lower() == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app(environ, lambda status, hs: started.append((status, hs))))
    status, header_list = started[0]
    return int(status.split()[0]), {k.lower(): v for k, v in header_list}, body


def code_of(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


@pytest.mark.parametrize(
    ("method", "path", "query", "code"),
    [
        ("PATCH", f"/v2/{NAME}/blobs/uploads/0b2f", {}, "BLOB_UPLOAD_INVALID"),
        ("PUT", f"/v2/{NAME}/blobs/uploads/0b2f", {"digest": "x"}, "BLOB_UPLOAD_INVALID"),
        ("POST", f"/v2/{NAME}/blobs/uploads/", {"digest": "x"}, "BLOB_UPLOAD_INVALID"),
        ("POST", f"/v2/{NAME}/blobs/uploads/", {}, "BLOB_UPLOAD_INVALID"),
        ("PUT", f"/v2/{NAME}/manifests/v1", {}, "MANIFEST_INVALID"),
        ("POST", "/v2/token", {}, "BAD_REQUEST"),
        ("POST", "/api/v1/tokens", {}, "BAD_REQUEST"),
    ],
)
def test_a_body_that_is_not_validly_chunked_reads_as_the_resources_spec_error(
    method: str, path: str, query: dict[str, str], code: str
) -> None:
    body = RequestBody(
        ChunkedRFile(io.BytesIO(NOT_CHUNKED), 0), malformed_body_error(method, path, query)
    )
    with pytest.raises(RegistryError) as raised:
        body.read(1024)
    assert raised.value.code == code
    assert raised.value.status == 400


def test_a_validly_chunked_body_reads_whole() -> None:
    body = RequestBody(
        ChunkedRFile(io.BytesIO(chunked(b"abc", b"defg")), 0), malformed_body_error("GET", "/", {})
    )
    assert body.read(2) + body.read() == b"abcdefg"
    assert body.read(10) == b""


def test_a_malformed_chunked_patch_is_a_400_and_leaves_the_session_as_it_was(
    gateway: LocalGateway,
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    auth: str,
) -> None:
    session = service.start_upload(named(REGISTRY, "team/app"))
    path = f"/v2/{NAME}/blobs/uploads/{session.upload_id}"
    headers = {"Authorization": auth, "Content-Type": "application/octet-stream"}
    first = b"first chunk"
    status, _, body = call(gateway, "PATCH", path, chunked(first), headers=headers)
    assert status == 202, body
    saved = store.get_upload(session.upload_id)
    objects = dict(blobs.objects)

    # A valid chunk, then a size line that is not hexadecimal.
    status, answer_headers, body = call(
        gateway, "PATCH", path, b"5\r\nvalid\r\n" + NOT_CHUNKED, headers=headers
    )
    assert status == 400
    assert answer_headers["content-type"] == "application/json"
    assert code_of(body) == "BLOB_UPLOAD_INVALID"
    assert store.get_upload(session.upload_id) == saved
    assert dict(blobs.objects) == objects, "the refused PATCH left bytes behind"

    second = b"second chunk"
    status, _, body = call(gateway, "PATCH", path, chunked(second), headers=headers)
    assert status == 202, body
    status, _, body = call(
        gateway, "PUT", path, chunked(), query=f"digest={sha256(first + second)}", headers=headers
    )
    assert status == 201, body


def test_a_malformed_chunked_monolithic_upload_is_a_400_and_stores_nothing(
    gateway: LocalGateway, store: MemoryMetadataStore, blobs: MemoryBlobStore, auth: str
) -> None:
    data = b"layer" * 100
    status, _, body = call(
        gateway,
        "POST",
        f"/v2/{NAME}/blobs/uploads/",
        NOT_CHUNKED + data,
        query=f"digest={sha256(data)}",
        headers={"Authorization": auth, "Content-Type": "application/octet-stream"},
    )
    assert status == 400
    assert code_of(body) == "BLOB_UPLOAD_INVALID"
    assert not blobs.objects
    assert store.get_blob_link(named(REGISTRY, "team/app"), sha256(data)) is None


def test_a_malformed_chunked_manifest_never_reaches_the_lambda(
    gateway: LocalGateway, lambdas: Invocations, auth: str
) -> None:
    status, answer_headers, body = call(
        gateway,
        "PUT",
        f"/v2/{NAME}/manifests/v1",
        NOT_CHUNKED,
        headers={"Authorization": auth, "Content-Type": OCI_MANIFEST},
    )
    assert status == 400
    assert code_of(body) == "MANIFEST_INVALID"
    assert answer_headers["docker-distribution-api-version"] == "registry/2.0"
    assert lambdas.count == 0


@pytest.mark.parametrize(
    ("method", "path", "query", "code"),
    [
        ("PATCH", f"/v2/{NAME}/blobs/uploads/0b2f", "", "BLOB_UPLOAD_INVALID"),
        ("POST", f"/v2/{NAME}/blobs/uploads/", "digest=sha256:00", "BLOB_UPLOAD_INVALID"),
        ("PUT", f"/v2/{NAME}/manifests/v1", "", "MANIFEST_INVALID"),
    ],
)
def test_a_request_with_both_transfer_encoding_and_content_length_is_refused_unread(
    gateway: LocalGateway,
    lambdas: Invocations,
    auth: str,
    method: str,
    path: str,
    query: str,
    code: str,
) -> None:
    sent = chunked(b"0123456789")
    stream = io.BytesIO(sent)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": ChunkedRFile(stream, 0),
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "registry.test",
        "HTTP_AUTHORIZATION": auth,
        "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_LENGTH": "10",
        "CONTENT_TYPE": "application/octet-stream",
    }
    started: list[str] = []
    body = b"".join(gateway(environ, lambda status, headers: started.append(status)))
    assert started[0].startswith("400 ")
    assert code_of(body) == code
    assert stream.tell() == 0, "the body of a refused request was read"
    assert lambdas.count == 0


# ---------------------------------------------------------------------------- the server


def plain_app(delay: float = 0.0) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("QUERY_STRING") == "read":
            environ["wsgi.input"].read()
        time.sleep(delay)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[..., Iterable[bytes]], int], tuple[str, int]]]:
    servers = []

    def start(app: Callable[..., Iterable[bytes]], threads: int) -> tuple[str, int]:
        server = wsgi_server("127.0.0.1", 0, app, threads)
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        servers.append(server)
        host, port = server.bind_addr
        return str(host), int(port)

    yield start
    for server in servers:
        server.stop()


def exchange(address: tuple[str, int], request: bytes) -> tuple[bytes, bool]:
    """Send ``request``; the answer and whether the server then closed the connection."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\nok" not in answer:
            data = sock.recv(4096)
            if not data:
                return answer, True
            answer += data
        sock.settimeout(0.5)
        try:
            return answer, sock.recv(4096) == b""
        except TimeoutError:
            return answer, False


def test_a_connection_whose_chunked_body_was_not_read_to_its_end_is_closed(
    serve: Callable[[Callable[..., Iterable[bytes]], int], tuple[str, int]],
) -> None:
    address = serve(plain_app(), 2)
    # The unread chunks would otherwise be parsed as the next request on the connection.
    smuggled = chunked(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    answer, closed = exchange(
        address,
        b"POST /unread HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled,
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in answer
    assert closed


def test_a_connection_whose_chunked_body_was_read_stays_open(
    serve: Callable[[Callable[..., Iterable[bytes]], int], tuple[str, int]],
) -> None:
    address = serve(plain_app(), 2)
    answer, closed = exchange(
        address,
        b"POST /?read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"x"),
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert not closed


def test_the_local_server_queues_many_more_connections_than_it_has_threads(
    serve: Callable[[Callable[..., Iterable[bytes]], int], tuple[str, int]],
) -> None:
    address = serve(plain_app(delay=0.02), 2)
    count = 64
    barrier = threading.Barrier(count)
    outcomes: list[str] = []

    def client() -> None:
        barrier.wait(10)
        try:
            with socket.create_connection(address, timeout=0.9) as sock:
                sock.settimeout(30)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                outcomes.append(data.split(b"\r\n", 1)[0].decode())
        except OSError as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == ["HTTP/1.1 200 OK"] * count, sorted(outcomes)


def test_the_upload_host_refuses_both_transfer_encoding_and_content_length_unread() -> None:
    from portside.upload_host import upload_app

    stream = io.BytesIO(chunked(b"0123456789"))
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "PATCH",
        "PATH_INFO": f"/v2/{NAME}/blobs/uploads/0b2f",
        "QUERY_STRING": "",
        "wsgi.input": ChunkedRFile(stream, 0),
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "uploads.test",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_LENGTH": "10",
    }
    started: list[str] = []
    body = b"".join(upload_app(environ, lambda status, headers: started.append(status)))
    assert started[0].startswith("400 ")
    assert code_of(body) == "BLOB_UPLOAD_INVALID"
    assert stream.tell() == 0
