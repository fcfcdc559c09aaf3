"""`portside push` into the lite configuration (no upload host), with real processes only.

One `portside serve` runs as the ``lite`` stage (``PORTSIDE_LOCAL_UPLOAD_HOST=off``): every
upload body goes through the local API Gateway and its 10 MB request limit, so a layer
larger than that can only arrive through the direct-upload extension (docs/direct-uploads.md),
whose parts go from the client straight to S3 (the runtime's moto). Direct uploads over
16 MiB are verified in the background (``PORTSIDE_DIRECT_INLINE_VERIFY_BYTES``), as the
``verify-direct-upload`` Lambda does on AWS.

What S3 saw is read back independently of the client: the bucket itself (boto3 at the
registry's moto endpoint) and the S3 server access log the local runtime writes for the
blob bucket into ``<bucket>-logs`` (flushed every second here).

The module skips on ``PORTSIDE_E2E_TARGET=distribution``: it needs Portside's local runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import pytest
import requests

from portside_edge.gateway_responses import API_PAYLOAD_LIMIT
from tests.support.server import RunningRegistry, start_registry

from .checks import assert_layout_blob, assert_registry_has_equivalent, layout_blob, layout_ref
from .clients import ContainersTools, RegistryApi, require_binaries
from .daemons import DockerDaemon, RegistryTarget
from .images import CHUNK, ImageFactory, Layer, file_digest
from .procs import WATCHED_LOGS, CommandError, remove_tree, run, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("PORTSIDE_E2E_TARGET", "portside").strip().lower() == "distribution",
        reason="needs Portside's local runtime (portside serve), not the reference registry",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
HUGE_LAYER_FILE = 1 << 30  # (a): the layer's file; the tar adds its headers
RESUME_LAYER_FILE = 320 * MIB  # (b): 40 parts, so that a push can be caught half-way
CORRUPT_LAYER_FILE = 40 * MIB  # (c)
INLINE_VERIFY_BYTES = 16 * MIB  # larger direct uploads are verified in the background
BLOB_BUCKET = "portside-blobs"
LOG_BUCKET = "portside-blobs-logs"
S3_LOG_PREFIX = "s3-access/"
# One S3 server access log line: owner, bucket, [time], remote IP, requester, request id,
# operation, key, "request line", status, ...
S3_LOG_LINE = re.compile(
    r"^\S+ (?P<bucket>\S+) \[[^\]]*\] \S+ \S+ \S+ (?P<operation>\S+) (?P<key>\S+) "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) '
)


# ---------------------------------------------------------------- the lite registry


@dataclass
class Lite:
    """The lite registry, and clients that look at it from outside `portside push`."""

    running: RunningRegistry
    http: requests.Session
    s3: Any

    @property
    def target(self) -> RegistryTarget:
        r = self.running
        return RegistryTarget("portside", r.host, r.url, r.registry, r.token, r.token)

    def name(self, repository: str) -> str:
        return f"{self.running.registry}/{repository}"

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.running.host}/{self.name(repository)}:{tag}"

    def blob_status(self, repository: str, digest: str) -> int:
        url = f"{self.running.url}/v2/{self.name(repository)}/blobs/{digest}"
        return self.http.head(url, timeout=30).status_code

    def upload_status(self, location: str) -> dict[str, Any]:
        answer = self.http.get(location, timeout=30)
        assert answer.status_code == 200, (location, answer.status_code, answer.text)
        body: dict[str, Any] = answer.json()
        return body

    def bucket_keys(self) -> set[str]:
        keys: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BLOB_BUCKET):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def multipart_uploads(self) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = self.s3.list_multipart_uploads(Bucket=BLOB_BUCKET).get(
            "Uploads", []
        )
        return uploads

    def log_lines(self) -> list[str]:
        return self.running.log_path.read_text(errors="replace").splitlines()


@dataclass(frozen=True)
class S3Request:
    """One line of the blob bucket's S3 server access log."""

    operation: str  # REST.PUT.PART, REST.GET.OBJECT, ...
    key: str
    status: int
    query: dict[str, str]


