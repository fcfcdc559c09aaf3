"""One big layer pushed through each upload path, side by side (issue 12).

Paths (``BENCH_PUSH_PATHS``; the first three by default), each against a deployment of
its own:

- ``direct``: ``portside push`` (``--upload auto`` picks direct uploads: parts PUT straight
  to S3 through presigned URLs) against Portside without an upload host (the ``lite`` stage:
  ``portside serve`` with ``PORTSIDE_LOCAL_UPLOAD_HOST=off``, where an upload body meets
  API Gateway's 10 MB limit);
- ``upload-host``: ``skopeo copy`` against Portside with its upload host as a separate
  process (``python -m portside.upload_host``, the ``Location`` of every upload through
  ``PORTSIDE_UPLOAD_URL``), as tests/e2e/test_upload_host.py wires it;
- ``distribution``: ``skopeo copy`` against distribution 2.8 with its S3 driver;
- ``standard-distribution``: ``portside push --upload standard`` (PATCH chunks of 64 MiB)
  against another such distribution.

The image is one layer of incompressible data (``BENCH_PUSH_BYTES``, 1 GiB; quick: 64 MiB)
as an uncompressed tar (``application/vnd.oci.image.layer.v1.tar``) in an OCI layout,
written streaming, a new one for each run (see ``run_push_paths``).

Every deployment has its own moto process (one table, bucket and GC state machine per
moto), so that moto's memory is measured apart from the registry's.

Bytes through compute are counted outside the product: a counting TCP proxy
(``python -m bench.push_paths proxy``, its own process, ``splice(2)`` between the sockets)
sits in front of every client-facing listener of the compute (Portside's API and upload
host; distribution) and of every moto, and attributes each connection to the process that
opened it. So it tells apart what clients sent to the compute, what clients sent straight
to S3 (the presigned part URLs), and what the compute read from S3. (``/proc/PID/io``
``rchar`` cannot: Python and Go read sockets with ``recv``, which it does not count.)

Peak memory: ``VmHWM`` of each daemon after a push, reset before it by writing ``5`` to
``/proc/PID/clear_refs``; the client's ``VmHWM``, polled (see ``PeakPoller``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from tests.e2e.clients import ContainersTools
from tests.e2e.daemons import RegistryTarget
from tests.e2e.procs import Daemon, free_port, remove_tree, tail_file, tcp_ready

from . import peers
from .peers import ROOT, VENV_BIN, upload_host_env

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
TAG = "v1"
PUSH_TIMEOUT = 900.0
PATHS = ("direct", "upload-host", "distribution", "standard-distribution")
DEFAULT_PATHS = PATHS[:3]  # standard-distribution: ~1 min more per run at 1 GiB


# ---------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Layout:
    path: Path
    manifest_digest: str
    layer_digest: str
    layer_size: int
    data_bytes: int


class _HashingWriter:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        written: int = self.out.write(data)
        return written


def _put_blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return "sha256:" + digest


def write_layout(dest: Path, data_bytes: int, chunk: int = MIB) -> Layout:
    """An OCI layout (tag ``v1``) of one image whose only layer is a tar holding one file
    of ``data_bytes`` random bytes; written streaming, hashed as it is written."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / ".layer.partial"
    info = tarfile.TarInfo("bench/random.bin")
    info.size = data_bytes
    info.mode = 0o644
    info.mtime = 0
    with partial.open("wb") as raw:
        out = _HashingWriter(raw)
        out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        left = data_bytes
        while left:
            n = min(chunk, left)
            out.write(os.urandom(n))
            left -= n
        out.write(b"\0" * (-data_bytes % tarfile.BLOCKSIZE))
        out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        raw.flush()
        os.fsync(raw.fileno())  # no writeback of it during the timed pushes
    layer_hex = out.hasher.hexdigest()
    partial.rename(blobs / layer_hex)
    layer = {"mediaType": LAYER_MEDIA_TYPE, "digest": f"sha256:{layer_hex}", "size": out.size}
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
            "config": {},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": _put_blob(blobs, config),
                "size": len(config),
            },
            "layers": [layer],
        }
    ).encode()
    manifest_digest = _put_blob(blobs, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return Layout(dest, manifest_digest, str(layer["digest"]), out.size, data_bytes)


# ---------------------------------------------------------------------------- the proxy


class _Route:
    """One listener's counters, per connecting process (pid 0: not found)."""

    def __init__(self, name: str, target: tuple[str, int]) -> None:
        self.name = name
        self.target = target
        self.lock = threading.Lock()
        self.by_pid: dict[int, list[int]] = {}  # pid -> [client->server, server->client]
        self.connections = 0

    def add(self, pid: int, upstream: bool, n: int) -> None:
        with self.lock:
            self.by_pid.setdefault(pid, [0, 0])[0 if upstream else 1] += n

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {
                "connections": self.connections,
                "by_pid": {str(p): {"up": c[0], "down": c[1]} for p, c in self.by_pid.items()},
            }


def socket_owner(peer_port: int, listen_port: int, root: int) -> int:
    """The pid among ``root``'s descendants that holds the loopback socket connected from
    ``peer_port`` to ``listen_port`` (0 if none is found): the socket's inode from
    /proc/net/tcp, then the process with that inode among its file descriptors."""
    local = f"0100007F:{peer_port:04X}"
    remote = f"0100007F:{listen_port:04X}"
    inode = ""
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 9 and fields[1] == local and fields[2] == remote:
                inode = fields[9]
                break
    if not inode or inode == "0":
        return 0
    wanted = f"socket:[{inode}]"
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                        return pid
    return 0


def _pump(src: socket.socket, dst: socket.socket, count: Callable[[int], None]) -> None:
    """Copy ``src`` to ``dst`` until EOF, counting; in the kernel (splice through a pipe)
    where it can, else through a buffer."""
    try:
        try:
            r, w = os.pipe()
        except OSError:
            r = w = -1
        try:
            if r >= 0:
                with contextlib.suppress(OSError, AttributeError):
                    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MIB)
                while True:
                    n = os.splice(src.fileno(), w, MIB)
                    if n == 0:
                        break
                    count(n)
                    left = n
                    while left:
                        left -= os.splice(r, dst.fileno(), left)
            else:
                buf = bytearray(MIB)
                view = memoryview(buf)
                while True:
                    n = src.recv_into(buf)
                    if n == 0:
                        break
                    count(n)
                    dst.sendall(view[:n])
        finally:
            if r >= 0:
                os.close(r)
                os.close(w)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        # A reset on either side ends both directions.
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _serve_connection(client: socket.socket, route: _Route, root: int) -> None:
    pid = socket_owner(client.getpeername()[1], client.getsockname()[1], root)
    try:
        server = socket.create_connection(route.target, timeout=30)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with route.lock:
        route.connections += 1
    back = threading.Thread(
        target=_pump,
        args=(server, client, functools.partial(route.add, pid, False)),
        daemon=True,
    )
    back.start()
    _pump(client, server, functools.partial(route.add, pid, True))
    back.join()
    client.close()
    server.close()


