"""The /v2/ API: a route table of the distribution spec's endpoints and thin handlers that
call the registry service. Authentication and authorization happen here, per route."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

from chalicelib.registry import untrusted_json
from chalicelib.registry.auth import (
    AccessGrant,
    Action,
    Authenticator,
    Principal,
    RegistryTokens,
    RequestedScope,
    UploadCapability,
    utcnow,
)
from chalicelib.registry.digests import is_digest
from chalicelib.registry.direct_uploads import (
    PARTS_PER_ANSWER,
    DirectUploads,
    PartUrl,
)
from chalicelib.registry.errors import (
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    DigestInvalidError,
    GarbageCollectionRunningError,
    ManifestTooBigError,
    ManifestUnknownError,
    NameUnknownError,
    PaginationNumberInvalidError,
    RegistryError,
    RequestTooLargeError,
    SizeInvalidError,
    UnauthorizedError,
    UnsupportedError,
)
from chalicelib.registry.manifests import MAX_MANIFEST_BYTES, OCI_INDEX
from chalicelib.registry.names import RepositoryName, is_decimal, is_tag
from chalicelib.registry.records import DirectUpload, UploadSession
from chalicelib.registry.service import (
    RegistryService,
    parse_content_range,
    range_header,
)

from .errors import error_response, internal_error_response
from .messages import HttpRequest, HttpResponse
from .routing import Route, match_route, route
from .telemetry import record_request

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
# Advertised on every ping answer (200 and 401): docs/direct-uploads.md.
EXTENSIONS_HEADER = {"Portside-Extensions": "direct-uploads/v1"}
# Direct upload requests are small JSON documents (a completion lists at most 10,000 parts).
MAX_DIRECT_JSON = 1024 * 1024
JSON = "application/json"
MAX_TOKEN_FORM = 64 * 1024
# Upload session ids as the service issues them (UUIDs), with room to spare.
UPLOAD_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")

# What a Bearer challenge asks the token endpoint for, per action.
SCOPE_ACTIONS = {Action.PULL: "pull", Action.PUSH: "pull,push", Action.DELETE: "delete"}

Handler = Callable[["V2Api", HttpRequest, dict[str, str]], HttpResponse]


class V2Api:
    """Dispatches /v2/ requests; every error leaves as the spec's JSON error body."""

    def __init__(
        self,
        service: RegistryService,
        authenticator: Authenticator,
        capability: UploadCapability,
        tokens: RegistryTokens,
        public_url: str | None = None,
        upload_url: str | None = None,
        direct: DirectUploads | None = None,
    ) -> None:
        self.service = service
        # Without a queue every direct upload is verified within its completing request.
        self.direct = direct or DirectUploads(service)
        self.auth = authenticator
        self.capability = capability
        self.tokens = tokens
        self.public_url = public_url
        self.upload_url = upload_url

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        route_name = "unknown"
        try:
            route_name, handler, params = self._route(request)
            response = handler(self, request, params)
        except RegistryError as error:
            response = error_response(error, request.method)
            if error.status == 401:
                response.headers.setdefault("WWW-Authenticate", self._challenge(request))
        except Exception as exc:  # never a bare 500: log it and answer the spec's body
            response = internal_error_response(exc, request.method)
        response.headers.update(API_VERSION_HEADER)
        if route_name == "ping":
            response.headers.update(EXTENSIONS_HEADER)
        if request.method == "HEAD":
            response.body = b""
        record_request(request, response, route_name, (time.perf_counter() - started) * 1000)
        return response

    @staticmethod
    def _route(request: HttpRequest) -> tuple[str, Handler, dict[str, str]]:
        handler, params = match_route(ROUTES, request.method, request.path)
        return handler.__name__, handler, params

    # ---------------------------------------------------------------- helpers

    def _challenge(
        self, request: HttpRequest, scope: str | None = None, error: str | None = None
    ) -> str:
        challenge = f'Bearer realm="{self._base(request)}/v2/token",service="{self.tokens.service}"'
        if scope:
            challenge += f',scope="{scope}"'
        if error:
            challenge += f',error="{error}"'
        return challenge

    def _credentials(self, request: HttpRequest) -> tuple[str, str] | None:
        """("basic", API token) or ("bearer", registry JWT), or None when absent."""
        header = request.header("authorization")
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value.strip():
            return "bearer", value.strip()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise UnauthorizedError("malformed Basic credentials") from exc
            username, _, password = decoded.partition(":")
            # The API token is both username and password; accept it in either field.
            return "basic", password or username
        raise UnauthorizedError("use Bearer (from the token endpoint) or Basic with an API token")

    def _api_token(self, secret: str) -> Principal:
        # Every /v2/ use of an API token (Basic, the token endpoint, ping, catalog) passes
        # here: operator-only tokens and suspended accounts' tokens stop at this point.
        return self.auth.authenticate_tenant(secret, utcnow())

    def _authorize(
        self, request: HttpRequest, name: str, action: Action, download: bool = False
    ) -> RepositoryName:
        """``download``: a blob GET, refused while the registry's transfer is capped (a JWT
        says so itself; a Basic request checks the registry record it reads anyway)."""
        repo = RepositoryName.parse(name)
        scope = f"repository:{repo}:{SCOPE_ACTIONS[action]}"
        credentials = self._credentials(request)
        if credentials is None:
            raise UnauthorizedError(headers={"WWW-Authenticate": self._challenge(request, scope)})
        kind, value = credentials
        if kind == "bearer":
            try:
                grant = self.tokens.verify(value)
            except UnauthorizedError as error:
                error.headers["WWW-Authenticate"] = self._challenge(request, scope, "invalid_token")
                raise
            if not grant.allows(repo, action):
                self._refuse_if_collecting(grant, repo, action)
                # Also the answer for registries the token cannot see: no existence leak.
                raise UnauthorizedError(
                    f"the token does not grant {action.value} on {repo}",
                    detail=[{"Type": "repository", "Name": str(repo), "Action": action.value}],
                    headers={
                        "WWW-Authenticate": self._challenge(request, scope, "insufficient_scope")
                    },
                )
            if download:
                self.auth.refuse_capped_download(grant, repo)
            return grant.bind(repo)
        return self.auth.authorize(self._api_token(value), repo, action, download)

    def _refuse_if_collecting(
        self, grant: AccessGrant, repo: RepositoryName, action: Action
    ) -> None:
        """A token without write scope on a registry in read-only garbage collection was
        issued so on purpose: say why (docker prints the message) rather than send the
        client to ask for a token again."""
        if action is Action.PULL or repo.registry not in grant.registry_ids:
            return
        record = self.service.store.get_registry(repo.registry)
        if (
            record is not None
            and record.read_only
            and record.registry_id == grant.registry_ids[repo.registry]
        ):
            raise GarbageCollectionRunningError(record.name, record.gc_active)

    def _base(self, request: HttpRequest) -> str:
        return self.public_url or request.base_url

    def _upload_location(self, request: HttpRequest, repo: RepositoryName, upload_id: str) -> str:
        base = self.upload_url or self._base(request)
        capability = self.capability.issue(upload_id, repo, utcnow())
        return f"{base}/v2/{repo}/blobs/uploads/{upload_id}?{urlencode({'_state': capability})}"

    def _authorize_upload(self, request: HttpRequest, name: str, upload_id: str) -> RepositoryName:
        """Upload URLs carry a capability; clients that send no credentials to the upload
        origin (docker, containerd) are authorized by it alone."""
        if not UPLOAD_ID.match(upload_id):
            # Not an id this registry issues: no session has it, and the metadata store
            # never sees an arbitrary key (DynamoDB refuses keys over 2 KB).
            raise BlobUploadUnknownError(detail={"upload": upload_id[:128]})
        state = request.query.get("_state")
        if state is None:
            return self._authorize(request, name, Action.PUSH)
        return self.capability.verify(state, upload_id, RepositoryName.parse(name))

    # ---------------------------------------------------------------- base

    def ping(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        credentials = self._credentials(request)
        if credentials is None:
            raise UnauthorizedError("authentication required")
        kind, value = credentials
        if kind == "bearer":
            try:
                self.tokens.verify(value)
            except UnauthorizedError as error:
                error.headers["WWW-Authenticate"] = self._challenge(request, error="invalid_token")
                raise
        else:
            self._api_token(value)
        return _json(200, {})

    # ---------------------------------------------------------------- token endpoint

    def get_token(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        """The Docker token-auth endpoint: Basic credentials in, a short-lived JWT out."""
        credentials = self._credentials(request)
        if credentials is None or credentials[0] != "basic":
            raise UnauthorizedError("the token endpoint takes an API token with HTTP Basic")
        return self._issue(credentials[1], request.query_values("scope"))

    def post_token(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        """The OAuth2 form of the token endpoint (grant_type password or refresh_token)."""
        raw = _read_limited(request, MAX_TOKEN_FORM, RequestTooLargeError, "token request form")
        form = parse_qs(raw.decode("utf-8", "replace"))
        grant_type = (form.get("grant_type") or [""])[0]
        if grant_type == "password":
            secret = (form.get("password") or [""])[0] or (form.get("username") or [""])[0]
        elif grant_type == "refresh_token":
            secret = (form.get("refresh_token") or [""])[0]
        else:
            raise UnsupportedError(f"unsupported grant_type {grant_type!r}")
        if not secret:
            raise UnauthorizedError("credentials required")
        return self._issue(secret, form.get("scope") or [])

    def _issue(self, secret: str, scopes: list[str]) -> HttpResponse:
        now = utcnow()
        principal = self._api_token(secret)
        grant = self.tokens.grant(principal, RequestedScope.parse_all(scopes), self.auth)
        token = self.tokens.issue(grant, now)
        self.auth.record_use(principal, now)
        expires_in = int(self.tokens.ttl.total_seconds())
        return _json(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": expires_in,
                "issued_at": now.isoformat().replace("+00:00", "Z"),
            },
        )

    # ---------------------------------------------------------------- blobs

    def head_blob(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PULL)
        record = self.service.stat_blob(repo, params["digest"])
        return HttpResponse(
            200,
            {"Content-Length": str(record.size), "Docker-Content-Digest": record.digest},
        )

    def get_blob(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PULL, download=True)
        record, url = self.service.blob_download_url(repo, params["digest"])
        # The bytes come from S3 straight to the client; Range requests work there too.
        return HttpResponse(
            307,
            {"Location": url, "Docker-Content-Digest": record.digest, "Content-Length": "0"},
        )

    def delete_blob(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.DELETE)
        self.service.delete_blob(repo, params["digest"])
        return HttpResponse(202, {"Content-Length": "0"})

    # ---------------------------------------------------------------- uploads

    def start_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PUSH)
        mount = request.query.get("mount")
        if mount:
            source_name = request.query.get("from")
            source = None
            if source_name:
                try:
                    source = self._authorize(request, source_name, Action.PULL)
                except RegistryError:
                    source = None  # not readable by the caller: fall back to an upload
            if source is not None or not source_name:
                record = self.service.mount_blob(repo, mount, source)
                if record is not None:
                    return self._blob_created(request, repo, record.digest)
        digest = request.query.get("digest")
        # A registry already full under its plan refuses before the bytes are sent (the
        # record from the cache; the commit enforces the limits exactly).
        registry = self.auth.cached_registry(repo.registry)
        if digest:
            record = self.service.upload_blob(
                repo, digest, request.body, request.content_length, registry=registry
            )
            return self._blob_created(request, repo, record.digest)
        session = self.service.start_upload(repo, registry=registry)
        return HttpResponse(
            202,
            {
                "Location": self._upload_location(request, repo, session.upload_id),
                "Docker-Upload-UUID": session.upload_id,
                "Range": "0-0",
                "Content-Length": "0",
            },
        )

    def get_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_upload(request, params["name"], params["upload"])
        session = self.service.get_upload(repo, params["upload"])
        return HttpResponse(
            204, self._progress_headers(request, repo, session.upload_id, session.offset)
        )

    def patch_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_upload(request, params["name"], params["upload"])
        session = self.service.get_upload(repo, params["upload"])
        try:
            content_range = parse_content_range(request.header("content-range"))
        except RegistryError as error:
            error.headers.update(
                self._progress_headers(request, repo, session.upload_id, session.offset)
            )
            raise
        try:
            session = self.service.append_upload(
                session, request.body, request.content_length, content_range
            )
        except RegistryError as error:
            if error.status == 416:
                error.headers.update(
                    self._progress_headers(request, repo, session.upload_id, session.offset)
                )
            raise
        return HttpResponse(
            202, self._progress_headers(request, repo, session.upload_id, session.offset)
        )

    def put_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_upload(request, params["name"], params["upload"])
        digest = request.query.get("digest")
        if not digest:
            raise BlobUploadInvalidError("the digest query parameter is required")
        session = self.service.get_upload(repo, params["upload"])
        content_range = parse_content_range(request.header("content-range"))
        if content_range is not None and content_range[0] != session.offset:
            raise SizeInvalidError("final chunk does not continue the upload")
        record = self.service.complete_upload(
            repo, session, digest, request.body, request.content_length
        )
        return self._blob_created(request, repo, record.digest)

    def cancel_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_upload(request, params["name"], params["upload"])
        session = self.service.get_upload(repo, params["upload"])
        self.service.cancel_upload(session)
        return HttpResponse(204, {"Content-Length": "0"})

    def _progress_headers(
        self, request: HttpRequest, repo: RepositoryName, upload_id: str, offset: int
    ) -> dict[str, str]:
        return {
            "Location": self._upload_location(request, repo, upload_id),
            "Docker-Upload-UUID": upload_id,
            "Content-Length": "0",
            **range_header(offset),
        }

    def _blob_created(
        self, request: HttpRequest, repo: RepositoryName, digest: str
    ) -> HttpResponse:
        return HttpResponse(
            201,
            {
                "Location": f"{self._base(request)}/v2/{repo}/blobs/{digest}",
                "Docker-Content-Digest": digest,
                "Content-Length": "0",
            },
        )

    # ---------------------------------------------------------------- direct uploads
    # docs/direct-uploads.md: parts go straight to S3 through presigned URLs. Authorized as
    # a blob upload (push), with no capability: these routes are never an upload Location.

    def start_direct_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PUSH)
        body = _json_object(request)
        digest = body.get("digest")
        if not isinstance(digest, str):
            raise DigestInvalidError("digest is required", detail={"digest": digest})
        size = body.get("size")
        if isinstance(size, bool) or not isinstance(size, int):
            raise SizeInvalidError("size must be an integer", detail={"size": size})
        mount_from = body.get("mount_from") or []
        if not isinstance(mount_from, list):
            raise BlobUploadInvalidError("mount_from must be a list of repository names")
        sources: list[RepositoryName] = []
        for name in mount_from[:10]:
            if not isinstance(name, str):
                continue
            try:
                sources.append(self._authorize(request, name, Action.PULL))
            except RegistryError:
                continue  # not readable by the caller (or no such name): no mount from it
        started = self.direct.start(
            repo,
            digest,
            size,
            sources,
            # A registry already full refuses before any byte is sent, as on POST.
            registry=self.auth.cached_registry(repo.registry),
        )
        if started.status == "exists":
            return self._direct_created(request, repo, {"status": "exists"}, started.digest)
        if started.status == "mounted":
            assert started.source is not None
            answer = {"status": "mounted", "from": str(started.source)}
            return self._direct_created(request, repo, answer, started.digest)
        assert started.session is not None and started.session.direct is not None
        direct = started.session.direct
        response = _json(
            202,
            {
                "status": "uploading",
                "upload_id": started.session.upload_id,
                "part_size": direct.part_size,
                "part_count": direct.part_count,
                "parts": _part_urls(started.parts),
                "expires_at": _iso(started.expires_at),
            },
        )
        response.headers["Location"] = (
            f"{self._base(request)}/v2/{repo}/_portside/direct-uploads/{started.session.upload_id}"
        )
        return response

    def get_direct_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_direct(request, params)
        session = self.direct.get(repo, params["upload"])
        return _json(200, self._direct_status(session))

    def direct_upload_parts(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_direct(request, params)
        numbers = _json_object(request).get("numbers")
        if (
            not isinstance(numbers, list)
            or not numbers
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
        ):
            raise BlobUploadInvalidError(
                f"numbers must be a list of 1 to {PARTS_PER_ANSWER} part numbers"
            )
        parts, expires_at = self.direct.part_urls(repo, params["upload"], numbers)
        return _json(200, {"parts": _part_urls(parts), "expires_at": _iso(expires_at)})

    def complete_direct_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_direct(request, params)
        listed = _json_object(request, allow_empty=True).get("parts")
        parts: list[tuple[int, str]] | None = None
        if listed is not None:
            if not isinstance(listed, list):
                raise BlobUploadInvalidError("parts must be a list of {number, etag}")
            parts = []
            for part in listed:
                number = part.get("number") if isinstance(part, dict) else None
                etag = part.get("etag") if isinstance(part, dict) else None
                if isinstance(number, bool) or not isinstance(number, int):
                    raise BlobUploadInvalidError("every part needs an integer number")
                if not isinstance(etag, str):
                    raise BlobUploadInvalidError("every part needs its etag")
                parts.append((number, etag))
        outcome = self.direct.complete(
            repo, params["upload"], parts, registry=self.auth.cached_registry(repo.registry)
        )
        if outcome.status == "committed":
            return self._direct_created(request, repo, {"status": "committed"}, outcome.digest)
        return _json(202, {"status": outcome.status, "digest": outcome.digest})

    def cancel_direct_upload(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize_direct(request, params)
        self.direct.cancel(repo, params["upload"])
        return HttpResponse(204, {"Content-Length": "0"})

    def _authorize_direct(self, request: HttpRequest, params: dict[str, str]) -> RepositoryName:
        repo = self._authorize(request, params["name"], Action.PUSH)
        if not UPLOAD_ID.match(params["upload"]):
            raise BlobUploadUnknownError(detail={"upload": params["upload"][:128]})
        return repo

    def _direct_status(self, session: UploadSession) -> dict[str, object]:
        direct: DirectUpload | None = session.direct
        assert direct is not None
        body: dict[str, object] = {
            "status": direct.status,
            "upload_id": session.upload_id,
            "digest": direct.digest,
            "size": direct.size,
            "part_size": direct.part_size,
            "part_count": direct.part_count,
            "uploaded": [
                {"number": p.number, "size": p.size, "etag": p.etag}
                for p in self.direct.uploaded(session)
            ],
        }
        if direct.error_code is not None:
            body["error"] = {"code": direct.error_code, "message": direct.error_message or ""}
        return body

    def _direct_created(
        self, request: HttpRequest, repo: RepositoryName, body: dict[str, str], digest: str
    ) -> HttpResponse:
        response = _json(201, {**body, "digest": digest})
        response.headers["Location"] = f"{self._base(request)}/v2/{repo}/blobs/{digest}"
        response.headers["Docker-Content-Digest"] = digest
        return response

    # ---------------------------------------------------------------- manifests

    def get_manifest(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PULL)
        record = self.service.resolve_manifest(repo, _stored_reference(params["reference"]))
        body = b"" if request.method == "HEAD" else self.service.manifest_body(repo, record)
        return HttpResponse(
            200,
            {
                "Content-Type": record.media_type,
                "Content-Length": str(record.size),
                "Docker-Content-Digest": record.digest,
            },
            body,
        )

    def put_manifest(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PUSH)
        body = _read_limited(request, MAX_MANIFEST_BYTES, ManifestTooBigError, "manifest")
        parsed = self.service.put_manifest(
            repo,
            params["reference"],
            body,
            request.header("content-type"),
            # Tag immutability rules, from the cache: the push is conditional on their version.
            registry=self.auth.cached_registry(repo.registry),
        )
        headers = {
            "Location": f"{self._base(request)}/v2/{repo}/manifests/{parsed.digest}",
            "Docker-Content-Digest": parsed.digest,
            "Content-Length": "0",
        }
        if parsed.subject is not None:
            headers["OCI-Subject"] = parsed.subject.digest
        return HttpResponse(201, headers)

    def delete_manifest(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.DELETE)
        self.service.delete_manifest(repo, _stored_reference(params["reference"]))
        return HttpResponse(202, {"Content-Length": "0"})

    # ---------------------------------------------------------------- discovery

    def list_tags(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PULL)
        n = _page_size(request)
        page = self.service.list_tags(repo, n, request.query.get("last"))
        response = _json(200, {"name": str(repo), "tags": page.items})
        if page.more and page.items:
            query = urlencode({"n": len(page.items), "last": page.items[-1]})
            response.headers["Link"] = f'</v2/{repo}/tags/list?{query}>; rel="next"'
        return response

    def list_referrers(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        repo = self._authorize(request, params["name"], Action.PULL)
        artifact_type = request.query.get("artifactType") or None
        found = self.service.list_referrers(repo, params["digest"], artifact_type)
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [d.to_json() for d in found],
        }
        response = _json(200, body, content_type=OCI_INDEX)
        if artifact_type is not None:
            response.headers["OCI-Filters-Applied"] = "artifactType"
        return response

    def catalog(self, request: HttpRequest, params: dict[str, str]) -> HttpResponse:
        scope = "registry:catalog:*"
        credentials = self._credentials(request)
        if credentials is None:
            raise UnauthorizedError(headers={"WWW-Authenticate": self._challenge(request, scope)})
        kind, value = credentials
        viewer: Principal | AccessGrant
        if kind == "bearer":
            viewer = self.tokens.verify(value)
            if not viewer.catalog:
                raise UnauthorizedError(
                    "the token does not grant the catalog",
                    headers={
                        "WWW-Authenticate": self._challenge(request, scope, "insufficient_scope")
                    },
                )
        else:
            viewer = self._api_token(value)
        registries = [
            r
            for r in self.service.store.list_registries(viewer.account_id)
            if viewer.may_use_registry(r.name)
        ]
        page = self.service.catalog(registries, _page_size(request), request.query.get("last"))
        response = _json(200, {"repositories": page.items})
        if page.more and page.items:
            query = urlencode({"n": len(page.items), "last": page.items[-1]})
            response.headers["Link"] = f'</v2/_catalog?{query}>; rel="next"'
        return response


def _json(status: int, body: object, content_type: str = JSON) -> HttpResponse:
    data = json.dumps(body).encode()
    return HttpResponse(
        status, {"Content-Type": content_type, "Content-Length": str(len(data))}, data
    )


def _json_object(request: HttpRequest, allow_empty: bool = False) -> dict[str, object]:
    """The request's JSON object body; BLOB_UPLOAD_INVALID for anything else."""
    raw = _read_limited(request, MAX_DIRECT_JSON, RequestTooLargeError, "request body")
    if allow_empty and not raw.strip():
        return {}
    try:
        body = untrusted_json.loads(raw)
    except ValueError as exc:
        raise BlobUploadInvalidError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BlobUploadInvalidError("the body must be a JSON object")
    return body


def _part_urls(parts: tuple[PartUrl, ...]) -> list[dict[str, object]]:
    return [{"number": p.number, "url": p.url} for p in parts]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stored_reference(reference: str) -> str:
    """``reference`` if it could name a stored manifest. A push refuses a malformed tag, so
    no manifest is ever stored under one: reading or deleting by it answers 404
    MANIFEST_UNKNOWN, as for any tag that does not exist (only PUT reports the tag as
    invalid). Digests are checked by the service: malformed ones answer DIGEST_INVALID."""
    if not is_digest(reference) and not is_tag(reference):
        raise ManifestUnknownError(detail={"tag": reference})
    return reference


def _page_size(request: HttpRequest) -> int | None:
    value = request.query.get("n")
    if value is None or value == "":
        return None
    if not is_decimal(value):
        raise PaginationNumberInvalidError(f"n must be a non-negative integer, not {value!r}")
    return int(value)


def _read_limited(
    request: HttpRequest, limit: int, too_large: type[RegistryError], what: str
) -> bytes:
    """The body, refused with ``too_large`` (a 413) once it passes ``limit`` bytes: no
    more than ``limit + 1`` bytes are ever read."""
    data = request.body.read(limit + 1)
    if len(data) > limit:
        raise too_large(f"{what} exceeds {limit} bytes", detail={"limit": limit})
    return data


_NAME = r"(?P<name>[^?#]+?)"
# Digests and upload ids match any one segment: a malformed one reaches its handler and
# answers DIGEST_INVALID or BLOB_UPLOAD_UNKNOWN, not "no such endpoint".
_DIGEST = r"(?P<digest>[^/]+)"
ROUTES: tuple[Route[Handler], ...] = (
    route(r"^/v2/?$", GET=V2Api.ping, HEAD=V2Api.ping),
    route(r"^/v2/_catalog$", GET=V2Api.catalog),
    route(r"^/v2/token$", GET=V2Api.get_token, POST=V2Api.post_token),
    route(rf"^/v2/{_NAME}/tags/list$", GET=V2Api.list_tags),
    route(rf"^/v2/{_NAME}/referrers/{_DIGEST}$", GET=V2Api.list_referrers),
    route(
        rf"^/v2/{_NAME}/manifests/(?P<reference>[^/]+)$",
        GET=V2Api.get_manifest,
        HEAD=V2Api.get_manifest,
        PUT=V2Api.put_manifest,
        DELETE=V2Api.delete_manifest,
    ),
    # Before the blob routes; "_portside" cannot start a repository path component.
    route(rf"^/v2/{_NAME}/_portside/direct-uploads/?$", POST=V2Api.start_direct_upload),
    route(
        rf"^/v2/{_NAME}/_portside/direct-uploads/(?P<upload>[^/]+)$",
        GET=V2Api.get_direct_upload,
        DELETE=V2Api.cancel_direct_upload,
    ),
    route(
        rf"^/v2/{_NAME}/_portside/direct-uploads/(?P<upload>[^/]+)/parts$",
        POST=V2Api.direct_upload_parts,
    ),
    route(
        rf"^/v2/{_NAME}/_portside/direct-uploads/(?P<upload>[^/]+)/complete$",
        POST=V2Api.complete_direct_upload,
    ),
    route(rf"^/v2/{_NAME}/blobs/uploads/?$", POST=V2Api.start_upload),
    route(
        rf"^/v2/{_NAME}/blobs/uploads/(?P<upload>[^/]+)$",
        GET=V2Api.get_upload,
        PATCH=V2Api.patch_upload,
        PUT=V2Api.put_upload,
        DELETE=V2Api.cancel_upload,
    ),
    route(
        rf"^/v2/{_NAME}/blobs/{_DIGEST}$",
        GET=V2Api.get_blob,
        HEAD=V2Api.head_blob,
        DELETE=V2Api.delete_blob,
    ),
)

__all__ = ["ROUTES", "NameUnknownError", "V2Api"]
