"""The bench's printed table, rendered from its JSON result."""

from __future__ import annotations

import textwrap
from typing import Any

PEERS = ("distribution-fs", "distribution-s3")


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['median']:.2f} ({stats['min']:.2f}-{stats['max']:.2f})"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def clients_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "Push/pull wall time, seconds: median (min-max); ratio = Portside / peer (< 1: faster)",
        f"{'client':<7} {'image':<8} {'op':<4} {'portside':>20} {'dist-fs':>20} "
        f"{'dist-s3':>20} {'ps/fs':>7} {'ps/s3':>7}",
    ]
    for client, images in data.items():
        if client == "failures":
            continue
        for image, ops in images.items():
            for op in ("push", "pull"):
                row = ops.get(op, {})
                ps = row.get("portside")
                fs = row.get("distribution-fs")
                s3 = row.get("distribution-s3")
                lines.append(
                    f"{client:<7} {image:<8} {op:<4} {_cell(ps):>20} {_cell(fs):>20} "
                    f"{_cell(s3):>20} "
                    f"{_ratio(ps and ps['median'], fs and fs['median']):>7} "
                    f"{_ratio(ps and ps['median'], s3 and s3['median']):>7}"
                )
    lines += [f"FAILED (not timed): {f}" for f in data.get("failures", [])]
    return lines