def _listen(route: _Route, root: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)

    def accept() -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(
                target=_serve_connection, args=(conn, route, root), daemon=True
            ).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(sock.getsockname()[1])


def proxy_main(control_port: int) -> None:
    """The counting proxy's process. Control connections on ``control_port`` send one line:
    ``add NAME HOST:PORT`` (answer: the new listener's port) or ``counts`` (answer: JSON
    ``{name: {"connections", "by_pid": {pid: {"up", "down"}}}}``, cumulative). Connections
    are attributed to processes among the descendants of this process's parent (the
    harness: every daemon and client it started)."""
    root = os.getppid()
    routes: dict[str, _Route] = {}
    control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    control.bind(("127.0.0.1", control_port))
    control.listen(16)
    while True:
        conn, _ = control.accept()
        with conn, conn.makefile("rw", encoding="utf-8") as f:
            words = f.readline().split()
            if words[:1] == ["add"] and len(words) == 3:
                host, port = words[2].rsplit(":", 1)
                route = routes[words[1]] = _Route(words[1], (host, int(port)))
                f.write(f"{_listen(route, root)}\n")
            elif words == ["counts"]:
                f.write(json.dumps({n: r.counts() for n, r in routes.items()}) + "\n")
            else:
                f.write("error\n")


class CountingProxy:
    """The harness's handle on the proxy process."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.control = free_port()
        self.daemon = Daemon(
            "counting-proxy",
            [sys.executable, "-m", "bench.push_paths", "proxy", str(self.control)],
            workdir / "proxy.log",
            cwd=ROOT,
        )

    def __enter__(self) -> CountingProxy:
        self.daemon.start()
        self.daemon.wait_ready(lambda: tcp_ready("127.0.0.1", self.control), timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def _ask(self, line: str) -> str:
        with socket.create_connection(("127.0.0.1", self.control), timeout=10) as s:
            s.sendall(line.encode() + b"\n")
            with s.makefile("r", encoding="utf-8") as f:
                return f.readline().strip()

    def add(self, name: str, host: str, port: int) -> int:
        """A listener forwarding to ``host:port``; its port."""
        return int(self._ask(f"add {name} {host}:{port}"))

    def counts(self) -> dict[str, dict[int, tuple[int, int]]]:
        """``{route: {pid: (client->server bytes, server->client bytes)}}``, cumulative."""
        answer = json.loads(self._ask("counts"))
        return {
            name: {int(p): (c["up"], c["down"]) for p, c in route["by_pid"].items()}
            for name, route in answer.items()
        }


def traffic(
    before: dict[str, dict[int, tuple[int, int]]],
    after: dict[str, dict[int, tuple[int, int]]],
    route: str,
    pids: set[int] | None = None,
    exclude: frozenset[int] | set[int] = frozenset(),
) -> tuple[int, int]:
    """Bytes (to the server, from the server) on ``route`` between two snapshots, of the
    connections of ``pids`` (all when None) and not of ``exclude``."""
    up = down = 0
    for pid, (u, d) in after.get(route, {}).items():
        if (pids is not None and pid not in pids) or pid in exclude:
            continue
        u0, d0 = before.get(route, {}).get(pid, (0, 0))
        up += u - u0
        down += d - d0
    return up, down


# ---------------------------------------------------------------------------- /proc


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    out = [pid]
    for p in out:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    out += [int(c) for c in (task / "children").read_text().split()]
    return out


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak(pid: int) -> None:
    """Reset ``VmHWM`` to the current RSS (Linux: ``5`` to ``clear_refs``)."""
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{p}/clear_refs").write_text("5")


def peak_kb(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, KeyError):
            total += status_kb(p, "VmHWM")
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants."""
    ticks = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class ClientRun:
    seconds: float
    returncode: int
    peak_kb: int
    cpu_seconds: float
    stdout: bytes
    stderr: bytes


