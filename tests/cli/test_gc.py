"""``portside registry gc``: start (flags, 409, --wait), get, list, cancel.

The other CLI tests drive a real ``portside serve``; these run the CLI against a stub HTTP
server that answers the garbage-collection endpoints with scripted JSON, so that every
phase, failure and interruption can be staged exactly (it is the CLI being tested, not the
collector). Every answer the stub gives and every body the CLI sends are checked against
``chalicelib/api/openapi.yaml``, so the stub cannot drift from the documented API.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from openapi_spec_validator import validate as validate_spec
from rich.console import Console

import portside.cli.gc as gc_module
from portside.cli.gc import LineDisplay, LiveDisplay, make_display
from tests.api.helpers import OPENAPI_PATH, contract, validate

from .conftest import Cli

REGISTRY = "acme"
GC_UUID = "5f0c7b8e-2a4d-4c1e-9b3a-0d6f1e2a3b4c"
BASE = f"/api/v1/registries/{REGISTRY}"
ACTIVE = f"{BASE}/garbage-collection"
HISTORY = f"{BASE}/garbage-collections"
FREED = 123_456_789  # 117.7 MiB

Answer = tuple[int, Any]


def collection(status: str = "requested", **overrides: Any) -> dict[str, Any]:
    """A collection as the API returns it (the contract's <gc json>)."""
    progress = {
        "repositories_scanned": 0,
        "manifests_scanned": 0,
        "blobs_scanned": 0,
        "objects_scanned": 0,
    }
    progress.update(overrides.pop("progress", {}))
    progress["items_scanned"] = sum(progress.values())
    item: dict[str, Any] = {
        "uuid": GC_UUID,
        "registry_name": REGISTRY,
        "status": status,
        "type": "untagged manifests and unreferenced blobs",
        "mode": "read-only",
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
        "blobs_deleted": 0,
        "manifests_deleted": 0,
        "freed_bytes": 0,
        "trigger": "api",
        "error": None,
        "progress": progress,
    }
    item.update(overrides)
    return item


def error(status: int, error_id: str, message: str) -> Answer:
    return status, {"id": error_id, "message": message}


def ok(key: str, item: dict[str, Any], status: int = 200) -> Answer:
    return status, {key: item}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Stub:
    """Scripted answers per (method, path); a list is served in order, its last repeating."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    routes: dict[tuple[str, str], list[Answer] | Callable[[Request], Answer]] = field(
        default_factory=dict
    )

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, path)] = list(answers)

    def on_call(self, method: str, path: str, handler: Callable[[Request], Answer]) -> None:
        self.routes[(method, path)] = handler

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def answer(self, request: Request) -> Answer:
        self.requests.append(request)
        route = self.routes.get((request.method, request.path))
        if route is None:
            return error(404, "not_found", f"stub: no route {request.method} {request.path}")
        if callable(route):
            return route(request)
        return route.pop(0) if len(route) > 1 else route[0]

    def check(self, request: Request, status: int, body: Any) -> None:
        """The request body and the answer must be the ones openapi.yaml documents."""
        op = contract().operation(request.method, request.path)
        if op is None or "garbage-collection" not in op.template or status >= 500:
            return  # only the garbage-collection answers are under test (5xx: a proxy's)
        where = f"{request.method} {request.path} -> {status}"
        documented = op.responses.get(str(status))
        if documented is None:
            self.problems.append(f"{where}: status not documented")
            return
        schema = documented["content"]["application/json"]["schema"]
        self.problems += [f"{where}: {p}" for p in validate(schema, body)]
        spec_op = contract().spec["paths"][op.template][request.method.lower()]
        request_body = spec_op.get("requestBody")
        if request_body and request.body is not None:
            request_schema = request_body["content"]["application/json"]["schema"]
            self.problems += [
                f"{where} request: {p}" for p in validate(request_schema, request.body)
            ]


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                parts.path,
                dict(parse_qsl(parts.query)),
                json.loads(raw) if raw else None,
            )
            status, body = stub.answer(request)
            stub.check(request, status, body)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A registry to default to, and to tell "no active collection" from "no such registry".
    state.on("GET", "/api/v1/registries", (200, {"registries": [{"name": REGISTRY}]}))
    state.on("GET", BASE, (200, {"registry": {"name": REGISTRY}}))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
    assert not state.problems, "the stub broke openapi.yaml:\n" + "\n".join(state.problems)


@pytest.fixture
def gc_cli(bare_cli: Cli, stub: Stub) -> Cli:
    return bare_cli.with_env(PORTSIDE_API_URL=stub.url, PORTSIDE_TOKEN="pst_test")


def _fast(*args: str) -> tuple[str, ...]:
    return (*args, "--poll-interval", "0")


# ------------------------------------------------------------------------------ start


@pytest.mark.parametrize(
    ("flags", "gc_type", "mode"),
    [
        ([], "untagged manifests and unreferenced blobs", "read-only"),
        (
            ["--include-untagged-manifests"],
            "untagged manifests and unreferenced blobs",
            "read-only",
        ),
        (["--exclude-untagged-manifests"], "unreferenced blobs only", "read-only"),
        (["--exclude-unreferenced-blobs"], "untagged manifests only", "read-only"),
        (
            ["--include-untagged-manifests", "--exclude-unreferenced-blobs"],
            "untagged manifests only",
            "read-only",
        ),
        (["--online"], "untagged manifests and unreferenced blobs", "online"),
        (["--exclude-untagged-manifests", "--online"], "unreferenced blobs only", "online"),
    ],
)
def test_start_sends_the_type_and_mode_its_flags_name(
    gc_cli: Cli, stub: Stub, flags: list[str], gc_type: str, mode: str
) -> None:
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(type=gc_type, mode=mode), 201))
    out = gc_cli("registry", "gc", "start", REGISTRY, *flags).ok()
    (sent,) = stub.sent("POST", ACTIVE)
    assert sent.body == {"type": gc_type, "mode": mode}
    assert GC_UUID in out.stdout and gc_type in out.stdout
    assert f"portside registry gc get {REGISTRY} --wait" in out.stdout


def test_excluding_both_kinds_is_a_usage_error_and_starts_nothing(gc_cli: Cli, stub: Stub) -> None:
    out = gc_cli(
        "registry",
        "gc",
        "start",
        REGISTRY,
        "--exclude-untagged-manifests",
        "--exclude-unreferenced-blobs",
    )
    assert out.exit_code == 2
    assert "nothing to collect" in out.stderr
    assert not stub.sent("POST", ACTIVE)


def test_start_json_output_is_the_api_object(gc_cli: Cli, stub: Stub) -> None:
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(), 201))
    out = gc_cli("registry", "gc", "start", REGISTRY, "-o", "json").ok()
    assert out.json() == collection()


def test_the_registry_defaults_to_the_only_one_the_token_sees(gc_cli: Cli, stub: Stub) -> None:
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(), 201))
    gc_cli("registry", "gc", "start").ok()
    assert len(stub.sent("POST", ACTIVE)) == 1


def test_several_registries_must_be_named(gc_cli: Cli, stub: Stub) -> None:
    stub.on(
        "GET", "/api/v1/registries", (200, {"registries": [{"name": "acme"}, {"name": "beta"}]})
    )
    out = gc_cli("registry", "gc", "start")
    assert out.exit_code == 2
    assert "name the registry" in out.stderr and "acme, beta" in out.stderr
    assert not [r for r in stub.requests if r.method == "POST"]


def test_a_second_start_names_the_active_collection_and_how_to_cancel_it(
    gc_cli: Cli, stub: Stub
) -> None:
    stub.on("POST", ACTIVE, error(409, "conflict", "a garbage collection is already active"))
    stub.on("GET", ACTIVE, ok("garbage_collection", collection("scanning manifests")))
    line = gc_cli("registry", "gc", "start", REGISTRY).failed()
    assert "already has an active garbage collection" in line
    assert GC_UUID in line and "scanning manifests" in line
    assert f"portside registry gc cancel {REGISTRY} {GC_UUID}" in line


# ------------------------------------------------------------------------------ --wait

PHASES = [
    collection("waiting for write JWTs to expire"),
    collection("scanning manifests", progress={"repositories_scanned": 2, "manifests_scanned": 10}),
    collection("scanning manifests", progress={"repositories_scanned": 3, "manifests_scanned": 40}),
    collection(
        "deleting unreferenced blobs",
        progress={"repositories_scanned": 3, "manifests_scanned": 40, "blobs_scanned": 900},
        manifests_deleted=4,
    ),
]


def _ended(status: str, **overrides: Any) -> dict[str, Any]:
    return collection(
        status,
        progress={
            "repositories_scanned": 3,
            "manifests_scanned": 40,
            "blobs_scanned": 1000,
            "objects_scanned": 57,
        },
        updated_at="2026-12-01T10:03:12Z",
        **overrides,
    )


def _stage(stub: Stub, final: dict[str, Any]) -> None:
    """Start answers `requested`; the active collection walks the phases, then is gone and
    the history holds ``final`` (below a newer, unrelated collection)."""
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(), 201))
    stub.on(
        "GET",
        ACTIVE,
        *(ok("garbage_collection", item) for item in PHASES),
        error(404, "not_found", "no garbage collection is active"),
    )
    older = collection("succeeded", uuid="00000000-0000-4000-8000-000000000000")
    stub.on("GET", HISTORY, (200, {"garbage_collections": [final, older], "links": {}}))


def test_wait_follows_every_status_to_succeeded_and_prints_the_freed_bytes(
    gc_cli: Cli, stub: Stub
) -> None:
    _stage(stub, _ended("succeeded", manifests_deleted=4, blobs_deleted=12, freed_bytes=FREED))
    out = gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait")).ok()

    # Without a terminal: one line per status change, in order, each once.
    statuses = [
        line.split("] ", 1)[1].split(":", 1)[0]
        for line in out.stderr.splitlines()
        if line.startswith("[")
    ]
    assert statuses == [
        "requested",
        "waiting for write JWTs to expire",
        "scanning manifests",
        "deleting unreferenced blobs",
        "succeeded",
    ]
    assert "12 items scanned" in out.stderr  # 2 repositories + 10 manifests, first scan line
    assert "117.7 MiB freed" in out.stderr
    assert "succeeded in 3m 12s" in out.stderr
    # stdout: the final record.
    assert "117.7 MiB" in out.stdout and "succeeded" in out.stdout
    assert "1,100 items" in out.stdout
    assert len(stub.sent("GET", ACTIVE)) == len(PHASES) + 1


def test_wait_with_json_output_prints_only_the_final_record(gc_cli: Cli, stub: Stub) -> None:
    final = _ended("succeeded", freed_bytes=FREED)
    _stage(stub, final)
    out = gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait", "-o", "json")).ok()
    assert out.json() == final


def test_wait_on_a_failed_collection_exits_non_zero_with_its_error(gc_cli: Cli, stub: Stub) -> None:
    _stage(stub, _ended("failed", error="S3 DeleteObjects: SlowDown"))
    out = gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait"))
    assert out.exit_code == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        f"Error: garbage collection {GC_UUID} of registry {REGISTRY} failed: "
        "S3 DeleteObjects: SlowDown"
    )
    assert "S3 DeleteObjects: SlowDown" in out.stdout  # the record's Error row


def test_wait_on_a_cancelled_collection_exits_non_zero(gc_cli: Cli, stub: Stub) -> None:
    _stage(stub, _ended("cancelled"))
    out = gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait"))
    assert out.exit_code == 1
    assert out.stderr.strip().splitlines()[-1].endswith("was cancelled")


def test_wait_rides_out_a_transient_server_error(gc_cli: Cli, stub: Stub) -> None:
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(), 201))
    stub.on(
        "GET",
        ACTIVE,
        ok("garbage_collection", collection("scanning manifests")),
        (503, {"message": "Service Unavailable"}),
        ok("garbage_collection", collection("deleting unreferenced blobs")),
        error(404, "not_found", "no garbage collection is active"),
    )
    stub.on("GET", HISTORY, (200, {"garbage_collections": [_ended("succeeded")], "links": {}}))
    gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait")).ok()


def test_wait_ends_when_a_newer_collection_took_the_active_place(gc_cli: Cli, stub: Stub) -> None:
    newer = collection("requested", uuid="11111111-1111-4111-8111-111111111111", trigger="schedule")
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(), 201))
    stub.on("GET", ACTIVE, ok("garbage_collection", newer))
    stub.on(
        "GET",
        HISTORY,
        (
            200,
            {"garbage_collections": [newer, _ended("succeeded", freed_bytes=FREED)], "links": {}},
        ),
    )
    out = gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait")).ok()
    assert "117.7 MiB" in out.stdout


def test_ctrl_c_stops_watching_and_leaves_the_collection_running(
    gc_cli: Cli, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.on("POST", ACTIVE, ok("garbage_collection", collection(), 201))
    stub.on("GET", ACTIVE, ok("garbage_collection", collection("scanning manifests")))
    calls = 0

    def sleep(_seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(gc_module, "_sleep", sleep)
    out = gc_cli(*_fast("registry", "gc", "start", REGISTRY, "--wait"))
    assert out.exit_code == 130
    assert "keeps running" in out.stderr
    assert f"portside registry gc cancel {REGISTRY} {GC_UUID}" in out.stderr
    assert not [r for r in stub.requests if r.method == "PUT"]  # nothing was cancelled


def test_get_wait_follows_a_running_collection(gc_cli: Cli, stub: Stub) -> None:
    _stage(stub, _ended("succeeded", freed_bytes=FREED))
    out = gc_cli(*_fast("registry", "gc", "get", REGISTRY, "--wait")).ok()
    assert "117.7 MiB" in out.stdout
    assert not stub.sent("POST", ACTIVE)


def test_the_live_display_draws_phase_counts_and_freed_bytes_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, color_system=None)
    display = make_display(console)
    assert isinstance(display, LiveDisplay)
    display.update(collection("scanning manifests", progress={"manifests_scanned": 1234}))
    display.update(_ended("succeeded", manifests_deleted=4, blobs_deleted=12, freed_bytes=FREED))
    display.close()
    text = buffer.getvalue()
    assert "succeeded" in text and "1,100 items scanned" in text
    assert "4 manifests, 12 blobs deleted" in text and "117.7 MiB freed" in text
    assert isinstance(make_display(Console(file=io.StringIO())), LineDisplay)


# ------------------------------------------------------------------------------ get, list, cancel


def test_get_shows_the_active_collection_with_its_progress(gc_cli: Cli, stub: Stub) -> None:
    running = collection(
        "scanning manifests",
        progress={"repositories_scanned": 2, "manifests_scanned": 1500},
        manifests_deleted=7,
    )
    stub.on("GET", ACTIVE, ok("garbage_collection", running))
    out = gc_cli("registry", "gc", "get", REGISTRY).ok()
    assert "scanning manifests" in out.stdout
    assert "1,502 items (2 repositories, 1,500 manifests, 0 blobs, 0 objects)" in out.stdout
    assert gc_cli("registry", "gc", "get", REGISTRY, "-o", "json").ok().json() == running


def test_get_without_an_active_collection_says_so(gc_cli: Cli, stub: Stub) -> None:
    stub.on("GET", ACTIVE, error(404, "not_found", "no garbage collection is active"))
    out = gc_cli("registry", "gc", "get", REGISTRY).ok()
    assert f"No garbage collection is running on registry {REGISTRY}" in out.stdout
    assert gc_cli("registry", "gc", "get", REGISTRY, "-o", "json").ok().json() is None


def test_get_of_an_unknown_registry_is_an_error_not_an_idle_registry(
    gc_cli: Cli, stub: Stub
) -> None:
    missing = "/api/v1/registries/nope"
    stub.on(
        "GET", f"{missing}/garbage-collection", error(404, "not_found", "registry nope not found")
    )
    stub.on("GET", missing, error(404, "not_found", "registry nope not found"))
    line = gc_cli("registry", "gc", "get", "nope").failed()
    assert "registry nope not found" in line


def test_list_follows_every_page(gc_cli: Cli, stub: Stub) -> None:
    items = [
        _ended("succeeded", uuid=f"00000000-0000-4000-8000-00000000000{i}", freed_bytes=i * 1024)
        for i in range(3)
    ]

    def pages(request: Request) -> Answer:
        if request.query.get("page_token") == "p2":
            return 200, {"garbage_collections": items[2:], "links": {}}
        return 200, {"garbage_collections": items[:2], "links": {"next_page_token": "p2"}}

    stub.on_call("GET", HISTORY, pages)
    listed = gc_cli("registry", "gc", "list", REGISTRY, "-o", "json").ok().json()
    assert [item["uuid"] for item in listed] == [item["uuid"] for item in items]

    table = gc_cli("registry", "gc", "list", REGISTRY).ok().stdout
    assert "UUID" in table and "FREED" in table
    assert all(item["uuid"] in table for item in items)
    assert "2 KiB" in table


def test_list_one_page_points_at_the_next(gc_cli: Cli, stub: Stub) -> None:
    stub.on(
        "GET",
        HISTORY,
        (
            200,
            {
                "garbage_collections": [_ended("failed", error="boom")],
                "links": {"next_page_token": "p2"},
            },
        ),
    )
    out = gc_cli("registry", "gc", "list", REGISTRY, "--per-page", "1").ok()
    assert "failed" in out.stdout
    assert "--page-token p2" in out.stderr
    (sent,) = stub.sent("GET", HISTORY)
    assert sent.query == {"per_page": "1"}


def test_list_when_nothing_ran(gc_cli: Cli, stub: Stub) -> None:
    stub.on("GET", HISTORY, (200, {"garbage_collections": [], "links": {}}))
    assert "No garbage collections." in gc_cli("registry", "gc", "list", REGISTRY).ok().stdout


def test_cancel_without_a_uuid_cancels_the_active_collection(gc_cli: Cli, stub: Stub) -> None:
    stub.on("GET", ACTIVE, ok("garbage_collection", collection("scanning manifests")))
    stub.on("PUT", f"{ACTIVE}/{GC_UUID}", ok("garbage_collection", collection("cancelling")))
    out = gc_cli("registry", "gc", "cancel", REGISTRY).ok()
    (sent,) = stub.sent("PUT", f"{ACTIVE}/{GC_UUID}")
    assert sent.body == {"cancel": True}
    assert "cancelling" in out.stdout and "current step" in out.stdout


def test_cancel_by_uuid_alone_uses_the_only_registry(gc_cli: Cli, stub: Stub) -> None:
    stub.on("PUT", f"{ACTIVE}/{GC_UUID}", ok("garbage_collection", collection("cancelled")))
    out = gc_cli("registry", "gc", "cancel", GC_UUID, "-o", "json").ok()
    assert out.json()["status"] == "cancelled"
    assert not stub.sent("GET", ACTIVE)


def test_cancel_of_an_ended_collection_says_so(gc_cli: Cli, stub: Stub) -> None:
    stub.on(
        "PUT",
        f"{ACTIVE}/{GC_UUID}",
        error(409, "conflict", "garbage collection has already succeeded"),
    )
    line = gc_cli("registry", "gc", "cancel", REGISTRY, GC_UUID).failed()
    assert "not active any more" in line and "already succeeded" in line


def test_cancel_with_nothing_running(gc_cli: Cli, stub: Stub) -> None:
    stub.on("GET", ACTIVE, error(404, "not_found", "no garbage collection is active"))
    line = gc_cli("registry", "gc", "cancel", REGISTRY).failed()
    assert "no garbage collection is running" in line
    assert not [r for r in stub.requests if r.method == "PUT"]


# ------------------------------------------------------------------------------ document


def test_the_openapi_document_is_valid_and_enumerates_every_status_and_type() -> None:
    raw = yaml.safe_load(OPENAPI_PATH.read_text())
    validate_spec(raw)
    schemas = raw["components"]["schemas"]
    assert schemas["GarbageCollectionStatus"]["enum"] == [
        "requested",
        "waiting for write JWTs to expire",
        "scanning manifests",
        "deleting unreferenced blobs",
        "cancelling",
        "failed",
        "succeeded",
        "cancelled",
    ]
    assert set(schemas["GarbageCollectionType"]["enum"]) == {
        gc_module.TYPE_MANIFESTS,
        gc_module.TYPE_BLOBS,
        gc_module.TYPE_BOTH,
    }
    assert set(schemas["GarbageCollectionMode"]["enum"]) == {"read-only", "online"}
    for template, methods in {
        "/api/v1/registries/{registry}/garbage-collection": {"get", "post"},
        "/api/v1/registries/{registry}/garbage-collection/{uuid}": {"put"},
        "/api/v1/registries/{registry}/garbage-collections": {"get"},
    }.items():
        assert methods <= set(raw["paths"][template])
