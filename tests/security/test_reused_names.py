"""A registry name deleted and taken again by another account, against the real server
(DynamoDB and S3 on moto): nothing issued for the first registry reaches the second."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.api.helpers import OCI_MANIFEST, V2, Api, bearer, unique
from tests.support.server import RunningRegistry

pytestmark = pytest.mark.integration


def wait_until_free(api: Api, name: str, timeout: float = 60.0) -> None:
    """The local runtime purges deleted registries every few seconds; then the name is free."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.post("/api/v1/registries/validate-name", json={"name": name})
        if answer.status_code in (200, 204):
            return
        assert answer.status_code == 409, answer.text  # taken until the purge finishes
        time.sleep(0.5)
    raise AssertionError(f"registry name {name} was not freed within {timeout} s")


def test_reused_name_is_another_registry_for_jwts_locations_and_sessions(
    sec_server: RunningRegistry,
) -> None:
    name = unique("reused")
    repo = f"{name}/app"
    first = Api(sec_server.url, sec_server.token, check=False)
    assert first.create_registry(name)["name"] == name
    first_v2 = V2.basic(sec_server.url, sec_server.token)
    mine = first_v2.push_image(repo, "mine", (300,))
    # What account 1 holds when its registry is deleted: a JWT for every action, an upload
    # Location it never finished, and a session that already took bytes.
    old_jwt = V2(
        sec_server.url,
        bearer(first_v2.jwt(sec_server.token, f"repository:{repo}:pull,push,delete")),
    )
    started = first_v2.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    unfinished = started.headers["Location"]
    patched_start = first_v2.request("POST", f"/v2/{repo}/blobs/uploads/")
    patched = requests.patch(
        patched_start.headers["Location"],
        data=b"smuggled bytes",
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert patched.status_code == 202, patched.text
    patched_location = patched.headers["Location"]

    assert first.delete(f"/api/v1/registries/{name}").status_code == 204
    wait_until_free(first, name)

    # Another tenant, onboarded by the operator, takes the name.
    onboarded = first.post("/api/v1/accounts", json={"name": unique("other tenant")})
    assert onboarded.status_code == 201, onboarded.text
    second_token = onboarded.json()["token"]["token"]
    Api(sec_server.url, second_token).create_registry(name)
    second_v2 = V2.basic(sec_server.url, second_token)
    theirs = second_v2.push_image(repo, "v1", (400,))

    # The old JWT reads nothing of the new registry ...
    assert old_jwt.manifest_status(repo, "v1") == 404
    assert old_jwt.manifest_status(repo, theirs.digest) == 404
    layer = theirs.blobs[-1][0]
    assert old_jwt.request("HEAD", f"/v2/{repo}/blobs/{layer}").status_code == 404
    # ... and changes nothing: no upload, no tag moved onto its manifest, no delete.
    assert old_jwt.request("POST", f"/v2/{repo}/blobs/uploads/").status_code == 404
    moved = old_jwt.request(
        "PUT",
        f"/v2/{repo}/manifests/v1",
        data=mine.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert moved.status_code in (400, 404), moved.text
    deleted = old_jwt.request("DELETE", f"/v2/{repo}/manifests/{theirs.digest}")
    assert deleted.status_code == 404, deleted.text

    # Upload Locations and sessions of the old registry cannot put a blob into the new one.
    for location, data in ((unfinished, b"late"), (patched_location, b"")):
        parts = urlsplit(location)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        digest = "sha256:" + hashlib.sha256(data or b"smuggled bytes").hexdigest()
        done = requests.put(
            f"{sec_server.url}{parts.path}",
            params={**query, "digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert done.status_code == 404, done.text
        assert second_v2.request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 404

    # The new owner's image and storage are exactly what it pushed.
    got = second_v2.request("GET", f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200 and got.content == theirs.manifest
    owner_api = Api(sec_server.url, second_token, check=False)
    registry = owner_api.get(f"/api/v1/registries/{name}").json()["registry"]
    assert registry["storage_usage_bytes"] == sum(size for _, size in theirs.blobs)
