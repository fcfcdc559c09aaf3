"""Private daemons for the e2e suite: reference registry, dockerd, containerd.

Every daemon runs as a child of the test process in its own process group, with all of its
state, sockets and logs under a per-session tmp dir; nothing system-wide is started or used.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from .procs import (
    Daemon,
    free_port,
    in_private_mounts,
    kill_pid,
    remove_tree,
    run,
    tcp_ready,
    unix_socket_ready,
)

DOCKER_REGISTRY_BIN = "/usr/bin/docker-registry"
SYSTEM_DOCKER_RUN = Path("/run/docker")


@dataclass(frozen=True)
class RegistryTarget:
    """What the tests need to know about the registry under test."""

    kind: str  # "portside" or "distribution"
    host: str  # 127.0.0.1:PORT
    url: str  # http://127.0.0.1:PORT
    registry: str  # tenant name: first path component of every repository
    username: str
    password: str

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    @property
    def supports_referrers(self) -> bool:
        # distribution 2.8 predates the referrers API.
        return self.kind != "distribution"

    def name(self, repository: str) -> str:
        """Repository name as used in API paths: ``<registry>/<repository>``."""
        return f"{self.registry}/{repository}"

    def ref(self, repository: str, tag: str | None = None, digest: str | None = None) -> str:
        base = f"{self.host}/{self.name(repository)}"
        if digest is not None:
            return f"{base}@{digest}"
        return f"{base}:{tag or 'latest'}"


def _htpasswd_line(username: str, password: str) -> str:
    htpasswd = shutil.which("htpasswd")
    if htpasswd is not None:
        out = run([htpasswd, "-Bbn", username, password]).stdout.decode().strip()
        return out.splitlines()[0]
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "need `htpasswd` (apache2-utils) or the bcrypt module for the distribution target; "
            "run scripts/install-e2e-deps.sh"
        ) from exc
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{username}:{hashed}"


@contextlib.contextmanager
def distribution_registry(workdir: Path, tenant: str = "e2e") -> Iterator[RegistryTarget]:
    """The CNCF reference registry (Debian's docker-registry 2.8) with htpasswd auth."""
    if not Path(DOCKER_REGISTRY_BIN).exists():
        raise RuntimeError(
            f"{DOCKER_REGISTRY_BIN} missing: run scripts/install-e2e-deps.sh (docker-registry)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    username, password = "e2e-user", "e2e-" + os.urandom(8).hex()
    (workdir / "htpasswd").write_text(_htpasswd_line(username, password) + "\n")
    daemon, port = _start_distribution(workdir)
    try:
        url = f"http://127.0.0.1:{port}"
        yield RegistryTarget("distribution", f"127.0.0.1:{port}", url, tenant, username, password)
    finally:
        daemon.stop()
        remove_tree(workdir / "data")


def _registry_ready(url: str, port: int) -> bool:
    return tcp_ready("127.0.0.1", port) and (
        requests.get(f"{url}/v2/", timeout=2).status_code == 401
    )


def _start_distribution(workdir: Path) -> tuple[Daemon, int]:
    """Start docker-registry on a free port; retry if another process grabbed the port."""
    for attempt in range(3):
        port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": os.urandom(16).hex()},
            "auth": {"htpasswd": {"realm": "portside-e2e", "path": str(workdir / "htpasswd")}},
        }
        # JSON is valid YAML.
        (workdir / "config.yml").write_text(json.dumps(config, indent=2))
        daemon = Daemon(
            "docker-registry",
            [DOCKER_REGISTRY_BIN, "serve", str(workdir / "config.yml")],
            workdir / "registry.log",
            cwd=workdir,
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            daemon.wait_ready(functools.partial(_registry_ready, url, port), timeout=30)
        except (RuntimeError, TimeoutError):
            daemon.stop()
            if attempt == 2 or "address already in use" not in daemon.log_tail():
                raise
            continue
        return daemon, port
    raise AssertionError("unreachable")


# -- dockerd ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerDaemon:
    cli: str
    socket: Path
    config_dir: Path  # DOCKER_CONFIG for the CLI

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["DOCKER_CONFIG"] = str(self.config_dir)
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_TLS_VERIFY", None)
        env.pop("DOCKER_CERT_PATH", None)
        return env

    def docker(
        self, *args: str | os.PathLike[str], timeout: float = 300, input_data: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return run([self.cli, *args], env=self.env(), timeout=timeout, input_data=input_data)


def docker_cli() -> str | None:
    """Prefer Debian's docker.io CLI (matching dockerd 20.10) over any other on PATH."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker")


@contextlib.contextmanager
def private_dockerd(workdir: Path) -> Iterator[DockerDaemon]:
    dockerd = shutil.which("dockerd")
    cli = docker_cli()
    if dockerd is None or cli is None:
        raise RuntimeError("dockerd/docker missing")
    workdir.mkdir(parents=True, exist_ok=True)
    data_root = workdir / "data"
    exec_root = workdir / "exec"
    sock = workdir / "docker.sock"
    config_file = workdir / "daemon.json"
    # dockerd would otherwise create /etc/docker/key.json (daemon ID key).
    config_file.write_text(json.dumps({"deprecated-key-path": str(workdir / "key.json")}) + "\n")
    # It also hard-codes /run/docker/plugins: run it with a private /run/docker.
    plugins_run = workdir / "run-docker"
    plugins_run.mkdir(exist_ok=True)
    SYSTEM_DOCKER_RUN.mkdir(mode=0o700, parents=True, exist_ok=True)
    cli_config = workdir / "cli-config"
    cli_config.mkdir(exist_ok=True)
    (cli_config / "config.json").write_text('{"auths": {}}\n')
    env = dict(os.environ)
    # Keep dockerd's managed containerd and its temp files private too.
    env["TMPDIR"] = str(workdir / "tmp")
    (workdir / "tmp").mkdir(exist_ok=True)
    for var in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT"):
        env.pop(var, None)
    daemon = Daemon(
        "dockerd",
        in_private_mounts(
            [(plugins_run, SYSTEM_DOCKER_RUN)],
            [
                dockerd,
                "--config-file",
                str(config_file),
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--data-root",
                str(data_root),
                "--exec-root",
                str(exec_root),
                "--pidfile",
                str(workdir / "dockerd.pid"),
                "-H",
                f"unix://{sock}",
            ],
        ),
        workdir / "dockerd.log",
        env=env,
    ).start()
    handle = DockerDaemon(cli, sock, cli_config)
    try:
        daemon.wait_ready(
            lambda: (
                unix_socket_ready(sock)
                and subprocess.run(
                    [cli, "version"], env=handle.env(), capture_output=True, timeout=10, check=False
                ).returncode
                == 0
            ),
            timeout=90,
        )
        yield handle
    finally:
        containerd_pid = _read_pid(exec_root / "containerd" / "containerd.pid")
        daemon.stop(timeout=30)
        if containerd_pid is not None and _is_our_containerd(containerd_pid, exec_root):
            kill_pid(containerd_pid)
        remove_tree(data_root)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_containerd(pid: int, exec_root: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "containerd" in cmdline and str(exec_root) in cmdline


# -- containerd ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Containerd:
    socket: Path

    def ctr(
        self, namespace: str, *args: str | os.PathLike[str], timeout: float = 300
    ) -> subprocess.CompletedProcess[bytes]:
        return run(["ctr", "--address", str(self.socket), "-n", namespace, *args], timeout=timeout)


@contextlib.contextmanager
def private_containerd(workdir: Path) -> Iterator[Containerd]:
    binary = shutil.which("containerd")
    if binary is None or shutil.which("ctr") is None:
        raise RuntimeError("containerd/ctr missing")
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "containerd.sock"
    root = workdir / "root"
    config = f"""version = 2
root = "{root}"
state = "{workdir / "state"}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{workdir / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
"""
    (workdir / "config.toml").write_text(config)
    env = dict(os.environ)
    env["TMPDIR"] = str(workdir / "tmp")
    (workdir / "tmp").mkdir(exist_ok=True)
    daemon = Daemon(
        "containerd",
        [binary, "--config", str(workdir / "config.toml"), "--log-level", "info"],
        workdir / "containerd.log",
        env=env,
    ).start()
    try:
        daemon.wait_ready(
            lambda: (
                unix_socket_ready(sock)
                and subprocess.run(
                    ["ctr", "--address", str(sock), "version"],
                    capture_output=True,
                    timeout=10,
                    check=False,
                ).returncode
                == 0
            ),
            timeout=60,
        )
        yield Containerd(sock)
    finally:
        daemon.stop()
        remove_tree(root)