class PeakPoller:
    """The highest total ``VmHWM`` of a process tree, polled until stopped.

    ``ru_maxrss`` from ``wait4`` cannot serve: Linux carries the high-water mark of the
    forking process (the harness, some 60 MB) across the child's ``exec``. ``VmHWM``
    belongs to the ``exec``ed image alone; only growth in the last ``interval`` before an
    exit can be missed.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, peak_kb(self.pid))
            if self._stop.wait(self.interval):
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def run_client(
    argv: Sequence[str], env: dict[str, str], logdir: Path, timeout: float = PUSH_TIMEOUT
) -> ClientRun:
    """Run a client to its exit: wall time from start to exit, its peak RSS (polled) and
    CPU (``wait4``: the process and the descendants it waited for)."""
    logdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / "stdout", logdir / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        poller = PeakPoller(proc.pid)
        killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        try:
            # Reaped here, not by Popen: wait4 also answers the CPU it used.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = poller.stop()
    return ClientRun(
        seconds,
        proc.returncode,
        peak,
        usage.ru_utime + usage.ru_stime,
        out_path.read_bytes(),
        err_path.read_bytes(),
    )


# ---------------------------------------------------------------------------- deployments


@dataclass
class Deployment:
    """One registry as the clients see it (through the proxy) and the processes it runs."""

    target: RegistryTarget  # host/url: the proxy's listener
    direct_url: str  # the registry itself, for checks that must not be counted
    routes: list[str]  # proxy routes of its client-facing listeners
    aws_route: str  # proxy route to its moto (compute and presigned URLs alike)
    processes: dict[str, int]  # role -> pid: registry, upload_host, moto
    compute: list[str]  # the roles that are the registry's compute
    check: str = ""  # what was checked of its topology at start


DeploymentFactory = Callable[[Path, CountingProxy], contextlib.AbstractContextManager[Deployment]]


@dataclass
class PushPath:
    key: str
    title: str
    client: str
    deployment: str
    argv: Callable[[RegistryTarget, str, Path], list[str]]
    env: Callable[[Path], dict[str, str]]
    prepare: Callable[[], None] = field(default=lambda: None)


def _child_with_arg(text: str) -> int:
    """The harness's descendant whose command line contains ``text``."""
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            if text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return pid
    raise LookupError(text)


