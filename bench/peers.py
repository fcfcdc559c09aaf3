"""The registries the bench compares, each a daemon of its own on a loopback port:

- ``moto``: one moto server process (the AWS stand-in both S3-backed registries share);
- ``portside``: ``portside serve --aws-endpoint-url`` against it;
- ``distribution-fs``: CNCF distribution 2.8 (Debian ``docker-registry``) on its filesystem,
  started by the e2e suite's ``distribution_registry``;
- ``distribution-s3``: the same binary with its S3 storage driver on the same moto.

Daemons are started and stopped through ``tests.e2e.procs.Daemon`` (own process group,
log file, stopped by process group id).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.e2e.daemons import (
    DOCKER_REGISTRY_BIN,
    RegistryTarget,
    _htpasswd_line,
    _registry_ready,
    distribution_registry,
)
from tests.e2e.procs import Daemon, free_port, remove_tree, tcp_ready

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TENANT = "bench"
FAKE_KEY, FAKE_SECRET = "benchkey", "benchsecret"


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[tuple[str, Daemon]]:
    """moto as its own process, with the DynamoDB write fixes the local runtime applies
    (portside/local/moto_fixes.py); yields its endpoint."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    daemon = Daemon(
        "moto_server",
        [str(VENV_BIN / "python"), "-m", "portside.local.moto_fixes", str(port)],
        workdir / "moto.log",
    ).start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        daemon.wait_ready(
            lambda: requests.get(f"{endpoint}/moto-api/", timeout=2).status_code < 500,
            timeout=60,
        )
        yield endpoint, daemon
    finally:
        daemon.stop()


def upload_host_env(endpoint: str, signing_key: str, port: int) -> dict[str, str]:
    """The environment of ``python -m portside.upload_host`` on ``endpoint`` (our own
    AWS_/PORTSIDE_ settings left out), listening on ``port``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTSIDE_"))}
    return {
        **inherited,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PORTSIDE_SIGNING_KEY": signing_key,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_SECRET,
    )
    s3.create_bucket(Bucket=bucket)


@contextlib.contextmanager
def portside(
    workdir: Path, endpoint: str, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[RegistryTarget, Daemon]]:
    """``portside serve --aws-endpoint-url``: moto's memory is not in this process."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = "pst_" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTSIDE_", "PORT"))}
    env.update(
        {
            "PORTSIDE_BOOTSTRAP_REGISTRY": TENANT,
            "PORTSIDE_BOOTSTRAP_TOKEN": token,
            "PORTSIDE_SIGNING_KEY": secrets.token_urlsafe(32),
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    daemon = Daemon(
        "portside",
        [
            str(VENV_BIN / "portside"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--aws-endpoint-url",
            endpoint,
            "--registry",
            TENANT,
            "--token",
            token,
        ],
        workdir / "portside.log",
        env=env,
        cwd=ROOT,
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        daemon.wait_ready(
            lambda: (
                tcp_ready("127.0.0.1", port)
                and requests.get(f"{url}/v2/", timeout=2).status_code == 401
            ),
            timeout=90,
        )
        yield RegistryTarget("portside", f"127.0.0.1:{port}", url, TENANT, token, token), daemon
    finally:
        daemon.stop()


@contextlib.contextmanager
def distribution_fs(workdir: Path) -> Iterator[RegistryTarget]:
    with distribution_registry(workdir, tenant=TENANT) as target:
        yield target


@contextlib.contextmanager
def distribution_s3(workdir: Path, endpoint: str, bucket: str) -> Iterator[RegistryTarget]:
    """distribution 2.8 with its ``s3`` driver on moto (path style: ``regionendpoint`` set)."""
    workdir.mkdir(parents=True, exist_ok=True)
    create_bucket(endpoint, bucket)
    username, password = "bench-user", "bench-" + secrets.token_hex(8)
    (workdir / "htpasswd").write_text(_htpasswd_line(username, password) + "\n")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "formatter": "text"},
        "storage": {
            "s3": {
                "accesskey": FAKE_KEY,
                "secretkey": FAKE_SECRET,
                "region": "us-east-1",
                "regionendpoint": endpoint,
                "bucket": bucket,
                "secure": False,
                "v4auth": True,
                "rootdirectory": "/distribution",
            },
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": "portside-bench", "path": str(workdir / "htpasswd")}},
    }
    (workdir / "config.yml").write_text(json.dumps(config, indent=2))
    daemon = Daemon(
        "docker-registry-s3",
        [DOCKER_REGISTRY_BIN, "serve", str(workdir / "config.yml")],
        workdir / "registry.log",
        # The AWS SDK in distribution panics on AWS_CA_BUNDLE with its custom transport.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        cwd=workdir,
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        daemon.wait_ready(functools.partial(_registry_ready, url, port), timeout=60)
        yield RegistryTarget("distribution", f"127.0.0.1:{port}", url, TENANT, username, password)
    finally:
        daemon.stop()
        remove_tree(workdir / "data")
