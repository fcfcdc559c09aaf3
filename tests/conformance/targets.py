"""Registries the conformance suite can run against.

``PORTSIDE_CONFORMANCE_TARGET`` picks one:

* ``portside`` (default): Portside itself, started by ``tests.support.server.start_registry``.
* ``distribution``: CNCF distribution 2.8 (Debian package ``docker-registry``), used to check
  that the suite itself follows the spec.  Behaviour it lacks is described by its capabilities.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

# Capabilities a target may lack.  Tests that need one are marked ``@pytest.mark.requires(...)``.
SINGLE_POST_UPLOAD = "single_post_upload"  # POST ?digest= with a body -> 201
REFERRERS_API = "referrers_api"  # GET /v2/<name>/referrers/<digest> (spec 1.1)
SUBJECT_HEADER = "subject_header"  # OCI-Subject answered to a PUT with a subject (spec 1.1)
TAG_DELETE = "tag_delete"  # DELETE /v2/<name>/manifests/<tag> removes only the tag
TENANT_NAMESPACES = "tenant_namespaces"  # first name segment must be an existing registry
REPOSITORY_ISOLATION = "repository_isolation"  # blobs are scoped to a repository until mounted
BLOB_REDIRECTS = "blob_redirects"  # GET blob answers 307 to a presigned URL
SCOPED_TOKENS = "scoped_tokens"  # tokens limited by scope and by registry (Portside)
MANIFEST_SIZE_LIMIT = "manifest_size_limit"  # manifests over 4 MiB are refused
TAG_PAGINATION = "tag_pagination"  # tags/list honours n, last and n=0 with Link headers
SORTED_TAGS = "sorted_tags"  # tags/list is in lexical order
ORDERED_CHUNKS = "ordered_chunks"  # a PATCH whose Content-Range skips ahead -> 416
STRICT_TAG_NAMES = "strict_tag_names"  # a malformed tag in a manifest PUT -> 400 (not 404)

ALL_CAPABILITIES = frozenset(
    {
        SINGLE_POST_UPLOAD,
        REFERRERS_API,
        SUBJECT_HEADER,
        TAG_DELETE,
        TENANT_NAMESPACES,
        REPOSITORY_ISOLATION,
        BLOB_REDIRECTS,
        SCOPED_TOKENS,
        MANIFEST_SIZE_LIMIT,
        TAG_PAGINATION,
        SORTED_TAGS,
        ORDERED_CHUNKS,
        STRICT_TAG_NAMES,
    }
)


@dataclass(frozen=True)
class Target:
    """A running registry under test."""

    name: str
    url: str
    registry: str
    username: str
    password: str
    capabilities: frozenset[str]
    # Portside-only administration hooks (None elsewhere).
    create_token: Callable[[list[str], list[str] | None], str] | None = field(
        default=None, compare=False
    )
    create_registry: Callable[[str], None] | None = field(default=None, compare=False)

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    # Flags, spelled out for readability at call sites.
    @property
    def supports_referrers(self) -> bool:
        return self.supports(REFERRERS_API)

    @property
    def supports_tag_delete(self) -> bool:
        return self.supports(TAG_DELETE)

    @property
    def supports_scoped_tokens(self) -> bool:
        return self.supports(SCOPED_TOKENS)


# --------------------------------------------------------------------------------------------
# Portside
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def portside_target(workdir: Path) -> Iterator[Target]:
    try:
        from tests.support.server import start_registry  # written alongside Portside itself
    except ModuleNotFoundError as exc:
        if exc.name not in ("tests", "tests.support"):
            raise
        # Plain `pytest` (unlike `python -m pytest`) may not put the repository root on sys.path.
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from tests.support.server import start_registry

    with start_registry(workdir) as running:
        yield Target(
            name="portside",
            url=running.url.rstrip("/"),
            registry=running.registry,
            username=running.token,
            password=running.token,
            capabilities=ALL_CAPABILITIES,
            create_token=running.create_token,
            create_registry=running.create_registry,
        )


# --------------------------------------------------------------------------------------------
# CNCF distribution 2.8
# --------------------------------------------------------------------------------------------

DISTRIBUTION_BINARY = "/usr/bin/docker-registry"
# What distribution 2.8 does of the optional/1.1/Portside behaviours (checked by running the
# suite): blobs are linked per repository and manifests over 4 MiB are refused.  It lacks the
# rest: single-POST uploads (answers 202), referrers and OCI-Subject (1.1), tag deletion
# (answers 400), tag ordering and n/last pagination, Content-Range order checks, and it routes
# malformed tags to a plain-text 404.
DISTRIBUTION_CAPABILITIES = frozenset({REPOSITORY_ISOLATION, MANIFEST_SIZE_LIMIT})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _htpasswd_line(username: str, password: str) -> str:
    tool = shutil.which("htpasswd")
    if tool:
        out = subprocess.run(
            [tool, "-nbB", username, password], check=True, capture_output=True, text=True
        ).stdout
        return out.strip().splitlines()[0]
    try:
        import bcrypt  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - environment problem
        raise RuntimeError(
            "need `htpasswd` (apt-get install -y apache2-utils) or the python bcrypt package"
        ) from exc
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    return f"{username}:{hashed}"


def _wait_until_listening(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited early:\n{log.read_text()[-2000:]}")
        try:
            requests.get(f"{url}/v2/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not start:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def distribution_target(workdir: Path) -> Iterator[Target]:
    if not os.access(DISTRIBUTION_BINARY, os.X_OK):
        raise RuntimeError(
            f"{DISTRIBUTION_BINARY} not found: apt-get install -y docker-registry apache2-utils"
        )
    username, password = "conformance", secrets.token_hex(12)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(_htpasswd_line(username, password) + "\n")
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(
        f"""\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
auth:
  htpasswd:
    realm: conformance
    path: {htpasswd}
"""
    )
    log = workdir / "registry.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [DISTRIBUTION_BINARY, "serve", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        try:
            _wait_until_listening(url, proc, log)
            yield Target(
                name="distribution",
                url=url,
                registry="conf",
                username=username,
                password=password,
                capabilities=DISTRIBUTION_CAPABILITIES,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


TARGETS: dict[str, Callable[[Path], contextlib.AbstractContextManager[Target]]] = {
    "portside": portside_target,
    "distribution": distribution_target,
}
