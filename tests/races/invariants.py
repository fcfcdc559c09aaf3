"""Running conflicting requests at the same instant, and what must hold afterwards.

``race`` starts each request on its own thread and connection and releases them together
at a barrier, so that both are in flight at once over real sockets. ``Registry.check``
then reads the registry back through every door a user has (``/v2/``, the management API)
and through the table itself, and asserts the state is one a serial order of the requests
could have produced:

* every tag resolves to a manifest that GET by digest serves, byte for byte, and every
  blob that manifest references can be pulled from the repository (a tag that cannot be
  pulled completely is a broken image);
* the management API and ``/v2/_catalog`` list the same repositories, and every
  repository that holds tags or blob links is listed (nothing is left unreachable);
* every blob linked into a repository answers HEAD 200, and GET (following the 307 to
  storage) serves exactly the bytes of its digest;
* the registry's storage counter (``storage_usage_bytes``) is the sum of the sizes of the
  distinct blobs it holds, and every blob it holds has its bytes in storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.dynamo_models import Item, RegistryBlobItem, bind_table
from tests.api.helpers import OCI_MANIFEST, V2, Api, enc, error_code, session
from tests.support.server import RunningRegistry

MIB = 1024 * 1024
# The upload part size the race server runs with (S3's minimum), so that multipart
# sessions need only a few MiB.
PART_SIZE = 5 * MIB
MANIFEST_TYPES = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def race(*calls: Callable[[], Any], stagger: float = 0.0, timeout: float = 120) -> list[Any]:
    """Run ``calls`` at the same instant, each on its own thread, and return their results
    in order (an exception in any is raised here, after all have ended). ``stagger``
    delays each call after the first by that many seconds more than the one before, so
    that a test can release the second request at different points of the first."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout)
            if stagger:
                time.sleep(stagger * index)
            results[index] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a racing request did not end"
    return results


def spec_answer(response: requests.Response, expected: Mapping[int, frozenset[str] | None]) -> int:
    """Assert ``response`` is one of the answers the spec allows here: its status is in
    ``expected`` and, for an error, its body is the spec's JSON error with one of the codes
    listed for that status (None: a success, no code). Returns the status."""
    where = f"{response.request.method} {urlsplit(response.url).path}"
    status = response.status_code
    assert status < 500, f"{where}: {status} {response.text[:400]!r}"
    assert status in expected, f"{where}: unexpected {status} {response.text[:400]!r}"
    codes = expected[status]
    if codes is not None:
        code = error_code(response)
        assert code in codes, f"{where}: {status} with code {code!r}, expected one of {codes}"
    return status


def stagger_of(round_: int, longest: float = 0.045) -> float:
    """Round 0 releases both requests together; later rounds hold the second one back by up
    to ``longest`` seconds, so that it lands in every phase of the first (reading, claiming,
    streaming, committing) rather than only at its start."""
    return (round_ % 4) / 3 * longest


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def location_of(response: requests.Response) -> str:
    return urljoin(response.url, response.headers["Location"])


