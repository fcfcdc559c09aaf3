"""Garbage collection against concurrent pushes, randomized (issue 10's stress test).

Rounds of concurrent pushes (uploads over real sockets, image manifests, indexes over
platform manifests pushed by digest, referrers of tagged images, tags moved and deleted,
blobs reused from earlier rounds after a HEAD, as docker does) run while collections run
back to back in the background, alternating read-only and online mode, with the online
grace window at zero so that online collections delete everything they may. A push may be
refused (DENIED while a read-only collection runs, MANIFEST_BLOB_UNKNOWN when a blob it
named was collected first); any other answer fails the test.

Afterwards every image the test still holds a tag for (the last push to that tag that was
accepted) is pulled by a real client (skopeo, every platform of an index) and compared
byte for byte with what was pushed, every referrer of such an image is read back, and the
race suite's invariants hold (every tag pullable, every link's blob served, the storage
counter equal to the blobs held). Zero lost or corrupted blobs.

Rounds: PORTSIDE_GC_STRESS_ROUNDS (default 200); seed: PORTSIDE_GC_STRESS_SEED.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from tests.api.helpers import OCI_MANIFEST, V2, Api, error_code, session

from .invariants import Registry, race

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ROUNDS = int(os.environ.get("PORTSIDE_GC_STRESS_ROUNDS", "200"))
WORKERS = 3
REPOSITORIES = ("app", "team/lib")


class Refused(Exception):
    """The registry refused a push in a way the spec allows during a collection."""


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pushed:
    """An accepted manifest and the bytes of everything it references."""

    repository: str
    digest: str
    body: bytes
    media_type: str
    blobs: dict[str, bytes]
    children: list[Pushed] = field(default_factory=list)


@dataclass
class Ledger:
    """What the test knows was accepted; tags are partitioned by worker, so no two
    requests of a round touch the same tag."""

    tags: dict[tuple[str, str], Pushed] = field(default_factory=dict)
    # (the tag, the digest it named, the referrer of that digest)
    referrers: list[tuple[tuple[str, str], str, Pushed]] = field(default_factory=list)
    pool: list[tuple[str, bytes]] = field(default_factory=list)  # blobs pushed earlier
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, code: str) -> None:
        with self.lock:
            self.refused[code] = self.refused.get(code, 0) + 1


ALLOWED_REFUSALS = {"DENIED", "MANIFEST_BLOB_UNKNOWN"}


def _check(response: Any, ok: int) -> Any:
    if response.status_code == ok:
        return response
    code = error_code(response) or str(response.status_code)
    if code == "DENIED" and "garbage collection" not in response.text:
        raise AssertionError(f"DENIED for another reason: {response.text[:300]}")
    if code in ALLOWED_REFUSALS:
        raise Refused(code)
    raise AssertionError(
        f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}"
    )


class Pusher:
    def __init__(self, registry: Registry, ledger: Ledger, rng: random.Random) -> None:
        self.v2: V2 = registry.v2()
        self.registry = registry
        self.ledger = ledger
        self.rng = rng

    def blob(self, repo: str, data: bytes) -> str:
        digest = _sha(data)
        head = self.v2.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if head.status_code == 200:
            return digest  # docker skips what the registry says it has
        started = _check(self.v2.request("POST", f"/v2/{repo}/blobs/uploads/"), 202)
        location = urljoin(started.url, started.headers["Location"])
        if len(data) > 64 and self.rng.random() < 0.5:  # a chunked session, as docker does
            half = len(data) // 2
            patched = _check(
                self.v2.request(
                    "PATCH",
                    location,
                    data=data[:half],
                    headers={"Content-Type": "application/octet-stream"},
                ),
                202,
            )
            location = urljoin(patched.url, patched.headers["Location"])
            data_left = data[half:]
        else:
            data_left = data
        _check(
            self.v2.request(
                "PUT",
                location,
                params={"digest": digest},
                data=data_left,
                headers={"Content-Type": "application/octet-stream"},
            ),
            201,
        )
        with self.ledger.lock:
            self.ledger.pool.append((digest, data))
        return digest

    def image(self, repository: str, reference: str | None) -> Pushed:
        repo = self.registry.repo(repository)
        config = json.dumps(
            {"os": "linux", "architecture": "amd64", "n": uuid.uuid4().hex}
        ).encode()
        layers = [
            os.urandom(self.rng.randrange(100, 3000)) for _ in range(self.rng.randrange(1, 3))
        ]
        with self.ledger.lock:
            if self.ledger.pool and self.rng.random() < 0.6:
                layers.append(self.rng.choice(self.ledger.pool)[1])  # an old blob, maybe collected
        blobs = {self.blob(repo, config): config}
        for layer in layers:
            blobs[self.blob(repo, layer)] = layer
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": _sha(x), "size": len(x)} for x in layers
                ],
            }
        ).encode()
        return self.manifest(repository, reference, body, OCI_MANIFEST, blobs)

    def manifest(
        self,
        repository: str,
        reference: str | None,
        body: bytes,
        media_type: str,
        blobs: dict[str, bytes],
        children: list[Pushed] | None = None,
    ) -> Pushed:
        digest = _sha(body)
        _check(
            self.v2.request(
                "PUT",
                f"/v2/{self.registry.repo(repository)}/manifests/{reference or digest}",
                data=body,
                headers={"Content-Type": media_type},
            ),
            201,
        )
        return Pushed(repository, digest, body, media_type, blobs, children or [])

    def index(self, repository: str, tag: str) -> Pushed:
        children = [self.image(repository, None) for _ in range(2)]
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": child.digest,
                        "size": len(child.body),
                        "platform": {"os": "linux", "architecture": arch},
                    }
                    for child, arch in zip(children, ("amd64", "arm64"), strict=True)
                ],
            }
        ).encode()
        return self.manifest(repository, tag, body, OCI_INDEX, {}, children)

    def referrer(self, subject: Pushed) -> Pushed:
        repo = self.registry.repo(subject.repository)
        empty = b"{}"
        signature = os.urandom(200)
        blobs = {self.blob(repo, empty): empty, self.blob(repo, signature): signature}
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.signature",
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": _sha(empty),
                    "size": 2,
                },
                "layers": [
                    {
                        "mediaType": "application/octet-stream",
                        "digest": _sha(signature),
                        "size": 200,
                    }
                ],
                "subject": {
                    "mediaType": subject.media_type,
                    "digest": subject.digest,
                    "size": len(subject.body),
                },
            }
        ).encode()
        return self.manifest(subject.repository, None, body, OCI_MANIFEST, blobs)

    def delete(self, repository: str, tag: str) -> None:
        _check(
            self.v2.request("DELETE", f"/v2/{self.registry.repo(repository)}/manifests/{tag}"), 202
        )

    def round(self, worker: int) -> None:
        """One random operation on this worker's own tags."""
        repository = self.rng.choice(REPOSITORIES)
        tag = f"w{worker}-t{self.rng.randrange(6)}"
        key = (repository, tag)
        roll = self.rng.random()
        try:
            if roll < 0.45:
                pushed = self.image(repository, tag)
            elif roll < 0.6:
                pushed = self.index(repository, tag)
            elif roll < 0.75:
                with self.ledger.lock:
                    subject = self.ledger.tags.get(key)
                if subject is None:
                    return
                referrer = self.referrer(subject)
                with self.ledger.lock:
                    self.ledger.referrers.append((key, subject.digest, referrer))
                    self.ledger.accepted += 1
                return
            else:
                with self.ledger.lock:
                    held = key in self.ledger.tags
                if held:
                    self.delete(repository, tag)
                    with self.ledger.lock:
                        del self.ledger.tags[key]
                return
        except Refused as refused:
            self.ledger.refuse(str(refused))
            if str(refused) == "DENIED":
                time.sleep(0.25)  # a read-only collection: back off, as CI would retry
            return
        with self.ledger.lock:
            self.ledger.tags[key] = pushed
            self.ledger.accepted += 1


