"""``make bench``: every figure of issue 5 in one run, printed as a table and saved as JSON
under ``bench/results/<UTC timestamp>.json`` (and the call counts as
``bench/results/calls.json``, which ``bench/cost_model.py`` turns into ``docs/cost.md``).

Knobs (environment): ``BENCH_RUNS`` (runs per push/pull figure, default 3),
``BENCH_LOAD_SECONDS`` (per load cell, default 3), ``BENCH_CONCURRENCY`` (default 1,8,32),
``BENCH_CLIENTS`` (default skopeo,ctr), ``BENCH_ONLY`` (comma list of parts: calls,
coldstart, clients, load, memory, push), ``BENCH_QUICK=1`` (small images, 1 run, 1 s cells:
a smoke test of the harness), ``BENCH_MEMORY_BYTES`` (default 1 GiB), ``BENCH_PUSH_BYTES``
(the push paths' layer, default 1 GiB; quick 64 MiB), ``BENCH_PUSH_RUNS`` (default
``min(BENCH_RUNS, 2)``), ``BENCH_PUSH_PATHS`` (default direct,upload-host,distribution; also
standard-distribution).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.e2e.clients import RegistryApi
from tests.e2e.images import ImageFactory
from tests.e2e.procs import remove_tree

from . import clients_bench, coldstart, load, memory, peers, push_paths, report
from .calls import git_commit
from .peers import ROOT

RESULTS = ROOT / "bench" / "results"
TIME_BUDGET = 20 * 60  # seconds; parts left when it is spent are skipped and said so
PUSH_RESERVE = 7 * 60  # seconds kept for the push paths (the last part)


def log(message: str) -> None:
    print(message, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def main() -> int:
    started = time.monotonic()
    deadline = started + TIME_BUDGET
    quick = os.environ.get("BENCH_QUICK") == "1"
    runs = env_int("BENCH_RUNS", 1 if quick else 3)
    seconds = float(os.environ.get("BENCH_LOAD_SECONDS") or (1 if quick else 3))
    conc = tuple(int(c) for c in (os.environ.get("BENCH_CONCURRENCY") or "1,8,32").split(","))
    client_names = (os.environ.get("BENCH_CLIENTS") or "skopeo,ctr").split(",")
    only = set(
        (os.environ.get("BENCH_ONLY") or "calls,coldstart,clients,load,memory,push").split(",")
    )
    mem_bytes = env_int("BENCH_MEMORY_BYTES", (64 if quick else 1024) * 1024 * 1024)
    push_bytes = env_int("BENCH_PUSH_BYTES", (64 if quick else 1024) * 1024 * 1024)
    push_runs = env_int("BENCH_PUSH_RUNS", min(runs, 2))
    push_env = os.environ.get("BENCH_PUSH_PATHS") or ",".join(push_paths.DEFAULT_PATHS)
    push_keys = push_env.split(",")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result: dict[str, Any] = {
        "started_at": stamp,
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
        "settings": {
            "runs": runs,
            "load_seconds": seconds,
            "concurrency": list(conc),
            "clients": client_names,
            "quick": quick,
            "push_bytes": push_bytes,
            "push_runs": push_runs,
        },
        "skipped": [],
    }
    work = Path(tempfile.mkdtemp(prefix="portside-bench-"))
    log(f"portside bench: commit {result['commit']}, load {loadavg()}, work dir {work}")
    try:
        if "calls" in only:
            log("== AWS calls per operation (in-process registry on moto)")
            out = work / "calls.json"
            subprocess.run(
                [sys.executable, "-m", "bench.calls", "--json", str(out)],
                cwd=ROOT,
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                    "POWERTOOLS_METRICS_DISABLED": "true",
                },
                check=True,
                timeout=300,
            )
            result["calls"] = json.loads(out.read_text())
        if "coldstart" in only:
            log("== cold start")
            result["coldstart"] = {
                **coldstart.import_time(3 if quick else 7),
                "package": coldstart.package(work / "lambda.zip"),
            }
        # The parts before the push paths leave them PUSH_RESERVE seconds.
        if only & {"clients", "load", "memory"}:
            run_peers(
                work,
                result,
                only,
                runs,
                seconds,
                conc,
                client_names,
                mem_bytes,
                quick,
                deadline - (PUSH_RESERVE if "push" in only else 0),
            )
        if "push" in only:
            if time.monotonic() > deadline - 90:
                result["skipped"].append("push: time budget spent")
            else:
                log(
                    f"== push of one {push_bytes / 2**20:g} MiB layer through each upload path "
                    f"({push_runs} runs: {', '.join(push_keys)})"
                )
                result["push"] = push_paths.run_push_paths(
                    work / "push", push_bytes, push_runs, push_keys, log, deadline=deadline
                )
    finally:
        result["machine"]["loadavg_end"] = loadavg()
        result["elapsed_seconds"] = round(time.monotonic() - started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{stamp}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        if "calls" in result and not quick:
            (RESULTS / "calls.json").write_text(json.dumps(result["calls"], indent=2) + "\n")
        remove_tree(work)
    print()
    print(report.render(result))
    log(f"\nsaved {path.relative_to(ROOT)} ({result['elapsed_seconds']} s)")
    return 0


def run_peers(
    work: Path,
    result: dict[str, Any],
    only: set[str],
    runs: int,
    seconds: float,
    conc: tuple[int, ...],
    client_names: list[str],
    mem_bytes: int,
    quick: bool,
    deadline: float,
) -> None:
    with peers.moto_server(work / "moto") as (endpoint, moto):
        log(f"== registries: moto at {endpoint}")
        with ExitStack() as stack:
            portside, portside_proc = stack.enter_context(
                peers.portside(
                    work / "portside", endpoint, extra_env={"PORTSIDE_TOKEN_TTL_SECONDS": "3600"}
                )
            )
            targets = {
                "portside": portside,
                "distribution-fs": stack.enter_context(peers.distribution_fs(work / "dist-fs")),
                "distribution-s3": stack.enter_context(
                    peers.distribution_s3(work / "dist-s3", endpoint, "distribution")
                ),
            }
            for name, t in targets.items():
                log(f"   {name:<16} {t.url}")
            if "clients" in only:
                log("== images")
                seed = random.SystemRandom().randrange(1 << 32)
                factory = ImageFactory(work / "images", seed)
                images = clients_bench.build_images(factory, work / "layouts", quick)
                result["images"] = {
                    i.key: {"description": i.description, "bytes": i.total_bytes} for i in images
                }
                log(f"== push/pull wall times ({runs} runs; clients {', '.join(client_names)})")
                with clients_bench.clients(work / "clients", client_names) as objs:
                    result["clients"] = clients_bench.run_client_bench(
                        targets, images, objs, runs, log, deadline=deadline - 150
                    )
                if result["clients"].get("failures"):
                    # Keep the registries' logs of a run in which a client failed.
                    for name, log_path in (
                        ("portside", work / "portside" / "portside.log"),
                        ("dist-fs", work / "dist-fs" / "registry.log"),
                        ("dist-s3", work / "dist-s3" / "registry.log"),
                    ):
                        if log_path.exists():
                            kept = RESULTS / f"{result['started_at']}-{name}.log"
                            RESULTS.mkdir(parents=True, exist_ok=True)
                            kept.write_bytes(log_path.read_bytes()[-2_000_000:])
                remove_tree(work / "images")
                remove_tree(work / "layouts")
            if "load" in only:
                if time.monotonic() > deadline - 60:
                    result["skipped"].append("load: time budget spent")
                else:
                    log(f"== hot read path with wrk ({seconds:g} s per cell)")
                    result["load"] = run_load(work, targets, conc, seconds)
            result["portside_serve_peak_rss_mb"] = round(
                memory.status_kb(portside_proc.pid, "VmHWM") / 1024, 1
            )
        # The registries are stopped; moto stays for the upload host.
        if "memory" in only:
            log(f"== upload host peak RSS while pushing {mem_bytes / 2**30:g} GiB")
            result["memory"] = memory.upload_host_peak(work / "memory", endpoint, mem_bytes)
        result["moto_peak_rss_mb"] = round(memory.status_kb(moto.pid, "VmHWM") / 1024, 1)


def run_load(
    work: Path, targets: dict[str, Any], conc: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    variants: dict[str, tuple[Any, str]] = {}
    fixtures: dict[str, tuple[str, str, str]] = {}
    repo = "load/app"
    for name, target in targets.items():
        api = RegistryApi(target)
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = os.urandom(32 * 1024)

        def desc(data: bytes, media_type: str) -> dict[str, Any]:
            return {
                "mediaType": media_type,
                "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }

        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": load.OCI_MANIFEST,
                "config": desc(config, "application/vnd.oci.image.config.v1+json"),
                "layers": [desc(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
            }
        ).encode()
        api.push_monolithic(repo, "v1", manifest, load.OCI_MANIFEST, [config, layer])
        blob = desc(layer, "")["digest"]
        if name == "portside":
            variants["portside-basic"] = (target, load.basic_header(target))
            variants["portside-bearer"] = (target, load.bearer_header(target, repo))
            fixtures["portside-basic"] = fixtures["portside-bearer"] = (repo, "v1", blob)
        else:
            variants[name] = (target, load.basic_header(target))
            fixtures[name] = (repo, "v1", blob)
    return load.run_load_bench(work / "wrk", variants, fixtures, conc, seconds, log)


if __name__ == "__main__":
    raise SystemExit(main())