class S3AccessLog:
    """Reads the log objects the local runtime delivers (each object once: they never change)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self._seen: dict[str, list[S3Request]] = {}

    def requests(self) -> list[S3Request]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=LOG_BUCKET, Prefix=S3_LOG_PREFIX):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key not in self._seen:
                    body = self.s3.get_object(Bucket=LOG_BUCKET, Key=key)["Body"].read()
                    self._seen[key] = _parse_s3_log(body.decode("utf-8", "replace"))
        return [request for key in sorted(self._seen) for request in self._seen[key]]

    def for_upload(self, upload_id: str) -> list[S3Request]:
        """Requests on the object a direct upload assembles its parts into."""
        suffix = f"/blobs/uploads/{upload_id}/data"
        return [r for r in self.requests() if r.key.endswith(suffix)]


def _parse_s3_log(text: str) -> list[S3Request]:
    found = []
    for line in text.splitlines():
        match = S3_LOG_LINE.match(line)
        if match is None or match.group("bucket") != BLOB_BUCKET:
            continue
        target = match.group("request").split(" ")[1] if " " in match.group("request") else ""
        found.append(
            S3Request(
                match.group("operation"),
                unquote(match.group("key")),
                int(match.group("status")),
                dict(parse_qsl(urlsplit(target).query)),
            )
        )
    return found


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lite]:
    workdir = tmp_path_factory.mktemp("lite-registry")
    env = {
        "PORTSIDE_LOCAL_UPLOAD_HOST": "off",
        "PORTSIDE_DIRECT_INLINE_VERIFY_BYTES": str(INLINE_VERIFY_BYTES),
        "PORTSIDE_LOCAL_LOG_FLUSH_SECONDS": "1",
        "PORTSIDE_LOG_BUCKET": LOG_BUCKET,
    }
    with start_registry(workdir, extra_env=env) as running:
        watched = ("portside serve (lite) log", running.log_path)
        WATCHED_LOGS.append(watched)
        http = requests.Session()
        http.trust_env = False
        http.auth = (running.token, running.token)
        s3 = boto3.client(
            "s3",
            endpoint_url=running.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        try:
            yield Lite(running, http, s3)
        finally:
            WATCHED_LOGS.remove(watched)


@pytest.fixture(scope="module")
def images(
    tmp_path_factory: pytest.TempPathFactory, factory: ImageFactory
) -> Iterator[ImageFactory]:
    """This module's big layers (the session's seed), deleted after the module."""
    workdir = tmp_path_factory.mktemp("push-images")
    yield ImageFactory(workdir, factory.seed)
    remove_tree(workdir)


@pytest.fixture(scope="module")
def huge_layer(images: ImageFactory) -> Layer:
    """Just over 1 GiB, uncompressed (a tar of one file of incompressible bytes)."""
    return images.layer("huge", {"huge/random.bin": HUGE_LAYER_FILE}, compress=False)


# ---------------------------------------------------------------- running the CLI


def _cli_env(lite: Lite, cache: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PORTSIDE_API_URL", "PORTSIDE_TOKEN")}
    env.update(
        {
            "XDG_CACHE_HOME": str(cache),  # the direct uploads' resume state
            "PORTSIDE_CONFIG": str(cache / "no-config.json"),
            "PORTSIDE_REGISTRY_PASSWORD": lite.running.token,
            **(extra or {}),
        }
    )
    return env


def _push_argv(lite: Lite, source: str, ref: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "portside.cli",
        "--output",
        "json",
        "push",
        "--username",
        lite.running.token,
        source,
        ref,
    ]


def portside_push(
    lite: Lite,
    source: str,
    ref: str,
    cache: Path,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return run(
        _push_argv(lite, source, ref),
        env=_cli_env(lite, cache, env),
        cwd=ROOT,
        check=check,
        timeout=600,
    )


def push_result(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def same_bytes(a: Path, b: Path) -> bool:
    with a.open("rb") as left, b.open("rb") as right:
        while True:
            chunk = left.read(CHUNK)
            if chunk != right.read(CHUNK):
                return False
            if not chunk:
                return True


# ---------------------------------------------------------------- (a) 1 GiB round trip


def test_portside_push_of_a_1_gib_layer_into_lite_pulls_back_identical_with_skopeo(
    lite: Lite,
    images: ImageFactory,
    huge_layer: Layer,
    containers: ContainersTools,
    workdir: Path,
) -> None:
    require_binaries("skopeo")
    image = images.image("lite-huge", [huge_layer])
    source = images.oci_layout(workdir / "src", [("v1", image)])
    ref = lite.ref("push/huge", "v1")

    result = push_result(portside_push(lite, str(source), ref, workdir / "cache"))
    assert result["digest"] == image.digest
    assert result["blobs"] == {
        image.config_descriptor.digest: "uploaded",
        huge_layer.descriptor.digest: "uploaded",
    }
    assert result["sent_bytes"] >= huge_layer.descriptor.size

    pulled = workdir / "pulled"
    containers.skopeo(
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        lite.target.creds,
        f"docker://{ref}",
        f"oci:{pulled}:v1",
        timeout=600,
    )
    assert layout_ref(pulled, "v1")["digest"] == image.digest
    assert_layout_blob(pulled, image.digest, image.manifest)
    assert_layout_blob(pulled, image.config_descriptor.digest, image.config)
    layer = huge_layer.descriptor.digest
    copy = layout_blob(pulled, layer)
    original = images.store.path(layer)
    assert copy.stat().st_size == original.stat().st_size == huge_layer.descriptor.size
    assert file_digest(copy) == layer
    assert same_bytes(copy, original), "the pulled layer's bytes differ from the pushed ones"


# ---------------------------------------------------------------- (b) resume


def _find_upload(lite: Lite, state_dir: Path, digest: str, checked: set[str]) -> str | None:
    """The location of the direct upload of ``digest`` in the client's resume state
    (``checked``: the state files already found to be another blob's)."""
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        if path.name in checked:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, AssertionError):
            location = str(json.loads(path.read_text())["location"])
            if lite.upload_status(location).get("digest") == digest:
                return location
            checked.add(path.name)
    return None


