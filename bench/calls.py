"""AWS calls per registry operation, measured on the in-process registry (moto).

Each operation is driven over HTTP exactly as the real clients do it (FACTS.md), with the
botocore hook of ``bench.awscalls`` counting what the registry asks of AWS in between.
Everything a client does before the operation (obtaining a JWT, pushing what is pulled)
happens outside the measured window.

    python -m bench.calls                 # table on stdout
    python -m bench.calls --json out.json # also the JSON (``-`` for stdout only)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from . import awscalls
from .inproc import InProcessRegistry, in_process_registry

SMALL = 64 * 1024
MULTIPART = 10 * 1024 * 1024  # > one 8 MiB part: the multipart path
# The final PUT of a blob this large must cost what a 10 MiB one does (no copy, no re-read).
LARGE_COMMIT = 1024 * 1024 * 1024
PULL_LAYERS = (1, 5, 10)
# The collection measured: GC_REPOSITORIES repositories of GC_IMAGES images of
# GC_IMAGE_BLOBS blobs (a config and its layers, all distinct); the tags of half the images
# are deleted before the collection, so half the blobs are kept and half are collected.
GC_REGISTRY = "bench-gc"
GC_REPOSITORIES = 4
GC_IMAGES = 10
GC_IMAGE_BLOBS = 5
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Client:
    """A minimal registry client speaking like docker/skopeo (Bearer) or with Basic."""

    reg: InProcessRegistry
    repo: str
    bearer: bool = True

    def __post_init__(self) -> None:
        self.http = requests.Session()
        self.requests = 0
        self._jwt: str | None = None

    @property
    def name(self) -> str:
        return f"{self.reg.registry}/{self.repo}"

    def basic(self) -> str:
        raw = f"{self.reg.token}:{self.reg.token}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def fetch_jwt(self) -> str:
        scope = f"repository:{self.name}:pull,push"
        resp = self.http.get(
            f"{self.reg.url}/v2/token",
            params={"service": "portside", "scope": scope},
            headers={"Authorization": self.basic()},
            timeout=30,
        )
        resp.raise_for_status()
        self._jwt = str(resp.json()["token"])
        return self._jwt

    def auth(self) -> dict[str, str]:
        if not self.bearer:
            return {"Authorization": self.basic()}
        if self._jwt is None:
            self.fetch_jwt()
        return {"Authorization": f"Bearer {self._jwt}"}

    def call(
        self, method: str, url: str, expect: int, headers: dict[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        if url.startswith("/"):
            url = self.reg.url + url
        self.requests += 1
        resp = self.http.request(
            method,
            url,
            headers={**self.auth(), **(headers or {})},
            allow_redirects=False,
            timeout=120,
            **kw,
        )
        if resp.status_code != expect:
            raise AssertionError(f"{method} {url} -> {resp.status_code} {resp.text[:300]}")
        return resp

    # -- flows as the real clients drive them --------------------------------------------

    def start_and_patch(self, size: int) -> tuple[str, str]:
        """POST and one PATCH streaming ``size`` random bytes (chunked, as docker sends a
        layer); returns the Location for the final PUT and the blob's digest."""
        hasher = hashlib.sha256()
        block = os.urandom(1024 * 1024)

        def body() -> Iterator[bytes]:
            sent = 0
            while sent < size:
                chunk = block[: size - sent]
                hasher.update(chunk)
                sent += len(chunk)
                yield chunk

        resp = self.call("POST", f"/v2/{self.name}/blobs/uploads/", 202)
        resp = self.call(
            "PATCH",
            resp.headers["Location"],
            202,
            data=body(),
            headers={"Content-Type": "application/octet-stream"},
        )
        return resp.headers["Location"], "sha256:" + hasher.hexdigest()

    def finish_upload(self, location: str, digest: str) -> None:
        sep = "&" if "?" in location else "?"
        self.call("PUT", f"{location}{sep}digest={digest}", 201)

    def push_blob(self, data: bytes) -> str:
        """skopeo/podman/docker: POST, one PATCH with the whole blob, empty PUT ?digest=."""
        digest = sha256(data)
        resp = self.call("POST", f"/v2/{self.name}/blobs/uploads/", 202)
        location = resp.headers["Location"]
        resp = self.call(
            "PATCH",
            location,
            202,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        location = resp.headers["Location"]
        sep = "&" if "?" in location else "?"
        self.call("PUT", f"{location}{sep}digest={digest}", 201)
        return digest

    def push_blob_monolithic(self, data: bytes) -> str:
        """containerd: POST, then one PUT ?digest= carrying the whole blob."""
        digest = sha256(data)
        resp = self.call("POST", f"/v2/{self.name}/blobs/uploads/", 202)
        location = resp.headers["Location"]
        sep = "&" if "?" in location else "?"
        self.call(
            "PUT",
            f"{location}{sep}digest={digest}",
            201,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    def put_manifest(self, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> None:
        self.call(
            "PUT",
            f"/v2/{self.name}/manifests/{ref}",
            201,
            data=body,
            headers={"Content-Type": media_type},
        )

    def pull(self, tag: str) -> int:
        """docker/containerd after the token: manifest by tag, the config, every layer
        (each blob GET answers the 307; S3 is not followed)."""
        resp = self.call(
            "GET", f"/v2/{self.name}/manifests/{tag}", 200, headers={"Accept": OCI_MANIFEST}
        )
        manifest = resp.json()
        blobs = [manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])]
        for digest in blobs:
            self.call("GET", f"/v2/{self.name}/blobs/{digest}", 307)
        return len(blobs)


def make_image(client: Client, label: str, layers: int) -> tuple[bytes, list[str]]:
    """Push ``layers`` small layers and a config (unmeasured); return the manifest."""
    layer_descs: list[dict[str, Any]] = []
    for i in range(layers):
        data = f"{label}-layer-{i}-".encode() + os.urandom(1024)
        layer_descs.append(
            {"mediaType": OCI_LAYER, "digest": client.push_blob(data), "size": len(data)}
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "label": label,
        }
    ).encode()
    config_desc: dict[str, Any] = {
        "mediaType": OCI_CONFIG,
        "digest": client.push_blob(config),
        "size": len(config),
    }
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }
    ).encode()
    return manifest, [config_desc["digest"], *(d["digest"] for d in layer_descs)]


