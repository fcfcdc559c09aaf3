"""Error documents: every 4xx JSON body is ``{"errors": [{"code", "message", "detail"}]}``.

The suite-wide observer (``conftest.py``) enforces this for every response of every test; the
tests here provoke each error the spec names and check the document explicitly, and check the
observer itself.
"""

from __future__ import annotations

import requests

from .helpers import (
    OCI_MANIFEST,
    ProtocolObserver,
    RegistryClient,
    assert_error,
    random_bytes,
    sha256_digest,
    unique,
)
from .targets import Target


def test_each_spec_error_is_a_well_formed_error_document(
    client: RegistryClient, repo: str, target: Target
) -> None:
    client.push_oci_image(repo, "v1")
    absent = sha256_digest(unique().encode())
    cases: list[tuple[requests.Response, int, str]] = [
        (client.get(client.blob_path(repo, absent)), 404, "BLOB_UNKNOWN"),
        (client.get_manifest(repo, "nope"), 404, "MANIFEST_UNKNOWN"),
        (client.get(f"/v2/{target.registry}/{unique()}/tags/list"), 404, "NAME_UNKNOWN"),
        (client.put_manifest(repo, "x", b"{", OCI_MANIFEST), 400, "MANIFEST_INVALID"),
        (
            client.finish_upload(client.new_upload(repo), absent, random_bytes(10)),
            400,
            "DIGEST_INVALID",
        ),
        (RegistryClient(target.url, None).get("/v2/"), 401, "UNAUTHORIZED"),
    ]
    location = client.new_upload(repo)
    assert client.delete(location).status_code == 204
    cases.append((client.get(location), 404, "BLOB_UPLOAD_UNKNOWN"))
    for resp, status, code in cases:
        assert_error(resp, status, code)
        assert resp.headers.get("Content-Type", "").startswith("application/json")


def _response(
    status: int, body: bytes, content_type: str = "application/json"
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body
    resp.headers["Content-Type"] = content_type
    resp.url = "http://127.0.0.1/v2/x"
    resp.request = requests.Request("GET", resp.url).prepare()
    return resp


def test_observer_flags_server_errors_and_malformed_error_documents() -> None:
    observer = ProtocolObserver()
    observer(_response(500, b"boom", "text/plain"))
    observer(_response(404, b'{"error": "nope"}'))
    observer(_response(400, b'{"errors": [{"code": "not-upper"}]}'))
    observer(_response(400, b'{"errors": [{"code": "MADE_UP"}]}'))
    assert len(observer.problems) == 4


def test_observer_accepts_spec_error_documents_and_non_json_bodies() -> None:
    observer = ProtocolObserver()
    observer(_response(404, b'{"errors": [{"code": "BLOB_UNKNOWN", "message": "", "detail": 1}]}'))
    observer(_response(416, b'{"errors": [{"code": "RANGE_INVALID"}]}'))
    observer(_response(404, b"404 page not found", "text/plain"))
    observer(_response(200, b"{}"))
    assert observer.problems == []
