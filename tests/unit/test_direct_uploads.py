"""Direct uploads (docs/direct-uploads.md) through the /v2/ dispatcher over the in-memory
stores: start, parts straight to the blob store, completion, verification, refusals."""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.adapters.verification import CollectedVerifications
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.direct_uploads import (
    MAX_BLOB_SIZE,
    MAX_PARTS,
    DirectUploads,
    choose_part_size,
)
from chalicelib.registry.errors import ERROR_TABLE
from chalicelib.registry.records import RegistryRecord, UploadSession
from chalicelib.registry.service import RegistryService

from .builders import MIB, make_token, make_v2_api, push_blob, sha256
from .conftest import ACCOUNT, FOREIGN_REGISTRY, PART_SIZE, REGISTRY, named, named_path

BASE = "https://registry.example.test"
NAME = f"{REGISTRY}/team/app"
DIRECT = f"/v2/{NAME}/_portside/direct-uploads"


class Client:
    """HttpRequests for V2Api.handle with Basic auth; JSON bodies."""

    def __init__(self, api: V2Api, token: str | None) -> None:
        self.api = api
        self.token = token

    def __call__(
        self, method: str, path: str, doc: Any = None, body: bytes | None = None
    ) -> HttpResponse:
        headers: dict[str, str] = {}
        if self.token is not None:
            basic = base64.b64encode(f"{self.token}:{self.token}".encode()).decode()
            headers["authorization"] = f"Basic {basic}"
        data = body if body is not None else (b"" if doc is None else json.dumps(doc).encode())
        if doc is not None:
            headers["content-type"] = "application/json"
        request = HttpRequest(method, path, {}, headers, io.BytesIO(data), len(data), BASE)
        return self.api.handle(request)


def doc_of(response: HttpResponse) -> dict[str, Any]:
    return dict(json.loads(response.body))


def error_code(response: HttpResponse) -> str:
    errors = json.loads(response.body)["errors"]
    assert len(errors) == 1 and errors[0]["code"] in ERROR_TABLE
    assert response.status < 500
    return str(errors[0]["code"])


@pytest.fixture
def queue() -> CollectedVerifications:
    return CollectedVerifications()


@pytest.fixture
def direct(service: RegistryService, queue: CollectedVerifications) -> DirectUploads:
    # Objects over 6 MiB are verified in the background, so tests can take both paths.
    uploads = DirectUploads(service, queue, inline_limit=6 * MIB)
    queue.run = uploads.verify
    return uploads


@pytest.fixture
def api(service: RegistryService, store: MemoryMetadataStore, direct: DirectUploads) -> V2Api:
    api = make_v2_api(service, store)
    api.direct = direct
    return api


@pytest.fixture
def client(api: V2Api, store: MemoryMetadataStore) -> Client:
    return Client(api, make_token(store, ACCOUNT, {"push"}))


def start(client: Client, data: bytes, name: str = NAME, **extra: Any) -> HttpResponse:
    return client(
        "POST",
        f"/v2/{name}/_portside/direct-uploads",
        {"digest": extra.pop("digest", sha256(data)), "size": len(data), **extra},
    )


def put_parts(
    blobs: MemoryBlobStore, answer: dict[str, Any], data: bytes, numbers: list[int] | None = None
) -> list[dict[str, Any]]:
    """What a client does with the part URLs: PUT each slice to its URL (here: the memory
    store's multipart upload the URL names). Returns the {number, etag} list."""
    size = answer["part_size"]
    sent = []
    for part in answer["parts"]:
        number = part["number"]
        if numbers is not None and number not in numbers:
            continue
        url = urlsplit(part["url"])
        query = parse_qs(url.query)
        assert query["partNumber"] == [str(number)]
        key = url.netloc + url.path
        chunk = data[(number - 1) * size : number * size]
        etag = blobs.upload_part(key, query["uploadId"][0], number, chunk)
        sent.append({"number": number, "etag": etag})
    return sent


def session_of(store: MemoryMetadataStore, upload_id: str) -> UploadSession:
    session = store.get_upload(upload_id)
    assert session is not None
    return session


# ------------------------------------------------------------------ advertising


def test_ping_advertises_the_extension_on_200_and_401(client: Client, api: V2Api) -> None:
    assert client("GET", "/v2/").headers["Portside-Extensions"] == "direct-uploads/v1"
    anonymous = Client(api, None)("GET", "/v2/")
    assert anonymous.status == 401
    assert anonymous.headers["Portside-Extensions"] == "direct-uploads/v1"
    # Only the ping says so.
    assert "Portside-Extensions" not in client("GET", f"/v2/{NAME}/tags/list").headers


