"""The registry with a separate upload host, as deployed: docker pushes through it.

Three processes share one moto (as the Lambdas and the Fargate upload host share S3 and
DynamoDB): the registry (`portside serve --aws-endpoint-url`, with `PORTSIDE_UPLOAD_URL`
pointing at the upload host), the upload host (`python -m portside.upload_host`) and moto.
docker sends no credentials to another origin, so its PATCH to the upload host is authorized
by the signed capability in the Location alone; the layer is big enough for the multipart
path. Then docker pulls the image back.
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.server import RunningRegistry, start_registry

from .daemons import DockerDaemon
from .images import ImageFactory
from .procs import Daemon, free_port, run

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def _http_ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.ConnectionError:
        return False


@pytest.fixture
def split_registry(tmp_path: Path) -> Iterator[tuple[RunningRegistry, str]]:
    moto_port, upload_port = free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    upload_url = f"http://127.0.0.1:{upload_port}"
    key = secrets.token_urlsafe(32)
    moto = Daemon(
        "moto",
        [sys.executable, "-m", "portside.local.moto_fixes", str(moto_port)],
        tmp_path / "moto.log",
        cwd=ROOT,
    ).start()
    shared = {
        "PORTSIDE_SIGNING_KEY": key,
        "PORTSIDE_TABLE": "portside",
        "PORTSIDE_BUCKET": "portside-blobs",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTSIDE_"))}
    uploads = Daemon(
        "upload-host",
        [sys.executable, "-m", "portside.upload_host"],
        tmp_path / "upload-host.log",
        env={**env, **shared, "AWS_ENDPOINT_URL": moto_url, "PORT": str(upload_port)},
        cwd=ROOT,
    )
    try:
        moto.wait_ready(lambda: _http_ready(f"{moto_url}/moto-api/"), timeout=60)
        with start_registry(
            tmp_path / "registry",
            extra_env={
                **shared,
                "PORTSIDE_AWS_ENDPOINT_URL": moto_url,
                "PORTSIDE_UPLOAD_URL": upload_url,
            },
        ) as registry:
            uploads.start().wait_ready(lambda: _http_ready(f"{upload_url}/healthz"), timeout=60)
            yield registry, upload_url
    finally:
        uploads.stop()
        moto.stop()


def test_docker_pushes_through_a_separate_upload_host_and_pulls_back(
    split_registry: tuple[RunningRegistry, str],
    dockerd: DockerDaemon,
    factory: ImageFactory,
    workdir: Path,
) -> None:
    registry, upload_url = split_registry
    session = requests.Session()
    session.trust_env = False
    session.auth = (registry.token, registry.token)

    # Upload Locations point at the upload host and carry the capability.
    started = session.post(f"{registry.url}/v2/{registry.registry}/probe/blobs/uploads/")
    assert started.status_code == 202, started.text
    assert started.headers["Location"].startswith(f"{upload_url}/v2/")
    assert "_state=" in started.headers["Location"]
    # The upload host serves uploads only.
    assert requests.get(f"{upload_url}/v2/", timeout=10).status_code == 404

    name = f"split-{uuid.uuid4().hex[:8]}"
    layers = [factory.layer(f"{name}-big", {"big.bin": 12 * MIB}), *factory.small_layers(name, 2)]
    image = factory.image(name, layers)
    archive = factory.docker_archive(workdir / "image.tar", image, [f"portside-e2e/{name}:src"])
    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    env = {**dockerd.env(), "DOCKER_CONFIG": str(docker_config)}
    ref = f"{registry.host}/{registry.registry}/{name}:v1"

    def docker(*args: str, stdin: bytes | None = None) -> None:
        run([dockerd.cli, *args], env=env, timeout=600, input_data=stdin)

    docker(
        "login",
        registry.host,
        "-u",
        registry.token,
        "--password-stdin",
        stdin=registry.token.encode(),
    )
    docker("load", "--input", str(archive))
    docker("tag", f"portside-e2e/{name}:src", ref)
    docker("push", ref)

    image_id = "sha256:" + image.config_descriptor.hex
    docker("rmi", "--force", image_id)
    docker("pull", ref)
    inspected = run([dockerd.cli, "image", "inspect", "--format", "{{.Id}}", ref], env=env)
    assert inspected.stdout.decode().strip() == image_id
