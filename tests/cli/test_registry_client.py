"""The distribution client and the upload strategies against fake HTTP servers: the token
dance, redirects without the registry's credentials, a corrupted blob, strategy selection,
and Portside direct uploads (docs: /tmp/q/direct-contract.md) with resume."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from portside.clientlib.oci import DigestMismatch, RegistryError, parse_reference, uploaders
from portside.clientlib.oci.model import Blob
from portside.clientlib.oci.reference import is_loopback_host
from portside.clientlib.oci.registry import Credentials, RegistryClient, parse_challenge
from portside.clientlib.oci.transfer import pull
from portside.clientlib.oci.uploaders import (
    DirectUploader,
    StandardUploader,
    select_uploader,
)

from .conftest import Cli
from .fake_http import read_body, serve
from .images import gzip_layer, layout_blobs, oci_index_layout, sha256

BASIC = "Basic " + base64.b64encode(b"alice:secret").decode()
CREDS = Credentials("alice", "secret")


def _respond(start: Any, status: str, body: Any = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start(status, [("Content-Length", str(len(data))), *(headers or {}).items()])
    return [data]


# ---------------------------------------------------------------- references


def test_parse_reference() -> None:
    ref = parse_reference("127.0.0.1:5000/reg/app/sub:v1")
    assert (ref.host, ref.name, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "reg/app/sub",
        "v1",
        None,
    )
    digest = "sha256:" + "a" * 64
    ref = parse_reference(f"r.example.com/reg/app@{digest}")
    assert (ref.name, ref.tag, ref.reference) == ("reg/app", None, digest)
    assert parse_reference("h/reg/app").tag == "latest"
    with pytest.raises(Exception, match="invalid"):
        parse_reference("just-a-name")
    assert is_loopback_host("127.0.0.2:80") and is_loopback_host("localhost:5000")
    assert is_loopback_host("[::1]:5000") and not is_loopback_host("registry.example.com")
    assert parse_challenge(
        'Bearer realm="https://a/token",service="s",scope="repository:x:pull"'
    ) == (
        "bearer",
        {"realm": "https://a/token", "service": "s", "scope": "repository:x:pull"},
    )


# ------------------------------------------------------- pull: bearer, redirect, corruption


@dataclass
class FakePullRegistry:
    """A registry with Bearer auth whose blobs redirect to another host (``storage``)."""

    manifest: bytes
    blobs: dict[str, bytes]
    storage_url: str = ""
    extensions: str | None = None
    token_requests: list[str] = field(default_factory=list)
    storage_auth: list[str | None] = field(default_factory=list)

    def registry(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        auth = environ.get("HTTP_AUTHORIZATION")
        base = f"http://{environ['HTTP_HOST']}"
        extra = {"Portside-Extensions": self.extensions} if self.extensions else {}
        if path == "/token":
            assert auth == BASIC
            self.token_requests.append(environ.get("QUERY_STRING", ""))
            return _respond(start, "200 OK", {"token": "jwt-1", "expires_in": 300})
        if auth != "Bearer jwt-1":
            challenge = f'Bearer realm="{base}/token",service="fake"'
            return _respond(
                start, "401 Unauthorized", {"errors": []}, {"WWW-Authenticate": challenge, **extra}
            )
        if path == "/v2/":
            return _respond(start, "200 OK", {}, extra)
        if path.startswith("/v2/reg/app/manifests/"):
            return _respond(
                start,
                "200 OK",
                self.manifest,
                {
                    "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                    "Docker-Content-Digest": sha256(self.manifest),
                },
            )
        found = re.match(r"^/v2/reg/app/blobs/(sha256:[a-f0-9]+)$", path)
        if found:
            location = f"{self.storage_url}/objects/{found.group(1)}?X-Amz-Signature=x"
            return _respond(start, "307 Temporary Redirect", b"", {"Location": location})
        return _respond(start, "404 Not Found", {"errors": [{"code": "NOT_FOUND"}]})

    def storage(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        self.storage_auth.append(environ.get("HTTP_AUTHORIZATION"))
        digest = environ["PATH_INFO"].rsplit("/", 1)[1]
        return _respond(start, "200 OK", self.blobs[digest])


def _image(layers: list[bytes]) -> tuple[bytes, dict[str, bytes]]:
    config = b'{"architecture":"amd64","os":"linux"}'
    blobs = {sha256(b): b for b in [config, *layers]}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(x),
                    "size": len(x),
                }
                for x in layers
            ],
        }
    ).encode()
    return manifest, blobs


@pytest.fixture
def fake_pull() -> Iterator[tuple[FakePullRegistry, str]]:
    manifest, blobs = _image([os.urandom(5000), os.urandom(70_000)])
    fake = FakePullRegistry(manifest, blobs)
    with serve(fake.registry) as registry_url, serve(fake.storage) as storage_url:
        fake.storage_url = storage_url
        yield fake, registry_url.removeprefix("http://")


def test_pull_follows_redirects_without_the_registry_credentials(
    fake_pull: tuple[FakePullRegistry, str], tmp_path: Path
) -> None:
    fake, host = fake_pull
    client = RegistryClient(host, CREDS)
    result = pull(client, parse_reference(f"{host}/reg/app:v1"), tmp_path / "out")
    assert result.digest == sha256(fake.manifest)
    for digest, data in fake.blobs.items():
        assert (tmp_path / "out" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data
    # One token for the scope, reused; S3 never saw the registry's Authorization header.
    assert fake.token_requests == ["service=fake&scope=repository%3Areg%2Fapp%3Apull"]
    assert fake.storage_auth == [None, None, None]


def test_pull_detects_a_corrupted_blob_and_leaves_nothing(
    fake_pull: tuple[FakePullRegistry, str], tmp_path: Path
) -> None:
    fake, host = fake_pull
    victim = max(fake.blobs, key=lambda d: len(fake.blobs[d]))
    fake.blobs[victim] = fake.blobs[victim][:-1] + b"X"
    dest = tmp_path / "out"
    with pytest.raises(DigestMismatch, match=victim):
        pull(RegistryClient(host, CREDS), parse_reference(f"{host}/reg/app:v1"), dest)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_pull_detects_a_manifest_that_does_not_match_its_digest(
    fake_pull: tuple[FakePullRegistry, str], tmp_path: Path
) -> None:
    _, host = fake_pull
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch):
        pull(
            RegistryClient(host, CREDS), parse_reference(f"{host}/reg/app@{wrong}"), tmp_path / "o"
        )
    assert list(tmp_path.iterdir()) == []


def test_strategy_selection_falls_back_without_the_extension_header(
    fake_pull: tuple[FakePullRegistry, str],
) -> None:
    fake, host = fake_pull
    assert isinstance(select_uploader(RegistryClient(host, CREDS)), StandardUploader)
    fake.extensions = "direct-uploads/v1"
    # Advertised on the 401 answer of GET /v2/ as well.
    assert isinstance(select_uploader(RegistryClient(host)), DirectUploader)
    assert isinstance(select_uploader(RegistryClient(host), "standard"), StandardUploader)
    fake.extensions = "something-else/v2"
    assert isinstance(select_uploader(RegistryClient(host, CREDS)), StandardUploader)


# ---------------------------------------------------------------- direct uploads


@dataclass
class FakeDirect:
    """The direct-uploads/v1 contract with HTTP Basic auth, and an S3 stand-in for parts."""

    part_size: int
    first_urls: int = 100
    # What the 202 answer and the status route claim, when not the truth (None: the truth).
    claimed_part_size: Any = None
    claimed_part_count: Any = None
    fail_parts: dict[int, int] = field(default_factory=dict)  # part -> failures left
    verify_polls: int = 0  # "verifying" answers before "committed"
    lose_first_verification: bool = False  # the background verification never runs
    completions_while_verifying: int = 0
    existing: set[str] = field(default_factory=set)
    base: str = ""
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    committed: dict[str, bytes] = field(default_factory=dict)
    part_puts: list[int] = field(default_factory=list)
    part_auth: list[str | None] = field(default_factory=list)
    parts_requests: list[list[int]] = field(default_factory=list)
    manifests: dict[str, bytes] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, upload_id: str, number: int) -> str:
        return f"{self.base}/s3/{upload_id}/{number}?X-Amz-Signature=sig"

    def status(self, upload: dict[str, Any]) -> dict[str, Any]:
        error = {"error": upload["error"]} if "error" in upload else {}
        return {
            **error,
            "status": upload["status"],
            "upload_id": upload["id"],
            "digest": upload["digest"],
            "size": upload["size"],
            "part_size": self._claimed(self.claimed_part_size, self.part_size),
            "part_count": self._claimed(self.claimed_part_count, upload["count"]),
            "uploaded": [
                {"number": n, "size": len(d), "etag": f'"e{n}"'}
                for n, d in sorted(upload["parts"].items())
            ],
        }

    def __call__(self, environ: dict[str, Any], start: Any) -> list[bytes]:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        if path.startswith("/s3/"):
            with self.lock:
                self.part_auth.append(environ.get("HTTP_AUTHORIZATION"))
                _, _, upload_id, number_text = path.split("/")
                number = int(number_text)
                self.part_puts.append(number)
                data = read_body(environ)
                if self.fail_parts.get(number, 0) > 0:
                    self.fail_parts[number] -= 1
                    return _respond(start, "500 Internal Server Error", b"<Error/>")
                self.uploads[upload_id]["parts"][number] = data
            return _respond(start, "200 OK", b"", {"ETag": f'"e{number}"'})
        extension = {"Portside-Extensions": "direct-uploads/v1"}
        if path == "/v2/" and environ.get("HTTP_AUTHORIZATION") != BASIC:
            challenge = {"WWW-Authenticate": 'Basic realm="fake"', **extension}
            return _respond(start, "401 Unauthorized", {"errors": []}, challenge)
        if environ.get("HTTP_AUTHORIZATION") != BASIC:
            return _respond(
                start,
                "401 Unauthorized",
                {"errors": [{"code": "UNAUTHORIZED"}]},
                {"WWW-Authenticate": 'Basic realm="fake"'},
            )
        blob = re.match(r"^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$", path)
        if blob and method == "HEAD":
            if blob.group(2) in self.committed:
                size = str(len(self.committed[blob.group(2)]))
                start("200 OK", [("Content-Length", size)])
                return [b""]
            return _respond(start, "404 Not Found", b"")
        manifest = re.match(r"^/v2/(.+)/manifests/([^/]+)$", path)
        if manifest and method == "PUT":
            data = read_body(environ)
            self.manifests[manifest.group(2)] = data
            return _respond(start, "201 Created", b"", {"Docker-Content-Digest": sha256(data)})
        found = re.match(r"^/v2/(.+)/_portside/direct-uploads(?:/([^/]+))?(?:/(\w+))?$", path)
        assert found, path
        name, upload_id, action = found.groups()
        body = json.loads(read_body(environ) or b"{}")
        if method == "POST" and upload_id is None:
            if body["digest"] in self.existing:
                return _respond(
                    start, "201 Created", {"status": "exists", "digest": body["digest"]}
                )
            upload_id = f"up{len(self.uploads) + 1}"
            count = max(1, -(-body["size"] // self.part_size))
            self.uploads[upload_id] = {
                "id": upload_id,
                "digest": body["digest"],
                "size": body["size"],
                "count": count,
                "parts": {},
                "status": "uploading",
                "polls": 0,
            }
            parts = [
                {"number": n, "url": self.url(upload_id, n)}
                for n in range(1, min(count, self.first_urls) + 1)
            ]
            return _respond(
                start,
                "202 Accepted",
                {
                    "status": "uploading",
                    "upload_id": upload_id,
                    "part_size": self._claimed(self.claimed_part_size, self.part_size),
                    "part_count": self._claimed(self.claimed_part_count, count),
                    "parts": parts,
                    "expires_at": "2099-01-01T00:00:00Z",
                },
                {"Location": f"/v2/{name}/_portside/direct-uploads/{upload_id}"},
            )
        upload = self.uploads.get(upload_id or "")
        if upload is None:
            return _respond(start, "404 Not Found", {"errors": [{"code": "BLOB_UPLOAD_UNKNOWN"}]})
        if method == "DELETE":
            self.deleted.append(upload["id"])
            del self.uploads[upload["id"]]
            return _respond(start, "204 No Content", b"")
        if method == "GET":
            if upload["status"] == "verifying" and not upload.get("lost"):
                upload["polls"] += 1
                if upload["polls"] > self.verify_polls:
                    self._verify(upload)
            return _respond(start, "200 OK", self.status(upload))
        if action == "parts":
            self.parts_requests.append(body["numbers"])
            parts = [{"number": n, "url": self.url(upload["id"], n)} for n in body["numbers"]]
            return _respond(start, "200 OK", {"parts": parts, "expires_at": "2099-01-01T00:00:00Z"})
        if action == "complete" and upload["status"] == "verifying":
            self.completions_while_verifying += 1
            upload["lost"] = False  # queued again
            return _respond(start, "202 Accepted", {"status": "verifying"})
        if action == "complete":
            numbers = [p["number"] for p in body["parts"]]
            if numbers != list(range(1, upload["count"] + 1)):
                return _respond(
                    start,
                    "400 Bad Request",
                    {"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": "parts"}]},
                )
            upload["status"] = "verifying"
            upload["lost"] = self.lose_first_verification
            if self.verify_polls or self.lose_first_verification:
                return _respond(start, "202 Accepted", {"status": "verifying"})
            self._verify(upload)
            if upload["status"] == "failed":
                return _respond(start, "400 Bad Request", {"errors": [upload["error"]]})
            return _respond(
                start, "201 Created", {"status": "committed", "digest": upload["digest"]}
            )
        raise AssertionError((method, path))

    @staticmethod
    def _claimed(claim: Any, truth: Any) -> Any:
        return truth if claim is None else claim

    def _verify(self, upload: dict[str, Any]) -> None:
        data = b"".join(upload["parts"][n] for n in sorted(upload["parts"]))
        if sha256(data) == upload["digest"] and len(data) == upload["size"]:
            upload["status"] = "committed"
            self.committed[upload["digest"]] = data
        else:
            upload["status"] = "failed"
            upload["error"] = {"code": "DIGEST_INVALID", "message": "digest mismatch"}


def _blob(data: bytes) -> Blob:
    return Blob(sha256(data), len(data), "application/octet-stream", lambda: io.BytesIO(data))


class Counter:
    def __init__(self) -> None:
        self.total = 0
        self.lock = threading.Lock()

    def __call__(self, count: int) -> None:
        with self.lock:
            self.total += count


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeDirect, RegistryClient]]:
    """Parts of 4 KiB, so the tests move KiB, not MiB: the client's S3 part minimum (5 MiB)
    is lowered for them (the fake S3 takes any size)."""
    monkeypatch.setattr(uploaders, "S3_MIN_PART_SIZE", 1024)
    fake = FakeDirect(part_size=4096)
    with serve(fake) as url:
        fake.base = url
        yield fake, RegistryClient(url.removeprefix("http://"), CREDS)


SCOPE = "repository:reg/app:pull,push"


def test_direct_upload_sends_parts_without_credentials_and_fetches_more_urls(
    direct: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = direct
    fake.first_urls = 2
    fake.verify_polls = 2
    data = os.urandom(4096 * 4 + 100)
    uploader = DirectUploader(client, tmp_path / "state", poll_interval=0.01)
    progress = Counter()
    assert uploader.upload("reg/app", _blob(data), SCOPE, progress) == "uploaded"
    assert fake.committed[sha256(data)] == data
    assert sorted(fake.part_puts) == [1, 2, 3, 4, 5]
    assert fake.part_auth == [None] * 5
    assert fake.parts_requests and all(n > 2 for batch in fake.parts_requests for n in batch)
    assert progress.total == len(data)
    assert list((tmp_path / "state").iterdir()) == []


def test_direct_upload_resumes_without_resending_finished_parts(
    direct: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = direct
    fake.fail_parts = {3: 2}  # both attempts of the first run fail
    data = os.urandom(4096 * 3 + 10)
    blob = _blob(data)
    state = tmp_path / "state"
    with pytest.raises(RegistryError, match="part 3"):
        DirectUploader(client, state, part_workers=2, poll_interval=0.01).upload(
            "reg/app", blob, SCOPE, Counter()
        )
    assert len(list(state.iterdir())) == 1
    first_run = list(fake.part_puts)
    assert sorted(set(first_run)) == [1, 2, 3, 4]
    # S3 holds part 2 with the wrong size (a torn write): it is sent again.
    [upload] = fake.uploads.values()
    upload["parts"][2] = upload["parts"][2][:10]
    fake.part_puts.clear()

    progress = Counter()
    again = DirectUploader(client, state, poll_interval=0.01)
    assert again.upload("reg/app", blob, SCOPE, progress) == "uploaded"
    assert sorted(fake.part_puts) == [2, 3]
    assert again.sent.total == 2 * 4096  # parts 1 and 4 were not sent again
    assert len(fake.uploads) == 1  # the same upload id, not a new one
    assert fake.committed[blob.digest] == data
    assert progress.total == len(data)
    assert list(state.iterdir()) == []


def test_a_verification_that_never_runs_is_started_again_by_a_repeated_completion(
    direct: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = direct
    fake.lose_first_verification = True
    data = os.urandom(4096 * 2)
    uploader = DirectUploader(
        client, tmp_path / "state", poll_interval=0.01, verify_timeout=10, recomplete_interval=0.2
    )
    assert uploader.upload("reg/app", _blob(data), SCOPE, Counter()) == "uploaded"
    assert fake.completions_while_verifying == 1
    assert fake.committed[sha256(data)] == data


def test_direct_upload_of_an_existing_blob_sends_nothing(
    direct: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = direct
    data = os.urandom(100)
    fake.existing.add(sha256(data))
    assert DirectUploader(client, tmp_path).upload("reg/app", _blob(data), SCOPE, Counter()) == (
        "exists"
    )
    assert fake.part_puts == []


def test_direct_upload_reports_a_failed_verification(
    direct: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = direct
    fake.verify_polls = 1
    data = os.urandom(5000)
    wrong = Blob(
        "sha256:" + hashlib.sha256(b"other").hexdigest(), len(data), "x", lambda: io.BytesIO(data)
    )
    with pytest.raises(RegistryError, match="DIGEST_INVALID"):
        DirectUploader(client, tmp_path, poll_interval=0.01).upload(
            "reg/app", wrong, SCOPE, Counter()
        )
    assert list(tmp_path.iterdir()) == []


def test_direct_upload_of_an_empty_blob(
    direct: tuple[FakeDirect, RegistryClient], tmp_path: Path
) -> None:
    fake, client = direct
    assert DirectUploader(client, tmp_path).upload("reg/app", _blob(b""), SCOPE, Counter()) == (
        "uploaded"
    )
    assert fake.part_puts == [1]
    assert fake.committed[sha256(b"")] == b""


def test_cli_push_uses_direct_uploads_when_advertised(
    direct: tuple[FakeDirect, RegistryClient], bare_cli: Cli, tmp_path: Path
) -> None:
    fake, client = direct
    source = tmp_path / "src"
    index = oci_index_layout(
        source, {"amd64": [gzip_layer(9000)], "arm64": [gzip_layer(100)]}, tag="v2"
    )
    ref = f"{client.host}/reg/app:v2"
    out = bare_cli("push", str(source), ref, "-u", "alice", "-p", "secret").ok()
    assert "Using direct uploads" in out.stderr
    blobs = layout_blobs(source)
    manifests = {d for d, b in blobs.items() if b"schemaVersion" in b}
    assert {d: blobs[d] for d in blobs if d not in manifests} == fake.committed
    # Children by digest first, then the index by tag.
    assert list(fake.manifests)[-1] == "v2" and fake.manifests["v2"] == blobs[index]
    assert set(list(fake.manifests)[:-1]) == manifests - {index}
    assert fake.part_auth and set(fake.part_auth) == {None}
    again = bare_cli("push", str(source), ref, "-u", "alice", "-p", "secret", "-o", "json")
    assert set(again.ok().json()["blobs"].values()) == {"exists"}
