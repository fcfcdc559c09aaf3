"""The management API's usage and billing exports (registry.billing, docs/billing.md):

  GET  /api/v1/registries/{name}/usage?month=YYYY-MM   a registry's month (default: this one)
  POST /api/v1/billing/exports  {"month", "provisional"}  write a month's billing export

Thin handlers; ``routes.ManagementApi`` authenticates, dispatches them and renders errors.
Any token that may see the registry reads its usage; exports cover every account, so only
the operator scope may start one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.http.messages import HttpRequest, HttpResponse, json_response
from chalicelib.http.routing import Route, route
from chalicelib.registry.auth import Principal
from chalicelib.registry.billing import BillingExport, Month
from chalicelib.registry.errors import DeniedError, RouteNotFoundError, UnprocessableError

if TYPE_CHECKING:
    from .routes import Handler, ManagementApi


def _billing(api: ManagementApi) -> BillingExport:
    if api.billing is None:  # a ManagementApi built without billing (some unit tests)
        raise RouteNotFoundError("usage is not available here")
    return api.billing


def get_usage(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    billing = _billing(api)
    now = api.service._clock()
    text = request.query.get("month")
    month = Month.parse(text) if text else Month.of(now)
    record = api.service._visible_registry(p, a["registry"])
    usage = billing.calculator.for_registry(record, month, now)
    return json_response(200, {"usage": usage.to_json()})


def create_export(
    api: ManagementApi, request: HttpRequest, p: Principal, _: dict[str, str]
) -> HttpResponse:
    billing = _billing(api)
    if not p.is_operator:
        raise DeniedError("billing exports need a token with the operator scope")
    body = api._fields(request, {"month"}, {"provisional"})
    provisional = body.get("provisional", False)
    if not isinstance(provisional, bool):
        raise UnprocessableError("provisional must be true or false")
    if not isinstance(body["month"], str):
        raise UnprocessableError("month must be a string YYYY-MM")
    result = billing.run(Month.parse(body["month"]), api.service._clock(), provisional)
    return json_response(200, {"export": result.to_json()})


USAGE_ROUTES: tuple[Route[Handler], ...] = (
    route(r"^/api/v1/registries/(?P<registry>[^/]+)/usage$", GET=get_usage),
    route(r"^/api/v1/billing/exports$", POST=create_export),
)
