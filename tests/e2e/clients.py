"""Client wrappers: containers tools (skopeo/podman/buildah) and a direct registry API client.

containers/image keeps a machine-wide BoltDB "blob info cache" for root at
/var/lib/containers/cache (no CLI flag moves it for skopeo; podman and buildah use it as well),
and podman creates /run/containers/networks. The cache remembers which registry/repository
already holds a blob and turns later pushes into cross-repository mount attempts or skipped
uploads, and a stale one from an earlier run would make results depend on history. To give
each test its own cache, every containers tool runs in a private mount namespace
(``unshare --mount``) in which test-private directories are bind-mounted over those two paths.
The system directories are only created empty (as the tools would), never written through.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .daemons import RegistryTarget
from .procs import in_private_mounts, run

SYSTEM_BLOB_CACHE = Path("/var/lib/containers/cache")
SYSTEM_NETWORK_RUN_DIR = Path("/run/containers")


class ContainersTools:
    """skopeo, podman and buildah sharing one private storage, cache, auth file and tmp dir.

    Storage is vfs (no kernel overlay mounts), with ``--root``/``--runroot`` and a private
    storage.conf, containers.conf, registries.conf, auth file (REGISTRY_AUTH_FILE) and TMPDIR
    (containers/image buffers blobs there).
    """

    def __init__(self, base: Path, runroot: Path) -> None:
        self.base = base
        self.root = base / "storage"
        # podman refuses a runroot path longer than 50 characters.
        assert len(str(runroot)) <= 50, runroot
        self.runroot = runroot
        self.cache = base / "blob-info-cache"
        self.netrun = base / "run-containers"
        self.tmp = base / "tmp"
        self.auth_file = base / "auth.json"
        for d in (self.root, self.runroot, self.cache, self.netrun, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.auth_file.write_text('{"auths": {}}\n')
        (base / "registries.conf").write_text("unqualified-search-registries = []\n")
        (base / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n'
        )
        (base / "containers.conf").write_text(
            "[engine]\n"
            f'tmp_dir = "{base / "libpod-tmp"}"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{base / "events.log"}"\n'
            'cgroup_manager = "cgroupfs"\n'
            "[network]\n"
            f'network_config_dir = "{base / "networks"}"\n'
        )
        for d in (SYSTEM_BLOB_CACHE, SYSTEM_NETWORK_RUN_DIR):
            d.mkdir(parents=True, exist_ok=True)
        self._check_namespace_isolation()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TMPDIR": str(self.tmp),
                "REGISTRY_AUTH_FILE": str(self.auth_file),
                "CONTAINERS_REGISTRIES_CONF": str(self.base / "registries.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
                "CONTAINERS_CONF": str(self.base / "containers.conf"),
                "XDG_RUNTIME_DIR": str(self.base / "xdg-runtime"),
                "XDG_CONFIG_HOME": str(self.base / "xdg-config"),
                "XDG_DATA_HOME": str(self.base / "xdg-data"),
            }
        )
        env.pop("DOCKER_CONFIG", None)
        return env

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run with the private blob-info cache and /run/containers mounted."""
        return in_private_mounts(
            [(self.cache, SYSTEM_BLOB_CACHE), (self.netrun, SYSTEM_NETWORK_RUN_DIR)], argv
        )

    def _check_namespace_isolation(self) -> None:
        probe = self.cache / ".probe"
        probe.write_text("private")
        out = run(self.wrap(["cat", str(SYSTEM_BLOB_CACHE / ".probe")]), env=self.env())
        assert out.stdout == b"private", "private blob-info-cache bind mount did not take effect"
        probe.unlink()

    def _run(
        self, argv: list[str], timeout: float, input_data: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return run(self.wrap(argv), env=self.env(), timeout=timeout, input_data=input_data)

    def storage_flags(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "vfs"]

    def skopeo(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        return self._run(["skopeo", "--insecure-policy", *args], timeout)

    def podman(
        self, *args: str, timeout: float = 300, input_data: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return self._run(
            [
                "podman",
                *self.storage_flags(),
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--tmpdir",
                str(self.base / "libpod-tmp"),
                *args,
            ],
            timeout,
            input_data,
        )

    def buildah(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        return self._run(["buildah", *self.storage_flags(), *args], timeout)

    def cache_files(self) -> list[Path]:
        return sorted(p for p in self.cache.iterdir() if p.is_file())


def require_binaries(*names: str) -> None:
    """Skip the calling test when a client binary is not installed."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(
            f"client binary not installed: {', '.join(missing)} "
            "(scripts/install-e2e-deps.sh installs it)"
        )


@dataclass
class Manifest:
    body: bytes
    media_type: str
    digest_header: str | None

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    def json(self) -> Any:
        import json

        return json.loads(self.body)


ALL_MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class RegistryApi:
    """Plain HTTP client for checking what the registry stores, independently of the clients."""

    def __init__(self, target: RegistryTarget) -> None:
        self.target = target
        self.session = requests.Session()
        self.session.auth = (target.username, target.password)

    def _url(self, repository: str, kind: str, ref: str) -> str:
        return f"{self.target.url}/v2/{self.target.name(repository)}/{kind}/{ref}"

    def manifest(self, repository: str, ref: str, accept: str = ALL_MANIFEST_TYPES) -> Manifest:
        resp = self.session.get(
            self._url(repository, "manifests", ref), headers={"Accept": accept}, timeout=60
        )
        assert resp.status_code == 200, (
            f"GET manifest {repository}:{ref} -> {resp.status_code} {resp.text[:500]}"
        )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(resp.content, media_type, resp.headers.get("Docker-Content-Digest"))

    def blob(self, repository: str, digest: str) -> bytes:
        resp = self.session.get(self._url(repository, "blobs", digest), timeout=300)
        assert resp.status_code == 200, (
            f"GET blob {repository}@{digest} -> {resp.status_code} {resp.text[:500]}"
        )
        data = resp.content
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        assert actual == digest, f"blob {digest} served with content hashing to {actual}"
        return data

    def blob_sha256(self, repository: str, digest: str) -> tuple[str, int]:
        """Stream a (possibly large) blob, returning its digest and size."""
        h = hashlib.sha256()
        size = 0
        with self.session.get(
            self._url(repository, "blobs", digest), timeout=300, stream=True
        ) as resp:
            assert resp.status_code == 200, f"GET blob {repository}@{digest} -> {resp.status_code}"
            for chunk in resp.iter_content(1 << 20):
                h.update(chunk)
                size += len(chunk)
        return "sha256:" + h.hexdigest(), size

    def tags(self, repository: str) -> list[str]:
        resp = self.session.get(
            f"{self.target.url}/v2/{self.target.name(repository)}/tags/list", timeout=60
        )
        assert resp.status_code == 200, f"tags/list {repository} -> {resp.status_code}"
        return list(resp.json().get("tags") or [])

    def referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> Any:
        params = {"artifactType": artifact_type} if artifact_type else None
        resp = self.session.get(
            self._url(repository, "referrers", digest), params=params, timeout=60
        )
        assert resp.status_code == 200, (
            f"GET referrers {repository}@{digest} -> {resp.status_code} {resp.text[:500]}"
        )
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        assert ctype == "application/vnd.oci.image.index.v1+json", ctype
        return resp.json()

    def push_monolithic(
        self, repository: str, ref: str, manifest: bytes, media_type: str, blobs: list[bytes]
    ) -> str:
        """Upload blobs (POST, then one PUT each) and a manifest: the simplest pushing client."""
        base = f"{self.target.url}/v2/{self.target.name(repository)}"
        for data in blobs:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            resp = self.session.post(f"{base}/blobs/uploads/", timeout=60)
            assert resp.status_code == 202, (resp.status_code, resp.text)
            location = resp.headers["Location"]
            if location.startswith("/"):
                location = self.target.url + location
            sep = "&" if "?" in location else "?"
            resp = self.session.put(
                f"{location}{sep}digest={digest}",
                data=data,
                headers={"Content-Type": "application/octet-stream"},
                timeout=120,
            )
            assert resp.status_code == 201, (resp.status_code, resp.text)
        resp = self.session.put(
            f"{base}/manifests/{ref}",
            data=manifest,
            headers={"Content-Type": media_type},
            timeout=60,
        )
        assert resp.status_code == 201, (resp.status_code, resp.text)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        assert resp.headers.get("Docker-Content-Digest") == digest
        return digest