@dataclass
class Measured:
    description: str
    http_requests: int
    tally: awscalls.Tally
    # Whatever else the operation's consumers need to scale it (the collection's size).
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "http_requests": self.http_requests,
            **self.tally.summary(),
            **self.extra,
        }


class Recorder:
    def __init__(self) -> None:
        self.results: dict[str, Measured] = {}

    @contextmanager
    def op(self, name: str, description: str, client: Client) -> Iterator[None]:
        before = client.requests
        with awscalls.measure() as tally:
            yield
        self.results[name] = Measured(description, client.requests - before, tally)


def measure_all(reg: InProcessRegistry) -> dict[str, Any]:
    rec = Recorder()
    c = Client(reg, "calls/app")
    b = Client(reg, "calls/app", bearer=False)

    # -- auth ----------------------------------------------------------------------------
    with rec.op("token_issue", "GET /v2/token with Basic (first use of the API token)", c):
        c.requests += 1
        c.fetch_jwt()
    with rec.op("token_issue_again", "GET /v2/token again within a minute", c):
        c.requests += 1
        c.fetch_jwt()
    with rec.op("ping_basic", "GET /v2/ with Basic (API token)", b):
        b.call("GET", "/v2/", 200)
    with rec.op("ping_bearer", "GET /v2/ with a Bearer JWT", c):
        c.call("GET", "/v2/", 200)

    # -- pushes --------------------------------------------------------------------------
    small = os.urandom(SMALL)
    # The commit guesses "new blob, existing repository"; the first blob of a repository
    # proves the guess wrong once (one more transaction), every later push does not.
    with rec.op("blob_push_first", "first blob push into a new repository", c):
        c.push_blob(os.urandom(SMALL))
    with rec.op("blob_push", "blob push, 64 KiB: POST, PATCH, PUT ?digest= (Bearer)", c):
        c.push_blob(small)
    with rec.op("blob_push_monolithic", "blob push, 64 KiB: POST, PUT ?digest= with body (ctr)", c):
        c.push_blob_monolithic(os.urandom(SMALL))
    with rec.op("blob_push_10mib", "blob push, 10 MiB: POST, PATCH, PUT (S3 multipart path)", c):
        c.push_blob(os.urandom(MULTIPART))
    with rec.op("blob_push_existing", "blob push of a blob the repository already has", c):
        c.push_blob(small)
    with rec.op("blob_push_basic", "blob push, 64 KiB, with Basic on every request", b):
        b.push_blob(os.urandom(SMALL))

    manifest, blobs = make_image(c, "five", 5)
    with rec.op("manifest_push", "manifest PUT by tag, 5 layers, repository exists", c):
        c.put_manifest("v1", manifest)
    with rec.op("manifest_push_again", "manifest PUT of the same manifest under a new tag", c):
        c.put_manifest("v2", manifest)
    fresh = Client(reg, "calls/fresh")
    fresh_manifest, _ = make_image(fresh, "fresh", 1)
    with rec.op("manifest_push_new_tag", "manifest PUT by tag, 1 layer, another repository", fresh):
        fresh.put_manifest("v1", fresh_manifest)

    # -- reads ---------------------------------------------------------------------------
    with rec.op("manifest_head_tag", "manifest HEAD by tag", c):
        c.call("HEAD", f"/v2/{c.name}/manifests/v1", 200, headers={"Accept": OCI_MANIFEST})
    with rec.op("manifest_get_tag", "manifest GET by tag", c):
        c.call("GET", f"/v2/{c.name}/manifests/v1", 200, headers={"Accept": OCI_MANIFEST})
    digest = sha256(manifest)
    with rec.op("manifest_get_digest", "manifest GET by digest", c):
        c.call("GET", f"/v2/{c.name}/manifests/{digest}", 200, headers={"Accept": OCI_MANIFEST})
    with rec.op("blob_head", "blob HEAD", c):
        c.call("HEAD", f"/v2/{c.name}/blobs/{blobs[1]}", 200)
    with rec.op("blob_get", "blob GET (307 to presigned S3 URL, not followed)", c):
        c.call("GET", f"/v2/{c.name}/blobs/{blobs[1]}", 307)
    with rec.op("tag_list", "GET tags/list", c):
        c.call("GET", f"/v2/{c.name}/tags/list", 200)

    for layers in PULL_LAYERS:
        repo = Client(reg, f"calls/pull{layers}")
        image, _ = make_image(repo, f"pull{layers}", layers)
        repo.put_manifest("latest", image)
        with rec.op(
            f"pull_{layers}",
            f"pull of a {layers}-layer image: manifest GET by tag, config + {layers} "
            "layer GETs (Bearer)",
            repo,
        ):
            repo.pull("latest")
    basic_puller = Client(reg, "calls/pull5", bearer=False)
    with rec.op(
        "pull_5_basic", "pull of the 5-layer image with Basic on every request", basic_puller
    ):
        basic_puller.pull("latest")

    # Last: streaming 1 GiB takes long enough to expire the registry-record cache that the
    # Basic-auth operations above count on.
    for name, size, label in (
        ("blob_commit_10mib", MULTIPART, "10 MiB"),
        ("blob_commit_1gib", LARGE_COMMIT, "1 GiB"),
    ):
        location, digest = c.start_and_patch(size)
        with rec.op(name, f"the final PUT ?digest= of a {label} blob (after one PATCH)", c):
            c.finish_upload(location, digest)

    measure_collection(reg, rec)

    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": "botocore before-call hook on every client of the in-process registry "
        "(moto in-process, LocalGateway under cheroot); one HTTP flow per operation",
        "operations": {name: m.to_json() for name, m in rec.results.items()},
    }


