"""``GET /v2/_catalog``: visible repositories in lexical order, with ``n`` / ``last``."""

from __future__ import annotations

import uuid

import pytest

from .helpers import RegistryClient, parse_link_next, unique
from .targets import SCOPED_TOKENS, Target

MAX_PAGES = 500


def make_repos(client: RegistryClient, registry: str, count: int = 3) -> list[str]:
    prefix = f"{registry}/{unique('cat')}"
    names = [f"{prefix}-{chr(ord('a') + i)}" for i in range(count)]
    for name in reversed(names):  # push out of order on purpose
        client.push_oci_image(name, "v1")
    return names


def walk_catalog(client: RegistryClient, page_size: int = 100) -> list[str]:
    seen: list[str] = []
    resp = client.get("/v2/_catalog", params={"n": str(page_size)})
    for _ in range(MAX_PAGES):
        assert resp.status_code == 200, resp.text
        page = resp.json()["repositories"] or []
        assert len(page) <= page_size
        seen.extend(page)
        next_url = parse_link_next(resp)
        if next_url is None:
            return seen
        resp = client.get(next_url)
    raise AssertionError("catalog pagination did not end")


def test_catalog_lists_pushed_repositories_in_lexical_order(
    client: RegistryClient, target: Target
) -> None:
    names = make_repos(client, target.registry)
    listed = walk_catalog(client)
    assert all(name in listed for name in names)
    assert listed == sorted(listed), "catalog must be in lexical order across pages"
    assert len(listed) == len(set(listed))


def test_catalog_n_and_last_paginate_with_link(client: RegistryClient, target: Target) -> None:
    names = make_repos(client, target.registry)
    prefix = names[0][: -len("-a")]  # sorts just before all three names
    resp = client.get("/v2/_catalog", params={"n": "2", "last": prefix})
    assert resp.status_code == 200, resp.text
    assert resp.json()["repositories"] == names[:2]
    next_url = parse_link_next(resp)
    assert next_url, f"expected Link rel=next, got {resp.headers.get('Link')!r}"
    following = client.get(next_url)
    assert following.status_code == 200
    assert following.json()["repositories"][0] == names[2]
    resp = client.get("/v2/_catalog", params={"n": "5", "last": names[0]})
    assert resp.json()["repositories"][:2] == names[1:]


@pytest.mark.requires(SCOPED_TOKENS)
def test_catalog_with_token_for_one_registry_lists_only_that_registry(
    client: RegistryClient, target: Target
) -> None:
    assert target.create_registry is not None and target.create_token is not None
    other = f"cat{uuid.uuid4().hex[:12]}"
    target.create_registry(other)
    token = target.create_token(["pull", "push"], [other])
    scoped = RegistryClient(target.url, (token, token))
    mine = make_repos(scoped, other, count=2)
    make_repos(client, target.registry, count=1)  # something it must not see
    listed = walk_catalog(scoped)
    assert all(name in listed for name in mine)
    assert all(name.startswith(f"{other}/") for name in listed), listed
