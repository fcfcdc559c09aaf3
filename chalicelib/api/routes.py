"""The management API (/api/v1/...): a route table and thin handlers over
``ManagementService``; the one place its errors become JSON responses."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.api.accounts import ACCOUNT_ROUTES
from chalicelib.api.collections import COLLECTION_ROUTES
from chalicelib.api.policies import POLICY_ROUTES
from chalicelib.api.usage import USAGE_ROUTES
from chalicelib.http.messages import HttpRequest, HttpResponse, json_response
from chalicelib.http.routing import Route, match_route, route
from chalicelib.http.telemetry import logger, record_request
from chalicelib.registry import untrusted_json
from chalicelib.registry.accounts import AccountService
from chalicelib.registry.auth import Principal
from chalicelib.registry.billing import BillingExport
from chalicelib.registry.errors import (
    BadRequestError,
    RegistryError,
    UnauthorizedError,
)
from chalicelib.registry.gc import GarbageCollector
from chalicelib.registry.management import ManagementService, Page
from chalicelib.registry.names import is_decimal

# OCI-style codes of the domain errors -> (status, error id) in the management API.
API_ERRORS: dict[str, tuple[int, str]] = {
    "BAD_REQUEST": (400, "bad_request"),
    "PAGINATION_NUMBER_INVALID": (400, "bad_request"),
    "UNAUTHORIZED": (401, "unauthorized"),
    "DENIED": (403, "forbidden"),
    "NOT_FOUND": (404, "not_found"),
    "NAME_UNKNOWN": (404, "not_found"),
    "MANIFEST_UNKNOWN": (404, "not_found"),
    "BLOB_UNKNOWN": (404, "not_found"),
    "UNSUPPORTED": (405, "method_not_allowed"),
    "CONFLICT": (409, "conflict"),
    "UNPROCESSABLE": (422, "unprocessable_entity"),
    "NAME_INVALID": (422, "unprocessable_entity"),
    "MANIFEST_INVALID": (422, "unprocessable_entity"),
    "DIGEST_INVALID": (422, "unprocessable_entity"),
    "TOOMANYREQUESTS": (429, "too_many_requests"),
}
MAX_BODY = 64 * 1024

Handler = Callable[["ManagementApi", HttpRequest, Principal, dict[str, str]], HttpResponse]


def api_error_response(error: RegistryError) -> HttpResponse:
    status, error_id = API_ERRORS.get(error.code, (error.status, "server_error"))
    body: dict[str, Any] = {"id": error_id, "message": error.message}
    if isinstance(error.detail, dict) and "eligibility_reasons" in error.detail:
        body["eligibility_reasons"] = error.detail["eligibility_reasons"]
    headers = {"Content-Type": "application/json", **error.headers}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="Portside API"'
    return json_response(status, body, headers)


def _no_content() -> HttpResponse:
    return HttpResponse(204, {"Content-Length": "0"})


class ManagementApi:
    def __init__(
        self,
        service: ManagementService,
        registry_host: str | None = None,
        accounts: AccountService | None = None,
        collector: GarbageCollector | None = None,
        billing: BillingExport | None = None,
    ) -> None:
        self.billing = billing  # usage and billing exports (api/usage.py)
        self.accounts = accounts  # the operator's /api/v1/accounts (api/accounts.py)
        self.collector = collector  # garbage collections (api/collections.py)
        self.service = service
        # host[:port] written into docker config.json files; the request's Host by default.
        self.registry_host = registry_host

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        route_name = "unknown"
        try:
            if request.path == "/api/v1/openapi.yaml" and request.method == "GET":
                route_name, response = "openapi", self._openapi()
            else:
                route_name, handler, params = self._route(request)
                principal = self._principal(request)
                response = handler(self, request, principal, params)
        except RegistryError as error:
            response = api_error_response(error)
        except Exception:  # never a bare 500: logged, answered with the documented body
            logger.exception("unhandled error in the management API")
            response = api_error_response(RegistryError("internal error"))
        record_request(request, response, route_name, (time.perf_counter() - started) * 1000)
        return response

    @staticmethod
    def _route(request: HttpRequest) -> tuple[str, Handler, dict[str, str]]:
        # Match on the path as sent: repository names arrive with "/" encoded as %2F, and
        # each parameter is decoded only after matching.
        handler, params = match_route(ROUTES, request.method, request.path)
        return handler.__name__, handler, {k: unquote(v) for k, v in params.items()}

    def _principal(self, request: HttpRequest) -> Principal:
        header = (request.header("authorization") or "").strip()
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UnauthorizedError("send an API token as 'Authorization: Bearer <token>'")
        return self.service.authenticate(value.strip())

    @staticmethod
    def _openapi() -> HttpResponse:
        text = resources.files("chalicelib.api").joinpath("openapi.yaml").read_bytes()
        return HttpResponse(
            200, {"Content-Type": "application/yaml", "Content-Length": str(len(text))}, text
        )

    @staticmethod
    def _body(request: HttpRequest) -> dict[str, Any]:
        raw = request.body.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise BadRequestError("request body too large")
        try:
            body = untrusted_json.loads(raw or b"null")
        except ValueError as exc:  # also not UTF-8, and nested too deep to parse safely
            raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BadRequestError("the body must be a JSON object")
        return body

    @classmethod
    def _fields(
        cls, request: HttpRequest, required: set[str], optional: set[str]
    ) -> dict[str, Any]:
        body = cls._body(request)
        missing = sorted(required - body.keys())
        unknown = sorted(body.keys() - required - optional)
        if missing:
            raise BadRequestError(f"missing field(s): {', '.join(missing)}")
        if unknown:
            raise BadRequestError(f"unknown field(s): {', '.join(unknown)}")
        return body

    @staticmethod
    def _page(request: HttpRequest) -> Page:
        return Page.parse(request.query.get("per_page"), request.query.get("page_token"))

    def _host(self, request: HttpRequest) -> str:
        return self.registry_host or urlsplit(request.base_url).netloc

    # ---------------------------------------------------------------- registries

    def list_registries(
        self, request: HttpRequest, p: Principal, _: dict[str, str]
    ) -> HttpResponse:
        records = self.service.list_registries(p)
        return json_response(200, {"registries": [self.service.registry_json(r) for r in records]})

    def create_registry(
        self, request: HttpRequest, p: Principal, _: dict[str, str]
    ) -> HttpResponse:
        body = self._fields(request, {"name", "subscription_tier_slug"}, set())
        record = self.service.create_registry(p, body["name"], body["subscription_tier_slug"])
        return json_response(201, {"registry": self.service.registry_json(record)})

    def validate_name(self, request: HttpRequest, p: Principal, _: dict[str, str]) -> HttpResponse:
        body = self._fields(request, {"name"}, set())
        self.service.validate_name(body["name"])
        return _no_content()

    def options(self, request: HttpRequest, p: Principal, _: dict[str, str]) -> HttpResponse:
        tiers = self.service.options(p, request.query.get("registry") or None)
        return json_response(200, {"options": {"subscription_tiers": tiers}})

    def get_registry(self, request: HttpRequest, p: Principal, a: dict[str, str]) -> HttpResponse:
        record = self.service.get_registry(p, a["registry"])
        return json_response(200, {"registry": self.service.registry_json(record)})

    def delete_registry(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        self.service.delete_registry(p, a["registry"])
        return _no_content()

    def get_subscription(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        return json_response(200, {"subscription": self.service.get_subscription(p, a["registry"])})

    def update_subscription(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        body = self._fields(request, {"tier_slug"}, set())
        subscription = self.service.update_subscription(p, a["registry"], body["tier_slug"])
        return json_response(200, {"subscription": subscription})

    def docker_credentials(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        read_write = _flag(request.query.get("read_write"), "read_write")
        expiry = request.query.get("expiry_seconds")
        expiry_seconds: int | str | None = None
        if expiry not in (None, ""):
            expiry_seconds = int(expiry) if is_decimal(expiry) else expiry
        config = self.service.docker_credentials(
            p, a["registry"], read_write, expiry_seconds, self._host(request)
        )
        return json_response(200, config)

    # ---------------------------------------------------------------- content

    def list_repositories(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        listing = self.service.list_repositories(p, a["registry"], self._page(request))
        return json_response(200, {"repositories": listing.items, "links": listing.links()})

    def delete_repository(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        self.service.delete_repository(p, a["registry"], a["repository"])
        return _no_content()

    def list_tags(self, request: HttpRequest, p: Principal, a: dict[str, str]) -> HttpResponse:
        listing = self.service.list_tags(p, a["registry"], a["repository"], self._page(request))
        return json_response(200, {"tags": listing.items, "links": listing.links()})

    def delete_tag(self, request: HttpRequest, p: Principal, a: dict[str, str]) -> HttpResponse:
        self.service.delete_tag(p, a["registry"], a["repository"], a["tag"])
        return _no_content()

    def list_manifests(self, request: HttpRequest, p: Principal, a: dict[str, str]) -> HttpResponse:
        listing = self.service.list_manifests(
            p, a["registry"], a["repository"], self._page(request)
        )
        return json_response(200, {"manifests": listing.items, "links": listing.links()})

    def delete_manifest(
        self, request: HttpRequest, p: Principal, a: dict[str, str]
    ) -> HttpResponse:
        self.service.delete_manifest(p, a["registry"], a["repository"], a["digest"])
        return _no_content()

    # ---------------------------------------------------------------- tokens

    def list_tokens(self, request: HttpRequest, p: Principal, _: dict[str, str]) -> HttpResponse:
        listing = self.service.list_tokens(p, self._page(request))
        return json_response(200, {"tokens": listing.items, "links": listing.links()})

    def create_token(self, request: HttpRequest, p: Principal, _: dict[str, str]) -> HttpResponse:
        body = self._fields(request, {"name", "scopes"}, {"registries", "expiry_seconds"})
        created = self.service.create_token(
            p, body["name"], body["scopes"], body.get("registries"), body.get("expiry_seconds")
        )
        token = {**self.service.token_json(created.record), "token": created.secret}
        return json_response(201, {"token": token})

    def revoke_token(self, request: HttpRequest, p: Principal, a: dict[str, str]) -> HttpResponse:
        self.service.revoke_token(p, a["token_id"])
        return _no_content()


def _flag(value: str | None, name: str) -> bool:
    if value in (None, "", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise BadRequestError(f"{name} must be true or false")


_SEG = r"[^/]+"
_REPO = r"(?P<repository>.+)"  # one %2F-encoded segment; greedy if a client sent raw "/"
_REG = rf"^/api/v1/registries/(?P<registry>{_SEG})"
A = ManagementApi
ROUTES: tuple[Route[Handler], ...] = (
    route(r"^/api/v1/registries/?$", GET=A.list_registries, POST=A.create_registry),
    route(r"^/api/v1/registries/validate-name$", POST=A.validate_name),
    route(r"^/api/v1/registries/options$", GET=A.options),
    route(rf"{_REG}$", GET=A.get_registry, DELETE=A.delete_registry),
    route(rf"{_REG}/subscription$", GET=A.get_subscription, POST=A.update_subscription),
    route(rf"{_REG}/docker-credentials$", GET=A.docker_credentials),
    route(rf"{_REG}/repositories/?$", GET=A.list_repositories),
    route(rf"{_REG}/repositories/{_REPO}/tags/(?P<tag>{_SEG})$", DELETE=A.delete_tag),
    route(rf"{_REG}/repositories/{_REPO}/tags$", GET=A.list_tags),
    route(rf"{_REG}/repositories/{_REPO}/manifests/(?P<digest>{_SEG})$", DELETE=A.delete_manifest),
    route(rf"{_REG}/repositories/{_REPO}/manifests$", GET=A.list_manifests),
    route(rf"{_REG}/repositories/{_REPO}$", DELETE=A.delete_repository),
    route(r"^/api/v1/tokens/?$", GET=A.list_tokens, POST=A.create_token),
    route(r"^/api/v1/tokens/(?P<token_id>[^/]+)$", DELETE=A.revoke_token),
    *ACCOUNT_ROUTES,
    *COLLECTION_ROUTES,  # garbage collections (api/collections.py)
    *POLICY_ROUTES,  # retention, immutability, GC schedule (api/policies.py)
    *USAGE_ROUTES,  # usage and billing exports (api/usage.py)
)