def _collect_continuously(api: Api, name: str, stop: threading.Event, ran: dict[str, int]) -> None:
    """Collections back to back, three online for each read-only one, with pauses that let
    pushes land (a read-only collection refuses them all while it runs)."""
    modes = ("online", "read-only", "online", "online")
    n = 0
    while not stop.is_set():
        mode = modes[n % len(modes)]
        started = api.request(
            "POST",
            f"/api/v1/registries/{name}/garbage-collection",
            json={"type": "untagged manifests and unreferenced blobs", "mode": mode},
        )
        assert started.status_code in (201, 409), started.text
        if started.status_code == 201:
            _wait_until_idle(api, name)
            ran[mode] = ran.get(mode, 0) + 1
            n += 1
        stop.wait(random.uniform(0.5, 1.5))


def _wait_until_idle(api: Api, name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = api.request("GET", f"/api/v1/registries/{name}/garbage-collection")
        if active.status_code == 404:
            return
        assert active.status_code == 200, active.text
        time.sleep(0.2)
    raise AssertionError("a collection did not end in time")


def _pull_with_skopeo(registry: Registry, key: tuple[str, str], pushed: Pushed, dest: Path) -> None:
    server = registry.server
    reference = f"docker://{server.host}/{registry.repo(key[0])}:{key[1]}"
    done = subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",  # what was pushed, unchanged, or an error
            "--src-tls-verify=false",
            "--src-creds",
            f"{server.token}:{server.token}",
            reference,
            f"oci:{dest}:pulled",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"skopeo could not pull {key}: {done.stderr.decode()[-2000:]}"
    blobs_dir = dest / "blobs" / "sha256"
    for image in [pushed, *pushed.children]:
        assert (blobs_dir / image.digest.split(":")[1]).read_bytes() == image.body
        for digest, data in image.blobs.items():
            stored = (blobs_dir / digest.split(":")[1]).read_bytes()
            assert stored == data, f"{key}: blob {digest} came back different"


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_no_accepted_image_loses_a_blob_to_collections_in_either_mode(
    registry: Registry, tmp_path: Path
) -> None:
    seed = int(
        os.environ.get("PORTSIDE_GC_STRESS_SEED") or random.SystemRandom().randrange(1 << 30)
    )
    print(f"gc stress seed {seed} ({ROUNDS} rounds)")
    ledger = Ledger()
    api = registry.api()
    stop = threading.Event()
    ran: dict[str, int] = {}
    collector = threading.Thread(
        target=_collect_continuously, args=(api, registry.name, stop, ran), daemon=True
    )
    collector.start()
    pushers = [Pusher(registry, ledger, random.Random(seed * 31 + w)) for w in range(WORKERS)]
    try:
        for _ in range(ROUNDS):
            race(*(lambda w=w: pushers[w].round(w) for w in range(WORKERS)))
    finally:
        stop.set()
        collector.join(timeout=600)
    _wait_until_idle(api, registry.name)
    # One last collection in each mode, with nothing pushing: whatever is left must be
    # exactly what the ledger holds tags for, and what they reach.
    for mode in ("online", "read-only"):
        started = api.request(
            "POST",
            f"/api/v1/registries/{registry.name}/garbage-collection",
            json={"type": "untagged manifests and unreferenced blobs", "mode": mode},
        )
        assert started.status_code == 201, started.text
        _wait_until_idle(api, registry.name)
        ran[mode] = ran.get(mode, 0) + 1

    history = api.request(
        "GET", f"/api/v1/registries/{registry.name}/garbage-collections", params={"per_page": 200}
    ).json()["garbage_collections"]
    assert all(gc["status"] == "succeeded" for gc in history), [
        (gc["status"], gc["error"]) for gc in history if gc["status"] != "succeeded"
    ]
    deleted = sum(gc["blobs_deleted"] for gc in history)
    print(
        f"accepted {ledger.accepted}, refused {ledger.refused}, collections {ran}, "
        f"blobs deleted {deleted}, tags held {len(ledger.tags)}"
    )
    assert ran.get("online", 0) >= 2 and ran.get("read-only", 0) >= 2, ran
    assert deleted > 0, "the collections never deleted anything: the test proves nothing"
    assert ledger.accepted > ROUNDS // 3, (ledger.accepted, ledger.refused)

    for n, (key, pushed) in enumerate(sorted(ledger.tags.items())):
        _pull_with_skopeo(registry, key, pushed, tmp_path / f"pull-{n}")
    v2 = registry.v2()
    kept_referrers = 0
    for key, subject_digest, referrer in ledger.referrers:
        subject = ledger.tags.get(key)
        if subject is None or subject.digest != subject_digest:
            continue  # its subject lost its tag: the referrer may go with it
        # A referrer of a tagged image is kept, listed and pullable, blobs and all.
        kept_referrers += 1
        answer = v2.request("GET", f"/v2/{registry.repo(key[0])}/referrers/{subject.digest}")
        listed = [d["digest"] for d in answer.json()["manifests"]]
        assert referrer.digest in listed, (key, referrer.digest, listed)
        for digest, data in referrer.blobs.items():
            blob = v2.request("GET", f"/v2/{registry.repo(key[0])}/blobs/{digest}")
            assert blob.status_code == 307, (digest, blob.status_code)
            fetched = session().get(blob.headers["Location"], timeout=30)
            assert fetched.content == data, f"referrer blob {digest} came back different"
        got = v2.request(
            "GET",
            f"/v2/{registry.repo(key[0])}/manifests/{referrer.digest}",
            headers={"Accept": OCI_MANIFEST},
        )
        assert got.status_code == 200 and got.content == referrer.body
    print(f"referrers of tagged images checked: {kept_referrers}")
    registry.check()
