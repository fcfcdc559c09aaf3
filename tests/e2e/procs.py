"""Process helpers for the e2e suite: run client commands, supervise private daemons."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 300.0

ACTIVE_DAEMONS: list[Daemon] = []
# Other logs worth showing when a test fails: (title, path).
WATCHED_LOGS: list[tuple[str, Path]] = []


class CommandError(AssertionError):
    """A client command failed; the message carries its output."""


@dataclass
class CommandLog:
    """Appends every command with its output to a file in the session tmp dir."""

    path: Path

    def write(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8", errors="replace") as f:
            f.write(text)


_command_log: CommandLog | None = None


def set_command_log(log: CommandLog | None) -> None:
    global _command_log
    _command_log = log


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    input_data: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion, capturing output; raise CommandError on failure."""
    args = [os.fspath(a) for a in argv]
    cmdline = shlex.join(args)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            env=dict(env) if env is not None else None,
            input=input_data,
            stdin=None if input_data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            f"command timed out after {timeout}s: {cmdline}\n"
            f"--- stdout ---\n{_tail(exc.stdout)}\n--- stderr ---\n{_tail(exc.stderr)}"
        ) from exc
    elapsed = time.monotonic() - started
    if _command_log is not None:
        _command_log.write(
            f"$ {cmdline}\n# rc={proc.returncode} in {elapsed:.1f}s\n"
            f"{_tail(proc.stdout, 4000)}{_tail(proc.stderr, 8000)}\n"
        )
    if check and proc.returncode != 0:
        raise CommandError(
            f"command failed (rc={proc.returncode}): {cmdline}\n"
            f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
        )
    return proc


def _tail(data: bytes | str | None, limit: int = 6000) -> str:
    if data is None:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else "...\n" + text[-limit:]


def in_private_mounts(binds: Sequence[tuple[Path, Path]], argv: Sequence[str]) -> list[str]:
    """Wrap ``argv`` to run in a private mount namespace with ``(source, target)`` bind mounts.

    Used to give tools that hard-code system paths (containers/image's blob-info cache,
    dockerd's plugin dir) private copies of them. Each target must exist; the caller creates
    it (empty) if needed. Nothing is written to the real target.
    """
    script = " && ".join(f'mount --bind "${2 * i + 1}" "${2 * i + 2}"' for i in range(len(binds)))
    script += f' && shift {2 * len(binds)} && exec "$@"'
    args = [str(p) for pair in binds for p in pair]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        script,
        "sh",
        *args,
        *argv,
    ]


def tail_file(path: Path, lines: int = 60) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(content[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], str | None] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``predicate`` until true; ``alive`` returns an error string once the daemon died."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if alive is not None and (err := alive()) is not None:
            raise RuntimeError(f"{what}: {err}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tcp_ready(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def unix_socket_ready(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        s.connect(str(path))
        return True


@dataclass
class Daemon:
    """A background process in its own session (process group), logging to a file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Daemon:
        ACTIVE_DAEMONS.append(self)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            log.write(f"$ {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def died(self) -> str | None:
        """None while running, else a description including the log tail."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}"

    def log_tail(self, lines: int = 60) -> str:
        return f"--- last lines of {self.log_path} ---\n{tail_file(self.log_path, lines)}"

    def wait_ready(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        try:
            wait_until(predicate, timeout=timeout, what=f"{self.name} to start", alive=self.died)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from exc

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the daemon's process group, then SIGKILL whatever is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # Children (e.g. dockerd's managed containerd) may outlive the leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self in ACTIVE_DAEMONS:
            ACTIVE_DAEMONS.remove(self)


def kill_pid(pid: int, timeout: float = 10.0) -> None:
    """Terminate one process we started indirectly (e.g. dockerd's managed containerd)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (so we never rm -rf through a mount)."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mnt = line.split()[4]
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(mnt)
    return found


def remove_tree(path: Path) -> None:
    """Delete a daemon's bulky state dir after use, unless something is mounted inside."""
    if path.exists() and not mounts_under(path):
        shutil.rmtree(path, ignore_errors=True)
