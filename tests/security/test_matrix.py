"""The access matrix: every token against every route of every registry.

The policy under test, written out once (``expected_v2`` and ``expected_api``):

* A token sees the registries of its own account, limited to its ``registries`` list.
* /v2/ with Basic (API token): a registry the token cannot see answers exactly like one that
  does not exist (404 NAME_UNKNOWN); a visible one without the needed scope answers 403
  DENIED. ``pull`` allows reads, ``push`` and ``admin`` allow reads, writes and deletes.
* /v2/ with Bearer (a JWT from /v2/token): the token endpoint grants only what the API
  token allows, and anything not granted answers 401 UNAUTHORIZED (insufficient_scope).
* /api/v1: reads need any scope on a visible registry (else 404); content deletes need
  ``push`` or ``admin`` (else 403, checked first), managing needs ``admin`` (else 403).

Each test runs one route in one mode for all five tokens against A, B, C and X (a registry
that does not exist), and reports every cell that differs from the policy at once. Refused
writes are checked to have changed nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from tests.api.helpers import (
    OCI_MANIFEST,
    V2,
    Api,
    basic,
    bearer,
    claims_of,
    error_code,
    sha256_digest,
    unique,
)

from .conftest import World

pytestmark = pytest.mark.integration

TOKENS = ("pull_a", "push_a", "admin_a", "admin1", "admin2")
REGISTRIES = ("A", "B", "C", "X")
GRANTS = {"pull": {"pull"}, "push": {"pull", "push", "delete"}, "admin": {"pull", "push", "delete"}}


def actions_of(world: World, token: str) -> set[str]:
    out: set[str] = set()
    for scope in world.tokens[token].scopes:
        out |= GRANTS[scope]
    return out


# --------------------------------------------------------------------------- /v2/ routes


@dataclass
class Cell:
    """One request: its answer, and whether a refused write left things as they were."""

    response: requests.Response
    untouched: bool | None = None


@dataclass(frozen=True)
class V2Route:
    name: str
    action: str  # pull, push or delete
    success: int
    run: Callable[[World, str, Auth], Cell]


@dataclass(frozen=True)
class Auth:
    """Credentials of one token in one mode; in Bearer mode, a JWT is asked from the token
    endpoint for the repository of each request (and any other it names), with every action,
    so what the JWT carries is what the token endpoint granted."""

    world: World
    token: str
    mode: str

    def header(self, path: str, *extra_repos: str) -> str:
        secret = self.world.tokens[self.token].secret
        if self.mode == "basic":
            return basic(secret)
        name = re.sub(r"^/v2/(.+?)/(?:tags|manifests|blobs|referrers)/.*$", r"\1", path)
        scopes = [f"repository:{repo}:pull,push,delete" for repo in (name, *extra_repos)]
        return bearer(V2(self.world.url, None).jwt(secret, *scopes))


def _do(
    world: World, auth: Auth, method: str, path: str, *extra: str, **kwargs: Any
) -> requests.Response:
    return V2(world.url, auth.header(path, *extra)).request(method, path, **kwargs)


def _repo(world: World, reg: str) -> str:
    return f"{world.names[reg]}/app"


def _existing(world: World, reg: str) -> bool:
    return reg in world.owners


def _image(world: World, reg: str) -> Any:
    # X (no such registry) borrows A's digests: the names are what is refused.
    return world.images.get(reg, world.images["A"])


def _tags_list(world: World, reg: str, auth: Auth) -> Cell:
    return Cell(_do(world, auth, "GET", f"/v2/{_repo(world, reg)}/tags/list"))


def _manifest_get(world: World, reg: str, auth: Auth) -> Cell:
    headers = {"Accept": OCI_MANIFEST}
    return Cell(_do(world, auth, "GET", f"/v2/{_repo(world, reg)}/manifests/v1", headers=headers))


def _manifest_head(world: World, reg: str, auth: Auth) -> Cell:
    headers = {"Accept": OCI_MANIFEST}
    return Cell(_do(world, auth, "HEAD", f"/v2/{_repo(world, reg)}/manifests/v1", headers=headers))


def _manifest_put(world: World, reg: str, auth: Auth) -> Cell:
    tag = "t" + uuid.uuid4().hex[:12]
    answer = _do(
        world,
        auth,
        "PUT",
        f"/v2/{_repo(world, reg)}/manifests/{tag}",
        data=_image(world, reg).manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    untouched = None
    if _existing(world, reg) and answer.status_code != 201:
        untouched = world.owner_v2(reg).manifest_status(_repo(world, reg), tag) == 404
    return Cell(answer, untouched)


def _manifest_delete(world: World, reg: str, auth: Auth) -> Cell:
    digest = _image(world, reg).digest
    if _existing(world, reg):
        digest = world.owner_v2(reg).push_image(_repo(world, reg), None, (40,)).digest
    answer = _do(world, auth, "DELETE", f"/v2/{_repo(world, reg)}/manifests/{digest}")
    untouched = None
    if _existing(world, reg) and answer.status_code != 202:
        untouched = world.owner_v2(reg).manifest_status(_repo(world, reg), digest) == 200
    return Cell(answer, untouched)


def _layer(world: World, reg: str) -> str:
    return str(_image(world, reg).layers[0][0])


def _blob_head(world: World, reg: str, auth: Auth) -> Cell:
    return Cell(_do(world, auth, "HEAD", f"/v2/{_repo(world, reg)}/blobs/{_layer(world, reg)}"))


def _blob_get(world: World, reg: str, auth: Auth) -> Cell:
    return Cell(_do(world, auth, "GET", f"/v2/{_repo(world, reg)}/blobs/{_layer(world, reg)}"))


def _blob_delete(world: World, reg: str, auth: Auth) -> Cell:
    digest = _layer(world, reg)
    if _existing(world, reg):
        digest = world.owner_v2(reg).push_blob(_repo(world, reg), os.urandom(64))
    path = f"/v2/{_repo(world, reg)}/blobs/{digest}"
    answer = _do(world, auth, "DELETE", path)
    untouched = None
    if _existing(world, reg) and answer.status_code != 202:
        untouched = world.owner_v2(reg).request("HEAD", path).status_code == 200
    return Cell(answer, untouched)


def _upload_post(world: World, reg: str, auth: Auth) -> Cell:
    return Cell(_do(world, auth, "POST", f"/v2/{_repo(world, reg)}/blobs/uploads/"))


def _session(world: World, reg: str) -> str:
    """An upload session of ``reg``'s owner; its path without the ``_state`` capability."""
    if not _existing(world, reg):
        return f"/v2/{_repo(world, reg)}/blobs/uploads/{uuid.uuid4()}"
    started = world.owner_v2(reg).request("POST", f"/v2/{_repo(world, reg)}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = urljoin(started.url, started.headers["Location"])
    return "/" + location.split("/", 3)[3].split("?", 1)[0]


def _session_alive(world: World, reg: str, path: str) -> bool:
    return world.owner_v2(reg).request("GET", path).status_code == 204


def _upload_get(world: World, reg: str, auth: Auth) -> Cell:
    return Cell(_do(world, auth, "GET", _session(world, reg)))


def _upload_patch(world: World, reg: str, auth: Auth) -> Cell:
    path = _session(world, reg)
    answer = _do(
        world,
        auth,
        "PATCH",
        path,
        data=b"x" * 100,
        headers={"Content-Type": "application/octet-stream", "Content-Range": "0-99"},
    )
    untouched = None
    if _existing(world, reg) and answer.status_code != 202:
        progress = world.owner_v2(reg).request("GET", path)
        untouched = progress.status_code == 204 and progress.headers.get("Range") in (None, "0-0")
    return Cell(answer, untouched)


def _upload_put(world: World, reg: str, auth: Auth) -> Cell:
    path = _session(world, reg)
    data = os.urandom(50)
    answer = _do(
        world,
        auth,
        "PUT",
        path,
        params={"digest": sha256_digest(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    untouched = None
    if _existing(world, reg) and answer.status_code != 201:
        blob = f"/v2/{_repo(world, reg)}/blobs/{sha256_digest(data)}"
        untouched = world.owner_v2(reg).request("HEAD", blob).status_code == 404
    return Cell(answer, untouched)


def _upload_delete(world: World, reg: str, auth: Auth) -> Cell:
    path = _session(world, reg)
    answer = _do(world, auth, "DELETE", path)
    untouched = None
    if _existing(world, reg) and answer.status_code != 204:
        untouched = _session_alive(world, reg, path)
    return Cell(answer, untouched)


def _mount(world: World, reg: str, auth: Auth) -> Cell:
    target = f"{world.names[reg]}/mounted-{uuid.uuid4().hex[:8]}"
    answer = _do(
        world,
        auth,
        "POST",
        f"/v2/{target}/blobs/uploads/",
        _repo(world, reg),
        params={"mount": _layer(world, reg), "from": _repo(world, reg)},
    )
    untouched = None
    if _existing(world, reg) and answer.status_code != 201:
        blob = f"/v2/{target}/blobs/{_layer(world, reg)}"
        untouched = world.owner_v2(reg).request("HEAD", blob).status_code == 404
    return Cell(answer, untouched)


def _referrers(world: World, reg: str, auth: Auth) -> Cell:
    digest = _image(world, reg).digest
    return Cell(_do(world, auth, "GET", f"/v2/{_repo(world, reg)}/referrers/{digest}"))


V2_ROUTES = (
    V2Route("tags list", "pull", 200, _tags_list),
    V2Route("manifest GET", "pull", 200, _manifest_get),
    V2Route("manifest HEAD", "pull", 200, _manifest_head),
    V2Route("manifest PUT", "push", 201, _manifest_put),
    V2Route("manifest DELETE", "delete", 202, _manifest_delete),
    V2Route("blob HEAD", "pull", 200, _blob_head),
    V2Route("blob GET", "pull", 307, _blob_get),
    V2Route("blob DELETE", "delete", 202, _blob_delete),
    V2Route("upload POST", "push", 202, _upload_post),
    V2Route("upload GET", "push", 204, _upload_get),
    V2Route("upload PATCH", "push", 202, _upload_patch),
    V2Route("upload PUT", "push", 201, _upload_put),
    V2Route("upload DELETE", "push", 204, _upload_delete),
    V2Route("mount", "push", 201, _mount),
    V2Route("referrers", "pull", 200, _referrers),
)


def expected_v2(world: World, token: str, reg: str, route: V2Route, mode: str) -> tuple[int, str]:
    visible = world.visible(token, reg)
    allowed = route.action in actions_of(world, token)
    if visible and allowed:
        return route.success, ""
    if mode == "bearer":
        return 401, "UNAUTHORIZED"
    return (404, "NAME_UNKNOWN") if not visible else (403, "DENIED")


def jwt_for(world: World, token: str, reg: str) -> str:
    repo = _repo(world, reg)
    return V2(world.url, None).jwt(
        world.tokens[token].secret, f"repository:{repo}:pull,push,delete"
    )


def _normalise(response: requests.Response, world: World, reg: str) -> tuple[int, str | None, str]:
    """Status, error code and message with the registry's name taken out."""
    message = ""
    if response.request.method != "HEAD":
        try:
            errors = response.json().get("errors") or [{}]
            message = str(errors[0].get("message", ""))
        except ValueError:
            message = response.text
    message = re.sub(r"mounted-[0-9a-f]{8}", "mounted-*", message)
    return (
        response.status_code,
        error_code(response),
        message.replace(world.names[reg], "<registry>"),
    )


@pytest.mark.parametrize("mode", ["basic", "bearer"])
@pytest.mark.parametrize("route", V2_ROUTES, ids=[r.name for r in V2_ROUTES])
def test_v2_matrix(world: World, route: V2Route, mode: str) -> None:
    wrong: list[str] = []
    for token in TOKENS:
        seen: dict[str, tuple[int, str | None, str]] = {}
        for reg in REGISTRIES:
            cell = route.run(world, reg, Auth(world, token, mode))
            status, code = expected_v2(world, token, reg, route, mode)
            got = cell.response
            where = f"{token:8} on {reg}: {route.name} ({mode})"
            if got.status_code != status or (code and error_code(got) != code and got.content):
                wrong.append(
                    f"{where}: expected {status} {code}, got {got.status_code} "
                    f"{error_code(got)} {got.text[:160]!r}"
                )
            if cell.untouched is False:
                wrong.append(f"{where}: refused ({got.status_code}) but the write happened")
            if got.status_code == 401:
                challenge = got.headers.get("WWW-Authenticate", "")
                if not challenge.startswith("Bearer realm="):
                    wrong.append(f"{where}: 401 without a Bearer challenge: {challenge!r}")
            if not world.visible(token, reg):
                seen[reg] = _normalise(got, world, reg)
        # No existence leak: every registry the token cannot see answers like X.
        for reg, answer in seen.items():
            if answer != seen["X"]:
                wrong.append(
                    f"{token} on {reg}: {answer} differs from a missing registry {seen['X']}"
                )
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------- token endpoint


@pytest.mark.parametrize("form", ["GET", "POST"])
def test_token_endpoint_grants_only_what_the_api_token_allows(world: World, form: str) -> None:
    wrong: list[str] = []
    for token in TOKENS:
        secret = world.tokens[token].secret
        for reg in REGISTRIES:
            repo = _repo(world, reg)
            scopes = [f"repository:{repo}:pull,push,delete", "registry:catalog:*"]
            if form == "GET":
                answer = requests.get(
                    f"{world.url}/v2/token",
                    params=[("service", "portside"), *(("scope", s) for s in scopes)],
                    headers={"Authorization": basic(secret)},
                    timeout=30,
                )
            else:
                answer = requests.post(
                    f"{world.url}/v2/token",
                    data={
                        "grant_type": "password",
                        "service": "portside",
                        "client_id": "matrix",
                        "username": secret,
                        "password": secret,
                        "scope": " ".join(scopes),
                    },
                    timeout=30,
                )
            assert answer.status_code == 200, (token, reg, answer.text)
            body = answer.json()
            claims = claims_of(body["access_token"] if form == "POST" else body["token"])
            expected: list[dict[str, Any]] = []
            if world.visible(token, reg):
                actions = sorted(actions_of(world, token))
                expected.append({"type": "repository", "name": repo, "actions": actions})
            expected.append({"type": "registry", "name": "catalog", "actions": ["*"]})
            if claims["access"] != expected:
                wrong.append(f"{token} on {reg}: access {claims['access']} != {expected}")
            if claims["account"] != world.tokens[token].account:
                wrong.append(f"{token}: account claim {claims['account']}")
            if claims["aud"] != "portside" or claims["iss"] != "portside":
                wrong.append(f"{token}: aud/iss {claims['aud']}/{claims['iss']}")
            if not 0 < claims["exp"] - claims["iat"] <= 300:
                wrong.append(f"{token}: lifetime {claims['exp'] - claims['iat']} s")
    assert not wrong, "\n".join(wrong)


def test_token_endpoint_takes_no_bearer(world: World) -> None:
    jwt = jwt_for(world, "admin1", "A")
    answer = requests.get(
        f"{world.url}/v2/token",
        params={"scope": f"repository:{_repo(world, 'A')}:pull"},
        headers={"Authorization": bearer(jwt)},
        timeout=30,
    )
    assert answer.status_code == 401
    assert error_code(answer) == "UNAUTHORIZED"


# --------------------------------------------------------------------------- ping, catalog


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_ping_and_catalog(world: World, mode: str) -> None:
    for token in TOKENS:
        secret = world.tokens[token].secret
        if mode == "basic":
            auth = basic(secret)
        else:
            auth = bearer(V2(world.url, None).jwt(secret, "registry:catalog:*"))
        client = V2(world.url, auth)
        assert client.request("GET", "/v2/").status_code == 200, token
        answer = client.request("GET", "/v2/_catalog", params={"n": 1000})
        assert answer.status_code == 200, (token, answer.text)
        listed = set(answer.json()["repositories"])
        ours = {_repo(world, reg) for reg in ("A", "B", "C")}
        expected = {_repo(world, reg) for reg in ("A", "B", "C") if world.visible(token, reg)}
        assert listed & ours == expected, (token, mode, sorted(listed))
        for name in listed:
            registry = name.split("/", 1)[0]
            owner = [k for k, v in world.names.items() if v == registry]
            assert not owner or world.visible(token, owner[0]), (token, name)
    # A repository-only JWT does not open the catalog.
    jwt = jwt_for(world, "admin1", "A")
    answer = V2(world.url, bearer(jwt)).request("GET", "/v2/_catalog")
    assert answer.status_code == 401 and error_code(answer) == "UNAUTHORIZED"


def test_cross_tenant_mount_falls_back_to_an_upload(world: World) -> None:
    """Mounting another account's (or an invisible registry's) blob must not link it."""
    for token, source, target in (
        ("admin1", "C", "A"),
        ("admin2", "A", "C"),
        ("push_a", "B", "A"),
        ("admin_a", "C", "A"),
    ):
        layer = _layer(world, source)
        repo = f"{world.names[target]}/stolen-{uuid.uuid4().hex[:8]}"
        for params in ({"mount": layer, "from": _repo(world, source)}, {"mount": layer}):
            client = V2.basic(world.url, world.tokens[token].secret)
            answer = client.request("POST", f"/v2/{repo}/blobs/uploads/", params=params)
            assert answer.status_code == 202, (token, source, target, params, answer.text)
            head = client.request("HEAD", f"/v2/{repo}/blobs/{layer}")
            assert head.status_code == 404, (token, source, target, params)


# --------------------------------------------------------------------------- /api/v1


@dataclass(frozen=True)
class ApiRoute:
    name: str
    need: str  # read, write or admin
    success: int
    run: Callable[[World, str, Api], requests.Response]


def _reg_path(world: World, reg: str) -> str:
    return f"/api/v1/registries/{world.names[reg]}"


def _fresh_image(world: World, reg: str, repository: str = "app") -> Any:
    if not _existing(world, reg):
        return world.images["A"]
    return world.owner_v2(reg).push_image(f"{world.names[reg]}/{repository}", None, (30,))


def _api_delete_tag(world: World, reg: str, api: Api) -> requests.Response:
    tag = "del" + uuid.uuid4().hex[:8]
    if _existing(world, reg):
        world.owner_v2(reg).tag(world.images[reg], tag)
    answer = api.delete(f"{_reg_path(world, reg)}/repositories/app/tags/{tag}")
    if _existing(world, reg) and answer.status_code != 204:
        assert world.owner_v2(reg).manifest_status(_repo(world, reg), tag) == 200, "tag deleted"
    return answer


def _api_delete_manifest(world: World, reg: str, api: Api) -> requests.Response:
    digest = _fresh_image(world, reg).digest
    answer = api.delete(f"{_reg_path(world, reg)}/repositories/app/manifests/{digest}")
    if _existing(world, reg) and answer.status_code != 204:
        assert world.owner_v2(reg).manifest_status(_repo(world, reg), digest) == 200
    return answer


def _api_delete_repository(world: World, reg: str, api: Api) -> requests.Response:
    repository = "gone-" + uuid.uuid4().hex[:8]
    image = _fresh_image(world, reg, repository)
    answer = api.delete(f"{_reg_path(world, reg)}/repositories/{repository}")
    if _existing(world, reg) and answer.status_code != 204:
        status = world.owner_v2(reg).manifest_status(image.repo, image.digest)
        assert status == 200, "repository deleted"
    return answer


API_ROUTES = (
    ApiRoute("get registry", "read", 200, lambda w, r, a: a.get(_reg_path(w, r))),
    ApiRoute(
        "get subscription", "read", 200, lambda w, r, a: a.get(_reg_path(w, r) + "/subscription")
    ),
    ApiRoute(
        "options",
        "read",
        200,
        lambda w, r, a: a.get("/api/v1/registries/options", params={"registry": w.names[r]}),
    ),
    ApiRoute("get usage", "read", 200, lambda w, r, a: a.get(_reg_path(w, r) + "/usage")),
    ApiRoute(
        "list repositories", "read", 200, lambda w, r, a: a.get(_reg_path(w, r) + "/repositories")
    ),
    ApiRoute(
        "list tags", "read", 200, lambda w, r, a: a.get(_reg_path(w, r) + "/repositories/app/tags")
    ),
    ApiRoute(
        "list manifests",
        "read",
        200,
        lambda w, r, a: a.get(_reg_path(w, r) + "/repositories/app/manifests"),
    ),
    ApiRoute("delete tag", "write", 204, _api_delete_tag),
    ApiRoute("delete manifest", "write", 204, _api_delete_manifest),
    ApiRoute("delete repository", "write", 204, _api_delete_repository),
    ApiRoute(
        "update subscription",
        "admin",
        200,
        lambda w, r, a: a.post(
            _reg_path(w, r) + "/subscription", json={"tier_slug": "professional"}
        ),
    ),
    ApiRoute(
        "docker credentials",
        "admin",
        200,
        lambda w, r, a: a.get(_reg_path(w, r) + "/docker-credentials"),
    ),
)


def expected_api(world: World, token: str, reg: str, need: str, success: int) -> tuple[int, str]:
    scopes = world.tokens[token].scopes
    visible = world.visible(token, reg)
    if need == "write" and not scopes & {"push", "admin"}:
        return 403, "forbidden"
    if need == "admin" and "admin" not in scopes:
        return 403, "forbidden"
    if not visible:
        return 404, "not_found"
    return success, ""


@pytest.mark.parametrize("route", API_ROUTES, ids=[r.name for r in API_ROUTES])
def test_api_matrix(world: World, route: ApiRoute) -> None:
    wrong: list[str] = []
    for token in TOKENS:
        api = Api(world.url, check=False, token=world.tokens[token].secret)
        seen: dict[str, tuple[int, str | None, str]] = {}
        for reg in REGISTRIES:
            got = route.run(world, reg, api)
            status, code = expected_api(world, token, reg, route.need, route.success)
            if got.status_code != status or (code and error_code(got) != code):
                wrong.append(
                    f"{token:8} on {reg}: {route.name}: expected {status} {code}, got "
                    f"{got.status_code} {got.text[:160]!r}"
                )
            if not world.visible(token, reg):
                message = got.json().get("message", "") if got.content else ""
                seen[reg] = (
                    got.status_code,
                    error_code(got),
                    str(message).replace(world.names[reg], "<registry>"),
                )
        for reg, answer in seen.items():
            if answer != seen["X"]:
                wrong.append(
                    f"{token} on {reg}: {answer} differs from a missing registry {seen['X']}"
                )
    assert not wrong, "\n".join(wrong)


def test_delete_registry_matrix(world: World) -> None:
    wrong = []
    for token in TOKENS:
        api = Api(world.url, check=False, token=world.tokens[token].secret)
        for reg in REGISTRIES:
            if world.visible(token, reg) and "admin" in world.tokens[token].scopes:
                continue  # allowed: exercised below on a registry of its own
            got = api.delete(_reg_path(world, reg))
            status, code = expected_api(world, token, reg, "admin", 204)
            if (got.status_code, error_code(got)) != (status, code):
                wrong.append(f"{token} on {reg}: expected {status}, got {got.status_code}")
    assert not wrong, "\n".join(wrong)
    for reg in ("A", "B", "C"):
        assert world.owner_api(reg).get(_reg_path(world, reg)).status_code == 200
    # Allowed: an unrestricted admin deletes a registry of its account; a limited admin
    # deletes the registry it is limited to.
    admin1 = Api(world.url, check=False, token=world.tokens["admin1"].secret)
    doomed = unique("sec-doomed")
    admin1.create_registry(doomed)
    limited = admin1.create_token(["admin"], [doomed])
    admin2 = Api(world.url, check=False, token=world.tokens["admin2"].secret)
    assert admin2.delete(f"/api/v1/registries/{doomed}").status_code == 404
    Api(world.url, check=False, token=limited["token"]).delete(
        f"/api/v1/registries/{doomed}", expect=204
    )
    assert admin1.get(f"/api/v1/registries/{doomed}").status_code == 404


def test_account_routes(world: World) -> None:
    wrong = []
    ids: dict[str, str] = {}
    admin1 = Api(world.url, check=False, token=world.tokens["admin1"].secret)
    for item in admin1.all_pages("/api/v1/tokens", "tokens", 200):
        ids[item["name"]] = item["id"]
    for token in TOKENS:
        info = world.tokens[token]
        api = Api(world.url, check=False, token=info.secret)
        is_admin = "admin" in info.scopes
        listed = {r["name"] for r in api.get("/api/v1/registries", expect=200).json()["registries"]}
        expected = {world.names[r] for r in ("A", "B", "C") if world.visible(token, r)}
        if listed & {world.names[r] for r in "ABC"} != expected:
            wrong.append(f"{token}: lists {sorted(listed)}")
        api.post("/api/v1/registries/validate-name", json={"name": unique("free")}, expect=204)

        created = api.post(
            "/api/v1/registries",
            json={"name": unique("sec-new"), "subscription_tier_slug": "starter"},
        )
        want = 201 if is_admin and info.registries is None else 403
        if created.status_code != want:
            wrong.append(f"{token}: create registry {created.status_code} != {want}")

        tokens = api.get("/api/v1/tokens", params={"per_page": 200})
        made = api.post("/api/v1/tokens", json={"name": "m", "scopes": ["pull"]})
        revoke_unknown = api.delete("/api/v1/tokens/nope")
        if not is_admin:
            for answer in (tokens, made, revoke_unknown):
                if answer.status_code != 403 or error_code(answer) != "forbidden":
                    wrong.append(f"{token}: token management answered {answer.status_code}")
            continue
        if tokens.status_code != 200 or made.status_code != 201:
            wrong.append(f"{token}: list/create tokens {tokens.status_code}/{made.status_code}")
            continue
        minted = made.json()["token"]
        want_registries = [world.names["A"]] if info.registries else None
        if minted["registries"] != want_registries:
            wrong.append(f"{token}: minted a token for {minted['registries']}, never broader")
        if revoke_unknown.status_code != 404:
            wrong.append(f"{token}: revoking an unknown id answered {revoke_unknown.status_code}")
        for reg in ("A", "B", "C", "X"):
            answer = api.post(
                "/api/v1/tokens",
                json={"name": "r", "scopes": ["pull"], "registries": [world.names[reg]]},
            )
            want = 201 if world.visible(token, reg) else 404
            if answer.status_code != want:
                wrong.append(f"{token}: token for {reg} answered {answer.status_code} != {want}")
        if token == "admin2":
            other_ids = {t["id"] for t in tokens.json()["tokens"]}
            if other_ids & set(ids.values()):
                wrong.append("admin2 sees account-1 tokens")
            for token_id in ids.values():
                answer = api.delete(f"/api/v1/tokens/{token_id}")
                if answer.status_code != 404 or error_code(answer) != "not_found":
                    wrong.append(f"admin2 revoking an account-1 token: {answer.status_code}")
    assert not wrong, "\n".join(wrong)
    for token in TOKENS:  # nothing above revoked a world token
        V2.basic(world.url, world.tokens[token].secret).request("GET", "/v2/").raise_for_status()


def test_limited_admin_sees_only_tokens_of_its_registries(world: World) -> None:
    admin1 = Api(world.url, check=False, token=world.tokens["admin1"].secret)
    for_b = admin1.create_token(["pull"], [world.names["B"]], name="only-b")
    limited = Api(world.url, check=False, token=world.tokens["admin_a"].secret)
    listed = limited.get("/api/v1/tokens", params={"per_page": 200}, expect=200).json()["tokens"]
    for item in listed:
        assert item["registries"] is not None, f"admin_a sees an unrestricted token {item}"
        assert set(item["registries"]) <= {world.names["A"]}, f"admin_a sees {item}"
    assert limited.delete(f"/api/v1/tokens/{for_b['id']}").status_code == 404
    # Paging shows the same tokens, with no empty page before the end.
    paged = limited.all_pages("/api/v1/tokens", "tokens", 1)
    assert [t["id"] for t in paged] == [t["id"] for t in listed]
    admin1.get("/api/v1/tokens", params={"per_page": 200}, expect=200)
    assert for_b["id"] in [t["id"] for t in admin1.all_pages("/api/v1/tokens", "tokens", 200)]


def test_tokens_never_outlive_or_outreach_their_creator(world: World) -> None:
    admin1 = Api(world.url, check=False, token=world.tokens["admin1"].secret)
    short = admin1.create_token(["admin"], [world.names["A"]], expiry_seconds=600)
    child = Api(world.url, check=False, token=short["token"]).create_token(["pull"])
    assert child["registries"] == [world.names["A"]]
    assert child["expires_at"] == short["expires_at"]


def test_management_api_refuses_jwts_and_basic(world: World) -> None:
    jwt = jwt_for(world, "admin1", "A")
    for header in (bearer(jwt), basic(world.tokens["admin1"].secret), "", "Bearer ", "Token x"):
        answer = Api(world.url, check=False, token=None).get(
            "/api/v1/registries", headers={"Authorization": header} if header else {}
        )
        assert answer.status_code == 401 and error_code(answer) == "unauthorized", header
        assert answer.json()["message"]