# ------------------------------------------------------------------ the happy paths


def test_parts_sent_to_the_store_commit_a_verified_blob_without_a_copy(
    client: Client, blobs: MemoryBlobStore, store: MemoryMetadataStore
) -> None:
    data = os.urandom(PART_SIZE + 1234)  # two parts, the last one small
    answer = start(client, data)
    assert answer.status == 202, answer.body
    body = doc_of(answer)
    assert body["status"] == "uploading"
    assert (body["part_size"], body["part_count"]) == (PART_SIZE, 2)
    assert [p["number"] for p in body["parts"]] == [1, 2]
    assert body["expires_at"].endswith("Z")
    assert answer.headers["Location"].endswith(f"{DIRECT}/{body['upload_id']}")
    upload_id = body["upload_id"]
    data_key = session_of(store, upload_id).data_key

    sent = put_parts(blobs, body, data)
    done = client("POST", f"{DIRECT}/{upload_id}/complete", {"parts": sent})
    assert done.status == 201, done.body
    assert doc_of(done) == {"status": "committed", "digest": sha256(data)}
    assert done.headers["Docker-Content-Digest"] == sha256(data)
    assert done.headers["Location"] == f"{BASE}/v2/{NAME}/blobs/{sha256(data)}"

    # The blob is where the parts were assembled: the pull redirect names that key.
    pulled = client("GET", f"/v2/{NAME}/blobs/{sha256(data)}")
    assert pulled.status == 307
    assert pulled.headers["Location"].startswith(f"memory://{data_key}?")
    assert blobs.objects[data_key] == data
    status = doc_of(client("GET", f"{DIRECT}/{upload_id}"))
    assert status["status"] == "committed"
    assert status["uploaded"] == []


def test_completion_without_a_part_list_takes_what_the_store_holds(
    client: Client, blobs: MemoryBlobStore
) -> None:
    data = os.urandom(1000)
    body = doc_of(start(client, data))
    assert body["part_count"] == 1
    put_parts(blobs, body, data)
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", body=b"")
    assert done.status == 201, done.body


def test_empty_blob_is_one_empty_part(client: Client, blobs: MemoryBlobStore) -> None:
    body = doc_of(start(client, b""))
    assert body["part_count"] == 1
    sent = put_parts(blobs, body, b"")
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent})
    assert done.status == 201, done.body
    assert client("HEAD", f"/v2/{NAME}/blobs/{sha256(b'')}").status == 200


def test_blob_in_the_repository_exists_and_another_repository_mounts(
    client: Client, service: RegistryService
) -> None:
    data = b"shared layer"
    push_blob(service, named_path(NAME), data)
    exists = start(client, data)
    assert exists.status == 201
    assert doc_of(exists) == {"status": "exists", "digest": sha256(data)}
    assert exists.headers["Docker-Content-Digest"] == sha256(data)

    other = f"{REGISTRY}/team/other"
    mounted = start(client, data, name=other, mount_from=[f"{FOREIGN_REGISTRY}/x", NAME])
    assert mounted.status == 201, mounted.body
    assert doc_of(mounted) == {"status": "mounted", "digest": sha256(data), "from": NAME}
    assert client("HEAD", f"/v2/{other}/blobs/{sha256(data)}").status == 200


def test_no_mount_from_a_repository_without_the_blob_or_of_another_registry(
    client: Client, service: RegistryService
) -> None:
    data = b"foreign layer"
    push_blob(service, named(FOREIGN_REGISTRY, "x"), data)
    answer = start(client, data, mount_from=[f"{FOREIGN_REGISTRY}/x", f"{REGISTRY}/nothing"])
    assert answer.status == 202
    assert doc_of(answer)["status"] == "uploading"


# ------------------------------------------------------------------ verification


def test_wrong_digest_deletes_the_object_and_fails_the_upload(
    client: Client, blobs: MemoryBlobStore, store: MemoryMetadataStore
) -> None:
    data = os.urandom(3000)
    claimed = sha256(b"something else")
    body = doc_of(start(client, data, digest=claimed))
    data_key = session_of(store, body["upload_id"]).data_key
    sent = put_parts(blobs, body, data)
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent})
    assert done.status == 400
    assert error_code(done) == "DIGEST_INVALID"
    assert data_key not in blobs.objects
    assert client("HEAD", f"/v2/{NAME}/blobs/{claimed}").status == 404
    status = doc_of(client("GET", f"{DIRECT}/{body['upload_id']}"))
    assert status["status"] == "failed"
    assert status["error"]["code"] == "DIGEST_INVALID"
    # A failed upload cannot be completed again.
    again = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent})
    assert error_code(again) == "BLOB_UPLOAD_INVALID"