def test_interrupted_portside_push_resumes_without_resending_uploaded_parts(
    lite: Lite, images: ImageFactory, workdir: Path
) -> None:
    layer = images.layer("resume", {"resume/random.bin": RESUME_LAYER_FILE}, compress=False)
    image = images.image("lite-resume", [layer])
    source = images.oci_layout(workdir / "src", [("v1", image)])
    repository = "push/resume"
    ref = lite.ref(repository, "v1")
    cache = workdir / "cache"
    state_dir = cache / "portside" / "direct-uploads"
    digest = layer.descriptor.digest

    log = (workdir / "first-push.log").open("wb")
    first = subprocess.Popen(
        _push_argv(lite, str(source), ref),
        env=_cli_env(lite, cache),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def still_running() -> str | None:
            if first.poll() is None:
                return None
            return f"the first push ended (rc={first.returncode}) before it could be interrupted"

        found: dict[str, str] = {}
        checked: set[str] = set()

        def upload_started() -> bool:
            location = _find_upload(lite, state_dir, digest, checked)
            if location is not None:
                found["location"] = location
            return location is not None

        wait_until(
            upload_started,
            timeout=120,
            interval=0.02,
            what="the direct upload",
            alive=still_running,
        )
        location = found["location"]

        def some_parts_held() -> bool:
            return len(lite.upload_status(location).get("uploaded") or []) >= 2

        wait_until(
            some_parts_held,
            timeout=120,
            interval=0.02,
            what="parts of the layer in S3",
            alive=still_running,
        )
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        log.close()
    assert first.returncode == -signal.SIGKILL

    status = lite.upload_status(location)
    assert status["status"] == "uploading", status
    part_count, part_size = int(status["part_count"]), int(status["part_size"])
    held = {int(part["number"]): int(part["size"]) for part in status["uploaded"]}
    assert 0 < len(held) < part_count, f"interrupted with {len(held)} of {part_count} parts held"
    assert all(size == part_size for number, size in held.items() if number < part_count)
    upload_id = str(status["upload_id"])
    # The resumed push asks for fresh part URLs: signed (X-Amz-Date) from the next second on,
    # when the first push's were signed before it. S3's log tells the two pushes apart so.
    resumed_from = _next_second()

    result = push_result(portside_push(lite, str(source), ref, cache))
    assert result["digest"] == image.digest
    config = image.config_descriptor
    assert result["blobs"][digest] == "uploaded"
    # The config (402 B) was most likely committed before the interruption; if not, it is
    # sent now.
    config_sent = config.size if result["blobs"][config.digest] == "uploaded" else 0
    sent = int(result["sent_bytes"])
    print(f"interrupted with {len(held)} of {part_count} parts in S3; the resume sent {sent} B")
    assert 0 < sent <= layer.descriptor.size - sum(held.values()) + config_sent, (sent, held)
    left = [json.loads(path.read_text()) for path in state_dir.glob("*.json")]
    assert upload_id not in {state.get("upload_id") for state in left}, left
    assert_registry_has_equivalent(RegistryApi(lite.target), repository, "v1", image)

    # S3's side, independent of the client's count: the resumed push completed the same
    # upload and put none of the parts S3 held before it.
    access_log = S3AccessLog(lite.s3)

    def verified() -> bool:
        return any(
            r.operation == "REST.GET.OBJECT" and r.status == 200
            for r in access_log.for_upload(upload_id)
        )

    # The verification reads the object after every part was put: its line comes last.
    wait_until(verified, timeout=60, what="the verification's read in the S3 access log")
    parts = [
        r
        for r in access_log.for_upload(upload_id)
        if r.operation == "REST.PUT.PART" and r.status == 200
    ]
    resumed = sorted(
        int(r.query["partNumber"]) for r in parts if r.query["X-Amz-Date"] >= resumed_from
    )
    assert resumed, "the resumed push put no part of the upload it resumed"
    assert not set(resumed) & set(held), f"parts S3 held were sent again: {resumed}"
    # ... and the client counted at least what S3 received from it.
    last = layer.descriptor.size - (part_count - 1) * part_size
    received = sum(last if n == part_count else part_size for n in resumed)
    assert received <= sent - config_sent, (received, sent)


def _next_second() -> str:
    """Wait for the clock's next second; its X-Amz-Date form (UTC)."""
    now = int(time.time())
    wait_until(lambda: time.time() >= now + 1, timeout=5, interval=0.01, what="the next second")
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + 1))


