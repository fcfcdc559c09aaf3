"""Direct uploads over real sockets: ``portside serve`` (moto on loopback), parts PUT with
``requests`` to the presigned S3 URLs, completion, then the standard pull (307 to S3).
Large objects are verified by the local runtime's stand-in for the asynchronous Lambda
invocation (the inline limit is lowered to 12 MiB for this server)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.api.helpers import V2, sha256_digest, unique
from tests.support.server import RunningRegistry, start_registry

MIB = 1024 * 1024
INLINE_LIMIT = 12 * MIB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with start_registry(
        tmp_path_factory.mktemp("direct-uploads"),
        registry="direct",
        extra_env={"PORTSIDE_DIRECT_INLINE_VERIFY_BYTES": str(INLINE_LIMIT)},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def v2(server: RunningRegistry) -> V2:
    return V2.basic(server.url, server.token)


def direct(repo: str, rest: str = "") -> str:
    return f"/v2/{repo}/_portside/direct-uploads{rest}"


def start(v2: V2, repo: str, data: bytes, **extra: Any) -> requests.Response:
    body = {"digest": sha256_digest(data), "size": len(data), **extra}
    return v2.request("POST", direct(repo), json=body)


def put_parts(
    answer: dict[str, Any], data: bytes, numbers: set[int] | None = None
) -> list[dict[str, Any]]:
    """PUT each part straight to S3 (moto) with no credentials and no extra headers."""
    size = answer["part_size"]
    sent = []
    for part in answer["parts"]:
        number = part["number"]
        if numbers is not None and number not in numbers:
            continue
        chunk = data[(number - 1) * size : number * size]
        put = requests.put(part["url"], data=chunk, timeout=60)
        assert put.status_code == 200, put.text
        sent.append({"number": number, "etag": put.headers["ETag"]})
    return sent


def pull(v2: V2, repo: str, digest: str) -> bytes:
    redirect = v2.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert redirect.status_code == 307, redirect.text
    fetched = requests.get(redirect.headers["Location"], timeout=60)  # no credentials
    assert fetched.status_code == 200
    return fetched.content


def test_ping_advertises_direct_uploads(server: RunningRegistry, v2: V2) -> None:
    assert v2.request("GET", "/v2/").headers["Portside-Extensions"] == "direct-uploads/v1"
    anonymous = requests.get(f"{server.url}/v2/", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["Portside-Extensions"] == "direct-uploads/v1"


def test_parts_put_to_s3_commit_a_blob_that_pulls_back_byte_for_byte(
    server: RunningRegistry, v2: V2
) -> None:
    repo = f"{server.registry}/{unique('app')}"
    data = os.urandom(8 * MIB + 4321)  # two parts of the default 8 MiB, the last small
    started = start(v2, repo, data)
    assert started.status_code == 202, started.text
    answer = started.json()
    assert answer["part_count"] == 2
    sent = put_parts(answer, data)
    done = v2.request(
        "POST", direct(repo, f"/{answer['upload_id']}/complete"), json={"parts": sent}
    )
    assert done.status_code == 201, done.text
    assert done.json() == {"status": "committed", "digest": sha256_digest(data)}
    assert done.headers["Docker-Content-Digest"] == sha256_digest(data)
    assert pull(v2, repo, sha256_digest(data)) == data
    # The same blob again: it exists; from another repository: it mounts.
    again = start(v2, repo, data)
    assert (again.status_code, again.json()["status"]) == (201, "exists")
    other = f"{server.registry}/{unique('other')}"
    mounted = start(v2, other, data, mount_from=[repo])
    assert mounted.status_code == 201, mounted.text
    assert mounted.json() == {"status": "mounted", "digest": sha256_digest(data), "from": repo}
    assert pull(v2, other, sha256_digest(data)) == data


def test_a_wrong_digest_is_digest_invalid_and_leaves_no_blob(
    server: RunningRegistry, v2: V2
) -> None:
    repo = f"{server.registry}/{unique('app')}"
    data = os.urandom(1000)
    claimed = sha256_digest(b"not these bytes")
    answer = start(v2, repo, data, digest=claimed).json()
    sent = put_parts(answer, data)
    done = v2.request(
        "POST", direct(repo, f"/{answer['upload_id']}/complete"), json={"parts": sent}
    )
    assert done.status_code == 400, done.text
    assert done.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert v2.request("HEAD", f"/v2/{repo}/blobs/{claimed}").status_code == 404
    status = v2.request("GET", direct(repo, f"/{answer['upload_id']}")).json()
    assert (status["status"], status["error"]["code"]) == ("failed", "DIGEST_INVALID")


def test_an_interrupted_upload_resumes_from_the_parts_s3_holds_and_verifies_in_background(
    server: RunningRegistry, v2: V2
) -> None:
    repo = f"{server.registry}/{unique('app')}"
    data = os.urandom(16 * MIB + 99)  # three 8 MiB parts; over the inline limit
    answer = start(v2, repo, data).json()
    upload_id = answer["upload_id"]
    assert answer["part_count"] == 3
    put_parts(answer, data, numbers={1, 3})  # "interrupted" before part 2
    status = v2.request("GET", direct(repo, f"/{upload_id}")).json()
    assert status["status"] == "uploading"
    assert sorted(p["number"] for p in status["uploaded"]) == [1, 3]
    missing = [n for n in range(1, 4) if n not in {p["number"] for p in status["uploaded"]}]
    more = v2.request("POST", direct(repo, f"/{upload_id}/parts"), json={"numbers": missing})
    assert more.status_code == 200, more.text
    put_parts({**answer, "parts": more.json()["parts"]}, data)
    done = v2.request("POST", direct(repo, f"/{upload_id}/complete"))
    assert done.status_code == 202, done.text
    assert done.json()["status"] == "verifying"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = v2.request("GET", direct(repo, f"/{upload_id}")).json()
        if status["status"] != "verifying":
            break
        time.sleep(0.2)
    assert status["status"] == "committed", (status, server.log_tail())
    assert pull(v2, repo, sha256_digest(data)) == data


def test_an_upload_id_of_another_repository_is_unknown(server: RunningRegistry, v2: V2) -> None:
    repo = f"{server.registry}/{unique('app')}"
    answer = start(v2, repo, os.urandom(10)).json()
    other = f"{server.registry}/{unique('other')}"
    for method, rest in (("GET", ""), ("POST", "/complete"), ("DELETE", "")):
        response = v2.request(method, direct(other, f"/{answer['upload_id']}{rest}"))
        assert response.status_code == 404, response.text
        assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert v2.request("DELETE", direct(repo, f"/{answer['upload_id']}")).status_code == 204


def test_read_only_collection_and_a_full_registry_are_denied(
    server: RunningRegistry, v2: V2
) -> None:
    from chalicelib.registry.records import RegistryRecord

    store = server._store()
    collecting = unique("gc")
    store.put_registry(
        RegistryRecord(
            name=collecting,
            account_id="local",
            read_only=True,
            gc_active="gc-test",
            created_at=datetime.now(UTC),
        )
    )
    refused = start(v2, f"{collecting}/app", os.urandom(10))
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"][0]["code"] == "DENIED"

    full = unique("full")
    record = RegistryRecord(name=full, account_id="local", created_at=datetime.now(UTC))
    store.put_registry(replace(record, plan="starter", storage_bytes=500 * MIB))
    refused = start(v2, f"{full}/app", os.urandom(10))
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"][0]["code"] == "DENIED"
