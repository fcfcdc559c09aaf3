"""A small closed-loop HTTP load generator, run as its own process by ``bench.load``.

wrk cannot measure HEAD here: it waits for the body its ``Content-Length`` announces (a
HEAD answer carries the GET's length and no body), so HEAD cells use this instead. Each of
``-c`` threads keeps one keep-alive connection and sends requests back to back until the
duration is over; the result is one JSON line on stdout.

    python -m bench.pyload -c 8 -d 3 -m HEAD -H 'Authorization: ...' http://127.0.0.1:5000/v2/...
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from urllib.parse import urlsplit


def worker(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    stop_at: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    while True:
        started = time.perf_counter()
        if started >= stop_at:
            break
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            ok = 200 <= resp.status < 400
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
            ok = False
        latencies.append(time.perf_counter() - started)
        if not ok:
            errors.append(1)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("-d", type=float, default=3.0)
    parser.add_argument("-m", default="GET")
    parser.add_argument("-H", action="append", default=[])
    parser.add_argument("url")
    args = parser.parse_args()
    url = urlsplit(args.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = dict(h.split(": ", 1) for h in args.H)
    stop_at = time.perf_counter() + args.d
    per_thread: list[list[float]] = [[] for _ in range(args.c)]
    errors: list[int] = []
    started = time.perf_counter()
    threads = [
        threading.Thread(
            target=worker,
            args=(url.hostname, url.port or 80, args.m, path, headers, stop_at, lat, errors),
        )
        for lat in per_thread
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.d + 30)
    duration = time.perf_counter() - started
    lat = sorted(x for xs in per_thread for x in xs)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e6 if lat else 0.0

    print(
        "BENCHJSON "
        + json.dumps(
            {
                "requests": len(lat),
                "duration_us": int(duration * 1e6),
                "status_errors": len(errors),
                "connect_errors": 0,
                "read_errors": 0,
                "write_errors": 0,
                "timeouts": 0,
                "p50_us": pct(50),
                "p90_us": pct(90),
                "p99_us": pct(99),
                "mean_us": sum(lat) / len(lat) * 1e6 if lat else 0.0,
                "max_us": lat[-1] * 1e6 if lat else 0.0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