def test_parts_that_do_not_add_up_to_the_size_answer_size_invalid(
    client: Client, blobs: MemoryBlobStore, store: MemoryMetadataStore
) -> None:
    data = os.urandom(3000)
    body = doc_of(start(client, data))
    sent = put_parts(blobs, body, data[:-1])
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent})
    assert error_code(done) == "SIZE_INVALID"
    assert session_of(store, body["upload_id"]).direct.status == "failed"  # type: ignore[union-attr]
    assert not blobs.multipart  # aborted


def test_a_missing_part_keeps_the_upload_open(client: Client, blobs: MemoryBlobStore) -> None:
    data = os.urandom(PART_SIZE + 10)
    body = doc_of(start(client, data))
    put_parts(blobs, body, data, numbers=[2])
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", body=b"")
    assert error_code(done) == "BLOB_UPLOAD_INVALID"
    assert doc_of(client("GET", f"{DIRECT}/{body['upload_id']}"))["status"] == "uploading"
    sent = put_parts(blobs, body, data)
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent})
    assert done.status == 201, done.body


def test_etags_that_are_not_the_stored_parts_are_refused(
    client: Client, blobs: MemoryBlobStore
) -> None:
    data = os.urandom(100)
    body = doc_of(start(client, data))
    put_parts(blobs, body, data)
    wrong = [{"number": 1, "etag": '"0123"'}]
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": wrong})
    assert error_code(done) == "BLOB_UPLOAD_INVALID"


def test_large_objects_are_verified_in_the_background(
    client: Client,
    blobs: MemoryBlobStore,
    queue: CollectedVerifications,
    direct: DirectUploads,
) -> None:
    data = os.urandom(PART_SIZE * 2 + 7)  # over the 6 MiB inline limit
    body = doc_of(start(client, data))
    upload_id = body["upload_id"]
    sent = put_parts(blobs, body, data)
    done = client("POST", f"{DIRECT}/{upload_id}/complete", {"parts": sent})
    assert done.status == 202, done.body
    assert doc_of(done) == {"status": "verifying", "digest": sha256(data)}
    assert queue.submitted == [upload_id]
    # Not visible before it is verified.
    assert client("HEAD", f"/v2/{NAME}/blobs/{sha256(data)}").status == 404
    assert doc_of(client("GET", f"{DIRECT}/{upload_id}"))["status"] == "verifying"
    # A retried completion answers the same (and may queue it again: harmless).
    assert client("POST", f"{DIRECT}/{upload_id}/complete", body=b"").status == 202
    queue.drain()
    assert doc_of(client("GET", f"{DIRECT}/{upload_id}"))["status"] == "committed"
    assert client("HEAD", f"/v2/{NAME}/blobs/{sha256(data)}").status == 200
    # A duplicate delivery of the verification does nothing.
    assert direct.verify(upload_id) is None


def test_background_verification_of_a_corrupted_object_fails_it(
    client: Client,
    blobs: MemoryBlobStore,
    queue: CollectedVerifications,
    store: MemoryMetadataStore,
) -> None:
    data = os.urandom(PART_SIZE * 2 + 7)
    body = doc_of(start(client, data))
    upload_id = body["upload_id"]
    data_key = session_of(store, upload_id).data_key
    corrupted = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    sent = put_parts(blobs, body, corrupted)
    assert client("POST", f"{DIRECT}/{upload_id}/complete", {"parts": sent}).status == 202
    queue.drain()
    status = doc_of(client("GET", f"{DIRECT}/{upload_id}"))
    assert status["status"] == "failed"
    assert status["error"]["code"] == "DIGEST_INVALID"
    # The message is the error's own: the code is beside it, not repeated inside it.
    assert status["error"]["message"].startswith("content hashes to ")
    assert data_key not in blobs.objects
    assert client("HEAD", f"/v2/{NAME}/blobs/{sha256(data)}").status == 404


def test_the_verify_function_is_a_module_level_lambda_of_the_app() -> None:
    from chalicelib.application import create_app
    from portside.local.stepfunctions import app_functions

    assert "verify-direct-upload" in app_functions(create_app())
    # From the repository, whatever the working directory (other tests change it).
    with open(Path(__file__).resolve().parents[2] / ".chalice" / "config.json") as config:
        assert "verify-direct-upload" in json.load(config)["lambda_functions"]


