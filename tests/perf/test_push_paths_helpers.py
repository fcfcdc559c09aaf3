"""The measuring helpers of ``bench.push_paths`` (the push paths of ``make bench``).

What the bench reports is only as good as these: the OCI layout it pushes, the counting
proxy's byte counts and their attribution to the connecting process, and the peak RSS of a
client (polled ``VmHWM``, not ``ru_maxrss``, which carries the harness's own).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from bench.push_paths import (
    LAYER_MEDIA_TYPE,
    CountingProxy,
    peak_kb,
    reset_peak,
    run_client,
    traffic,
    write_layout,
)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def test_layout_is_one_uncompressed_layer_of_the_requested_size(tmp_path: Path) -> None:
    layout = write_layout(tmp_path / "oci", 300_000, chunk=64 * 1024)
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert entry["digest"] == layout.manifest_digest
    manifest = json.loads(_blob(layout.path, layout.manifest_digest))
    (layer,) = manifest["layers"]
    assert layer == {
        "mediaType": LAYER_MEDIA_TYPE,
        "digest": layout.layer_digest,
        "size": layout.layer_size,
    }
    data = _blob(layout.path, layout.layer_digest)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layout.layer_digest
    assert len(data) == layout.layer_size
    config = json.loads(_blob(layout.path, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layout.layer_digest]
    with tarfile.open(layout.path / "blobs" / "sha256" / layout.layer_digest[7:]) as tar:
        (member,) = tar.getmembers()
        assert member.size == 300_000
    assert not list((layout.path / "blobs" / "sha256").glob(".*"))


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def test_proxy_counts_both_directions_per_connecting_process(tmp_path: Path) -> None:
    server, port = _echo_server()
    try:
        with CountingProxy(tmp_path) as proxy:
            listen = proxy.add("echo", "127.0.0.1", port)
            before = proxy.counts()
            payload = os.urandom(3 * 1024 * 1024 + 17)
            with socket.create_connection(("127.0.0.1", listen)) as conn:
                sender = threading.Thread(target=conn.sendall, args=(payload,))
                sender.start()
                received = bytearray()
                while len(received) < len(payload):
                    received += conn.recv(1 << 20)
                sender.join()
            assert bytes(received) == payload
            after = proxy.counts()
            mine = {os.getpid()}
            assert traffic(before, after, "echo", pids=mine) == (len(payload), len(payload))
            assert traffic(before, after, "echo", exclude=mine) == (0, 0)
    finally:
        server.close()


def test_traffic_is_the_difference_of_two_snapshots() -> None:
    before = {"r": {1: (10, 20), 2: (5, 5)}}
    after = {"r": {1: (15, 40), 2: (5, 5), 3: (7, 1)}, "s": {1: (100, 100)}}
    assert traffic(before, after, "r") == (12, 21)
    assert traffic(before, after, "r", pids={1}) == (5, 20)
    assert traffic(before, after, "r", exclude={1}) == (7, 1)
    assert traffic(before, after, "missing") == (0, 0)


def test_client_peak_is_its_own_not_the_harness(tmp_path: Path) -> None:
    # The harness holds 200 MB; a client that touches 40 MB must not report the 200.
    ballast = bytearray(200 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])
    script = "import time; b = bytearray(40 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    argv = [sys.executable, "-c", script + "; time.sleep(0.2)"]
    run = run_client(argv, dict(os.environ), tmp_path)
    assert run.returncode == 0
    assert 40 * 1024 <= run.peak_kb < 150 * 1024, run.peak_kb
    assert run.seconds > 0.2
    del ballast


def test_reset_peak_drops_the_high_water_mark(tmp_path: Path) -> None:
    import subprocess

    script = (
        "import sys, time\n"
        "b = bytearray(100 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); del b\n"
        "print('ok', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        assert peak_kb(proc.pid) >= 100 * 1024
        reset_peak(proc.pid)
        if peak_kb(proc.pid) >= 100 * 1024:
            pytest.skip("this kernel does not reset VmHWM through clear_refs")
        assert peak_kb(proc.pid) < 60 * 1024
    finally:
        proc.kill()
        proc.wait()
