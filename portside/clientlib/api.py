"""A thin, typed client of the management API described in ``chalicelib/api/openapi.yaml``.

Methods return the API's JSON objects unchanged (dicts), unwrapped from their envelope
(``{"registry": {...}}`` gives the registry). Paginated lists come as :class:`Page` (one
page) or are followed to the end with :meth:`ApiClient.collect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from .errors import ApiError, ApiUnreachable

JSON = dict[str, Any]
MAX_PER_PAGE = 200
USER_AGENT = "portside-cli/0.1"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


def segment(value: str, safe: str = "") -> str:
    """One path segment, percent-encoded (``/`` in repository names becomes ``%2F``)."""
    return quote(value, safe=safe)


@dataclass
class Page:
    """One page of a paginated list: its items, the raw answer and the next page's token."""

    items: list[JSON]
    next_page_token: str | None
    raw: JSON = field(repr=False)


class ApiClient:
    """Talks to ``{api_url}/api/v1`` with ``Authorization: Bearer <token>``."""

    def __init__(
        self,
        api_url: str,
        token: str,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._session = session or requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )

    # ----------------------------------------------------------------------------------
    # transport

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool | None] | None = None,
        body: JSON | None = None,
    ) -> JSON | None:
        """Send one request to ``/api/v1{path}``; the decoded JSON body, or None for 204."""
        url = f"{self.api_url}/api/v1{path}"
        query = {
            key: _query_value(value) for key, value in (params or {}).items() if value is not None
        }
        try:
            response = self._session.request(
                method, url, params=query or None, json=body, timeout=self._timeout
            )
        except requests.exceptions.SSLError as exc:
            raise ApiUnreachable(self.api_url, f"TLS error: {_root_cause(exc)}") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise ApiUnreachable(self.api_url, "connection timed out") from exc
        except requests.exceptions.Timeout as exc:
            raise ApiUnreachable(
                self.api_url, f"no answer within {self._timeout[1]:g} seconds"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise ApiUnreachable(self.api_url, _connection_reason(exc)) from exc
        except requests.exceptions.RequestException as exc:
            raise ApiUnreachable(self.api_url, _root_cause(exc)) from exc

        if response.status_code >= 400:
            raise _api_error(method, url, response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            data = response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code,
                None,
                f"{method} {url} answered {response.status_code} with a body that is not JSON",
            ) from exc
        if not isinstance(data, dict):
            raise ApiError(response.status_code, None, f"{method} {url} answered unexpected JSON")
        return data

    def _get(self, path: str, params: Mapping[str, str | int | bool | None] | None = None) -> JSON:
        return _required(self.request("GET", path, params=params), path)

    def page(
        self,
        path: str,
        key: str,
        *,
        per_page: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        """One page of the list at ``path`` whose items are under ``key``."""
        data = self._get(path, {"per_page": per_page, "page_token": page_token})
        items = data.get(key)
        if not isinstance(items, list):
            raise ApiError(200, None, f"GET {path} answered without a {key!r} list")
        links = data.get("links")
        next_token = links.get("next_page_token") if isinstance(links, dict) else None
        return Page(items=items, next_page_token=next_token or None, raw=data)

    def pages(self, path: str, key: str, per_page: int | None = MAX_PER_PAGE) -> Iterator[Page]:
        """Every page of a list, following ``links.next_page_token`` to the end."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            current = self.page(path, key, per_page=per_page, page_token=token)
            yield current
            token = current.next_page_token
            if not token:
                return
            if token in seen:  # a server bug must not become an endless loop
                raise ApiError(200, None, f"GET {path} returned the same page token twice")
            seen.add(token)

    def collect(self, path: str, key: str, per_page: int | None = MAX_PER_PAGE) -> list[JSON]:
        """All items of a list, across pages."""
        return [item for page in self.pages(path, key, per_page) for item in page.items]

    # ----------------------------------------------------------------------------------
    # registries

    @staticmethod
    def registry_path(registry: str) -> str:
        return f"/registries/{segment(registry)}"

    @classmethod
    def repository_path(cls, registry: str, repository: str) -> str:
        return f"{cls.registry_path(registry)}/repositories/{segment(repository)}"

    def list_registries(self) -> list[JSON]:
        # The contract does not paginate this list (no per_page); follow a next_page_token
        # should one ever appear.
        return self.collect("/registries", "registries", per_page=None)

    def create_registry(self, name: str, tier: str) -> JSON:
        data = self.request(
            "POST", "/registries", body={"name": name, "subscription_tier_slug": tier}
        )
        return _field(data, "registry", "POST /registries")

    def get_registry(self, name: str) -> JSON:
        return _field(self._get(self.registry_path(name)), "registry", "GET registry")

    def delete_registry(self, name: str) -> None:
        self.request("DELETE", self.registry_path(name))

    def validate_registry_name(self, name: str) -> None:
        self.request("POST", "/registries/validate-name", body={"name": name})

    def registry_options(self, registry: str | None = None) -> JSON:
        data = self._get("/registries/options", {"registry": registry})
        return _field(data, "options", "GET /registries/options")

    def get_subscription(self, registry: str) -> JSON:
        data = self._get(f"{self.registry_path(registry)}/subscription")
        return _field(data, "subscription", "GET subscription")

    def update_subscription(self, registry: str, tier: str) -> JSON:
        data = self.request(
            "POST", f"{self.registry_path(registry)}/subscription", body={"tier_slug": tier}
        )
        return _field(data, "subscription", "POST subscription")

    def docker_credentials(
        self, registry: str, read_write: bool = False, expiry_seconds: int | None = None
    ) -> JSON:
        data = self._get(
            f"{self.registry_path(registry)}/docker-credentials",
            {"read_write": read_write, "expiry_seconds": expiry_seconds},
        )
        auths = data.get("auths")
        if not isinstance(auths, dict) or not auths:
            raise ApiError(200, None, "the docker credentials answer has no auths entry")
        return data

    # ----------------------------------------------------------------------------------
    # repositories, tags, manifests

    def repositories_path(self, registry: str) -> str:
        return f"{self.registry_path(registry)}/repositories"

    def tags_path(self, registry: str, repository: str) -> str:
        return f"{self.repository_path(registry, repository)}/tags"

    def manifests_path(self, registry: str, repository: str) -> str:
        return f"{self.repository_path(registry, repository)}/manifests"

    def delete_repository(self, registry: str, repository: str) -> None:
        self.request("DELETE", self.repository_path(registry, repository))

    def delete_tag(self, registry: str, repository: str, tag: str) -> None:
        self.request("DELETE", f"{self.tags_path(registry, repository)}/{segment(tag)}")

    def delete_manifest(self, registry: str, repository: str, digest: str) -> None:
        # ':' is legal in a path segment and kept, as in /v2/ manifest URLs.
        path = f"{self.manifests_path(registry, repository)}/{segment(digest, safe=':')}"
        self.request("DELETE", path)

    # ----------------------------------------------------------------------------------
    # garbage collection

    def garbage_collection_path(self, registry: str) -> str:
        """The registry's active collection (POST starts one, GET reads it)."""
        return f"{self.registry_path(registry)}/garbage-collection"

    def garbage_collections_path(self, registry: str) -> str:
        """The registry's collections, newest first (paginated)."""
        return f"{self.registry_path(registry)}/garbage-collections"

    def start_garbage_collection(
        self, registry: str, gc_type: str | None = None, mode: str | None = None
    ) -> JSON:
        """Start a collection; None leaves the type or mode to the API's default. An active
        collection makes the API answer 409 (raised as :class:`ApiError`)."""
        body: JSON = {}
        if gc_type is not None:
            body["type"] = gc_type
        if mode is not None:
            body["mode"] = mode
        data = self.request("POST", self.garbage_collection_path(registry), body=body)
        return _field(data, "garbage_collection", "POST garbage-collection")

    def get_active_garbage_collection(self, registry: str) -> JSON | None:
        """The active collection, or None when none runs."""
        path = self.garbage_collection_path(registry)
        try:
            data = self._get(path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # The API answers 404 both for "no active collection" and for a registry that
            # does not exist (or that the token may not see): a typo must stay an error.
            self.get_registry(registry)
            return None
        return _field(data, "garbage_collection", "GET garbage-collection")

    def list_garbage_collections(
        self, registry: str, per_page: int | None = None, page_token: str | None = None
    ) -> Page:
        """One page of the registry's collections, newest first."""
        return self.page(
            self.garbage_collections_path(registry),
            "garbage_collections",
            per_page=per_page,
            page_token=page_token,
        )

    def cancel_garbage_collection(self, registry: str, uuid: str) -> JSON:
        """Ask the active collection ``uuid`` to stop (404 if unknown, 409 if it has ended)."""
        path = f"{self.garbage_collection_path(registry)}/{segment(uuid)}"
        data = self.request("PUT", path, body={"cancel": True})
        return _field(data, "garbage_collection", "PUT garbage-collection")

    # ----------------------------------------------------------------------------------
    # usage and billing (docs/billing.md)

    def get_usage(self, registry: str, month: str | None = None) -> JSON:
        """The registry's usage of ``month`` ("YYYY-MM"; None: the current month)."""
        path = f"{self.registry_path(registry)}/usage"
        return _field(self._get(path, {"month": month}), "usage", "GET usage")

    def create_billing_export(self, month: str, provisional: bool = False) -> JSON:
        """Write the month's billing export (operator only): keys, rows, totals, final."""
        body: JSON = {"month": month, "provisional": provisional}
        data = self.request("POST", "/billing/exports", body=body)
        return _field(data, "export", "POST billing/exports")

    # ----------------------------------------------------------------------------------
    # registry settings: retention rules, tag immutability rules, GC schedule

    def get_retention_rules(self, registry: str) -> list[JSON]:
        return _rules(self._get(f"{self.registry_path(registry)}/retention-rules"), "GET")

    def set_retention_rules(self, registry: str, rules: list[JSON]) -> list[JSON]:
        """Replace the retention rules (an empty list removes them); the rules saved."""
        path = f"{self.registry_path(registry)}/retention-rules"
        return _rules(self.request("PUT", path, body={"rules": rules}), "PUT")

    def apply_retention(self, registry: str, dry_run: bool) -> JSON:
        """Apply the retention rules now (or, ``dry_run``, only list what would go):
        ``{"dry_run", "tags": [...], "manifests": [...]}``."""
        path = f"{self.registry_path(registry)}/retention/apply"
        return _required(self.request("POST", path, body={"dry_run": dry_run}), path)

    def get_immutability_rules(self, registry: str) -> list[JSON]:
        return _rules(self._get(f"{self.registry_path(registry)}/immutability-rules"), "GET")

    def set_immutability_rules(self, registry: str, rules: list[JSON]) -> list[JSON]:
        path = f"{self.registry_path(registry)}/immutability-rules"
        return _rules(self.request("PUT", path, body={"rules": rules}), "PUT")

    def get_gc_schedule(self, registry: str) -> JSON | None:
        """The scheduled garbage collection (with its ``next_run_at``), or None."""
        data = self._get(f"{self.registry_path(registry)}/garbage-collection-schedule")
        return _optional(data, "schedule")

    def set_gc_schedule(self, registry: str, schedule: JSON | None) -> JSON | None:
        """Set the schedule (None clears it); the schedule saved."""
        path = f"{self.registry_path(registry)}/garbage-collection-schedule"
        return _optional(
            _required(self.request("PUT", path, body={"schedule": schedule}), path), "schedule"
        )

    # ----------------------------------------------------------------------------------
    # tokens

    tokens_path = "/tokens"

    def create_token(
        self,
        name: str,
        scopes: list[str],
        registries: list[str] | None = None,
        expiry_seconds: int | None = None,
    ) -> JSON:
        body: JSON = {"name": name, "scopes": scopes}
        if registries:
            body["registries"] = registries
        if expiry_seconds is not None:
            body["expiry_seconds"] = expiry_seconds
        return _field(self.request("POST", "/tokens", body=body), "token", "POST /tokens")

    def revoke_token(self, token_id: str) -> None:
        self.request("DELETE", f"/tokens/{segment(token_id)}")

    # ----------------------------------------------------------------------------------
    # accounts (operator tokens only)

    accounts_path = "/accounts"

    @staticmethod
    def account_path(account_id: str) -> str:
        return f"/accounts/{segment(account_id)}"

    @classmethod
    def account_audit_path(cls, account_id: str) -> str:
        return f"{cls.account_path(account_id)}/audit"

    def create_account(
        self, name: str, contact: str | None = None, metadata: dict[str, str] | None = None
    ) -> JSON:
        """The new account and its first admin token (``{"account": ..., "token": ...}``;
        the token's secret is in ``token.token``, shown only in this answer)."""
        body: JSON = {"name": name}
        if contact is not None:
            body["contact"] = contact
        if metadata:
            body["metadata"] = metadata
        data = _required(self.request("POST", "/accounts", body=body), "POST /accounts")
        _field(data, "account", "POST /accounts")
        _field(data, "token", "POST /accounts")
        return data

    def get_account(self, account_id: str) -> JSON:
        return _field(self._get(self.account_path(account_id)), "account", "GET account")

    def suspend_account(self, account_id: str) -> JSON:
        data = self.request("POST", f"{self.account_path(account_id)}/suspend")
        return _field(data, "account", "POST suspend")

    def resume_account(self, account_id: str) -> JSON:
        data = self.request("POST", f"{self.account_path(account_id)}/resume")
        return _field(data, "account", "POST resume")

    def delete_account(self, account_id: str) -> None:
        self.request("DELETE", self.account_path(account_id))


# --------------------------------------------------------------------------------------
# helpers


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _required(data: JSON | None, what: str) -> JSON:
    if data is None:
        raise ApiError(200, None, f"{what}: the API answered without a body")
    return data


def _rules(data: JSON | None, what: str) -> list[JSON]:
    rules = _required(data, what).get("rules")
    if not isinstance(rules, list):
        raise ApiError(200, None, f"{what}: the answer has no 'rules' list")
    return rules


def _optional(data: JSON, key: str) -> JSON | None:
    value = data.get(key)
    return value if isinstance(value, dict) else None


def _field(data: JSON | None, key: str, what: str) -> JSON:
    value = _required(data, what).get(key)
    if not isinstance(value, dict):
        raise ApiError(200, None, f"{what}: the answer has no {key!r} object")
    return value


def _api_error(method: str, url: str, response: requests.Response) -> ApiError:
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message")
        error_id = body.get("id")
        if isinstance(message, str) and message.strip() and isinstance(error_id, str):
            detail = _one_line(message)
            text = detail
            if status == 401:
                text += " (check the API token: --token, PORTSIDE_TOKEN or `portside auth init`)"
            return ApiError(status, error_id, text, body, detail)
        if isinstance(message, str) and message.strip():
            # Not a Portside error document: API Gateway or Chalice answering by itself.
            hint = ""
            if message.strip() == "Missing Authentication Token":
                hint = "; no such API route: is this a Portside API URL serving /api/v1?"
            return ApiError(
                status,
                None,
                f"{method} {url} answered HTTP {status}: {_one_line(message)}{hint}",
                body,
            )
    reason = response.reason or "error"
    hint = " (is this a Portside API URL?)" if status in (404, 405) else ""
    return ApiError(status, None, f"{method} {url} answered HTTP {status} {reason}{hint}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _root_cause(exc: BaseException) -> str:
    seen: set[int] = set()
    current: BaseException = exc
    while True:
        nested = current.__cause__ or current.__context__
        if not nested and current.args and isinstance(current.args[0], BaseException):
            nested = current.args[0]
        if nested is None or id(nested) in seen:
            break
        seen.add(id(nested))
        current = nested
    text = str(current) or type(current).__name__
    return _one_line(text)


_REASONS: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda t: "connection refused" in t or "errno 111" in t, "connection refused"),
    (
        lambda t: (
            "name or service not known" in t
            or "nodename nor servname" in t
            or "failed to resolve" in t
            or "temporary failure in name resolution" in t
            or "getaddrinfo failed" in t
        ),
        "host name not found",
    ),
    (lambda t: "timed out" in t, "connection timed out"),
    (lambda t: "connection reset" in t, "connection reset"),
    (lambda t: "network is unreachable" in t, "network is unreachable"),
    (lambda t: "no route to host" in t, "no route to host"),
    (
        lambda t: "remotedisconnected" in t or "remote end closed" in t,
        "the server closed the connection",
    ),
)


def _connection_reason(exc: requests.exceptions.ConnectionError) -> str:
    text = f"{exc} {_root_cause(exc)}".lower()
    for matches, reason in _REASONS:
        if matches(text):
            return reason
    return _root_cause(exc)