# ------------------------------------------------------------------ resume, parts, cancel


def test_status_lists_the_uploaded_parts_and_more_urls_can_be_asked_for(
    client: Client, blobs: MemoryBlobStore
) -> None:
    data = os.urandom(PART_SIZE * 2 + 5)
    body = doc_of(start(client, data))
    upload_id = body["upload_id"]
    put_parts(blobs, body, data, numbers=[1, 3])
    status = doc_of(client("GET", f"{DIRECT}/{upload_id}"))
    assert status["status"] == "uploading"
    assert [(p["number"], p["size"]) for p in status["uploaded"]] == [(1, PART_SIZE), (3, 5)]
    announced = (status["digest"], status["size"], status["part_count"])
    assert announced == (sha256(data), len(data), 3)
    more = client("POST", f"{DIRECT}/{upload_id}/parts", {"numbers": [2]})
    assert more.status == 200, more.body
    assert [p["number"] for p in doc_of(more)["parts"]] == [2]
    put_parts(blobs, {**body, "parts": doc_of(more)["parts"]}, data)
    # Over the 6 MiB inline limit of these tests: verified in the background.
    assert client("POST", f"{DIRECT}/{upload_id}/complete", body=b"").status == 202


@pytest.mark.parametrize("numbers", [[0], [4], list(range(1, 102)), [], "1", [True]])
def test_part_numbers_outside_the_upload_are_refused(client: Client, numbers: Any) -> None:
    body = doc_of(start(client, os.urandom(PART_SIZE * 2 + 5)))
    more = client("POST", f"{DIRECT}/{body['upload_id']}/parts", {"numbers": numbers})
    assert error_code(more) == "BLOB_UPLOAD_INVALID"


def test_cancel_aborts_the_multipart_upload(
    client: Client, blobs: MemoryBlobStore, store: MemoryMetadataStore
) -> None:
    body = doc_of(start(client, os.urandom(10)))
    assert blobs.multipart
    assert client("DELETE", f"{DIRECT}/{body['upload_id']}").status == 204
    assert not blobs.multipart
    assert store.get_upload(body["upload_id"]) is None
    assert error_code(client("GET", f"{DIRECT}/{body['upload_id']}")) == "BLOB_UPLOAD_UNKNOWN"


# ------------------------------------------------------------------ isolation


def test_an_upload_id_is_unknown_to_other_repositories_kinds_and_incarnations(
    client: Client, store: MemoryMetadataStore, service: RegistryService
) -> None:
    body = doc_of(start(client, os.urandom(10)))
    upload_id = body["upload_id"]
    other = f"/v2/{REGISTRY}/team/other/_portside/direct-uploads/{upload_id}"
    assert error_code(client("GET", other)) == "BLOB_UPLOAD_UNKNOWN"
    assert error_code(client("POST", f"{other}/complete", body=b"")) == "BLOB_UPLOAD_UNKNOWN"
    assert error_code(client("DELETE", other)) == "BLOB_UPLOAD_UNKNOWN"
    # The standard upload routes do not know a direct upload, nor the reverse.
    standard_route = f"/v2/{NAME}/blobs/uploads/{upload_id}"
    assert error_code(client("GET", standard_route)) == "BLOB_UPLOAD_UNKNOWN"
    standard = service.start_upload(named_path(NAME))
    assert error_code(client("GET", f"{DIRECT}/{standard.upload_id}")) == "BLOB_UPLOAD_UNKNOWN"
    assert error_code(client("GET", f"{DIRECT}/..%2F")) == "BLOB_UPLOAD_UNKNOWN"
    # The registry deleted and created again under the same name: a new incarnation.
    record = store.registries[REGISTRY]
    store.registries[REGISTRY] = RegistryRecord(
        name=REGISTRY, account_id=record.account_id, created_at=record.created_at
    )
    client.api.auth = type(client.api.auth)(store)  # no cached record of the old one
    assert error_code(client("GET", f"{DIRECT}/{upload_id}")) == "BLOB_UPLOAD_UNKNOWN"


def test_pull_only_tokens_cannot_start(api: V2Api, store: MemoryMetadataStore) -> None:
    reader = Client(api, make_token(store, ACCOUNT, {"pull"}))
    assert error_code(start(reader, b"x")) == "DENIED"


