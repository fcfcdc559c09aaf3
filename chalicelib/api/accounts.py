"""The operator's routes of the management API: ``/api/v1/accounts`` (see
registry.accounts). Thin handlers over ``AccountService``; ``routes.ManagementApi``
authenticates, dispatches them through its route table and renders their errors.

Every route needs the ``operator`` scope: a tenant admin gets 403 on each of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.http.messages import HttpRequest, HttpResponse, json_response
from chalicelib.http.routing import Route, route
from chalicelib.registry.accounts import AccountService
from chalicelib.registry.auth import Principal
from chalicelib.registry.errors import RouteNotFoundError

if TYPE_CHECKING:
    from .routes import Handler, ManagementApi


def _service(api: ManagementApi) -> AccountService:
    if api.accounts is None:  # a ManagementApi built without accounts (some unit tests)
        raise RouteNotFoundError("accounts are not managed here")
    return api.accounts


def create_account(
    api: ManagementApi, request: HttpRequest, p: Principal, _: dict[str, str]
) -> HttpResponse:
    service = _service(api)
    body = api._fields(request, {"name"}, {"contact", "metadata"})
    created = service.create(p, body["name"], body.get("contact"), body.get("metadata"))
    token = {**api.service.token_json(created.token.record), "token": created.token.secret}
    return json_response(201, {"account": service.account_json(created.account), "token": token})


def list_accounts(
    api: ManagementApi, request: HttpRequest, p: Principal, _: dict[str, str]
) -> HttpResponse:
    listing = _service(api).list(p, api._page(request))
    return json_response(200, {"accounts": listing.items, "links": listing.links()})


def get_account(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    service = _service(api)
    return json_response(200, {"account": service.account_json(service.get(p, a["account_id"]))})


def suspend_account(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    service = _service(api)
    return json_response(
        200, {"account": service.account_json(service.suspend(p, a["account_id"]))}
    )


def resume_account(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    service = _service(api)
    return json_response(200, {"account": service.account_json(service.resume(p, a["account_id"]))})


def delete_account(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    _service(api).delete(p, a["account_id"])
    return HttpResponse(204, {"Content-Length": "0"})


def account_audit(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    listing = _service(api).audit(p, a["account_id"], api._page(request))
    return json_response(200, {"audit": listing.items, "links": listing.links()})


_ACCOUNT = r"^/api/v1/accounts/(?P<account_id>[^/]+)"
ACCOUNT_ROUTES: tuple[Route[Handler], ...] = (
    route(r"^/api/v1/accounts/?$", GET=list_accounts, POST=create_account),
    route(rf"{_ACCOUNT}$", GET=get_account, DELETE=delete_account),
    route(rf"{_ACCOUNT}/suspend$", POST=suspend_account),
    route(rf"{_ACCOUNT}/resume$", POST=resume_account),
    route(rf"{_ACCOUNT}/audit$", GET=account_audit),
)