def _port(url_or_host: str) -> int:
    return int(url_or_host.rsplit(":", 1)[1])


def _proxied(target: RegistryTarget, port: int) -> RegistryTarget:
    return replace(target, host=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}")


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def _start_upload(target: RegistryTarget) -> tuple[requests.Session, str]:
    http = requests.Session()
    http.trust_env = False
    http.auth = (target.username, target.password)
    resp = http.post(f"{target.url}/v2/{target.name('push/probe')}/blobs/uploads/", timeout=60)
    if resp.status_code != 202:
        raise RuntimeError(f"POST blobs/uploads/ -> {resp.status_code} {resp.text[:300]}")
    return http, resp.headers["Location"]


def check_no_upload_host(target: RegistryTarget) -> str:
    """The lite stage must refuse an 11 MB upload body (API Gateway's 10 MB limit): else
    an upload host still serves and the direct path is not what is measured."""
    http, location = _start_upload(target)
    location = requests.compat.urljoin(target.url + "/", location)
    resp = http.patch(location, data=b"\0" * (11 * 1000 * 1000), timeout=60)
    if resp.status_code != 413:
        raise RuntimeError(
            f"the lite stage accepted an 11 MB PATCH ({resp.status_code}): is "
            "PORTSIDE_LOCAL_UPLOAD_HOST=off honoured?"
        )
    return "11 MB PATCH refused with 413 (no upload host)"


def check_upload_host(target: RegistryTarget, upload_url: str) -> str:
    """Upload Locations must name the upload host (through the proxy)."""
    _, location = _start_upload(target)
    if not location.startswith(upload_url + "/"):
        raise RuntimeError(f"upload Location {location} is not on the upload host {upload_url}")
    return f"upload Locations on the upload host ({upload_url}, proxied)"


@contextlib.contextmanager
def _moto(workdir: Path, proxy: CountingProxy, route: str) -> Iterator[tuple[str, int]]:
    """A moto of its own, reached through the proxy: (proxied endpoint, moto's pid)."""
    with peers.moto_server(workdir / "moto") as (endpoint, moto):
        yield f"http://127.0.0.1:{proxy.add(route, '127.0.0.1', _port(endpoint))}", moto.pid


@contextlib.contextmanager
def portside_lite(workdir: Path, proxy: CountingProxy) -> Iterator[Deployment]:
    """Portside without an upload host: upload bodies meet API Gateway's 10 MB limit."""
    lite_env = {"PORTSIDE_LOCAL_UPLOAD_HOST": "off", "PORTSIDE_TOKEN_TTL_SECONDS": "3600"}
    with (
        _moto(workdir, proxy, "lite-aws") as (endpoint, moto),
        peers.portside(workdir / "portside", endpoint, extra_env=lite_env) as (target, serve),
    ):
        port = proxy.add("lite-api", "127.0.0.1", _port(target.host))
        yield Deployment(
            _proxied(target, port),
            target.url,
            ["lite-api"],
            "lite-aws",
            {"registry": serve.pid, "moto": moto},
            ["registry"],
            check_no_upload_host(target),
        )


