"""Clients and checks shared by the management API and security suites.

``Contract`` reads ``chalicelib/api/openapi.yaml`` and checks a response against the
operation it answers: the status must be documented, a JSON body must validate against the
resolved response schema (OpenAPI 3.0 semantics, ``nullable`` included) and error bodies
must be ``{"id", "message"}``. ``Api`` sends requests over real sockets and applies the
contract to every answer. ``V2`` pushes content through ``/v2/`` with HTTP Basic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import jwt
import requests
import yaml
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator

ROOT = Path(__file__).resolve().parents[2]
OPENAPI_PATH = ROOT / "chalicelib" / "api" / "openapi.yaml"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def enc(repository: str) -> str:
    """A repository name as a path segment of the management API (``/`` as ``%2F``)."""
    return quote(repository, safe="")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:{token}".encode()).decode()


def bearer(token: str) -> str:
    return "Bearer " + token


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only, never through a proxy
    return s


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, decoded without verifying anything (what a client can read)."""
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# ------------------------------------------------------------------------------ contract


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            merged = {k: v for k, v in node.items() if k != "$ref"}
            resolved = _resolve(target, root)
            return {**resolved, **merged} if merged else resolved
        return {k: _resolve(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root) for v in node]
    return node


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    responses: dict[str, Any]


@dataclass
class Contract:
    spec: dict[str, Any]
    operations: list[Operation] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path = OPENAPI_PATH) -> Contract:
        raw = yaml.safe_load(path.read_text())
        spec = _resolve(raw, raw)
        contract = cls(spec)
        for template, item in spec["paths"].items():
            regex = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$"
            for method, op in item.items():
                if method == "parameters":
                    continue
                contract.operations.append(
                    Operation(
                        method.upper(),
                        template,
                        op["operationId"],
                        re.compile(regex),
                        op["responses"],
                    )
                )
        # Literal paths (validate-name, options) before templated ones.
        contract.operations.sort(key=lambda o: o.template.count("{"))
        return contract

    def operation(self, method: str, path: str) -> Operation | None:
        for op in self.operations:
            if op.method == method and op.pattern.match(path):
                return op
        return None

    def problems(self, response: requests.Response) -> list[str]:
        """Why ``response`` breaks the contract of the operation it answers (empty: it
        does not)."""
        request = response.request
        path = urlsplit(request.path_url).path
        op = self.operation(str(request.method), path)
        where = f"{request.method} {path} -> {response.status_code}"
        if op is None:
            return [f"{where}: no operation in openapi.yaml"]
        documented = op.responses.get(str(response.status_code))
        if documented is None:
            return [
                f"{where}: status not documented for {op.operation_id} "
                f"(documented: {sorted(op.responses)}); body {response.text[:200]!r}"
            ]
        content = documented.get("content")
        if not content:
            if response.content:
                return [f"{where}: documented without a body, got {response.text[:200]!r}"]
            return []
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in content:
            return [f"{where}: content type {ctype!r} not in {sorted(content)}"]
        try:
            body = response.json()
        except ValueError:
            return [f"{where}: body is not JSON: {response.text[:200]!r}"]
        return [f"{where}: {error}" for error in validate(content[ctype]["schema"], body)]


@cache
def contract() -> Contract:
    return Contract.load()


def validate(schema: dict[str, Any], instance: Any) -> list[str]:
    checker = FormatChecker()
    checker.checks("date-time")(_date_time)
    validator = OAS30Validator(schema, format_checker=checker)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


# ------------------------------------------------------------------------------ clients


class ContractError(AssertionError):
    pass