def load_table(data: dict[str, Any]) -> list[str]:
    variants: list[str] = []
    for by_conc in data.values():
        for cells in by_conc.values():
            for v in cells:
                if v not in variants:
                    variants.append(v)
    lines = [
        "Hot read path (wrk; HEAD: pyload): requests/s | p50 ms | p99 ms; "
        "ratio = Portside req/s / dist-fs req/s",
        f"{'endpoint':<18} {'c':>3} "
        + " ".join(f"{v:>24}" for v in variants)
        + f" {'basic/fs':>9} {'bearer/fs':>9}",
    ]
    for key, by_conc in data.items():
        for conc, cells in by_conc.items():
            cols = []
            for v in variants:
                c = cells.get(v)
                cols.append(
                    f"{c['rps']:>7.0f} |{c['p50_ms']:>6.1f} |{c['p99_ms']:>6.1f}"
                    + ("!" if c.get("errors") else " ")
                    if c
                    else "-"
                )
            fs = (cells.get("distribution-fs") or {}).get("rps")
            basic = (cells.get("portside-basic") or {}).get("rps")
            bearer = (cells.get("portside-bearer") or {}).get("rps")
            lines.append(
                f"{key:<18} {conc:>3} "
                + " ".join(f"{c:>24}" for c in cols)
                + f" {_ratio(basic, fs):>9} {_ratio(bearer, fs):>9}"
            )
    lines.append(
        "(load generator: wrk for GET, bench.pyload (Python threads) for HEAD. blob GET and "
        "dist-s3's blob HEAD answer 307 to S3 (not followed); dist-fs sends the 32 KiB "
        "itself. '!' = errors in the cell)"
    )
    return lines


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def push_table(data: dict[str, Any]) -> list[str]:
    layer = data["layer"]
    lines = [
        f"Push of one {layer['data_bytes'] / 2**20:g} MiB layer of incompressible data "
        f"({layer['media_type']}, {layer['blob_bytes']} bytes), {data['runs']} runs, each "
        "with a new layer and fresh repositories; wall seconds median (min-max), the rest "
        "medians",
        f"{'path':<22} {'wall s':>20} {'/direct':>7} {'client->compute':>15} "
        f"{'S3->compute':>11} {'client->S3':>10} | peak RSS MB: {'client':>6} "
        f"{'registry':>8} {'upl.host':>8} {'moto':>6}",
    ]

    def median(entry: dict[str, Any], *keys: str) -> float | None:
        for key in keys:
            entry = entry.get(key) or {}
        value = entry.get("median")
        return float(value) if value is not None else None

    def mb(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for key, entry in data["paths"].items():
        ratio = entry.get("wall_ratio_to_direct")
        rss = entry["peak_rss_mb"]
        lines.append(
            f"{key:<22} {_cell(entry['wall_s']):>20} "
            f"{'-' if ratio is None else f'{ratio:.2f}x':>7} "
            f"{_bytes(median(entry, 'client_bytes_to_compute')):>15} "
            f"{_bytes(median(entry, 'compute_bytes_from_aws')):>11} "
            f"{_bytes(median(entry, 'client_bytes_to_aws')):>10} |              "
            f"{mb(median(rss, 'client')):>6} {mb(median(rss, 'registry')):>8} "
            f"{mb(median(rss, 'upload_host')):>8} {mb(median(rss, 'moto')):>6}"
        )
    lines.append(
        f"{'CPU seconds (median)':<22} {'client':>8} {'registry':>8} {'upl.host':>8} "
        f"{'moto':>8} {'proxy':>8}"
    )
    for key, entry in data["paths"].items():
        cpu = entry["cpu_s"]

        def sec(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        lines.append(
            f"{key:<22} {sec(median(cpu, 'client')):>8} {sec(median(cpu, 'registry')):>8} "
            f"{sec(median(cpu, 'upload_host')):>8} {sec(median(cpu, 'moto')):>8} "
            f"{sec(median(entry, 'proxy_cpu_s')):>8}"
        )
    lines += [f"  {key}: {entry['title']}" for key, entry in data["paths"].items()]
    lines += [f"  {name}: {check}" for name, check in data.get("checks", {}).items()]
    lines += textwrap.wrap(
        "client->compute: what clients sent to the registry's compute (Portside's API and "
        "upload host, or distribution), counted by a TCP proxy in front of it, headers "
        "included; S3->compute: what the compute read from its moto (S3 and DynamoDB "
        "answers; on the direct path the one read that verifies the sha256); client->S3: "
        "what clients sent straight to S3 through presigned URLs. Each registry has a moto "
        "process of its own; all S3 traffic crosses the same proxy.",
        width=100,
        initial_indent="  (",
        subsequent_indent="   ",
    )
    lines[-1] += ")"
    lines += [f"FAILED (not timed): {f}" for f in data.get("failures", [])]
    if data.get("stopped_early"):
        lines.append(f"push paths stopped early: {data['stopped_early']}")
    return lines


def calls_table(data: dict[str, Any]) -> list[str]:
    from .calls import table

    return [f"AWS calls per operation (commit {data.get('commit', '?')})", table(data)]


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Portside bench {result['started_at']} commit {result.get('commit')} "
        f"on {result['machine']['cpus']} CPUs, load average at start "
        f"{result['machine']['loadavg_start']} and end {result['machine'].get('loadavg_end')}",
        "",
    ]
    if "images" in result:
        lines.append(
            "Images: "
            + "; ".join(
                f"{k} = {v['description']} ({v['bytes'] / 2**20:.1f} MiB)"
                for k, v in result["images"].items()
            )
        )
    if "clients" in result:
        lines += [*clients_table(result["clients"]), ""]
    if "load" in result:
        lines += [*load_table(result["load"]), ""]
    if "calls" in result:
        lines += [*calls_table(result["calls"]), ""]
    if "push" in result:
        lines += [*push_table(result["push"]), ""]
    if "memory" in result:
        m = result["memory"]
        verdict = "within" if m["peak_rss_mb"] <= m["target_mb"] else "OVER"
        lines.append(
            f"Upload host peak RSS (VmHWM) pushing {m['layer_bytes'] / 2**30:g} GiB: "
            f"{m['peak_rss_mb']} MB ({verdict} the {m['target_mb']} MB target; idle "
            f"{m['idle_rss_mb']} MB; {m['throughput_mib_s']} MiB/s, {m['seconds']} s)"
        )
    if "portside_serve_peak_rss_mb" in result:
        lines.append(
            f"portside serve peak RSS over the client and load runs: "
            f"{result['portside_serve_peak_rss_mb']} MB (moto, separate process: "
            f"{result.get('moto_peak_rss_mb')} MB)"
        )
    if "coldstart" in result:
        c = result["coldstart"]
        p = c["package"]
        lines.append(
            f"Cold start: import app {c['import_ms']['median']:.0f} ms median "
            f"({c['import_ms']['min']:.0f}-{c['import_ms']['max']:.0f}, {c['runs']} runs); "
            f"process incl. interpreter {c['process_ms']['median']:.0f} ms "
            f"(bare interpreter {c['interpreter_ms']:.0f} ms)"
        )
        lines.append(
            "  slowest top-level imports (ms, cumulative): "
            + ", ".join(f"{k} {v}" for k, v in c["top_level_imports_ms"].items())
        )
        lines.append(f"Deployment package: {p['zip_mb']} MB zip, {p['files']} files ({p['how']})")
    for s in result.get("skipped", []):
        lines.append(f"SKIPPED: {s}")
    return "\n".join(lines)
