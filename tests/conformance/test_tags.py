"""Content discovery: ``GET /v2/<name>/tags/list`` with ``n`` / ``last`` pagination."""

from __future__ import annotations

import random

import pytest
import requests

from .helpers import Pushed, RegistryClient, assert_error, parse_link_next, unique
from .targets import SORTED_TAGS, TAG_PAGINATION, Target

# Lower-case only: the spec allows either case-insensitive or ASCII ordering, which agree here.
TAGS = ["alpha", "beta-1", "beta.2", "latest", "v1", "v10", "v1.0.0", "v2", "zeta_9"]


def tag_repo(client: RegistryClient, repo: str, tags: list[str]) -> Pushed:
    image = client.push_oci_image(repo)
    shuffled = list(tags)
    random.Random(1234).shuffle(shuffled)
    for tag in shuffled:
        client.push_manifest(repo, tag, image.body, image.media_type)
    return image


def list_tags(client: RegistryClient, repo: str, **params: str) -> requests.Response:
    resp = client.get(f"/v2/{repo}/tags/list", params=params or None)
    assert resp.status_code == 200, resp.text
    return resp


def test_tags_list_names_the_repository_and_all_its_tags(client: RegistryClient, repo: str) -> None:
    tag_repo(client, repo, TAGS)
    doc = list_tags(client, repo).json()
    assert doc["name"] == repo
    assert sorted(doc["tags"]) == sorted(TAGS)
    assert len(doc["tags"]) == len(set(doc["tags"]))


@pytest.mark.requires(SORTED_TAGS)
def test_tags_list_is_in_lexical_order(client: RegistryClient, repo: str) -> None:
    tag_repo(client, repo, TAGS)
    assert list_tags(client, repo).json()["tags"] == sorted(TAGS)


@pytest.mark.requires(TAG_PAGINATION)
def test_tags_list_n_limits_results_and_links_to_the_next_page(
    client: RegistryClient, repo: str
) -> None:
    tag_repo(client, repo, TAGS)
    resp = list_tags(client, repo, n="3")
    assert resp.json()["tags"] == sorted(TAGS)[:3]
    next_url = parse_link_next(resp)
    assert next_url, f"expected Link rel=next, got {resp.headers.get('Link')!r}"


@pytest.mark.requires(TAG_PAGINATION)
def test_tags_list_following_links_visits_every_tag_once_in_order(
    client: RegistryClient, repo: str
) -> None:
    tag_repo(client, repo, TAGS)
    seen: list[str] = []
    resp = list_tags(client, repo, n="2")
    for _ in range(len(TAGS) + 2):
        page = resp.json()["tags"]
        assert len(page) <= 2
        seen.extend(page)
        next_url = parse_link_next(resp)
        if next_url is None:
            break
        resp = client.get(next_url)
        assert resp.status_code == 200, resp.text
    assert seen == sorted(TAGS)


@pytest.mark.requires(TAG_PAGINATION)
def test_tags_list_last_continues_after_the_given_tag(client: RegistryClient, repo: str) -> None:
    tag_repo(client, repo, TAGS)
    ordered = sorted(TAGS)
    assert list_tags(client, repo, n="2", last="beta.2").json()["tags"] == ordered[3:5]
    # Without n, everything after `last` is returned.
    assert (
        list_tags(client, repo, last="v1.0.0").json()["tags"]
        == ordered[ordered.index("v1.0.0") + 1 :]
    )
    # `last` need not be an existing tag: it is a position in the order.
    assert list_tags(client, repo, last="m").json()["tags"] == [t for t in ordered if t > "m"]


@pytest.mark.requires(TAG_PAGINATION)
def test_tags_list_last_page_has_no_link(client: RegistryClient, repo: str) -> None:
    tag_repo(client, repo, TAGS)
    resp = list_tags(client, repo, n=str(len(TAGS) + 5))
    assert resp.json()["tags"] == sorted(TAGS)
    assert parse_link_next(resp) is None


@pytest.mark.requires(TAG_PAGINATION)
def test_tags_list_n_zero_answers_an_empty_list_without_link(
    client: RegistryClient, repo: str
) -> None:
    tag_repo(client, repo, TAGS[:3])
    resp = list_tags(client, repo, n="0")
    assert resp.json()["tags"] in ([], None)
    assert parse_link_next(resp) is None


def test_tags_list_of_unknown_repository_answers_404_name_unknown(
    client: RegistryClient, target: Target
) -> None:
    resp = client.get(f"/v2/{target.registry}/{unique('missing')}/tags/list")
    assert_error(resp, 404, "NAME_UNKNOWN")


def test_tags_list_of_nested_repository_name(client: RegistryClient, target: Target) -> None:
    repo = f"{target.registry}/{unique('team')}/svc/api"
    tag_repo(client, repo, ["one", "two"])
    doc = list_tags(client, repo).json()
    assert doc["name"] == repo
    assert sorted(doc["tags"]) == ["one", "two"]