@contextlib.contextmanager
def portside_split(workdir: Path, proxy: CountingProxy) -> Iterator[Deployment]:
    """Portside with its upload host as a process of its own, as deployed."""
    with _moto(workdir, proxy, "split-aws") as (endpoint, moto):
        key = secrets.token_urlsafe(32)
        upload_port = free_port()
        uploads = Daemon(
            "upload_host",
            [str(VENV_BIN / "python"), "-m", "portside.upload_host"],
            workdir / "upload_host.log",
            env=upload_host_env(endpoint, key, upload_port),
            cwd=ROOT,
        ).start()
        try:
            uploads.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{upload_port}/healthz"), 60)
            proxied_uploads = proxy.add("split-upload", "127.0.0.1", upload_port)
            with peers.portside(
                workdir / "portside",
                endpoint,
                extra_env={
                    "PORTSIDE_SIGNING_KEY": key,
                    "PORTSIDE_UPLOAD_URL": f"http://127.0.0.1:{proxied_uploads}",
                    "PORTSIDE_TOKEN_TTL_SECONDS": "3600",
                },
            ) as (target, serve):
                port = proxy.add("split-api", "127.0.0.1", _port(target.host))
                yield Deployment(
                    _proxied(target, port),
                    target.url,
                    ["split-api", "split-upload"],
                    "split-aws",
                    {"registry": serve.pid, "upload_host": uploads.pid, "moto": moto},
                    ["registry", "upload_host"],
                    check_upload_host(target, f"http://127.0.0.1:{proxied_uploads}"),
                )
        finally:
            uploads.stop()


def distribution(name: str) -> DeploymentFactory:
    """distribution 2.8 with its S3 driver. Each distribution path has one of its own: a
    distribution commits a digest it already holds without moving the upload into its blob
    store, so a second path pushing the same layer to the same one would take a shortcut."""

    @contextlib.contextmanager
    def deploy(workdir: Path, proxy: CountingProxy) -> Iterator[Deployment]:
        with (
            _moto(workdir, proxy, f"{name}-aws") as (endpoint, moto),
            peers.distribution_s3(workdir / "dist", endpoint, "distribution") as target,
        ):
            pid = _child_with_arg(str(workdir / "dist" / "config.yml"))
            port = proxy.add(name, "127.0.0.1", _port(target.host))
            yield Deployment(
                _proxied(target, port),
                target.url,
                [name],
                f"{name}-aws",
                {"registry": pid, "moto": moto},
                ["registry"],
            )

    return deploy


# ---------------------------------------------------------------------------- clients


def _portside_env(home: Path) -> dict[str, str]:
    shutil.rmtree(home, ignore_errors=True)  # no resumable upload state from an earlier run
    home.mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "PORTSIDE_", "DOCKER_", "XDG_"))
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "DOCKER_CONFIG": str(home / "docker"),
        }
    )
    return env


def _portside_argv(strategy: str) -> Callable[[RegistryTarget, str, Path], list[str]]:
    def argv(target: RegistryTarget, ref: str, layout: Path) -> list[str]:
        return [
            str(VENV_BIN / "portside"),
            "push",
            f"oci:{layout}:{TAG}",
            ref,
            "--username",
            target.username,
            "--password",
            target.password,
            "--upload",
            strategy,
            "-q",
            "-o",
            "json",
        ]

    return argv


