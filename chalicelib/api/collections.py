"""The management API's garbage collections (registry.gc), DigitalOcean's shape:

  POST /api/v1/registries/{name}/garbage-collection          start  {"type", "mode"}
  GET  /api/v1/registries/{name}/garbage-collection          the active one (404 if none)
  GET  /api/v1/registries/{name}/garbage-collections         past and present, newest first
  PUT  /api/v1/registries/{name}/garbage-collection/{uuid}   {"cancel": true}

Thin handlers; ``routes.ManagementApi`` authenticates, dispatches them and renders errors.
Reading needs any scope on the registry; starting and cancelling need push or admin (they
delete content, as deleting tags does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.http.messages import HttpRequest, HttpResponse, json_response
from chalicelib.http.routing import Route, route
from chalicelib.registry.auth import Principal
from chalicelib.registry.errors import (
    BadRequestError,
    NotFoundError,
    RouteNotFoundError,
    UnprocessableError,
)
from chalicelib.registry.gc import GarbageCollector, collection_json
from chalicelib.registry.management import Listing, next_page_token
from chalicelib.registry.records import GC_BOTH, GC_READ_ONLY, RegistryRecord

if TYPE_CHECKING:
    from .routes import Handler, ManagementApi


def _collector(api: ManagementApi) -> GarbageCollector:
    if api.collector is None:  # a ManagementApi built without one (some unit tests)
        raise RouteNotFoundError("garbage collection is not available here")
    return api.collector


def _registry(api: ManagementApi, p: Principal, name: str, write: bool) -> RegistryRecord:
    record = api.service._visible_registry(p, name)
    if write:
        api.service._require_write(p)
    return record


def start_collection(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    collector = _collector(api)
    body = api._fields(request, set(), {"type", "mode"})
    gc_type, mode = body.get("type", GC_BOTH), body.get("mode", GC_READ_ONLY)
    if not isinstance(gc_type, str) or not isinstance(mode, str):
        raise UnprocessableError("type and mode are strings")
    registry = _registry(api, p, a["registry"], write=True)
    gc = collector.start(registry, gc_type, mode)
    # This process's cached record is stale now; a read-only registry must refuse pushes
    # here at once (other processes catch up within the cache's lifetime, which the
    # collection waits out).
    api.service.auth.forget_registry(registry.name)
    return json_response(201, {"garbage_collection": collection_json(gc)})


def get_active_collection(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    collector = _collector(api)
    gc = collector.active(_registry(api, p, a["registry"], write=False))
    if gc is None:
        raise NotFoundError(
            f"no garbage collection is running on {a['registry']!r}",
            detail={"registry": a["registry"]},
        )
    return json_response(200, {"garbage_collection": collection_json(gc)})


def list_collections(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    collector = _collector(api)
    registry = _registry(api, p, a["registry"], write=False)
    page = api._page(request)
    found = collector.history(registry, page.after, page.size + 1)
    listing = Listing(
        [collection_json(gc) for gc in found[: page.size]],
        next_page_token(found[page.size - 1].uuid) if len(found) > page.size else None,
    )
    return json_response(200, {"garbage_collections": listing.items, "links": listing.links()})


def cancel_collection(
    api: ManagementApi, request: HttpRequest, p: Principal, a: dict[str, str]
) -> HttpResponse:
    collector = _collector(api)
    body = api._fields(request, {"cancel"}, set())
    if body["cancel"] is not True:
        raise BadRequestError('the only change a collection takes is {"cancel": true}')
    registry = _registry(api, p, a["registry"], write=True)
    gc = collector.cancel(registry, a["uuid"])
    return json_response(200, {"garbage_collection": collection_json(gc)})


_REG = r"^/api/v1/registries/(?P<registry>[^/]+)"

COLLECTION_ROUTES: tuple[Route[Handler], ...] = (
    route(rf"{_REG}/garbage-collection$", GET=get_active_collection, POST=start_collection),
    route(rf"{_REG}/garbage-collections$", GET=list_collections),
    route(rf"{_REG}/garbage-collection/(?P<uuid>[0-9a-fA-F-]{{1,64}})$", PUT=cancel_collection),
)
