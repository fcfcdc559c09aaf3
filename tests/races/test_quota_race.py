"""Parallel real uploads against a starter registry's hard limits (docs/quotas.md).

Twenty uploads race over their own sockets into a registry a few MiB under its 500 MiB
limit, through every upload path clients use (monolithic POST, POST + PUT, POST + PATCH +
PUT): the accepted bytes never exceed the limit (each commit's counter update carries the
limit as its condition, in the transaction that stores the blob), every refusal is DENIED
with the quota message (never a 5xx), refused uploads leave no object behind, and the
counter is the sum of the blob records afterwards. The same for repositories: of parallel
first pushes into new repositories, one gets the starter plan's single repository.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import boto3
import requests

from chalicelib.adapters.dynamo_models import META, RegistryBlobItem, RegistryItem
from chalicelib.registry.quotas import count_records
from tests.api.helpers import V2, Api, error_code, unique

from .invariants import MIB, PART_SIZE, Registry, location_of, race, sha256_of

LIMIT = 500 * MIB
BLOB = MIB
UPLOADS = 20
# Room for exactly seven of the blobs (and half of an eighth).
ROOM = 7 * BLOB + BLOB // 2
PATHS = ("monolithic", "put", "patch")


def _starter(admin: Api, registry: Registry) -> Registry:
    """A starter registry of its own (the fixture's is professional)."""
    name = unique("quota")
    admin.create_registry(name, "starter")
    return Registry(registry.server, name)


def _seed(registry: Registry, size: int) -> None:
    """Make the registry hold ``size`` bytes cheaply and consistently: a blob record of
    that size and the counter raised by as much (no bytes are uploaded; the reconciliation
    and the assertions below count records, not objects)."""
    store = registry.store()
    rid = registry.registry_id()
    RegistryBlobItem(f"RID#{rid}", f"BLOB#{sha256_of(os.urandom(16))}", size=size).save()
    RegistryItem(f"REG#{registry.name}", META).update(
        actions=[RegistryItem.storage_bytes.add(size)]
    )
    record = store.get_registry(registry.name)
    assert record is not None and record.storage_bytes >= size


def _upload(v2: V2, repo: str, data: bytes, path: str) -> requests.Response:
    """One blob upload the way a client does it; the answer of the request that commits
    (or of the POST, if the registry refused to start the upload)."""
    digest = sha256_of(data)
    octets = {"Content-Type": "application/octet-stream"}
    if path == "monolithic":
        return v2.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            params={"digest": digest},
            data=data,
            headers=octets,
        )
    started = v2.request("POST", f"/v2/{repo}/blobs/uploads/")
    if started.status_code != 202:
        return started
    location = location_of(started)
    if path == "patch":
        patched = v2.request(
            "PATCH",
            location,
            data=data,
            headers={**octets, "Content-Range": f"0-{len(data) - 1}"},
        )
        if patched.status_code != 202:
            return patched
        return v2.request("PUT", location_of(patched), params={"digest": digest})
    return v2.request("PUT", location, params={"digest": digest}, data=data, headers=octets)


def _refused_for_quota(response: requests.Response, message: str) -> bool:
    assert response.status_code < 500, (response.status_code, response.text[:400])
    if response.status_code in (201, 202):
        return False
    assert response.status_code == 403, (response.status_code, response.text[:400])
    assert error_code(response) == "DENIED", response.text[:400]
    assert message in response.json()["errors"][0]["message"], response.text[:400]
    return True


def _objects(registry: Registry) -> list[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=registry.server.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    prefix = f"registries/{registry.registry_id()}/"
    listed = s3.list_objects_v2(Bucket="portside-blobs", Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_parallel_uploads_never_exceed_the_storage_limit(
    admin: Api, registry: Registry
) -> None:
    starter = _starter(admin, registry)
    repo = starter.repo("app")
    base = starter.v2().push_blob(repo, b"base layer")  # the registry's one repository
    _seed(starter, LIMIT - ROOM - len(b"base layer"))
    blobs = [os.urandom(BLOB) for _ in range(UPLOADS)]
    assert BLOB < PART_SIZE  # a PATCH of one blob stays one request's tail

    def upload(i: int) -> Callable[[], requests.Response]:
        return lambda: _upload(starter.v2(), repo, blobs[i], PATHS[i % len(PATHS)])

    answers = race(*(upload(i) for i in range(UPLOADS)))
    refused = [_refused_for_quota(a, "storage limit reached") for a in answers]
    accepted = [blobs[i] for i, r in enumerate(refused) if not r]
    # Every commit either fit whole or was refused whole, and none was refused while
    # there was room: exactly as many as fit got in, whatever the interleaving.
    assert len(accepted) == ROOM // BLOB, [a.status_code for a in answers]
    message = next(a for a, r in zip(answers, refused, strict=True) if r).json()
    assert "on the Starter plan may hold 500 MiB" in message["errors"][0]["message"]

    store = starter.store()
    record = store.get_registry(starter.name)
    assert record is not None
    assert record.storage_bytes <= LIMIT
    assert record.storage_bytes == LIMIT - ROOM + len(accepted) * BLOB
    assert count_records(store, record.registry_id) == (record.storage_bytes, 1)
    v2 = starter.v2()
    for i, data in enumerate(blobs):
        head = v2.request("HEAD", f"/v2/{repo}/blobs/{sha256_of(data)}")
        assert head.status_code == (404 if refused[i] else 200), i
    # Refused uploads left no bytes: the stored objects are the accepted blobs' and base's.
    assert len(_objects(starter)) == len(accepted) + 1, _objects(starter)
    assert v2.request("HEAD", f"/v2/{repo}/blobs/{base}").status_code == 200


def test_parallel_first_pushes_get_one_repository_on_starter(
    admin: Api, registry: Registry
) -> None:
    starter = _starter(admin, registry)
    blobs = [os.urandom(4096) for _ in range(10)]

    def push(i: int) -> Callable[[], requests.Response]:
        return lambda: _upload(starter.v2(), starter.repo(f"repo-{i}"), blobs[i], PATHS[i % 3])

    answers = race(*(push(i) for i in range(len(blobs))))
    refused = [_refused_for_quota(a, "repository limit reached") for a in answers]
    assert refused.count(False) == 1, [a.status_code for a in answers]
    store = starter.store()
    record = store.get_registry(starter.name)
    assert record is not None and record.repository_count == 1
    assert count_records(store, record.registry_id) == (record.storage_bytes, 1)
    winner = refused.index(False)
    assert store.list_repositories(record.registry_id, None, 10) == [f"repo-{winner}"]
    assert len(_objects(starter)) == 1
