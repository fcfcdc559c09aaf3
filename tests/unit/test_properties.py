"""Property-based tests (hypothesis) of the HTTP layer over the in-memory adapters: for any
manifest body, page token, reference in a path or Content-Range value, the answer is never a
5xx, and a refused request leaves the metadata store and the blob store exactly as they were.

Each example builds a fresh registry (one pushed image, one open upload session), so that
examples cannot leak state into each other. Generation is derandomized: a failure reproduces.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.api.routes import ManagementApi
from chalicelib.http.messages import HttpRequest, HttpResponse
from chalicelib.http.v2 import V2Api
from chalicelib.registry.auth import Authenticator
from chalicelib.registry.errors import ERROR_TABLE
from chalicelib.registry.management import ManagementService
from chalicelib.registry.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    OCI_ARTIFACT,
    OCI_INDEX,
    OCI_MANIFEST,
)
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.service import RegistryService, ServiceSettings

from .builders import (
    MIB,
    START,
    FakeClock,
    descriptor,
    image_manifest,
    make_token,
    make_v2_api,
    sha256,
)

BASE = "https://registry.example.test"
REGISTRY = "acme"
ACCOUNT = "acct-1"
NAME = f"{REGISTRY}/team/app"
CONFIG, LAYER = b'{"architecture":"amd64","os":"linux"}', b"layer bytes" * 8
PUSHED = image_manifest(CONFIG, [LAYER])

PROPERTY_SETTINGS = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

T = TypeVar("T")


@dataclass
class World:
    """A registry with one image tagged ``v1`` and one open upload session."""

    store: MemoryMetadataStore
    blobs: MemoryBlobStore
    v2: V2Api
    management: ManagementApi
    basic: str
    admin: str
    upload_path: str
    upload_state: str

    def snapshot(self) -> dict[str, Any]:
        """Everything the stores hold (not the blob store's call log)."""
        state = {f"store.{k}": v for k, v in vars(self.store).items() if not k.startswith("_")}
        state.update({f"blobs.{k}": v for k, v in vars(self.blobs).items() if k != "calls"})
        return copy.deepcopy(state)

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        content_length: int | None = -1,
    ) -> HttpResponse:
        all_headers = {"authorization": self.basic, **(headers or {})}
        length = len(body) if content_length == -1 else content_length
        request = HttpRequest(
            method, path, query or {}, all_headers, io.BytesIO(body), length, BASE
        )
        return self.v2.handle(request)

    def manage(self, path: str, query: dict[str, str]) -> HttpResponse:
        headers = {"authorization": f"Bearer {self.admin}"}
        request = HttpRequest("GET", path, query, headers, io.BytesIO(b""), 0, BASE)
        return self.management.handle(request)


def build_world() -> World:
    clock = FakeClock(START)
    store = MemoryMetadataStore()
    store.put_registry(RegistryRecord(name=REGISTRY, account_id=ACCOUNT, created_at=START))
    blobs = MemoryBlobStore()
    service = RegistryService(store, blobs, ServiceSettings(part_size=5 * MIB), clock=clock)
    authenticator = Authenticator(store)
    v2 = make_v2_api(service, store, authenticator)
    management = ManagementApi(ManagementService(store, blobs, service, authenticator, clock=clock))
    push = make_token(store, ACCOUNT, {"push"})
    basic = "Basic " + base64.b64encode(f"{push}:{push}".encode()).decode()
    world = World(
        store, blobs, v2, management, basic, make_token(store, ACCOUNT, {"admin"}), "", ""
    )
    # Content goes in through the API, as a client's would.
    for data in (CONFIG, LAYER):
        query = {"digest": sha256(data)}
        pushed = world.call("POST", f"/v2/{NAME}/blobs/uploads/", data, query=query)
        assert pushed.status == 201, pushed.body
    headers = {"content-type": OCI_MANIFEST}
    tagged = world.call("PUT", f"/v2/{NAME}/manifests/v1", PUSHED, headers)
    assert tagged.status == 201, tagged.body
    started = world.call("POST", f"/v2/{NAME}/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"].removeprefix(BASE)
    world.upload_path, _, world.upload_state = location.partition("?_state=")
    # The first authenticated management call records the token's use; the clock stands
    # still, so later calls write nothing and every change seen is the request's own.
    assert world.manage("/api/v1/tokens", {}).status == 200
    return world


def assert_spec_answer(response: HttpResponse) -> None:
    """Never a 5xx; an error is the spec's document with a code from the table."""
    assert response.status < 500, response.body
    if response.status >= 400 and response.body:
        doc = json.loads(response.body)
        (error,) = doc["errors"]
        assert set(error) == {"code", "message", "detail"}
        assert error["code"] in ERROR_TABLE