class SkopeoClient:
    def __init__(self, base: Path) -> None:
        # podman/containers refuse long runroots; keep it short under /tmp.
        self.short = Path(tempfile.mkdtemp(prefix="psbench-push-", dir="/tmp"))
        self.tools = ContainersTools(base, self.short / "runroot")

    def close(self) -> None:
        remove_tree(self.short)

    def clear_cache(self) -> None:
        for f in self.tools.cache_files():
            f.unlink()

    def env(self, _home: Path) -> dict[str, str]:
        return self.tools.env()

    def argv(self, target: RegistryTarget, ref: str, layout: Path) -> list[str]:
        return self.tools.wrap(
            [
                "skopeo",
                "--insecure-policy",
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-creds",
                target.creds,
                f"oci:{layout}:{TAG}",
                f"docker://{ref}",
            ]
        )


def make_paths(skopeo: SkopeoClient) -> dict[str, PushPath]:
    return {
        "direct": PushPath(
            "direct",
            "portside push (auto: direct) -> Portside lite (no upload host)",
            "portside push",
            "lite",
            _portside_argv("auto"),
            _portside_env,
        ),
        "upload-host": PushPath(
            "upload-host",
            "skopeo copy -> Portside + upload host (its own process)",
            "skopeo",
            "split",
            skopeo.argv,
            skopeo.env,
            skopeo.clear_cache,
        ),
        "distribution": PushPath(
            "distribution",
            "skopeo copy -> distribution 2.8, S3 driver",
            "skopeo",
            "distribution",
            skopeo.argv,
            skopeo.env,
            skopeo.clear_cache,
        ),
        "standard-distribution": PushPath(
            "standard-distribution",
            "portside push --upload standard -> distribution 2.8, S3 driver (another one)",
            "portside push",
            "distribution-2",
            _portside_argv("standard"),
            _portside_env,
        ),
    }


# ---------------------------------------------------------------------------- the runs


def verify_push(dep: Deployment, repository: str, layout: Layout) -> str | None:
    """None when the registry serves the pushed manifest and layer; else what is wrong."""
    http = requests.Session()
    http.trust_env = False
    http.auth = (dep.target.username, dep.target.password)
    name = dep.target.name(repository)
    resp = http.get(
        f"{dep.direct_url}/v2/{name}/manifests/{TAG}",
        headers={"Accept": MANIFEST_MEDIA_TYPE},
        timeout=60,
    )
    if resp.status_code != 200:
        return f"GET manifest -> {resp.status_code}"
    got = "sha256:" + hashlib.sha256(resp.content).hexdigest()
    if got != layout.manifest_digest:
        return f"manifest digest {got}, pushed {layout.manifest_digest}"
    head = http.head(
        f"{dep.direct_url}/v2/{name}/blobs/{layout.layer_digest}",
        timeout=60,
        allow_redirects=True,  # distribution on S3 redirects to a presigned URL
    )
    size = head.headers.get("Content-Length")
    if head.status_code != 200 or size is None or int(size) != layout.layer_size:
        return f"HEAD layer -> {head.status_code} Content-Length {size}"
    return None


def _check_outcome(path: PushPath, run: ClientRun, layout: Layout) -> str | None:
    if run.returncode != 0:
        lines = run.stderr.decode(errors="replace").strip().splitlines() or ["(no output)"]
        return f"exit {run.returncode}: {lines[-1][:300]}"
    if path.client == "portside push":
        # The layer must have been sent, not found already there.
        try:
            outcome = json.loads(run.stdout)["blobs"].get(layout.layer_digest)
        except (ValueError, KeyError, AttributeError):
            return f"unreadable -o json output: {run.stdout[:200]!r}"
        if outcome != "uploaded":
            return f"layer {outcome}, not uploaded"
    return None


