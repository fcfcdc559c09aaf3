"""Throughput and latency of the hot read path, from wrk (a process of its own).

Each cell is one endpoint at one concurrency for a bounded duration; wrk's Lua ``done``
hook prints the summary as JSON. HEAD cells use ``bench.pyload`` (wrk cannot do HEAD against
an answer carrying a Content-Length). Responses other than 2xx/3xx are counted as errors (every
endpoint is checked once with Python first, so a cell never silently measures 401s).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.e2e.daemons import RegistryTarget

from .peers import ROOT

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

LUA = r"""
wrk.method = os.getenv("BENCH_METHOD") or "GET"
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"status_errors\":%d,"
    .. "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"timeouts\":%d,"
    .. "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"mean_us\":%.1f,\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""


@dataclass(frozen=True)
class Endpoint:
    key: str
    method: str
    path: str
    expect: int
    headers: dict[str, str]


def endpoints(target: RegistryTarget, repo: str, tag: str, blob: str) -> list[Endpoint]:
    name = target.name(repo)
    accept = {"Accept": OCI_MANIFEST}
    return [
        Endpoint("manifest HEAD tag", "HEAD", f"/v2/{name}/manifests/{tag}", 200, accept),
        Endpoint("manifest GET tag", "GET", f"/v2/{name}/manifests/{tag}", 200, accept),
        # distribution on S3 redirects HEAD too (307).
        Endpoint("blob HEAD", "HEAD", f"/v2/{name}/blobs/{blob}", 0, {}),
        # Portside and distribution-on-S3 answer 307 (not followed); distribution on its
        # filesystem sends the bytes itself (200).
        Endpoint("blob GET", "GET", f"/v2/{name}/blobs/{blob}", 0, {}),
        Endpoint("/v2/", "GET", "/v2/", 200, {}),
    ]


def basic_header(target: RegistryTarget) -> str:
    raw = f"{target.username}:{target.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def bearer_header(target: RegistryTarget, repo: str) -> str:
    resp = requests.get(
        f"{target.url}/v2/token",
        params={"service": "portside", "scope": f"repository:{target.name(repo)}:pull"},
        headers={"Authorization": basic_header(target)},
        timeout=30,
    )
    resp.raise_for_status()
    return "Bearer " + resp.json()["token"]


def check(target: RegistryTarget, ep: Endpoint, auth: str) -> int:
    resp = requests.request(
        ep.method,
        target.url + ep.path,
        headers={"Authorization": auth, **ep.headers},
        allow_redirects=False,
        timeout=30,
    )
    if resp.status_code not in (200, 307) or (ep.expect and resp.status_code != ep.expect):
        raise RuntimeError(f"{ep.method} {ep.path} -> {resp.status_code} {resp.text[:200]}")
    return resp.status_code


def wrk(
    workdir: Path, url: str, ep: Endpoint, auth: str, connections: int, seconds: float
) -> dict[str, Any]:
    script = workdir / "bench.lua"
    if not script.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        script.write_text(LUA)
    threads = min(connections, 2)
    if ep.method == "HEAD":
        # wrk waits for the body a HEAD answer's Content-Length announces: use pyload.
        argv = [sys.executable, "-m", "bench.pyload", f"-c{connections}", f"-d{seconds}"]
        argv += ["-m", "HEAD", "-H", f"Authorization: {auth}"]
        generator = "pyload"
    else:
        argv = [
            shutil.which("wrk") or "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            "-H",
            f"Authorization: {auth}",
        ]
        generator = "wrk"
    for k, v in ep.headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url + ep.path)
    proc = subprocess.run(
        argv,
        env={"PATH": "/usr/bin:/bin", "BENCH_METHOD": ep.method},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            raw = json.loads(line.removeprefix("BENCHJSON "))
            duration = raw["duration_us"] / 1e6
            errors = sum(
                raw[k]
                for k in (
                    "status_errors",
                    "connect_errors",
                    "read_errors",
                    "write_errors",
                    "timeouts",
                )
            )
            return {
                "rps": raw["requests"] / duration if duration else 0.0,
                "p50_ms": raw["p50_us"] / 1000,
                "p90_ms": raw["p90_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "mean_ms": raw["mean_us"] / 1000,
                "requests": raw["requests"],
                "errors": errors,
                "seconds": round(duration, 2),
                "generator": generator,
            }
    raise RuntimeError(f"wrk gave no summary (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def run_load_bench(
    workdir: Path,
    variants: dict[str, tuple[RegistryTarget, str]],
    fixtures: dict[str, tuple[str, str, str]],
    concurrency: tuple[int, ...],
    seconds: float,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``variants``: label -> (target, Authorization header); ``fixtures``: label ->
    (repository, tag, blob digest) already pushed there. Returns
    ``{endpoint: {concurrency: {variant: cell}}}``."""
    out: dict[str, Any] = {}
    first = next(iter(variants.values()))[0]
    keys = [ep.key for ep in endpoints(first, "x", "x", "sha256:0")]
    for key in keys:
        for conc in concurrency:
            for label, (target, auth) in variants.items():
                repo, tag, blob = fixtures[label]
                ep = next(e for e in endpoints(target, repo, tag, blob) if e.key == key)
                status = check(target, ep, auth)
                cell = wrk(workdir, target.url, ep, auth, conc, seconds)
                cell["status"] = status
                out.setdefault(key, {}).setdefault(str(conc), {})[label] = cell
                log(
                    f"  {key:<18} c={conc:<3} {label:<18} {cell['rps']:8.0f} req/s  "
                    f"p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms"
                    + (f"  errors {cell['errors']}" if cell["errors"] else "")
                )
    return out
