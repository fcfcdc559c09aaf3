"""HTTP client, protocol observers and content builders shared by the conformance tests.

Everything here talks to the registry over real sockets with ``requests``.  Every session made
through :func:`new_session` carries a response hook that records protocol problems (any 5xx,
and any 4xx JSON body that is not a spec-shaped error document); ``conftest.py`` fails the test
that saw one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

# --------------------------------------------------------------------------------------------
# Media types and well-known values
# --------------------------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ACCEPT_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

MIB = 1024 * 1024

# Error codes the distribution spec allows in an error document.
SPEC_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)
# Codes outside the spec's table that a 416 (range) answer may carry; the spec leaves the
# body of a 416 unspecified, so we are lenient there.
LENIENT_RANGE_CODES = frozenset({"RANGE_INVALID", "BLOB_UPLOAD_INVALID"})

_ERROR_CODE_SHAPE = re.compile(r"^[A-Z_]+$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


# --------------------------------------------------------------------------------------------
# Protocol observer
# --------------------------------------------------------------------------------------------


@dataclass
class ProtocolObserver:
    """Collects responses that break suite-wide rules while a test runs."""

    problems: list[str] = field(default_factory=list)
    extra_codes: frozenset[str] = frozenset()

    def reset(self) -> None:
        self.problems.clear()

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        where = f"{request.method} {response.url} -> {response.status_code}"
        if response.status_code >= 500:
            self.problems.append(f"server error: {where}: {response.text[:300]!r}")
            return
        if 400 <= response.status_code < 500 and request.method != "HEAD":
            problem = error_document_problem(response, self.extra_codes)
            if problem is not None:
                self.problems.append(f"bad error document: {where}: {problem}")


OBSERVER = ProtocolObserver()


def is_json_response(response: requests.Response) -> bool:
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def error_document_problem(
    response: requests.Response, extra_codes: Iterable[str] = ()
) -> str | None:
    """Return why a 4xx body is not a spec error document, or None if it is fine.

    The spec lets a 4xx body be in any format, but a JSON body MUST be an error document.
    """
    if not response.content or not is_json_response(response):
        return None
    try:
        doc = response.json()
    except ValueError:
        return f"JSON content type but unparsable body {response.text[:200]!r}"
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list) or not doc["errors"]:
        return f"body is not {{'errors': [...]}}: {doc!r:.300}"
    allowed = SPEC_ERROR_CODES | frozenset(extra_codes)
    if response.status_code == 416:
        allowed |= LENIENT_RANGE_CODES
    for err in doc["errors"]:
        if not isinstance(err, dict):
            return f"error entry is not an object: {err!r}"
        code = err.get("code")
        if not isinstance(code, str) or not _ERROR_CODE_SHAPE.match(code):
            return f"error code {code!r} is not upper-case letters and underscores"
        if code not in allowed:
            return f"error code {code!r} is not one of the spec's codes"
        if "message" in err and not isinstance(err["message"], str):
            return f"error message is not a string: {err['message']!r}"
    return None


def new_session(auth: tuple[str, str] | None) -> requests.Session:
    session = requests.Session()
    session.auth = auth
    session.trust_env = False  # never route loopback traffic through a proxy
    session.hooks["response"].append(OBSERVER)
    return session


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def chunks_of(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def with_query(url: str, params: Mapping[str, str]) -> str:
    """Append query parameters to a URL, keeping whatever query it already carries."""
    sep = "&" if "?" in url else "?"
    return url + sep + urlencode(params)


def resolve_location(response: requests.Response) -> str:
    location = response.headers.get("Location")
    assert location, f"{response.request.method} {response.url} answered without Location"
    return urljoin(response.url, location)


def error_codes(response: requests.Response) -> list[str]:
    try:
        doc = response.json()
    except ValueError:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return []
    return [e.get("code") for e in doc["errors"] if isinstance(e, dict)]


def assert_error(
    response: requests.Response,
    statuses: int | Iterable[int],
    *codes: str,
) -> None:
    """Assert an error answer: its status, a spec-shaped JSON body, and one of ``codes``."""
    allowed = {statuses} if isinstance(statuses, int) else set(statuses)
    assert response.status_code in allowed, (
        f"{response.request.method} {response.url}: expected {sorted(allowed)}, "
        f"got {response.status_code}: {response.text[:300]!r}"
    )
    if not codes:
        return
    assert is_json_response(response) or response.content.lstrip().startswith(b"{"), (
        f"error body is not JSON: {response.headers.get('Content-Type')!r} {response.text[:200]!r}"
    )
    doc = response.json()
    assert isinstance(doc.get("errors"), list) and doc["errors"], doc
    for err in doc["errors"]:
        assert set(err) <= {"code", "message", "detail"}, f"unexpected error fields: {err}"
        assert isinstance(err["code"], str)
        if "message" in err:
            assert isinstance(err["message"], str)
    found = error_codes(response)
    assert any(code in found for code in codes), f"expected one of {codes}, got {found}"


def parse_link_next(response: requests.Response) -> str | None:
    """Return the absolute URL of an RFC 5988 ``rel="next"`` Link header, if any."""
    header = response.headers.get("Link")
    if not header:
        return None
    for part in header.split(","):
        match = re.match(r"\s*<([^>]*)>\s*;(.*)$", part)
        if match and re.search(r'rel="?next"?', match.group(2)):
            return urljoin(response.url, match.group(1))
    return None


def manifest_bytes(doc: Mapping[str, Any]) -> bytes:
    """Serialise a manifest in a deliberately non-canonical layout (indent, trailing newline),
    so that a registry re-serialising it would be caught by the byte-exactness checks."""
    return (json.dumps(doc, indent=3) + "\n").encode()


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """A manifest that was pushed: its bytes, digest and media type."""

    body: bytes
    digest: str
    media_type: str

    @property
    def size(self) -> int:
        return len(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


class RegistryClient:
    """A thin wrapper around ``requests`` bound to one registry and one set of credentials."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = new_session(auth)
        # A credential-less session for following redirects to presigned URLs.
        self.anonymous = new_session(None)

    # -- raw requests -------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.url(path_or_url), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    # -- blobs --------------------------------------------------------------------------------

    def start_upload(self, repo: str, params: Mapping[str, str] | None = None) -> requests.Response:
        return self.post(
            f"/v2/{repo}/blobs/uploads/", params=params, headers={"Content-Length": "0"}
        )

    def new_upload(self, repo: str) -> str:
        """Open an upload session and return its absolute location."""
        resp = self.start_upload(repo)
        assert resp.status_code == 202, f"POST upload: {resp.status_code} {resp.text[:300]!r}"
        return resolve_location(resp)

    def finish_upload(
        self, location: str, digest: str, data: bytes = b"", **kwargs: Any
    ) -> requests.Response:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        headers.update(kwargs.pop("headers", {}))
        return self.put(with_query(location, {"digest": digest}), data=data, headers=headers)

    def push_blob(self, repo: str, data: bytes) -> str:
        """Push a blob with POST then PUT; return its digest."""
        digest = sha256_digest(data)
        resp = self.finish_upload(self.new_upload(repo), digest, data)
        assert resp.status_code == 201, f"PUT blob: {resp.status_code} {resp.text[:300]!r}"
        return digest

    def blob_path(self, repo: str, digest: str) -> str:
        return f"/v2/{repo}/blobs/{digest}"

    def fetch_blob(
        self, repo: str, digest: str, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """GET a blob; follow one redirect *without* credentials, as a client would."""
        resp = self.get(self.blob_path(repo, digest), headers=headers)
        if resp.status_code in _REDIRECTS:
            target = resolve_location(resp)
            resp = self.anonymous.get(target, headers=headers, timeout=60, allow_redirects=True)
        return resp

    # -- manifests ----------------------------------------------------------------------------

    def put_manifest(
        self, repo: str, reference: str, body: bytes, media_type: str
    ) -> requests.Response:
        return self.put(
            f"/v2/{repo}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
        )

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> Pushed:
        resp = self.put_manifest(repo, reference, body, media_type)
        assert resp.status_code == 201, (
            f"PUT manifest {repo}:{reference}: {resp.status_code} {resp.text[:400]!r}"
        )
        return Pushed(body=body, digest=sha256_digest(body), media_type=media_type)

    def get_manifest(self, repo: str, reference: str, method: str = "GET") -> requests.Response:
        return self.request(
            method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_MANIFESTS}
        )

    # -- content builders ---------------------------------------------------------------------

    def oci_image_doc(
        self,
        repo: str,
        *,
        artifact_type: str | None = None,
        subject: Pushed | Mapping[str, Any] | None = None,
        annotations: Mapping[str, str] | None = None,
        layer_count: int = 1,
    ) -> dict[str, Any]:
        """Push config + layers and return an OCI image manifest referencing them."""
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
                "config": {"Labels": {"nonce": uuid.uuid4().hex}},
            }
        ).encode()
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": self.push_blob(repo, config),
                "size": len(config),
            },
            "layers": [self._pushed_layer(repo, OCI_LAYER) for _ in range(layer_count)],
        }
        if artifact_type is not None:
            doc["artifactType"] = artifact_type
        _add_subject_and_annotations(doc, subject, annotations)
        return doc

    def artifact_doc(
        self,
        repo: str,
        *,
        artifact_type: str,
        subject: Pushed | Mapping[str, Any] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Push blobs and return an OCI 1.1 artifact: ``artifactType`` + the empty config."""
        self.push_blob(repo, EMPTY_BLOB)
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)},
            "layers": [self._pushed_layer(repo, "application/vnd.example.payload.v1+json")],
        }
        _add_subject_and_annotations(doc, subject, annotations)
        return doc

    def docker_image_doc(self, repo: str) -> dict[str, Any]:
        """Push blobs and return a Docker schema 2 image manifest."""
        layer = random_bytes(512)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
                "config": {"Labels": {"nonce": uuid.uuid4().hex}},
            }
        ).encode()
        return {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "digest": self.push_blob(repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": DOCKER_LAYER,
                    "digest": self.push_blob(repo, layer),
                    "size": len(layer),
                }
            ],
        }

    def push_oci_image(self, repo: str, reference: str | None = None, **kw: Any) -> Pushed:
        return self.push_doc(repo, reference, self.oci_image_doc(repo, **kw))

    def push_artifact(self, repo: str, reference: str | None = None, **kw: Any) -> Pushed:
        return self.push_doc(repo, reference, self.artifact_doc(repo, **kw))

    def push_docker_image(self, repo: str, reference: str | None = None) -> Pushed:
        return self.push_doc(repo, reference, self.docker_image_doc(repo))

    def index_doc(self, children: Iterable[Pushed], media_type: str = OCI_INDEX) -> dict[str, Any]:
        manifests = []
        for i, child in enumerate(children):
            platform = {
                "architecture": ["amd64", "arm64", "s390x", "ppc64le"][i % 4],
                "os": "linux",
            }
            manifests.append(child.descriptor(platform=platform))
        return {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}

    def _pushed_layer(self, repo: str, media_type: str) -> dict[str, Any]:
        data = random_bytes(256)
        return {"mediaType": media_type, "digest": self.push_blob(repo, data), "size": len(data)}

    def push_doc(self, repo: str, reference: str | None, doc: Mapping[str, Any]) -> Pushed:
        """Push a manifest document (by digest unless a tag is given)."""
        body = manifest_bytes(doc)
        media_type = str(doc["mediaType"])
        return self.push_manifest(repo, reference or sha256_digest(body), body, media_type)


def _add_subject_and_annotations(
    doc: dict[str, Any],
    subject: Pushed | Mapping[str, Any] | None,
    annotations: Mapping[str, str] | None,
) -> None:
    if subject is not None:
        doc["subject"] = subject.descriptor() if isinstance(subject, Pushed) else dict(subject)
    if annotations:
        doc["annotations"] = dict(annotations)