def refused_without_change(
    world: World, request: Callable[[], HttpResponse], completes: str | None = None
) -> HttpResponse:
    """Send ``request``; if it is refused, nothing may have changed. The one exception is
    a completion (of upload session ``completes``) whose bytes do not hash to the digest:
    that may end the session, as in the reference implementation, and change nothing else."""
    before = world.snapshot()
    response = request()
    assert_spec_answer(response)
    if response.status >= 400:
        after = world.snapshot()
        code = json.loads(response.body)["errors"][0]["code"] if response.body else None
        if after != before and completes is not None and code == "DIGEST_INVALID":
            before["store.uploads"].pop(completes)
        assert after == before, response.body
    return response


# ---------------------------------------------------------------- strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
DIGEST_LIKE = st.one_of(
    st.sampled_from([sha256(CONFIG), sha256(LAYER), sha256(PUSHED), sha256(b"absent")]),
    st.builds(
        lambda algorithm, hex_: f"{algorithm}:{hex_}",
        st.sampled_from(["sha256", "sha512", "SHA256", "md5", "", "sha256+b64"]),
        st.text(alphabet="0123456789abcdefABCDEF=_-.!", max_size=70),
    ),
)
descriptors = st.one_of(
    st.just(descriptor("application/vnd.oci.image.config.v1+json", CONFIG)),
    st.just(descriptor("application/vnd.oci.image.layer.v1.tar+gzip", LAYER)),
    st.fixed_dictionaries(
        {},
        optional={
            "mediaType": st.one_of(st.text(max_size=30), json_values),
            "digest": st.one_of(DIGEST_LIKE, json_values),
            "size": st.one_of(st.integers(), json_values),
            "urls": json_values,
            "annotations": json_values,
            "artifactType": json_values,
        },
    ),
    json_values,
)
MANIFEST_FIELDS = {
    "schemaVersion": st.one_of(st.sampled_from([1, 2, 3]), json_values),
    "mediaType": st.one_of(
        st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, OCI_ARTIFACT]),
        json_values,
    ),
    "config": descriptors,
    "layers": st.one_of(st.lists(descriptors, max_size=3), json_values),
    "manifests": st.one_of(st.lists(descriptors, max_size=3), json_values),
    "blobs": st.one_of(st.lists(descriptors, max_size=3), json_values),
    "subject": descriptors,
    "artifactType": json_values,
    "annotations": st.one_of(
        st.dictionaries(st.text(max_size=8), st.text(max_size=8)), json_values
    ),
}


