"""Starts the real local runtime (`portside serve`) in a subprocess for tests."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningRegistry:
    url: str
    host: str
    registry: str
    token: str
    aws_endpoint: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def username(self) -> str:
        return self.token

    @property
    def password(self) -> str:
        return self.token

    def _store(self):  # type: ignore[no-untyped-def]
        os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(name, "local")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        from chalicelib.adapters.dynamo import DynamoMetadataStore
        from chalicelib.adapters.dynamo_models import bind_table

        bind_table("portside", "us-east-1")
        return DynamoMetadataStore()

    def create_registry(self, name: str, account: str = "local") -> None:
        from chalicelib.registry.records import RegistryRecord

        self._store().put_registry(
            RegistryRecord(name=name, account_id=account, created_at=datetime.now(UTC))
        )

    def create_token(
        self, scopes: list[str], registries: list[str] | None = None, account: str = "local"
    ) -> str:
        from chalicelib.registry.auth import hash_token, new_token_secret
        from chalicelib.registry.records import TokenRecord

        secret = new_token_secret()
        self._store().put_token(
            TokenRecord(
                token_id=secrets.token_hex(8),
                token_hash=hash_token(secret),
                account_id=account,
                name="test",
                scopes=frozenset(scopes),
                registries=frozenset(registries) if registries is not None else None,
                created_at=datetime.now(UTC),
            )
        )
        return secret

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_registry(
    workdir: Path, registry: str = "e2e", extra_env: dict[str, str] | None = None
) -> Iterator[RunningRegistry]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    token = "pst_" + secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "PORT": str(port),
        "PORTSIDE_BOOTSTRAP_REGISTRY": registry,
        "PORTSIDE_BOOTSTRAP_TOKEN": token,
        "PYTHONUNBUFFERED": "1",
        # The names RunningRegistry's helpers use, whatever the test process inherited.
        "PORTSIDE_TABLE": "portside",
        "PORTSIDE_BUCKET": "portside-blobs",
        **(extra_env or {}),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    log_path = workdir / "portside.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "portside.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    endpoint = None
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"portside serve exited:\n{log_path.read_text()}")
            text = log_path.read_text(errors="replace")
            found = re.search(r"moto at (http://[0-9.:]+)", text)
            if found:
                endpoint = found.group(1)
                try:
                    requests.get(f"{url}/v2/", timeout=2)
                    break
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"portside serve did not start:\n{log_path.read_text()}")
        assert endpoint is not None
        yield RunningRegistry(
            url=url,
            host=f"127.0.0.1:{port}",
            registry=registry,
            token=token,
            aws_endpoint=endpoint,
            log_path=log_path,
            process=process,
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