@dataclass
class Registry:
    """One registry of the race server, with fresh clients for each racing request."""

    server: RunningRegistry
    name: str

    def v2(self) -> V2:
        """A client with a connection of its own (requests' sessions are not thread-safe)."""
        return V2.basic(self.server.url, self.server.token)

    def api(self) -> Api:
        return Api(self.server.url, self.server.token)

    def repo(self, repository: str) -> str:
        return f"{self.name}/{repository}"

    # -------------------------------------------------------------- reading it back

    def store(self) -> DynamoMetadataStore:
        """The race server's table, read from this process (its models bound to it)."""
        os.environ["AWS_ENDPOINT_URL"] = self.server.aws_endpoint
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(name, "local")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        bind_table("portside", "us-east-1")
        return DynamoMetadataStore()

    def registry_id(self) -> str:
        record = self.store().get_registry(self.name)
        assert record is not None, self.name
        return str(record.registry_id)

    def check(self) -> None:
        """Assert every invariant of the module docstring on this registry."""
        v2 = self.v2()
        listed = self._listed_repositories()
        catalogued = self._catalogued_repositories(v2)
        assert listed == catalogued, (
            f"management API and _catalog disagree: only listed {sorted(listed - catalogued)}, "
            f"only catalogued {sorted(catalogued - listed)}"
        )
        rid = self.registry_id()
        held = self._repositories_holding_items(rid)
        unlisted = held - listed
        assert not unlisted, f"repositories with tags or links that nobody lists: {unlisted}"
        for repository in sorted(listed):
            self._check_repository(v2, repository)
        self._check_storage(rid)

    def _listed_repositories(self) -> set[str]:
        items = self.api().all_pages(
            f"/api/v1/registries/{self.name}/repositories", "repositories", 100
        )
        return {str(item["name"]) for item in items}

    def _catalogued_repositories(self, v2: V2) -> set[str]:
        names: set[str] = set()
        params: dict[str, str] = {"n": "1000"}
        for _ in range(1000):
            page = v2.request("GET", "/v2/_catalog", params=params)
            assert page.status_code == 200, page.text
            names.update(page.json()["repositories"])
            following = page.headers.get("Link")
            if not following:
                break
            query = parse_qs(urlsplit(following.split(";")[0].strip("<> ")).query)
            params = {"n": "1000", "last": query["last"][0]}
        prefix = self.name + "/"
        return {n.removeprefix(prefix) for n in names if n.startswith(prefix)}

    def _repositories_holding_items(self, rid: str) -> set[str]:
        """Repositories that have tags (the table's per-registry tag view) or blob links."""
        self.store()  # binds the models to the race server's table
        held = {str(item.gsi1sk).rsplit(":", 1)[0] for item in Item.gsi1.query(f"TAGS#{rid}")}
        prefix = f"REPO#{rid}/"
        for item in Item.scan(Item.pk.startswith(prefix), attributes_to_get=["pk", "sk"]):
            held.add(str(item.pk).removeprefix(prefix))
        return held

    def _check_repository(self, v2: V2, repository: str) -> None:
        name = self.repo(repository)
        tags = v2.request("GET", f"/v2/{name}/tags/list", params={"n": "10000"})
        spec_answer(tags, {200: None})
        for tag in tags.json()["tags"] or []:
            self.check_pullable(v2, name, tag)
        rid = self.registry_id()
        for link in Item.query(f"REPO#{rid}/{repository}", Item.sk.startswith("LINK#")):
            self._check_blob(v2, name, str(link.sk).removeprefix("LINK#"), "a blob link")

    def check_pullable(self, v2: V2, name: str, tag: str) -> None:
        """``name:tag`` resolves to a manifest that GET by digest serves, and every blob it
        references can be pulled from ``name``."""
        by_tag = v2.request(
            "GET", f"/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
        )
        assert by_tag.status_code == 200, f"tag {name}:{tag} does not resolve: {by_tag.text}"
        digest = by_tag.headers["Docker-Content-Digest"]
        assert sha256_of(by_tag.content) == digest, f"{name}:{tag} serves other bytes"
        by_digest = v2.request(
            "GET", f"/v2/{name}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES}
        )
        assert by_digest.status_code == 200, (
            f"tag {name}:{tag} serves {digest}, which GET by digest answers "
            f"{by_digest.status_code} {by_digest.text[:200]}"
        )
        assert by_digest.content == by_tag.content
        manifest = json.loads(by_tag.content)
        for descriptor in [manifest.get("config"), *manifest.get("layers", [])]:
            if descriptor:
                self._check_blob(v2, name, descriptor["digest"], f"{name}:{tag}")

    def _check_blob(self, v2: V2, name: str, digest: str, why: str) -> None:
        head = v2.request("HEAD", f"/v2/{name}/blobs/{digest}")
        assert head.status_code == 200, f"{why}: HEAD {name}@{digest} -> {head.status_code}"
        got = v2.request("GET", f"/v2/{name}/blobs/{digest}")
        assert got.status_code == 307, f"{why}: GET {name}@{digest} -> {got.status_code}"
        # Clients follow the redirect without credentials.
        data = session().get(got.headers["Location"], timeout=30)
        assert data.status_code == 200, f"{why}: the 307 for {digest} -> {data.status_code}"
        assert sha256_of(data.content) == digest, f"{why}: {digest} serves other bytes"
        assert int(head.headers["Content-Length"]) == len(data.content)

    def _check_storage(self, rid: str) -> None:
        held = list(RegistryBlobItem.query(f"RID#{rid}", RegistryBlobItem.sk.startswith("BLOB#")))
        total = sum(int(item.size) for item in held)
        answer = self.api().get(f"/api/v1/registries/{self.name}", expect=200).json()
        counted = answer["registry"]["storage_usage_bytes"]
        assert counted == total, (
            f"storage counter {counted} != {total}, the sum of the {len(held)} blobs held"
        )

    # -------------------------------------------------------------- pushing

    @staticmethod
    def manifest_for(blobs: list[tuple[str, int]], nonce: str) -> bytes:
        """An image manifest over blobs pushed already (the first is the config)."""
        (config, config_size), *layers = blobs
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config,
                    "size": config_size,
                },
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
                    for d, s in layers
                ],
                "annotations": {"nonce": nonce},
            }
        ).encode()


def repository_path(registry: str, repository: str) -> str:
    return f"/api/v1/registries/{registry}/repositories/{enc(repository)}"