# ---------------------------------------------------------------- (c) corruption


def _corrupt_in_place(path: Path) -> None:
    """Flip bytes in the middle of ``path`` (same size). The layout's blob is a hard link
    into the image store: write a private copy first, so only this layout is corrupted."""
    private = path.with_name(path.name + ".private")
    shutil.copyfile(path, private)
    os.replace(private, path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        chunk = f.read(64)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))


def _verification_outcomes(lite: Lite, since: int) -> dict[str, str]:
    """upload id -> status of the background verifications logged after line ``since``."""
    outcomes = {}
    for line in lite.log_lines()[since:]:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("message") == "direct upload verified":
                outcomes[str(record["upload"])] = str(record["status"])
    return outcomes


def test_corrupted_layer_is_refused_with_digest_invalid_and_leaves_nothing_in_s3(
    lite: Lite, images: ImageFactory, workdir: Path
) -> None:
    layer = images.layer("corrupt", {"corrupt/random.bin": CORRUPT_LAYER_FILE}, compress=False)
    assert layer.descriptor.size > INLINE_VERIFY_BYTES  # the background verification's path
    image = images.image("lite-corrupt", [layer])
    source = images.oci_layout(workdir / "src", [("v1", image)])
    repository = "push/corrupt"
    digest = layer.descriptor.digest
    blob = layout_blob(source, digest)
    _corrupt_in_place(blob)
    assert blob.stat().st_size == layer.descriptor.size
    assert file_digest(blob) != digest
    assert file_digest(images.store.path(digest)) == digest  # the store kept the original

    log_start = len(lite.log_lines())
    open_before = {u["UploadId"] for u in lite.multipart_uploads()}
    failed = portside_push(
        lite, str(source), lite.ref(repository, "v1"), workdir / "cache", check=False
    )
    message = failed.stderr.decode(errors="replace")
    assert failed.returncode != 0, failed.stdout
    assert "DIGEST_INVALID" in message, message

    assert lite.blob_status(repository, digest) == 404
    manifest = lite.http.head(
        f"{lite.running.url}/v2/{lite.name(repository)}/manifests/v1", timeout=30
    )
    assert manifest.status_code == 404

    # The upload was verified in the background and failed: the one failure logged since.
    outcomes = _verification_outcomes(lite, log_start)
    failures = [upload for upload, outcome in outcomes.items() if outcome == "failed"]
    assert len(failures) == 1, outcomes
    upload_id = failures[0]
    status = lite.upload_status(
        f"{lite.running.url}/v2/{lite.name(repository)}/_portside/direct-uploads/{upload_id}"
    )
    assert (status["status"], status["error"]["code"]) == ("failed", "DIGEST_INVALID"), status
    # Nothing of it is left in S3: no object under the upload's prefix, no open multipart
    # upload (none at all was opened and left since the push began).
    marker = f"/blobs/uploads/{upload_id}/"
    assert not [key for key in lite.bucket_keys() if marker in key]
    open_after = lite.multipart_uploads()
    assert not [u for u in open_after if marker in u["Key"]]
    assert {u["UploadId"] for u in open_after} <= open_before, open_after

    # S3 did hold the assembled object once: the registry completed it, then deleted it.
    access_log = S3AccessLog(lite.s3)

    def deleted() -> bool:
        return any(
            r.operation == "REST.DELETE.OBJECT" and r.status == 204
            for r in access_log.for_upload(upload_id)
        )

    wait_until(deleted, timeout=60, what="the object's deletion in the S3 access log")
    operations = {(r.operation, r.status) for r in access_log.for_upload(upload_id)}
    assert ("REST.PUT.PART", 200) in operations
    assert ("REST.POST.UPLOAD", 200) in operations  # CompleteMultipartUpload