def test_read_only_collection_denies_start_and_completion(
    client: Client, store: MemoryMetadataStore, blobs: MemoryBlobStore
) -> None:
    data = os.urandom(10)
    body = doc_of(start(client, data))
    sent = put_parts(blobs, body, data)
    store.registries[REGISTRY] = replace(
        store.registries[REGISTRY], read_only=True, gc_active="gc-1"
    )
    client.api.auth = type(client.api.auth)(store)
    refused = start(client, os.urandom(11))
    assert refused.status == 403 and error_code(refused) == "DENIED"
    assert "garbage collection" in doc_of(refused)["errors"][0]["message"].lower()
    assert len(blobs.multipart) == 1  # the refused start left no multipart upload
    done = client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent})
    assert error_code(done) == "DENIED"
    assert doc_of(client("GET", f"{DIRECT}/{body['upload_id']}"))["status"] == "uploading"


def test_a_full_registry_denies_start(client: Client, store: MemoryMetadataStore) -> None:
    store.registries[REGISTRY] = replace(
        store.registries[REGISTRY], plan="starter", storage_bytes=500 * MIB
    )
    client.api.auth = type(client.api.auth)(store)
    refused = start(client, os.urandom(10))
    assert refused.status == 403 and error_code(refused) == "DENIED"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({"digest": "sha256:abc", "size": 1}, "DIGEST_INVALID"),
        ({"digest": "md5:" + "0" * 32, "size": 1}, "DIGEST_INVALID"),
        ({"size": 1}, "DIGEST_INVALID"),
        ({"digest": sha256(b"x"), "size": -1}, "SIZE_INVALID"),
        ({"digest": sha256(b"x"), "size": "1"}, "SIZE_INVALID"),
        ({"digest": sha256(b"x"), "size": True}, "SIZE_INVALID"),
        ({"digest": sha256(b"x"), "size": MAX_BLOB_SIZE + 1}, "SIZE_INVALID"),
        ({"digest": sha256(b"x"), "size": 1, "mount_from": "a/b"}, "BLOB_UPLOAD_INVALID"),
        ([1, 2], "BLOB_UPLOAD_INVALID"),
    ],
)
def test_bad_start_requests_are_client_errors(client: Client, doc: Any, code: str) -> None:
    answer = client("POST", DIRECT, doc)
    assert answer.status == 400, answer.body
    assert error_code(answer) == code


@pytest.mark.parametrize(
    "body",
    [b"{", b"[" * 10000, b"\xff", b'{"parts": 3}', b'{"parts": [{"number": "1"}]}'],
)
def test_malformed_completions_are_client_errors(client: Client, body: bytes) -> None:
    started = doc_of(start(client, os.urandom(10)))
    answer = client("POST", f"{DIRECT}/{started['upload_id']}/complete", body=body)
    assert answer.status == 400, answer.body


def test_part_size_stays_within_s3_limits() -> None:
    assert choose_part_size(0, 8 * MIB) == (8 * MIB, 1)
    assert choose_part_size(8 * MIB, 8 * MIB) == (8 * MIB, 1)
    assert choose_part_size(8 * MIB + 1, 8 * MIB) == (8 * MIB, 2)
    assert choose_part_size(10, MIB)[0] == 5 * MIB  # never under S3's minimum
    size, count = choose_part_size(MAX_BLOB_SIZE, 8 * MIB)
    assert count <= MAX_PARTS and size % MIB == 0 and size * count >= MAX_BLOB_SIZE


def test_the_lambda_queue_invokes_the_verify_function_asynchronously() -> None:
    from chalicelib.adapters.verification import LambdaVerificationQueue

    calls: list[dict[str, Any]] = []

    class FakeLambda:
        def invoke(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    LambdaVerificationQueue(FakeLambda(), "portside-verify").submit("u-1")
    assert calls == [
        {
            "FunctionName": "portside-verify",
            "InvocationType": "Event",
            "Payload": b'{"upload_id": "u-1"}',
        }
    ]


def test_the_verify_handler_verifies_the_upload_it_is_given(
    client: Client,
    blobs: MemoryBlobStore,
    direct: DirectUploads,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib import wiring
    from chalicelib.events.handlers import verify_direct_upload

    monkeypatch.setattr(wiring, "direct_uploads", lambda: direct)
    data = os.urandom(PART_SIZE * 2 + 7)
    body = doc_of(start(client, data))
    sent = put_parts(blobs, body, data)
    assert client("POST", f"{DIRECT}/{body['upload_id']}/complete", {"parts": sent}).status == 202
    outcome = verify_direct_upload({"upload_id": body["upload_id"]}, None)
    assert outcome == {"upload_id": body["upload_id"], "status": "committed"}
    assert verify_direct_upload({"upload_id": body["upload_id"]}, None)["status"] == "skipped"