@st.composite
def manifest_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The pushed manifest with some fields replaced, dropped or added."""
    doc: dict[str, Any] = json.loads(PUSHED)
    for name in draw(st.lists(st.sampled_from(sorted(MANIFEST_FIELDS)), max_size=4)):
        if draw(st.booleans()):
            doc[name] = draw(MANIFEST_FIELDS[name])
        else:
            doc.pop(name, None)
    return doc


# Nesting depths: small ones, and ones around and far beyond the interpreter's recursion
# limit (1000), where the JSON decoder used to raise RecursionError.
DEPTHS = st.one_of(st.integers(0, 100), st.integers(900, 1100), st.integers(1100, 100_000))


def _nested(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + "1" + closer * depth


manifest_bodies = st.one_of(
    manifest_documents().map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.builds(
        lambda depth, opener, closed: (
            _nested(depth, opener) if closed else opener * depth
        ).encode(),
        DEPTHS,
        st.sampled_from(["[", '{"a":']),
        st.booleans(),
    ),
)
content_types = st.one_of(
    st.sampled_from(
        [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, OCI_ARTIFACT, "", *DOCKER_SCHEMA1]
    ),
    st.text(max_size=40),
)
# One path segment, as a client could send it (no "/", and "?" / "#" end a path).
segments = st.text(
    alphabet=st.characters(exclude_characters="/?#", exclude_categories=["Cs"]),
    min_size=1,
    max_size=150,
)
tags = st.one_of(
    st.sampled_from(["v1", "latest", "v2"]), st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,130}\Z")
)
references = st.one_of(tags, DIGEST_LIKE, segments)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


page_tokens = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(_b64),
    json_values.map(lambda v: _b64(json.dumps(v).encode())),
    json_values.map(lambda v: _b64(json.dumps({"after": v}).encode())),
    DEPTHS.map(lambda depth: _b64(b"[" * depth)),
    st.integers(0, 200_000).map(lambda n: "A" * n),
)
LISTINGS = [
    "/api/v1/tokens",
    f"/api/v1/registries/{REGISTRY}/repositories",
    f"/api/v1/registries/{REGISTRY}/repositories/team%2Fapp/tags",
    f"/api/v1/registries/{REGISTRY}/repositories/team%2Fapp/manifests",
]
# Numbers as text, up to ones longer than ``int()`` accepts (4300 digits).
numbers = st.one_of(
    st.integers(-3, 2**70).map(str),
    st.text(alphabet="0123456789", min_size=15, max_size=40),
    st.integers(4000, 6000).map(lambda n: "9" * n),
)
content_ranges = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda prefix, start, end, total: f"{prefix}{start}-{end}{total}",
        st.sampled_from(["", "bytes=", "bytes ", "items="]),
        numbers,
        numbers,
        st.sampled_from(["", "/*", "/5", "/x"]),
    ),
)


# ---------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(body=manifest_bodies, content_type=content_types, reference=st.one_of(tags, DIGEST_LIKE))
def test_any_manifest_body_is_stored_or_refused_without_change(
    body: bytes, content_type: str, reference: str
) -> None:
    world = build_world()
    response = refused_without_change(
        world,
        lambda: world.call(
            "PUT",
            f"/v2/{NAME}/manifests/{reference}",
            body,
            {"content-type": content_type},
        ),
    )
    if response.status == 201:
        # Accepted: the exact bytes are served under the digest the registry announced.
        digest = response.headers["Docker-Content-Digest"]
        assert digest == sha256(body)
        served = world.call("GET", f"/v2/{NAME}/manifests/{digest}")
        assert served.status == 200
        assert served.body == body


@PROPERTY_SETTINGS
@given(
    path=st.sampled_from(LISTINGS),
    page_token=page_tokens,
    per_page=st.one_of(st.none(), numbers, st.text(max_size=8)),
)
def test_any_page_token_lists_or_is_a_bad_request_without_change(
    path: str, page_token: str, per_page: str | None
) -> None:
    world = build_world()
    query = {"page_token": page_token}
    if per_page is not None:
        query["per_page"] = per_page
    before = world.snapshot()
    response = world.manage(path, query)
    assert response.status in (200, 400), response.body
    if response.status == 400:
        assert json.loads(response.body)["id"] == "bad_request"
    assert world.snapshot() == before  # a listing never writes


ROUTES_WITH_A_REFERENCE = [
    ("GET", "manifests"),
    ("HEAD", "manifests"),
    ("DELETE", "manifests"),
    ("PUT", "manifests"),
    ("GET", "blobs"),
    ("HEAD", "blobs"),
    ("DELETE", "blobs"),
    ("GET", "referrers"),
    ("GET", "blobs/uploads"),
    ("PATCH", "blobs/uploads"),
    ("PUT", "blobs/uploads"),
    ("DELETE", "blobs/uploads"),
]


@PROPERTY_SETTINGS
@given(route=st.sampled_from(ROUTES_WITH_A_REFERENCE), reference=references)
def test_any_reference_in_a_path_is_answered_by_the_spec_without_change_when_refused(
    route: tuple[str, str], reference: str
) -> None:
    world = build_world()
    method, kind = route
    body = PUSHED if (method, kind) == ("PUT", "manifests") else b""
    headers = {"content-type": OCI_MANIFEST} if body else {}
    response = refused_without_change(
        world,
        lambda: world.call(
            method,
            f"/v2/{NAME}/{kind}/{reference}",
            body,
            headers,
            query={"digest": sha256(b"")} if kind == "blobs/uploads" else None,
        ),
    )
    if response.status < 400:  # blob GETs answer 307
        if kind in ("manifests", "blobs") and method != "PUT":
            # Only a reference that names stored content can be read or deleted.
            assert reference in ("v1", sha256(PUSHED), sha256(CONFIG), sha256(LAYER))
        return
    # Every path here has the shape of an endpoint: the refusal is about the reference,
    # in the spec's words, never "no such endpoint".
    expected = {
        "manifests": {"MANIFEST_UNKNOWN", "DIGEST_INVALID"},
        "blobs": {"BLOB_UNKNOWN", "DIGEST_INVALID"},
        "referrers": {"DIGEST_INVALID"},
        "blobs/uploads": {"BLOB_UPLOAD_UNKNOWN"},
    }[kind]
    if (method, kind) == ("PUT", "manifests"):
        expected = {"MANIFEST_INVALID", "DIGEST_INVALID"}  # a tag that cannot be, or a digest
    if method != "HEAD":
        assert json.loads(response.body)["errors"][0]["code"] in expected, response.body
    if ":" not in reference and kind == "manifests" and method in ("GET", "HEAD", "DELETE"):
        # Not digest-shaped: a tag, valid or not, that names nothing.
        assert response.status == 404


@PROPERTY_SETTINGS
@given(
    content_range=content_ranges,
    body=st.binary(max_size=64),
    content_length=st.one_of(st.none(), st.integers(0, 100), st.just(-1)),
    method=st.sampled_from(["PATCH", "PUT"]),
    digest=st.one_of(st.none(), DIGEST_LIKE),
)
def test_any_content_range_appends_or_is_refused_without_change(
    content_range: str, body: bytes, content_length: int | None, method: str, digest: str | None
) -> None:
    world = build_world()
    query = {"_state": world.upload_state}
    if method == "PUT":
        query["digest"] = digest or sha256(body)  # the body's own digest, or any other
    response = refused_without_change(
        world,
        lambda: world.call(
            method,
            world.upload_path,
            body,
            {"content-range": content_range},
            query,
            content_length,
        ),
        completes=world.upload_path.rsplit("/", 1)[1] if method == "PUT" else None,
    )
    if response.status == 202:
        # A chunk that was accepted starts the upload at 0 and is exactly the body sent.
        assert response.headers["Range"] == f"0-{max(len(body) - 1, 0)}"