def measure_push(
    path: PushPath,
    dep: Deployment,
    proxy: CountingProxy,
    layout: Layout,
    repository: str,
    workdir: Path,
) -> dict[str, Any]:
    """One push: its figures, or ``{"error": ...}``."""
    ref = dep.target.ref(repository, TAG)
    home = workdir / "home"
    env = path.env(home)
    path.prepare()
    argv = path.argv(dep.target, ref, layout.path)
    roles = dep.processes
    for pid in (*roles.values(), proxy.pid):
        reset_peak(pid)
    cpu0 = {role: cpu_seconds(pid) for role, pid in roles.items()}
    proxy_cpu0 = cpu_seconds(proxy.pid)
    counts0 = proxy.counts()
    run = run_client(argv, env, workdir / "client")
    counts1 = proxy.counts()
    proxy_cpu = cpu_seconds(proxy.pid) - proxy_cpu0
    cpu = {role: cpu_seconds(pid) - cpu0[role] for role, pid in roles.items()}
    peaks = {role: peak_kb(pid) for role, pid in roles.items()}
    compute = {p for role in dep.compute for p in process_tree(roles[role])}
    error = _check_outcome(path, run, layout) or verify_push(dep, repository, layout)
    if error:
        return {"error": error}
    by_listener = {r: traffic(counts0, counts1, r)[0] for r in dep.routes}
    to_aws, from_aws = traffic(counts0, counts1, dep.aws_route, pids=compute)
    others_to_aws, _ = traffic(counts0, counts1, dep.aws_route, exclude=compute)
    unattributed = sum(sum(traffic(counts0, counts1, r, pids={0})) for r in counts1)
    return {
        "wall_s": run.seconds,
        "peak_rss_mb": {
            "client": run.peak_kb / 1024,
            **{role: kb / 1024 for role, kb in peaks.items()},
        },
        "cpu_s": {"client": run.cpu_seconds, **cpu},
        "client_bytes_to_compute": sum(by_listener.values()),
        "client_bytes_by_listener": by_listener,
        "compute_bytes_from_aws": from_aws,
        "compute_bytes_to_aws": to_aws,
        "client_bytes_to_aws": others_to_aws,
        "unattributed_bytes": unattributed,
        "proxy_cpu_s": proxy_cpu,
        "proxy_peak_rss_mb": peak_kb(proxy.pid) / 1024,
    }


def stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": [round(v, 3) for v in values],
    }