def _counting_collector() -> Any:
    """A GarbageCollector (as ``wiring`` builds it, with an engine that does nothing: the
    bench drives the steps) that counts the steps of each phase."""
    from chalicelib.registry.gc import CollectionSettings, GarbageCollector, StepOutcome
    from chalicelib.registry.records import Collection, RegistryRecord
    from chalicelib.wiring import _stores

    class NoEngine:
        def start(self, registry_id: str, gc_uuid: str) -> None:
            pass

    class CountingCollector(GarbageCollector):
        steps: Counter[str]

        def _count(self, phase: str) -> None:
            self.steps[phase] += 1

        def _begin(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("begin")
            return super()._begin(gc, registry)

        def _wait(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("wait")
            return super()._wait(gc, registry)

        def _scan(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("scan")
            return super()._scan(gc, registry)

        def _sweep_blobs(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("blobs")
            return super()._sweep_blobs(gc, registry)

        def _sweep_links(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("links")
            return super()._sweep_links(gc, registry)

        def _sweep_objects(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("objects")
            return super()._sweep_objects(gc, registry)

        def _sweep_uploads(self, gc: Collection, registry: RegistryRecord) -> StepOutcome:
            self._count("uploads")
            return super()._sweep_uploads(gc, registry)

    store, blobs = _stores()
    collector = CountingCollector(store, blobs, NoEngine(), CollectionSettings(wait=timedelta(0)))
    collector.steps = Counter()
    return collector


def measure_collection(reg: InProcessRegistry, rec: Recorder) -> None:
    """A whole read-only collection of a registry of its own (nothing else in it): start
    and every step until done, as the state machine drives it, inside the measured window.
    The registry is filled through the API first (unmeasured)."""
    from portside.local.runtime import provision

    provision(GC_REGISTRY, reg.token)
    gc_reg = replace(reg, registry=GC_REGISTRY)
    kept = deleted = 0
    for r in range(GC_REPOSITORIES):
        client = Client(gc_reg, f"gc/app{r}")
        remover = Client(gc_reg, f"gc/app{r}", bearer=False)  # Basic: delete scope
        for i in range(GC_IMAGES):
            image, image_blobs = make_image(client, f"gc{r}-{i}", GC_IMAGE_BLOBS - 1)
            client.put_manifest(f"v{i}", image)
            if i % 2:
                remover.call("DELETE", f"/v2/{client.name}/manifests/v{i}", 202)
                deleted += len(image_blobs)
            else:
                kept += len(image_blobs)
    collector = _counting_collector()
    store = collector.store
    registry = store.get_registry(GC_REGISTRY)
    assert registry is not None
    steps = 0
    with awscalls.measure() as tally:
        gc = collector.start(registry)
        while True:
            steps += 1
            if collector.step(registry.registry_id, gc.uuid).done:
                break
    final = store.get_collection(registry.registry_id, gc.uuid)
    assert final is not None and final.status == "succeeded", final
    assert final.blobs_deleted == deleted, (final.blobs_deleted, deleted)
    blobs = kept + deleted
    rec.results[f"gc_{blobs}_blobs"] = Measured(
        f"a whole read-only collection (start and {steps} steps) of {blobs} blobs in "
        f"{GC_REPOSITORIES} repositories: {kept} kept (tagged), {deleted} deleted (their "
        "tags deleted)",
        0,
        tally,
        {
            "gc": {
                "blobs": blobs,
                "blobs_kept": kept,
                "blobs_deleted": final.blobs_deleted,
                "manifests_deleted": final.manifests_deleted,
                "repositories_scanned": final.repositories_scanned,
                "manifests_scanned": final.manifests_scanned,
                "blobs_scanned": final.blobs_scanned,
                "objects_scanned": final.objects_scanned,
                "steps": steps,
                "steps_by_phase": dict(collector.steps),
                "page": collector.settings.page,
                "budget": collector.settings.budget,
            }
        },
    )


def table(data: dict[str, Any]) -> str:
    head = f"{'operation':<24} {'http':>4} {'ddb R':>5} {'ddb W':>5} {'s3':>3} {'all':>4}  calls"
    lines = [head, "-" * len(head)]
    for name, op in data["operations"].items():
        detail = ", ".join(f"{k} x{v}" for k, v in op["breakdown"].items())
        lines.append(
            f"{name:<24} {op['http_requests']:>4} {op['dynamodb_reads']:>5} "
            f"{op['dynamodb_writes']:>5} {op['s3_calls']:>3} {op['total_calls']:>4}  {detail}"
        )
    return "\n".join(lines)


def git_commit() -> str:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "chalicelib", "app.py"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def run() -> dict[str, Any]:
    with in_process_registry() as reg:
        data = measure_all(reg)
    data["commit"] = git_commit()
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the JSON here ('-': stdout, no table)")
    args = parser.parse_args(argv)
    data = run()
    if args.json == "-":
        json.dump(data, sys.stdout, indent=2)
        print()
        return 0
    print(table(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
