"""A registry name re-used after a delete is another registry: nothing issued for the old
incarnation (a JWT, an upload capability, an upload session, a cached record) reads or
changes the new one, and nothing is written into a registry that is being deleted."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.auth import Authenticator, hash_token
from chalicelib.registry.management import ManagementService
from chalicelib.registry.manifests import OCI_MANIFEST
from chalicelib.registry.service import RegistryService

from .builders import FakeClock, image_manifest, make_token, make_v2_api, sha256
from .conftest import ACCOUNT, OTHER_ACCOUNT

BASE = "https://registry.example.test"
NAME = "reused"
REPO = f"{NAME}/app"


class Caller:
    """One client of the /v2/ API, holding Basic credentials or a Bearer JWT."""

    def __init__(self, api: V2Api, authorization: str | None) -> None:
        self.api = api
        self.authorization = authorization

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> HttpResponse:
        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if auth and self.authorization:
            all_headers["authorization"] = self.authorization
        request = HttpRequest(
            method, path, query or {}, all_headers, io.BytesIO(body), len(body), BASE
        )
        return self.api.handle(request)


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{secret}:{secret}".encode()).decode()


@pytest.fixture
def world(
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    service: RegistryService,
    clock: FakeClock,
) -> dict[str, Any]:
    auth = Authenticator(store, registry_ttl=timedelta(seconds=30), clock=clock)
    api = make_v2_api(service, store, auth)
    mgmt = ManagementService(store, blobs, service, auth, clock=clock)
    first = make_token(store, ACCOUNT, {"admin"})
    second = make_token(store, OTHER_ACCOUNT, {"admin"})
    return {"api": api, "mgmt": mgmt, "first": first, "second": second}


def principal(store: MemoryMetadataStore, secret: str) -> Any:
    from chalicelib.registry.auth import Principal

    record = store.get_token_by_hash(hash_token(secret))
    assert record is not None
    return Principal(record)


def jwt_for(api: V2Api, secret: str, scope: str) -> str:
    response = Caller(api, basic(secret))("GET", "/v2/token", query={"scope": scope})
    assert response.status == 200, response.body
    return "Bearer " + json.loads(response.body)["token"]


def push_image(caller: Caller, tag: str, seed: bytes) -> bytes:
    """Push a config, a layer and a manifest through the API; return the manifest."""
    config, layer = b'{"seed": "' + seed + b'"}', seed * 50
    for data in (config, layer):
        done = caller("POST", f"/v2/{REPO}/blobs/uploads/", data, query={"digest": sha256(data)})
        assert done.status == 201, done.body
    body = image_manifest(config, [layer])
    put = caller("PUT", f"/v2/{REPO}/manifests/{tag}", body, headers={"Content-Type": OCI_MANIFEST})
    assert put.status == 201, put.body
    return body


def start_session(caller: Caller, data: bytes) -> str:
    """POST then PATCH ``data``; return the Location for the final PUT."""
    started = caller("POST", f"/v2/{REPO}/blobs/uploads/")
    assert started.status == 202, started.body
    location = urlsplit(started.headers["Location"])
    patched = caller(
        "PATCH",
        location.path,
        data,
        query={k: v[0] for k, v in parse_qs(location.query).items()},
        headers={"Content-Type": "application/octet-stream"},
        auth=False,
    )
    assert patched.status == 202, patched.body
    return str(patched.headers["Location"])


def finish(caller: Caller, location: str, digest: str) -> HttpResponse:
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return caller("PUT", parts.path, query={**query, "digest": digest}, auth=False)


def delete_and_purge(world: dict[str, Any], store: MemoryMetadataStore) -> None:
    mgmt: ManagementService = world["mgmt"]
    mgmt.delete_registry(principal(store, world["first"]), NAME)
    assert mgmt.purge_deleted_registries() == 1
    assert store.get_registry(NAME) is None


def recreate(world: dict[str, Any], store: MemoryMetadataStore, owner: str) -> None:
    world["mgmt"].create_registry(principal(store, world[owner]), NAME, "professional")


def test_old_jwt_cannot_read_or_change_the_registry_another_account_creates_under_the_name(
    world: dict[str, Any], store: MemoryMetadataStore
) -> None:
    api: V2Api = world["api"]
    recreate(world, store, "first")
    old_owner = Caller(api, jwt_for(api, world["first"], f"repository:{REPO}:pull,push,delete"))
    mine = push_image(old_owner, "mine", b"first")
    delete_and_purge(world, store)

    recreate(world, store, "second")
    new_owner = Caller(api, basic(world["second"]))
    theirs = push_image(new_owner, "v1", b"second")

    # Reads: nothing of the new registry is visible through the old grant.
    assert old_owner("GET", f"/v2/{REPO}/manifests/v1").status == 404
    assert old_owner("GET", f"/v2/{REPO}/manifests/{sha256(theirs)}").status == 404
    layer = json.loads(theirs)["layers"][0]["digest"]
    assert old_owner("HEAD", f"/v2/{REPO}/blobs/{layer}").status == 404
    assert old_owner("GET", f"/v2/{REPO}/tags/list").status == 404
    # Writes: no upload, no tag moved onto the old owner's manifest, no delete.
    assert old_owner("POST", f"/v2/{REPO}/blobs/uploads/").status == 404
    moved = old_owner(
        "PUT", f"/v2/{REPO}/manifests/v1", mine, headers={"Content-Type": OCI_MANIFEST}
    )
    assert moved.status in (400, 404)
    assert old_owner("DELETE", f"/v2/{REPO}/manifests/{sha256(theirs)}").status == 404

    # The new owner's image is untouched.
    got = new_owner("GET", f"/v2/{REPO}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert got.status == 200 and got.body == theirs
    assert new_owner("HEAD", f"/v2/{REPO}/blobs/{layer}").status == 200


def test_upload_location_from_before_the_delete_cannot_add_a_blob_to_the_new_registry(
    world: dict[str, Any], store: MemoryMetadataStore, blobs: MemoryBlobStore
) -> None:
    api: V2Api = world["api"]
    recreate(world, store, "first")
    location = start_session(Caller(api, basic(world["first"])), b"smuggled")
    delete_and_purge(world, store)
    recreate(world, store, "second")
    objects_before = set(blobs.objects)

    done = finish(Caller(api, None), location, sha256(b"smuggled"))

    assert done.status == 404
    assert json.loads(done.body)["errors"][0]["code"] in ("BLOB_UPLOAD_UNKNOWN", "NAME_UNKNOWN")
    new_owner = Caller(api, basic(world["second"]))
    assert new_owner("HEAD", f"/v2/{REPO}/blobs/{sha256(b'smuggled')}").status == 404
    record = store.get_registry(NAME)
    assert record is not None and record.storage_bytes == 0
    assert set(blobs.objects) <= objects_before  # nothing written for the old session


def test_same_accounts_session_cannot_complete_into_the_registry_recreated_under_the_name(
    world: dict[str, Any], store: MemoryMetadataStore
) -> None:
    api: V2Api = world["api"]
    recreate(world, store, "first")
    location = start_session(Caller(api, basic(world["first"])), b"late")
    delete_and_purge(world, store)
    recreate(world, store, "first")

    assert finish(Caller(api, None), location, sha256(b"late")).status == 404
    # The registry never advertises a blob it cannot serve.
    owner = Caller(api, basic(world["first"]))
    assert owner("HEAD", f"/v2/{REPO}/blobs/{sha256(b'late')}").status == 404


def test_nothing_is_written_into_a_registry_while_it_is_being_deleted(
    world: dict[str, Any], store: MemoryMetadataStore
) -> None:
    api: V2Api = world["api"]
    recreate(world, store, "first")
    writer = Caller(api, jwt_for(api, world["first"], f"repository:{REPO}:pull,push"))
    push_image(writer, "v1", b"before")
    location = start_session(writer, b"in flight")
    world["mgmt"].delete_registry(principal(store, world["first"]), NAME)  # not purged yet

    assert writer("POST", f"/v2/{REPO}/blobs/uploads/").status == 404
    other_repo = writer(
        "POST", f"/v2/{NAME}/brand-new/blobs/uploads/", b"x", query={"digest": sha256(b"x")}
    )
    assert other_repo.status in (401, 404)  # the JWT names app only; never a write
    assert finish(Caller(api, None), location, sha256(b"in flight")).status == 404
    pushed = writer(
        "PUT",
        f"/v2/{REPO}/manifests/v2",
        image_manifest(b'{"seed": "before"}', [b"before" * 50]),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert pushed.status == 404
    record = store.get_registry(NAME)
    assert record is not None and record.deleting
    assert record.repository_count == 1


def test_a_cached_registry_record_never_authorizes_the_old_owner_on_the_new_registry(
    world: dict[str, Any], store: MemoryMetadataStore, clock: FakeClock
) -> None:
    api: V2Api = world["api"]
    recreate(world, store, "first")
    old_owner = Caller(api, basic(world["first"]))
    push_image(old_owner, "mine", b"first")  # the process now caches the old record
    delete_and_purge(world, store)
    recreate(world, store, "second")
    new_owner = Caller(api, basic(world["second"]))
    # Another warm process may still hold the old record: simulate it by caching it back.
    api.auth._registries.clear()
    theirs_tag = "v1"
    clock.advance(timedelta(seconds=31))
    theirs = push_image(new_owner, theirs_tag, b"second")

    stale = Authenticator(store, registry_ttl=timedelta(seconds=30), clock=clock)
    stale._registries[NAME] = (
        clock() + timedelta(seconds=30),
        _old_record_like(store, ACCOUNT),
    )
    stale_api = V2Api(api.service, stale, api.capability, api.tokens)
    old_in_stale = Caller(stale_api, basic(world["first"]))
    assert old_in_stale("GET", f"/v2/{REPO}/manifests/{theirs_tag}").status == 404
    assert (
        old_in_stale(
            "POST", f"/v2/{REPO}/blobs/uploads/", b"y", query={"digest": sha256(b"y")}
        ).status
        == 404
    )
    got = new_owner("GET", f"/v2/{REPO}/manifests/{theirs_tag}", headers={"Accept": OCI_MANIFEST})
    assert got.status == 200 and got.body == theirs
    record = store.get_registry(NAME)
    assert record is not None and record.storage_bytes == sum(
        len(b) for b in (b'{"seed": "second"}', b"second" * 50)
    )


def _old_record_like(store: MemoryMetadataStore, account: str) -> Any:
    """What a process cached before the delete: the same name, the old owner, an old id."""
    from dataclasses import replace

    current = store.get_registry(NAME)
    assert current is not None
    return replace(current, account_id=account, registry_id="id-of-the-deleted-incarnation")