SCALARS = (
    "wall_s",
    "client_bytes_to_compute",
    "compute_bytes_from_aws",
    "compute_bytes_to_aws",
    "client_bytes_to_aws",
    "unattributed_bytes",
    "proxy_cpu_s",
    "proxy_peak_rss_mb",
)
GROUPS = ("peak_rss_mb", "cpu_s", "client_bytes_by_listener")


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure median/min/max over the runs of one path."""
    out: dict[str, Any] = {key: stats([s[key] for s in samples]) for key in SCALARS}
    for group in GROUPS:
        out[group] = {role: stats([s[group][role] for s in samples]) for role in samples[0][group]}
    return out


DEPLOYMENTS: dict[str, DeploymentFactory] = {
    "lite": portside_lite,
    "split": portside_split,
    "distribution": distribution("distribution"),
    "distribution-2": distribution("distribution-2"),
}


def run_push_paths(
    workdir: Path,
    data_bytes: int,
    runs: int,
    keys: Sequence[str] = DEFAULT_PATHS,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> dict[str, Any]:
    """The push part of the bench: every path ``runs`` times, interleaved; each run pushes
    a layer of its own, written before the run (untimed).

    A fresh layer per run, not one for all: distribution keeps one blob store for all
    repositories and commits a digest it already holds without moving the upload into it
    (on moto the move of a new 1 GiB blob is some 40 s of UploadPartCopy), so from the
    second run on it would be measured on a shortcut that a new layer never takes.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    unknown = set(keys) - set(PATHS)
    if unknown:
        raise ValueError(f"unknown push paths: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    result: dict[str, Any] = {
        "layer": {
            "data_bytes": data_bytes,
            "blob_bytes": None,
            "media_type": LAYER_MEDIA_TYPE,
            "digests": [],
            "write_seconds": [],
        },
        "runs": runs,
        "paths": {},
    }
    failures: list[str] = []
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    skopeo = SkopeoClient(workdir / "skopeo")
    try:
        paths = make_paths(skopeo)
        with contextlib.ExitStack() as stack:
            proxy = stack.enter_context(CountingProxy(workdir / "proxy"))
            deps: dict[str, Deployment] = {}
            for key in keys:
                name = paths[key].deployment
                if name not in deps:
                    deps[name] = stack.enter_context(DEPLOYMENTS[name](workdir / name, proxy))
                    log(f"   {name:<13} {deps[name].target.url} (via the counting proxy)")
                    if deps[name].check:
                        result.setdefault("checks", {})[name] = deps[name].check
                        log(f"   {'':<13} {deps[name].check}")
            # Unmeasured: each path pushes a 1 MiB layer first, so that no run pays for a
            # registry's first requests (its per-thread app set-up; cold starts are the
            # cold-start part's figure) or a client's first connection.
            warm = write_layout(workdir / "warmup", MIB)
            for key in keys:
                path, dep = paths[key], deps[paths[key].deployment]
                repository = f"push/warmup-{key}-{secrets.token_hex(3)}"
                sample = measure_push(path, dep, proxy, warm, repository, workdir / "c")
                if "error" in sample:
                    failures.append(f"warm-up {key}: {sample['error']}")
                    log(f"  FAILED {failures[-1]}")
            remove_tree(workdir / "warmup")
            last_run = 0.0
            for run in range(runs):
                if run and deadline is not None and time.monotonic() + last_run > deadline:
                    log("push paths: time budget spent, stopping early")
                    result["stopped_early"] = f"after {run} runs: time budget spent"
                    break
                run_started = time.monotonic()
                remove_tree(workdir / "layout")
                layout = write_layout(workdir / "layout", data_bytes)
                written = time.monotonic() - run_started
                result["layer"]["blob_bytes"] = layout.layer_size
                result["layer"]["digests"].append(layout.layer_digest)
                result["layer"]["write_seconds"].append(round(written, 1))
                log(
                    f"  run {run + 1}/{runs}: a new layer, {layout.layer_size} bytes, "
                    f"written in {written:.1f} s"
                )
                order = list(keys[run % len(keys) :]) + list(keys[: run % len(keys)])
                for key in order:
                    path, dep = paths[key], deps[paths[key].deployment]
                    repository = f"push/{key}-r{run}-{secrets.token_hex(3)}"
                    sample = measure_push(path, dep, proxy, layout, repository, workdir / "c")
                    if "error" in sample:
                        failures.append(f"run {run + 1} {key}: {sample['error']}")
                        log(f"  FAILED {failures[-1]}")
                        continue
                    samples[key].append(sample)
                    rss = sample["peak_rss_mb"]
                    log(
                        f"  run {run + 1}/{runs} {key:<22} {sample['wall_s']:7.2f} s  "
                        f"client->compute {human_bytes(sample['client_bytes_to_compute']):>9}  "
                        f"client->S3 {human_bytes(sample['client_bytes_to_aws']):>9}  "
                        f"S3->compute {human_bytes(sample['compute_bytes_from_aws']):>9}  MB "
                        + " ".join(f"{r} {v:.0f}" for r, v in rss.items())
                    )
                last_run = time.monotonic() - run_started
    finally:
        skopeo.close()
        if failures:
            for name in DEPLOYMENTS:
                for log_path in sorted((workdir / name).rglob("*.log")):
                    log(f"--- {log_path.relative_to(workdir)} (tail)\n{tail_file(log_path, 30)}")
        remove_tree(workdir / "layout")
    for key in keys:
        if samples[key]:
            result["paths"][key] = {
                "title": paths[key].title,
                "client": paths[key].client,
                **summarize(samples[key]),
            }
    direct = result["paths"].get("direct")
    for entry in result["paths"].values():
        entry["wall_ratio_to_direct"] = (
            entry["wall_s"]["median"] / direct["wall_s"]["median"] if direct else None
        )
    if failures:
        result["failures"] = failures
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


if __name__ == "__main__":
    if sys.argv[1:2] == ["proxy"] and len(sys.argv) == 3:
        proxy_main(int(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench.push_paths proxy CONTROL_PORT")
