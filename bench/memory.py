"""Peak RSS of the upload path while a 1 GiB layer is pushed.

Production topology: ``portside serve`` answers the POST with a ``Location`` on the upload
host (``PORTSIDE_UPLOAD_URL``), a separate ``python -m portside.upload_host`` process that
streams the PATCH body into S3 multipart parts. moto runs in its own process; only the
upload host's ``VmHWM`` (peak resident set) is the figure (target: <= 150 MB).
The client sends the 1 GiB as a chunked streaming body (as docker does), hashing as it goes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from tests.e2e.procs import Daemon, free_port, tcp_ready

from .peers import ROOT, portside, upload_host_env

GIB = 1024 * 1024 * 1024
CHUNK = 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def body(size: int, hasher: Any) -> Iterator[bytes]:
    block = bytearray(os.urandom(CHUNK))
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        block[:8] = sent.to_bytes(8, "big")  # every chunk differs
        chunk = bytes(block[:n])
        hasher.update(chunk)
        sent += n
        yield chunk


def upload_host_peak(workdir: Path, endpoint: str, size: int = GIB) -> dict[str, Any]:
    key = secrets.token_urlsafe(32)
    port = free_port()
    env = upload_host_env(endpoint, key, port)
    uploader = Daemon(
        "upload_host",
        [sys.executable, "-m", "portside.upload_host"],
        workdir / "upload_host.log",
        env=env,
        cwd=ROOT,
    ).start()
    upload_url = f"http://127.0.0.1:{port}"
    try:
        uploader.wait_ready(
            lambda: (
                tcp_ready("127.0.0.1", port)
                and requests.get(f"{upload_url}/healthz", timeout=2).status_code == 200
            ),
            timeout=60,
        )
        with portside(
            workdir / "portside",
            endpoint,
            extra_env={"PORTSIDE_SIGNING_KEY": key, "PORTSIDE_UPLOAD_URL": upload_url},
        ) as (target, _):
            http = requests.Session()
            http.auth = (target.username, target.password)
            name = target.name("memory/big")
            idle_kb = status_kb(uploader.pid, "VmRSS")
            resp = http.post(f"{target.url}/v2/{name}/blobs/uploads/", timeout=60)
            resp.raise_for_status()
            location = resp.headers["Location"]
            assert location.startswith(upload_url), location
            hasher = hashlib.sha256()
            started = time.monotonic()
            resp = http.patch(location, data=body(size, hasher), timeout=600)
            if resp.status_code != 202:
                raise RuntimeError(f"PATCH -> {resp.status_code} {resp.text[:300]}")
            location = resp.headers["Location"]
            digest = "sha256:" + hasher.hexdigest()
            resp = http.put(f"{location}&digest={digest}", timeout=600)
            if resp.status_code != 201:
                raise RuntimeError(f"PUT -> {resp.status_code} {resp.text[:300]}")
            elapsed = time.monotonic() - started
            head = http.head(f"{target.url}/v2/{name}/blobs/{digest}", timeout=60)
            assert head.status_code == 200 and int(head.headers["Content-Length"]) == size
            peak_kb = status_kb(uploader.pid, "VmHWM")
        return {
            "process": "python -m portside.upload_host (PATCH streamed chunked, then PUT)",
            "layer_bytes": size,
            "idle_rss_mb": round(idle_kb / 1024, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "target_mb": 150,
            "seconds": round(elapsed, 1),
            "throughput_mib_s": round(size / (1024 * 1024) / elapsed, 1),
            "part_size_mib": 8,
        }
    finally:
        uploader.stop()