# ---------------------------------------------------------------- (d) the lite limit


def test_lite_refuses_docker_push_of_a_100_mib_layer_but_portside_push_succeeds(
    lite: Lite,
    dockerd: DockerDaemon,
    factory: ImageFactory,
    big_layer: Layer,
    workdir: Path,
) -> None:
    assert big_layer.descriptor.size > API_PAYLOAD_LIMIT  # API Gateway's request limit
    name = f"lite-docker-{uuid.uuid4().hex[:8]}"
    image = factory.image(name, [big_layer])
    local_tag = f"portside-e2e/{name}:src"
    archive = factory.docker_archive(workdir / "image.tar", image, [local_tag])
    docker_config = workdir / "docker-config"
    docker_config.mkdir()
    env = {**dockerd.env(), "DOCKER_CONFIG": str(docker_config)}
    repository = "push/docker"
    ref = lite.ref(repository, "v1")
    image_id = "sha256:" + image.config_descriptor.hex

    def docker(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run([dockerd.cli, *args], env=env, timeout=600, input_data=stdin)

    token = lite.running.token
    docker("login", lite.running.host, "-u", token, "--password-stdin", stdin=token.encode())
    docker("load", "--input", str(archive))
    try:
        docker("tag", local_tag, ref)
        with pytest.raises(CommandError) as refused:
            docker("push", ref)
        # API Gateway's own answer (not JSON: docker says it cannot parse it).
        assert "HTTP 413" in str(refused.value), refused.value
        manifest = lite.http.head(
            f"{lite.running.url}/v2/{lite.name(repository)}/manifests/v1", timeout=30
        )
        assert manifest.status_code == 404

        # The same image, from the same daemon: `docker save`, then direct uploads.
        path = f"{Path(dockerd.cli).parent}{os.pathsep}{env.get('PATH', '')}"
        pushed = portside_push(
            lite,
            f"docker-daemon:{local_tag}",
            ref,
            workdir / "cache",
            env={"DOCKER_HOST": env["DOCKER_HOST"], "PATH": path},
        )
        result = push_result(pushed)
        assert result["blobs"][image.config_descriptor.digest] in ("uploaded", "exists")
        # docker save wrote the layer uncompressed: its digest is the diff id.
        assert result["blobs"][big_layer.diff_id] == "uploaded"
        assert result["sent_bytes"] >= big_layer.tar_path.stat().st_size
        assert_registry_has_equivalent(RegistryApi(lite.target), repository, "v1", image)
    finally:
        run([dockerd.cli, "rmi", "--force", image_id], env=env, check=False)
