"""The management API's per-registry settings (registry.policies): retention rules, tag
immutability rules, the garbage collection schedule, and applying retention on demand.
Thin handlers over ``ManagementService``; ``routes.ManagementApi`` authenticates,
dispatches them through its route table and renders their errors.

  GET/PUT /api/v1/registries/{name}/retention-rules             {"rules": [...]}
  GET/PUT /api/v1/registries/{name}/immutability-rules          {"rules": [...]}
  GET/PUT /api/v1/registries/{name}/garbage-collection-schedule {"schedule": {...} | null}
  POST    /api/v1/registries/{name}/retention/apply             {"dry_run": bool}
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.http.messages import HttpRequest, HttpResponse, json_response
from chalicelib.http.routing import Route, route
from chalicelib.registry.auth import Principal, utcnow
from chalicelib.registry.errors import UnprocessableError
from chalicelib.registry.rules import (
    RegistrySettings,
    parse_immutability_rules,
    parse_retention_rules,
    parse_schedule,
)

if TYPE_CHECKING:
    from .routes import Handler, ManagementApi


def _retention(settings: RegistrySettings) -> dict[str, Any]:
    return {"rules": [r.to_json() for r in settings.retention_rules]}


def _immutability(settings: RegistrySettings) -> dict[str, Any]:
    return {"rules": [r.to_json() for r in settings.immutability_rules]}


def _schedule(settings: RegistrySettings, now: datetime) -> dict[str, Any]:
    schedule = settings.gc_schedule
    return {"schedule": schedule.to_json(now) if schedule is not None else None}


def get_retention_rules(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    return json_response(200, _retention(api.service.get_settings(p, a["registry"]).settings))


def put_retention_rules(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    rules = parse_retention_rules(api._fields(request, {"rules"}, set())["rules"])
    record = api.service.update_settings(
        p, a["registry"], lambda s, _: replace(s, retention_rules=rules)
    )
    return json_response(200, _retention(record.settings))


def get_immutability_rules(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    return json_response(200, _immutability(api.service.get_settings(p, a["registry"]).settings))


def put_immutability_rules(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    rules = parse_immutability_rules(api._fields(request, {"rules"}, set())["rules"])
    record = api.service.update_settings(
        p, a["registry"], lambda s, _: replace(s, immutability_rules=rules)
    )
    return json_response(200, _immutability(record.settings))


def get_gc_schedule(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    record = api.service.get_settings(p, a["registry"])
    return json_response(200, _schedule(record.settings, utcnow()))


def put_gc_schedule(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    data = api._fields(request, {"schedule"}, set())["schedule"]
    # Validated before anything is read (starts_on defaults to the day it is saved).
    parse_schedule(data, utcnow().date())
    record = api.service.update_settings(
        p,
        a["registry"],
        lambda s, now: replace(s, gc_schedule=parse_schedule(data, now.date())),
    )
    return json_response(200, _schedule(record.settings, utcnow()))


def apply_retention(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    dry_run = api._fields(request, {"dry_run"}, set())["dry_run"]
    if not isinstance(dry_run, bool):
        raise UnprocessableError("dry_run must be true or false")
    report = api.service.apply_retention(p, a["registry"], dry_run)
    return json_response(200, report.to_json())


_REG = r"^/api/v1/registries/(?P<registry>[^/]+)"
POLICY_ROUTES: tuple[Route[Handler], ...] = (
    route(rf"{_REG}/retention-rules$", GET=get_retention_rules, PUT=put_retention_rules),
    route(rf"{_REG}/immutability-rules$", GET=get_immutability_rules, PUT=put_immutability_rules),
    route(rf"{_REG}/garbage-collection-schedule$", GET=get_gc_schedule, PUT=put_gc_schedule),
    route(rf"{_REG}/retention/apply$", POST=apply_retention),
)