class Api:
    """The management API with one API token; every answer is checked against the
    contract (``check=False`` to look at a non-conforming answer)."""

    def __init__(self, base_url: str, token: str | None, check: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.check = check
        self.http = session()

    def with_token(self, token: str | None) -> Api:
        return Api(self.base_url, token, self.check)

    def request(
        self,
        method: str,
        path: str,
        *,
        expect: int | None = None,
        check: bool | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        sent = dict(headers or {})
        if self.token is not None and "Authorization" not in sent:
            sent["Authorization"] = bearer(self.token)
        kwargs.setdefault("timeout", 30)
        response = self.http.request(method, self.base_url + path, headers=sent, **kwargs)
        if self.check if check is None else check:
            problems = contract().problems(response)
            if problems:
                raise ContractError("contract violation:\n  " + "\n  ".join(problems))
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} {path}: expected {expect}, got {response.status_code}: "
                f"{response.text[:400]!r}"
            )
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    # convenience
    def create_registry(self, name: str, tier: str = "professional") -> dict[str, Any]:
        body = {"name": name, "subscription_tier_slug": tier}
        registry: dict[str, Any] = self.post("/api/v1/registries", json=body, expect=201).json()[
            "registry"
        ]
        return registry

    def create_token(
        self,
        scopes: list[str],
        registries: list[str] | None = None,
        expiry_seconds: int | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name or unique("tok"), "scopes": scopes}
        if registries is not None:
            body["registries"] = registries
        if expiry_seconds is not None:
            body["expiry_seconds"] = expiry_seconds
        token: dict[str, Any] = self.post("/api/v1/tokens", json=body, expect=201).json()["token"]
        return token

    def all_pages(self, path: str, key: str, per_page: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"per_page": per_page}
        for _ in range(1000):
            page = self.get(path, params=params, expect=200).json()
            assert len(page[key]) <= per_page
            items.extend(page[key])
            following = page["links"].get("next_page_token")
            if following is None:
                assert "next_page_token" not in page["links"]
                return items
            assert page[key], "a page with a next_page_token must not be empty"
            params = {"per_page": per_page, "page_token": following}
        raise AssertionError("pagination did not end")


@dataclass(frozen=True)
class Image:
    repo: str  # <registry>/<repository>
    tag: str | None
    manifest: bytes
    digest: str
    config_digest: str
    config_size: int
    layers: tuple[tuple[str, int], ...]

    @property
    def compressed_size(self) -> int:
        return self.config_size + sum(size for _, size in self.layers)

    @property
    def blobs(self) -> list[tuple[str, int]]:
        return [(self.config_digest, self.config_size), *self.layers]


class V2:
    """The /v2/ API with one authorization header value (Basic or Bearer) or none."""

    def __init__(self, base_url: str, authorization: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.authorization = authorization
        self.http = session()

    @classmethod
    def basic(cls, base_url: str, token: str) -> V2:
        return cls(base_url, basic(token))

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.authorization is not None:
            headers.setdefault("Authorization", self.authorization)
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 30)
        url = path if path.startswith("http") else self.base_url + path
        return self.http.request(method, url, headers=headers, **kwargs)

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        started = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, (started.status_code, started.text)
        location = urljoin(started.url, started.headers["Location"])
        done = self.request(
            "PUT",
            location,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, (done.status_code, done.text)
        return digest

    def push_image(
        self, repo: str, tag: str | None, layer_sizes: tuple[int, ...] = (1500,)
    ) -> Image:
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "nonce": uuid.uuid4().hex,
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode()
        config_digest = self.push_blob(repo, config)
        layers = []
        for size in layer_sizes:
            data = os.urandom(size)
            layers.append((self.push_blob(repo, data), size))
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
            },
            indent=2,
        ).encode()
        digest = sha256_digest(manifest)
        put = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag or digest}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, (put.status_code, put.text)
        return Image(repo, tag, manifest, digest, config_digest, len(config), tuple(layers))

    def tag(self, image: Image, tag: str) -> None:
        put = self.request(
            "PUT",
            f"/v2/{image.repo}/manifests/{tag}",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, (put.status_code, put.text)

    def manifest_status(self, repo: str, reference: str) -> int:
        return self.request(
            "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
        ).status_code

    def jwt(self, token: str, *scopes: str) -> str:
        """A registry JWT from the token endpoint (GET, Basic)."""
        answer = self.http.get(
            f"{self.base_url}/v2/token",
            params=[("service", "portside"), *(("scope", s) for s in scopes)],
            headers={"Authorization": basic(token)},
            timeout=30,
        )
        assert answer.status_code == 200, (answer.status_code, answer.text)
        value: str = answer.json()["token"]
        return value


def error_code(response: requests.Response) -> str | None:
    """The first OCI error code of a /v2/ answer, or the ``id`` of a management API error."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        code = body["errors"][0].get("code")
        return str(code) if code is not None else None
    if isinstance(body, dict) and "id" in body:
        return str(body["id"])
    return None


def assert_api_error(response: requests.Response, status: int, error_id: str) -> None:
    assert response.status_code == status, (status, response.status_code, response.text[:300])
    body = response.json()
    assert set(body) >= {"id", "message"}, body
    assert body["id"] == error_id, body
    assert isinstance(body["message"], str) and body["message"], body


def assert_v2_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, (status, response.status_code, response.text[:300])
    if response.request.method == "HEAD":
        return
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    assert body["errors"][0]["code"] == code, body
