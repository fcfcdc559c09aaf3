"""ManagementService over the in-memory stores with a fixed clock: registries, plans,
content listings and deletions, API tokens and docker credentials."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.registry.auth import Authenticator, Principal, hash_token
from chalicelib.registry.errors import (
    BadRequestError,
    ConflictError,
    DeniedError,
    NameUnknownError,
    UnauthorizedError,
    UnprocessableError,
)
from chalicelib.registry.management import (
    MAX_EXPIRY_SECONDS,
    MAX_PAGE,
    ManagementService,
    NotFoundError,
    Page,
    next_page_token,
)
from chalicelib.registry.manifests import OCI_INDEX, OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.plans import MIB
from chalicelib.registry.records import TagRecord
from chalicelib.registry.service import RegistryService

from .builders import (
    START,
    FakeClock,
    image_manifest,
    index_manifest,
    make_token,
    push_blob,
    sha256,
)
from .conftest import (
    ACCOUNT,
    FOREIGN_REGISTRY,
    OTHER_ACCOUNT,
    REGISTRY,
    SIBLING_REGISTRY,
    named,
    rid,
)

HOST = "registry.example.test"


@pytest.fixture
def authenticator(store: MemoryMetadataStore) -> Authenticator:
    return Authenticator(store)


@pytest.fixture
def mgmt(
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    service: RegistryService,
    authenticator: Authenticator,
    clock: FakeClock,
) -> ManagementService:
    return ManagementService(store, blobs, service, authenticator, clock=clock)


def principal(
    store: MemoryMetadataStore,
    scopes: set[str],
    registries: set[str] | None = None,
    account: str = ACCOUNT,
) -> Principal:
    secret = make_token(store, account, scopes, registries)
    record = store.get_token_by_hash(hash_token(secret))
    assert record is not None
    return Principal(record)


@pytest.fixture
def admin(store: MemoryMetadataStore) -> Principal:
    return principal(store, {"admin"})


@pytest.fixture
def pusher(store: MemoryMetadataStore) -> Principal:
    return principal(store, {"push"})


@pytest.fixture
def puller(store: MemoryMetadataStore) -> Principal:
    return principal(store, {"pull"})


def push(
    service: RegistryService, repo: RepositoryName, reference: str, seed: str
) -> tuple[bytes, bytes, bytes]:
    """Push a config, a layer and a manifest naming them; return (config, layer, manifest)."""
    config = json.dumps({"seed": seed, "os": "linux"}).encode()
    layer = f"layer of {seed}|".encode() * 7
    push_blob(service, repo, config)
    push_blob(service, repo, layer)
    body = image_manifest(config, [layer])
    service.put_manifest(repo, reference, body, OCI_MANIFEST)
    return config, layer, body


def digest_of(body: bytes) -> str:
    return sha256(body)


APP = named(REGISTRY, "team/app")


# ====================================================================== registries


def test_admin_creates_a_registry_on_the_chosen_tier(
    mgmt: ManagementService, admin: Principal, clock: FakeClock
) -> None:
    clock.advance(timedelta(hours=2))
    record = mgmt.create_registry(admin, "newco", "basic")
    assert record.name == "newco"
    assert record.account_id == ACCOUNT
    assert record.plan == "basic"
    assert record.created_at == clock.now
    doc = mgmt.registry_json(mgmt.get_registry(admin, "newco"))
    assert doc["name"] == "newco"
    assert doc["created_at"] == "2026-03-01T14:00:00Z"
    assert doc["storage_usage_bytes"] == 0
    assert doc["repository_count"] == 0
    assert doc["subscription"]["tier"]["slug"] == "basic"
    assert doc["subscription"]["created_at"] == "2026-03-01T14:00:00Z"


@pytest.mark.parametrize("scopes", [{"pull"}, {"push"}, {"pull", "push"}])
def test_creating_a_registry_needs_the_admin_scope(
    mgmt: ManagementService, store: MemoryMetadataStore, scopes: set[str]
) -> None:
    with pytest.raises(DeniedError):
        mgmt.create_registry(principal(store, scopes), "newco", "basic")
    assert store.get_registry("newco") is None


def test_a_registry_limited_admin_token_cannot_create_registries(
    mgmt: ManagementService, store: MemoryMetadataStore
) -> None:
    limited = principal(store, {"admin"}, registries={REGISTRY})
    with pytest.raises(DeniedError, match="limited"):
        mgmt.create_registry(limited, "newco", "basic")
    assert store.get_registry("newco") is None


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "-acme", "acme-", "ac_me", "ac.me", "a" * 64, "acme/x", 42, None, ["acme"]],
)
def test_invalid_registry_names_are_unprocessable(
    mgmt: ManagementService, admin: Principal, name: Any
) -> None:
    with pytest.raises(UnprocessableError):
        mgmt.create_registry(admin, name, "starter")
    with pytest.raises(UnprocessableError):
        mgmt.validate_name(name)


@pytest.mark.parametrize("name", ["options", "validate-name"])
def test_names_the_api_paths_use_are_reserved(
    mgmt: ManagementService, admin: Principal, store: MemoryMetadataStore, name: str
) -> None:
    with pytest.raises(UnprocessableError, match="reserved"):
        mgmt.create_registry(admin, name, "starter")
    assert store.get_registry(name) is None


@pytest.mark.parametrize("name", [REGISTRY, FOREIGN_REGISTRY])
def test_a_taken_name_is_a_conflict_whoever_owns_it(
    mgmt: ManagementService, admin: Principal, name: str
) -> None:
    with pytest.raises(ConflictError):
        mgmt.create_registry(admin, name, "starter")
    with pytest.raises(ConflictError):
        mgmt.validate_name(name)


def test_losing_the_race_for_a_name_is_a_conflict(
    mgmt: ManagementService,
    admin: Principal,
    store: MemoryMetadataStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another request creates the name between the check and the write.
    monkeypatch.setattr(store, "get_registry", lambda name: None)
    with pytest.raises(ConflictError):
        mgmt.create_registry(admin, REGISTRY, "starter")


@pytest.mark.parametrize("tier", ["enterprise", "", None, 3, "Basic"])
def test_unknown_tier_is_unprocessable(
    mgmt: ManagementService, admin: Principal, store: MemoryMetadataStore, tier: Any
) -> None:
    with pytest.raises(UnprocessableError, match="tier"):
        mgmt.create_registry(admin, "newco", tier)
    assert store.get_registry("newco") is None


def test_validate_name_accepts_a_free_name_until_it_is_taken(
    mgmt: ManagementService, admin: Principal
) -> None:
    mgmt.validate_name("newco")
    mgmt.validate_name("a")
    mgmt.validate_name("a" * 63)
    mgmt.create_registry(admin, "newco", "starter")
    with pytest.raises(ConflictError):
        mgmt.validate_name("newco")


def test_list_registries_shows_only_the_tokens_own_registries_in_name_order(
    mgmt: ManagementService, admin: Principal, store: MemoryMetadataStore
) -> None:
    mgmt.create_registry(admin, "aaa", "starter")
    assert [r.name for r in mgmt.list_registries(admin)] == ["aaa", REGISTRY, SIBLING_REGISTRY]
    limited = principal(store, {"pull"}, registries={SIBLING_REGISTRY, FOREIGN_REGISTRY})
    assert [r.name for r in mgmt.list_registries(limited)] == [SIBLING_REGISTRY]
    other = principal(store, {"admin"}, account=OTHER_ACCOUNT)
    assert [r.name for r in mgmt.list_registries(other)] == [FOREIGN_REGISTRY]


def test_get_registry_of_another_account_or_outside_the_token_is_name_unknown(
    mgmt: ManagementService, admin: Principal, store: MemoryMetadataStore
) -> None:
    assert mgmt.get_registry(admin, REGISTRY).name == REGISTRY
    limited = principal(store, {"admin"}, registries={SIBLING_REGISTRY})
    for who, name in [
        (admin, FOREIGN_REGISTRY),
        (admin, "nosuch"),
        (admin, "Not_Valid"),
        (limited, REGISTRY),
    ]:
        with pytest.raises(NameUnknownError):
            mgmt.get_registry(who, name)
        with pytest.raises(NameUnknownError):
            mgmt.get_subscription(who, name)


def test_deleted_registry_is_hidden_at_once_and_its_name_stays_taken_until_purged(
    mgmt: ManagementService, admin: Principal
) -> None:
    mgmt.delete_registry(admin, REGISTRY)
    with pytest.raises(NameUnknownError):
        mgmt.get_registry(admin, REGISTRY)
    assert REGISTRY not in [r.name for r in mgmt.list_registries(admin)]
    with pytest.raises(NameUnknownError):
        mgmt.delete_registry(admin, REGISTRY)
    with pytest.raises(ConflictError):
        mgmt.validate_name(REGISTRY)


def test_deleting_a_registry_needs_admin_and_visibility(
    mgmt: ManagementService, pusher: Principal, admin: Principal, store: MemoryMetadataStore
) -> None:
    with pytest.raises(DeniedError):
        mgmt.delete_registry(pusher, REGISTRY)
    with pytest.raises(NameUnknownError):
        mgmt.delete_registry(admin, FOREIGN_REGISTRY)
    assert store.get_registry(FOREIGN_REGISTRY) is not None
    assert not store.registries[REGISTRY].deleting


def test_purge_removes_content_and_objects_then_frees_the_name(
    mgmt: ManagementService,
    admin: Principal,
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
) -> None:
    _, _, body = push(service, APP, "v1", "app")
    push(service, named(REGISTRY, "other"), "v1", "other")
    sibling = named(SIBLING_REGISTRY, "keep")
    push(service, sibling, "v1", "keep")
    blobs.put_object(f"uploads/{rid(REGISTRY)}/leftover/data", b"scratch")
    sibling_keys = {
        k for k in blobs.objects if k.startswith(f"registries/{rid(SIBLING_REGISTRY)}/")
    }
    assert any(k.startswith(f"registries/{rid(REGISTRY)}/") for k in blobs.objects)

    mgmt.delete_registry(admin, REGISTRY)
    assert mgmt.purge_deleted_registries() == 1

    assert not [k for k in blobs.objects if k.startswith(f"registries/{rid(REGISTRY)}/")]
    assert sibling_keys <= set(blobs.objects)
    assert store.get_registry(REGISTRY) is None
    assert store.get_manifest(APP, digest_of(body)) is None
    assert not store.repository_exists(APP)
    assert all(k[0] != rid(REGISTRY) for k in [*store.manifests, *store.tags, *store.links])
    assert store.get_tag(sibling, "v1") is not None
    assert mgmt.purge_deleted_registries() == 0  # nothing left to do

    mgmt.validate_name(REGISTRY)
    reborn = mgmt.create_registry(admin, REGISTRY, "starter")
    assert reborn.repository_count == 0
    assert reborn.registry_id != rid(REGISTRY)  # a new incarnation, a new id
    assert mgmt.list_repositories(admin, REGISTRY, Page(20, None)).items == []


def test_purge_is_resumable_within_a_deletion_budget(
    mgmt: ManagementService,
    admin: Principal,
    service: RegistryService,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
) -> None:
    push(service, APP, "v1", "app")  # two blob objects
    mgmt.delete_registry(admin, REGISTRY)
    assert mgmt.purge_deleted_registries(budget=1) == 0
    # The budget holds for the registry's items too (a call per item at budget 1).
    for _ in range(10):
        assert store.get_registry(REGISTRY) is not None  # the name goes last
        if mgmt.purge_deleted_registries(budget=1) == 1:
            break
    assert store.get_registry(REGISTRY) is None
    assert not [k for k in blobs.objects if k.startswith(f"registries/{rid(REGISTRY)}/")]


# ====================================================================== plans


def test_options_without_a_registry_make_every_tier_eligible(
    mgmt: ManagementService, puller: Principal
) -> None:
    options = mgmt.options(puller, None)
    assert [o["slug"] for o in options] == ["starter", "basic", "professional"]
    assert all(o["eligible"] and o["eligibility_reasons"] == [] for o in options)
    assert options[1]["monthly_price_in_cents"] == 500


def test_options_for_a_registry_judge_its_usage(
    mgmt: ManagementService, puller: Principal, store: MemoryMetadataStore
) -> None:
    store.registries[REGISTRY].repository_count = 2
    store.registries[REGISTRY].storage_bytes = 600 * MIB
    by_slug = {o["slug"]: o for o in mgmt.options(puller, REGISTRY)}
    assert by_slug["starter"]["eligible"] is False
    assert by_slug["starter"]["eligibility_reasons"] == ["OverRepositoryLimit", "OverStorageLimit"]
    assert by_slug["basic"]["eligible"] is True
    assert by_slug["professional"]["eligible"] is True
    store.registries[REGISTRY].repository_count = 6
    by_slug = {o["slug"]: o for o in mgmt.options(puller, REGISTRY)}
    assert by_slug["basic"]["eligibility_reasons"] == ["OverRepositoryLimit"]
    with pytest.raises(NameUnknownError):
        mgmt.options(puller, FOREIGN_REGISTRY)


def test_downgrade_that_does_not_fit_is_a_conflict_with_reasons(
    mgmt: ManagementService, admin: Principal, store: MemoryMetadataStore
) -> None:
    store.registries[REGISTRY].repository_count = 2
    with pytest.raises(ConflictError) as caught:
        mgmt.update_subscription(admin, REGISTRY, "starter")
    assert caught.value.detail == {"eligibility_reasons": ["OverRepositoryLimit"]}
    assert store.registries[REGISTRY].plan == "professional"


def test_upgrade_changes_the_plan_and_its_updated_at(
    mgmt: ManagementService, admin: Principal, store: MemoryMetadataStore, clock: FakeClock
) -> None:
    mgmt.create_registry(admin, "newco", "starter")
    clock.advance(timedelta(days=3))
    subscription = mgmt.update_subscription(admin, "newco", "basic")
    assert subscription["tier"]["slug"] == "basic"
    assert subscription["created_at"] == "2026-03-01T12:00:00Z"
    assert subscription["updated_at"] == "2026-03-04T12:00:00Z"
    assert store.registries["newco"].plan == "basic"
    assert mgmt.get_subscription(admin, "newco") == subscription


def test_changing_a_subscription_needs_admin_and_a_known_tier(
    mgmt: ManagementService, pusher: Principal, admin: Principal, store: MemoryMetadataStore
) -> None:
    with pytest.raises(DeniedError):
        mgmt.update_subscription(pusher, REGISTRY, "basic")
    with pytest.raises(UnprocessableError):
        mgmt.update_subscription(admin, REGISTRY, "gold")
    with pytest.raises(NameUnknownError):
        mgmt.update_subscription(admin, FOREIGN_REGISTRY, "basic")
    assert store.registries[REGISTRY].plan == "professional"
    assert store.registries[FOREIGN_REGISTRY].plan == "professional"


# ====================================================================== content


def test_list_repositories_counts_tags_and_manifests(
    mgmt: ManagementService, puller: Principal, service: RegistryService
) -> None:
    _, _, first = push(service, APP, "v1", "one")
    push(service, APP, "v2", "two")
    service.put_manifest(APP, "latest", first, OCI_MANIFEST)
    push(service, named(REGISTRY, "base"), "v1", "base")
    push_blob(service, named(REGISTRY, "blobs-only"), b"just a blob")
    items = mgmt.list_repositories(puller, REGISTRY, Page(20, None)).items
    assert [(i["name"], i["tag_count"], i["manifest_count"]) for i in items] == [
        ("base", 1, 1),
        ("blobs-only", 0, 0),
        ("team/app", 3, 2),
    ]
    assert all(i["registry_name"] == REGISTRY for i in items)
    assert items[1]["latest_manifest"] is None


def test_latest_manifest_is_the_one_whose_tag_was_updated_last(
    mgmt: ManagementService, puller: Principal, service: RegistryService, clock: FakeClock
) -> None:
    _, _, old = push(service, APP, "zzz", "old")
    clock.advance(timedelta(minutes=1))
    _, _, new = push(service, APP, "aaa", "new")

    def latest() -> dict[str, Any]:
        items = mgmt.list_repositories(puller, REGISTRY, Page(20, None)).items
        found = items[0]["latest_manifest"]
        assert found is not None
        return dict(found)

    assert latest()["digest"] == digest_of(new)  # newest tag wins over the larger tag name
    assert latest()["tags"] == ["aaa"]
    clock.advance(timedelta(minutes=1))
    service.put_manifest(APP, "zzz", old, OCI_MANIFEST)  # re-tagging moves it to the front
    assert latest()["digest"] == digest_of(old)
    assert latest()["tags"] == ["zzz"]


def test_latest_manifest_tolerates_a_tag_without_updated_at(
    mgmt: ManagementService, puller: Principal, service: RegistryService, store: MemoryMetadataStore
) -> None:
    _, _, old = push(service, APP, "old", "old")
    _, _, new = push(service, APP, "new", "new")
    store.tags[(APP.rid, APP.repository)]["old"] = TagRecord("old", digest_of(old), None)
    item = mgmt.list_repositories(puller, REGISTRY, Page(20, None)).items[0]
    assert item["latest_manifest"]["digest"] == digest_of(new)


def test_latest_manifest_without_tags_is_the_last_pushed(
    mgmt: ManagementService, puller: Principal, service: RegistryService, clock: FakeClock
) -> None:
    bodies = []
    for seed in ("b", "a", "c"):
        config, layer = f"cfg {seed}".encode(), f"lyr {seed}".encode()
        push_blob(service, APP, config)
        push_blob(service, APP, layer)
        body = image_manifest(config, [layer])
        service.put_manifest(APP, digest_of(body), body, OCI_MANIFEST)
        bodies.append(body)
        clock.advance(timedelta(seconds=10))
    item = mgmt.list_repositories(puller, REGISTRY, Page(20, None)).items[0]
    assert item["latest_manifest"]["digest"] == digest_of(bodies[-1])
    assert item["latest_manifest"]["tags"] == []


def test_tag_sizes_are_blob_bytes_and_blob_bytes_plus_manifest(
    mgmt: ManagementService, puller: Principal, service: RegistryService, clock: FakeClock
) -> None:
    clock.advance(timedelta(minutes=5))
    config, layer, body = push(service, APP, "v1", "sized")
    [tag] = mgmt.list_tags(puller, REGISTRY, "team/app", Page(20, None)).items
    assert tag == {
        "registry_name": REGISTRY,
        "repository": "team/app",
        "tag": "v1",
        "manifest_digest": digest_of(body),
        "compressed_size_bytes": len(config) + len(layer),
        "size_bytes": len(config) + len(layer) + len(body),
        "updated_at": "2026-03-01T12:05:00Z",
    }


def test_tags_without_a_copied_manifest_still_report_sizes(
    mgmt: ManagementService, puller: Principal, service: RegistryService, store: MemoryMetadataStore
) -> None:
    config, layer, body = push(service, APP, "v1", "legacy")
    # A tag written before tags carried a copy of their manifest.
    store.tags[(APP.rid, APP.repository)]["v1"] = TagRecord("v1", digest_of(body), START, None)
    [tag] = mgmt.list_tags(puller, REGISTRY, "team/app", Page(20, None)).items
    assert tag["compressed_size_bytes"] == len(config) + len(layer)
    assert tag["size_bytes"] == len(config) + len(layer) + len(body)


def test_list_manifests_shows_tags_and_blobs_with_sizes(
    mgmt: ManagementService, puller: Principal, service: RegistryService
) -> None:
    config, layer, body = push(service, APP, "v1", "m")
    service.put_manifest(APP, "stable", body, OCI_MANIFEST)
    [item] = mgmt.list_manifests(puller, REGISTRY, "team/app", Page(20, None)).items
    assert item["digest"] == digest_of(body)
    assert item["registry_name"] == REGISTRY
    assert item["repository"] == "team/app"
    assert item["media_type"] == OCI_MANIFEST
    assert item["tags"] == ["stable", "v1"]
    assert item["blobs"] == [
        {"digest": digest_of(config), "compressed_size_bytes": len(config)},
        {"digest": digest_of(layer), "compressed_size_bytes": len(layer)},
    ]
    assert item["compressed_size_bytes"] == len(config) + len(layer)
    assert item["size_bytes"] == len(config) + len(layer) + len(body)


def test_an_index_counts_the_blobs_of_its_children(
    mgmt: ManagementService, puller: Principal, service: RegistryService
) -> None:
    c1, l1, amd = push(service, APP, "amd64", "amd")
    c2, l2, arm = push(service, APP, "arm64", "arm")
    index = index_manifest([amd, arm])
    service.put_manifest(APP, "multi", index, OCI_INDEX)
    items = {
        i["digest"]: i
        for i in mgmt.list_manifests(puller, REGISTRY, "team/app", Page(20, None)).items
    }
    entry = items[digest_of(index)]
    children = len(c1) + len(l1) + len(c2) + len(l2)
    assert entry["compressed_size_bytes"] == children
    assert entry["size_bytes"] == children + len(index)
    assert entry["blobs"] == []
    assert entry["tags"] == ["multi"]
    tags = {t["tag"]: t for t in mgmt.list_tags(puller, REGISTRY, "team/app", Page(20, None)).items}
    assert tags["multi"]["compressed_size_bytes"] == children


def test_listing_content_of_an_invisible_registry_or_missing_repository_fails(
    mgmt: ManagementService, store: MemoryMetadataStore, service: RegistryService
) -> None:
    push(service, APP, "v1", "x")
    push(service, named(FOREIGN_REGISTRY, "app"), "v1", "y")
    limited = principal(store, {"admin"}, registries={SIBLING_REGISTRY})
    page = Page(20, None)
    with pytest.raises(NameUnknownError):
        mgmt.list_repositories(limited, REGISTRY, page)
    with pytest.raises(NameUnknownError):
        mgmt.list_tags(limited, REGISTRY, "team/app", page)
    foreign_admin = principal(store, {"admin"})
    with pytest.raises(NameUnknownError):
        mgmt.list_manifests(foreign_admin, FOREIGN_REGISTRY, "app", page)
    for repository in ("nosuch", "Bad//Name"):
        with pytest.raises(NotFoundError):
            mgmt.list_tags(foreign_admin, REGISTRY, repository, page)


# ---------------------------------------------------------------------- pagination


@pytest.mark.parametrize(("per_page", "size"), [(None, 20), ("", 20), ("1", 1), ("200", 200)])
def test_page_size_defaults_to_20_and_accepts_1_to_200(per_page: str | None, size: int) -> None:
    assert Page.parse(per_page, None) == Page(size, None)
    assert MAX_PAGE == 200


@pytest.mark.parametrize("per_page", ["0", "201", "-1", "abc", "1.5", " 5", "1e2"])
def test_page_size_out_of_bounds_is_bad_request(per_page: str) -> None:
    with pytest.raises(BadRequestError, match="per_page"):
        Page.parse(per_page, None)


@pytest.mark.parametrize("per_page", ["²", "\u0663", "\uff11\uff10"])
def test_page_size_accepts_only_ascii_digits(per_page: str) -> None:
    # str.isdigit() accepts these, and int() refuses "²": they must be a 400, never a 500.
    with pytest.raises(BadRequestError, match="per_page"):
        Page.parse(per_page, None)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "a",
        _b64(b"not json"),
        _b64(b'{"before": "x"}'),
        _b64(b'{"after": 3}'),
        _b64(b'{"after": null}'),
        _b64(b'["after"]'),
        _b64(b'"after"'),
        _b64(b"\xff\xfe"),
    ],
)
def test_invalid_page_tokens_are_bad_request(token: str) -> None:
    with pytest.raises(BadRequestError, match="page_token"):
        Page.parse(None, token)


@pytest.mark.parametrize("after", ["v1", "team/app", "sha256:" + "0" * 64, "ünïcode"])
def test_page_token_round_trips(after: str) -> None:
    token = next_page_token(after)
    assert "=" not in token
    assert Page.parse("5", token) == Page(5, after)


def test_tags_paginate_until_a_last_page_without_a_token(
    mgmt: ManagementService, puller: Principal, service: RegistryService
) -> None:
    _, _, body = push(service, APP, "t1", "p")
    for tag in ("t2", "t3", "t4", "t5"):
        service.put_manifest(APP, tag, body, OCI_MANIFEST)
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        listing = mgmt.list_tags(puller, REGISTRY, "team/app", Page.parse("2", token))
        pages.append([t["tag"] for t in listing.items])
        if listing.next_page_token is None:
            assert listing.links() == {}
            break
        assert listing.links() == {"next_page_token": listing.next_page_token}
        token = listing.next_page_token
    assert pages == [["t1", "t2"], ["t3", "t4"], ["t5"]]
    exact = mgmt.list_tags(puller, REGISTRY, "team/app", Page(5, None))
    assert len(exact.items) == 5
    assert exact.next_page_token is None  # a full last page has no token either


def test_repositories_and_manifests_paginate(
    mgmt: ManagementService, puller: Principal, service: RegistryService
) -> None:
    for name in ("a", "b", "c"):
        push(service, named(REGISTRY, name), "v1", name)
        push(service, APP, name, name)
    first = mgmt.list_repositories(puller, REGISTRY, Page(2, None))
    assert [i["name"] for i in first.items] == ["a", "b"]
    assert first.next_page_token is not None
    rest = mgmt.list_repositories(puller, REGISTRY, Page.parse("2", first.next_page_token))
    assert [i["name"] for i in rest.items] == ["c", "team/app"]
    assert rest.next_page_token is None

    seen: list[str] = []
    token: str | None = None
    for _ in range(5):
        listing = mgmt.list_manifests(puller, REGISTRY, "team/app", Page.parse("1", token))
        seen += [m["digest"] for m in listing.items]
        token = listing.next_page_token
        if token is None:
            break
    assert len(seen) == 3
    assert seen == sorted(seen)


# ---------------------------------------------------------------------- deletions


def test_pull_only_tokens_cannot_delete_content(
    mgmt: ManagementService, puller: Principal, service: RegistryService, store: MemoryMetadataStore
) -> None:
    _, _, body = push(service, APP, "v1", "keep")
    with pytest.raises(DeniedError):
        mgmt.delete_tag(puller, REGISTRY, "team/app", "v1")
    with pytest.raises(DeniedError):
        mgmt.delete_manifest(puller, REGISTRY, "team/app", digest_of(body))
    with pytest.raises(DeniedError):
        mgmt.delete_repository(puller, REGISTRY, "team/app")
    assert store.get_tag(APP, "v1") is not None
    assert store.get_manifest(APP, digest_of(body)) is not None
    assert store.repository_exists(APP)


def test_push_token_deletes_a_tag_but_keeps_the_manifest(
    mgmt: ManagementService, pusher: Principal, service: RegistryService, store: MemoryMetadataStore
) -> None:
    _, _, body = push(service, APP, "v1", "x")
    service.put_manifest(APP, "v2", body, OCI_MANIFEST)
    mgmt.delete_tag(pusher, REGISTRY, "team/app", "v1")
    assert store.get_tag(APP, "v1") is None
    assert store.get_tag(APP, "v2") is not None
    assert store.get_manifest(APP, digest_of(body)) is not None
    with pytest.raises(NotFoundError):
        mgmt.delete_tag(pusher, REGISTRY, "team/app", "v1")
    with pytest.raises(NotFoundError):
        mgmt.delete_tag(pusher, REGISTRY, "team/app", "-bad tag-")


def test_deleting_a_manifest_removes_its_tags(
    mgmt: ManagementService, admin: Principal, service: RegistryService, store: MemoryMetadataStore
) -> None:
    _, _, body = push(service, APP, "v1", "x")
    _, _, other = push(service, APP, "v2", "y")
    service.put_manifest(APP, "latest", body, OCI_MANIFEST)
    mgmt.delete_manifest(admin, REGISTRY, "team/app", digest_of(body))
    assert store.get_manifest(APP, digest_of(body)) is None
    assert store.get_tag(APP, "v1") is None
    assert store.get_tag(APP, "latest") is None
    assert store.get_tag(APP, "v2") is not None
    with pytest.raises(NotFoundError):
        mgmt.delete_manifest(admin, REGISTRY, "team/app", digest_of(body))
    with pytest.raises(UnprocessableError):
        mgmt.delete_manifest(admin, REGISTRY, "team/app", "sha256:short")
    assert store.get_manifest(APP, digest_of(other)) is not None


def test_deleting_a_repository_removes_it_from_the_listing(
    mgmt: ManagementService, pusher: Principal, service: RegistryService, store: MemoryMetadataStore
) -> None:
    push(service, APP, "v1", "x")
    push(service, named(REGISTRY, "other"), "v1", "y")
    assert store.registries[REGISTRY].repository_count == 2
    mgmt.delete_repository(pusher, REGISTRY, "team/app")
    names = [i["name"] for i in mgmt.list_repositories(pusher, REGISTRY, Page(20, None)).items]
    assert names == ["other"]
    assert store.registries[REGISTRY].repository_count == 1
    with pytest.raises(NotFoundError):
        mgmt.delete_repository(pusher, REGISTRY, "team/app")
    with pytest.raises(NotFoundError):
        mgmt.list_tags(pusher, REGISTRY, "team/app", Page(20, None))


def test_deleting_in_an_invisible_registry_is_name_unknown(
    mgmt: ManagementService, store: MemoryMetadataStore, service: RegistryService
) -> None:
    push(service, APP, "v1", "x")
    limited = principal(store, {"push"}, registries={SIBLING_REGISTRY})
    with pytest.raises(NameUnknownError):
        mgmt.delete_tag(limited, REGISTRY, "team/app", "v1")
    with pytest.raises(NameUnknownError):
        mgmt.delete_repository(limited, REGISTRY, "team/app")
    assert store.get_tag(APP, "v1") is not None


# ====================================================================== tokens


def test_admin_creates_a_token_that_authenticates_with_its_scopes(
    mgmt: ManagementService, admin: Principal, clock: FakeClock
) -> None:
    created = mgmt.create_token(admin, "ci", ["pull", "push"])
    assert created.secret.startswith("pst_")
    assert created.record.token_hash == hash_token(created.secret)
    assert created.record.account_id == ACCOUNT
    assert created.record.registries is None
    assert created.record.expires_at is None
    assert created.record.created_at == clock.now
    assert created.secret not in repr(created)
    who = mgmt.authenticate(created.secret)
    assert who.token.scopes == frozenset({"pull", "push"})
    assert who.account_id == ACCOUNT


@pytest.mark.parametrize("scopes", [{"pull"}, {"push"}])
def test_creating_tokens_needs_admin(
    mgmt: ManagementService, store: MemoryMetadataStore, scopes: set[str]
) -> None:
    caller = principal(store, scopes)
    count = len(store.tokens)
    with pytest.raises(DeniedError):
        mgmt.create_token(caller, "x", ["pull"])
    assert len(store.tokens) == count


@pytest.mark.parametrize(
    ("name", "scopes"),
    [
        ("", ["pull"]),
        ("x" * 101, ["pull"]),
        (7, ["pull"]),
        (None, ["pull"]),
        ("ok", []),
        ("ok", ["root"]),
        ("ok", "pull"),
        ("ok", [1]),
        ("ok", None),
        ("ok", ["pull", "Push"]),
    ],
)
def test_token_name_and_scopes_are_validated(
    mgmt: ManagementService, admin: Principal, name: Any, scopes: Any
) -> None:
    with pytest.raises(UnprocessableError):
        mgmt.create_token(admin, name, scopes)


def test_token_name_of_100_characters_is_accepted(
    mgmt: ManagementService, admin: Principal
) -> None:
    assert mgmt.create_token(admin, "x" * 100, ["admin"]).record.name == "x" * 100


def test_token_registries_must_be_visible(mgmt: ManagementService, admin: Principal) -> None:
    for registries in ([FOREIGN_REGISTRY], ["nosuch"], [REGISTRY, "nosuch"]):
        with pytest.raises(NameUnknownError):
            mgmt.create_token(admin, "x", ["pull"], registries)
    for invalid in (REGISTRY, [1], {"acme": True}):
        with pytest.raises(UnprocessableError):
            mgmt.create_token(admin, "x", ["pull"], invalid)
    created = mgmt.create_token(admin, "x", ["pull"], [REGISTRY, SIBLING_REGISTRY])
    assert created.record.registries == frozenset({REGISTRY, SIBLING_REGISTRY})


def test_a_registry_limited_admin_mints_only_limited_tokens(
    mgmt: ManagementService, store: MemoryMetadataStore
) -> None:
    limited = principal(store, {"admin"}, registries={REGISTRY})
    inherited = mgmt.create_token(limited, "default", ["pull"])
    assert inherited.record.registries == frozenset({REGISTRY})
    assert not mgmt.authenticate(inherited.secret).may_use_registry(SIBLING_REGISTRY)
    with pytest.raises(NameUnknownError):
        mgmt.create_token(limited, "escape", ["pull"], [SIBLING_REGISTRY])
    with pytest.raises(NameUnknownError):
        mgmt.create_token(limited, "escape", ["pull"], [REGISTRY, SIBLING_REGISTRY])
    subset = mgmt.create_token(limited, "subset", ["push"], [REGISTRY])
    assert subset.record.registries == frozenset({REGISTRY})


@pytest.mark.parametrize("seconds", [1, 3600, MAX_EXPIRY_SECONDS])
def test_token_expiry_is_counted_from_now(
    mgmt: ManagementService, admin: Principal, clock: FakeClock, seconds: int
) -> None:
    created = mgmt.create_token(admin, "x", ["pull"], expiry_seconds=seconds)
    assert created.record.expires_at == START + timedelta(seconds=seconds)


@pytest.mark.parametrize("seconds", [0, -1, MAX_EXPIRY_SECONDS + 1, True, 1.5, "60", [60]])
def test_token_expiry_out_of_bounds_is_unprocessable(
    mgmt: ManagementService, admin: Principal, seconds: Any
) -> None:
    with pytest.raises(UnprocessableError, match="expiry_seconds"):
        mgmt.create_token(admin, "x", ["pull"], expiry_seconds=seconds)


def test_an_expiring_token_stops_authenticating_at_its_expiry(
    mgmt: ManagementService, admin: Principal, clock: FakeClock
) -> None:
    created = mgmt.create_token(admin, "x", ["pull"], expiry_seconds=60)
    clock.advance(timedelta(seconds=59))
    mgmt.authenticate(created.secret)
    clock.advance(timedelta(seconds=1))
    with pytest.raises(UnauthorizedError, match="expired"):
        mgmt.authenticate(created.secret)


def test_list_tokens_never_exposes_secrets_or_hashes(
    mgmt: ManagementService, admin: Principal
) -> None:
    created = mgmt.create_token(admin, "ci", ["push", "pull"], [REGISTRY], expiry_seconds=60)
    listing = mgmt.list_tokens(admin, Page(20, None))
    text = json.dumps(listing.items)
    assert created.secret not in text
    assert created.record.token_hash not in text
    assert admin.token.token_hash not in text
    [doc] = [t for t in listing.items if t["id"] == created.record.token_id]
    assert doc == {
        "id": created.record.token_id,
        "name": "ci",
        "scopes": ["pull", "push"],
        "registries": [REGISTRY],
        "created_at": "2026-03-01T12:00:00Z",
        "expires_at": "2026-03-01T12:01:00Z",
        "last_used_at": None,
    }


def test_list_tokens_needs_admin_and_shows_only_the_account_paginated(
    mgmt: ManagementService, admin: Principal, pusher: Principal, store: MemoryMetadataStore
) -> None:
    with pytest.raises(DeniedError):
        mgmt.list_tokens(pusher, Page(20, None))
    foreign = principal(store, {"admin"}, account=OTHER_ACCOUNT)
    for i in range(3):
        mgmt.create_token(admin, f"t{i}", ["pull"])
    ids: list[str] = []
    token: str | None = None
    while True:
        listing = mgmt.list_tokens(admin, Page.parse("2", token))
        ids += [t["id"] for t in listing.items]
        token = listing.next_page_token
        if token is None:
            break
    mine = {t.token_id for t in store.tokens.values() if t.account_id == ACCOUNT}
    assert ids == sorted(mine)
    assert foreign.token.token_id not in ids


def test_revoked_token_is_rejected_by_the_authenticator(
    mgmt: ManagementService, admin: Principal, authenticator: Authenticator
) -> None:
    created = mgmt.create_token(admin, "ci", ["pull"])
    authenticator.authenticate_secret(created.secret, START)
    mgmt.revoke_token(admin, created.record.token_id)
    with pytest.raises(UnauthorizedError):
        authenticator.authenticate_secret(created.secret, START)
    with pytest.raises(NotFoundError):
        mgmt.revoke_token(admin, created.record.token_id)


def test_revoking_needs_admin_and_cannot_reach_another_account(
    mgmt: ManagementService, admin: Principal, pusher: Principal, store: MemoryMetadataStore
) -> None:
    foreign_secret = make_token(store, OTHER_ACCOUNT, {"admin"})
    foreign = store.get_token_by_hash(hash_token(foreign_secret))
    assert foreign is not None
    with pytest.raises(NotFoundError):
        mgmt.revoke_token(admin, foreign.token_id)
    mgmt.authenticate(foreign_secret)  # still valid
    with pytest.raises(DeniedError):
        mgmt.revoke_token(pusher, admin.token.token_id)
    assert store.get_token_by_hash(admin.token.token_hash) is not None


# ---------------------------------------------------------------------- docker credentials


def _docker_secret(config: dict[str, Any], host: str = HOST) -> str:
    assert list(config) == ["auths"]
    assert list(config["auths"]) == [host]
    decoded = base64.b64decode(config["auths"][host]["auth"]).decode()
    user, _, password = decoded.partition(":")
    assert user == password
    return user


def test_docker_credentials_mint_a_pull_only_token_for_that_registry(
    mgmt: ManagementService, admin: Principal
) -> None:
    config = mgmt.docker_credentials(admin, REGISTRY, False, None, HOST)
    secret = _docker_secret(config)
    minted = mgmt.authenticate(secret)
    assert minted.token.scopes == frozenset({"pull"})
    assert minted.token.registries == frozenset({REGISTRY})
    assert minted.token.expires_at is None
    assert "read-only" in minted.token.name
    assert not minted.may_use_registry(SIBLING_REGISTRY)


def test_read_write_docker_credentials_can_push_and_expire_when_asked(
    mgmt: ManagementService, admin: Principal, clock: FakeClock
) -> None:
    config = mgmt.docker_credentials(admin, REGISTRY, True, 3600, "localhost:5000")
    secret = _docker_secret(config, "localhost:5000")
    minted = mgmt.authenticate(secret)
    assert minted.token.scopes == frozenset({"pull", "push"})
    assert minted.token.registries == frozenset({REGISTRY})
    assert minted.token.expires_at == START + timedelta(hours=1)
    clock.advance(timedelta(hours=1))
    with pytest.raises(UnauthorizedError):
        mgmt.authenticate(secret)


def test_docker_credentials_need_admin_a_visible_registry_and_a_valid_expiry(
    mgmt: ManagementService, admin: Principal, pusher: Principal, store: MemoryMetadataStore
) -> None:
    count = len(store.tokens)
    with pytest.raises(DeniedError):
        mgmt.docker_credentials(pusher, REGISTRY, False, None, HOST)
    with pytest.raises(NameUnknownError):
        mgmt.docker_credentials(admin, FOREIGN_REGISTRY, False, None, HOST)
    with pytest.raises(UnprocessableError):
        mgmt.docker_credentials(admin, REGISTRY, False, "soon", HOST)
    assert len(store.tokens) == count  # nothing minted by refused requests


# ---------------------------------------------------------------------- last use


def test_authenticate_records_last_use_at_most_once_a_minute(
    mgmt: ManagementService, store: MemoryMetadataStore, clock: FakeClock
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    saved = store.tokens[hash_token(secret)]  # what is stored (reads are snapshots)
    assert saved.last_used_at is None
    mgmt.authenticate(secret)
    assert store.tokens[hash_token(secret)].last_used_at == START
    clock.advance(timedelta(seconds=59))
    mgmt.authenticate(secret)
    assert store.tokens[hash_token(secret)].last_used_at == START
    clock.advance(timedelta(seconds=1))
    mgmt.authenticate(secret)
    assert store.tokens[hash_token(secret)].last_used_at == START + timedelta(minutes=1)


def test_authenticate_rejects_unknown_secrets(mgmt: ManagementService) -> None:
    with pytest.raises(UnauthorizedError):
        mgmt.authenticate("pst_not-a-token")


def test_a_token_never_outlives_the_token_that_created_it(
    mgmt: ManagementService, store: MemoryMetadataStore, clock: FakeClock
) -> None:
    short_lived = mgmt.authenticate(
        mgmt.create_token(principal(store, {"admin"}), "short", ["admin"], expiry_seconds=60).secret
    )
    unbounded = mgmt.create_token(short_lived, "child", ["pull"])
    longer = mgmt.create_token(short_lived, "child", ["pull"], expiry_seconds=3600)
    shorter = mgmt.create_token(short_lived, "child", ["pull"], expiry_seconds=30)
    assert unbounded.record.expires_at == START + timedelta(seconds=60)
    assert longer.record.expires_at == START + timedelta(seconds=60)
    assert shorter.record.expires_at == START + timedelta(seconds=30)
    config = mgmt.docker_credentials(short_lived, REGISTRY, False, None, "registry.example")
    assert config["auths"]["registry.example"]["auth"]
    minted = [t for t in store.tokens.values() if t.name.startswith("docker-credentials")]
    assert [t.expires_at for t in minted] == [START + timedelta(seconds=60)]


def test_a_registry_limited_admin_sees_and_revokes_only_tokens_within_its_registries(
    mgmt: ManagementService, store: MemoryMetadataStore
) -> None:
    everywhere = mgmt.create_token(principal(store, {"admin"}), "everywhere", ["pull"])
    sibling = mgmt.create_token(
        principal(store, {"admin"}), "sibling", ["pull"], [SIBLING_REGISTRY]
    )
    limited = principal(store, {"admin"}, registries={REGISTRY})
    own = mgmt.create_token(limited, "own", ["pull"])
    listed = {t["name"] for t in mgmt.list_tokens(limited, Page(200, None)).items}
    assert "own" in listed
    assert not listed & {"everywhere", "sibling"}
    for other in (everywhere, sibling):
        with pytest.raises(NotFoundError):
            mgmt.revoke_token(limited, other.record.token_id)
    mgmt.revoke_token(limited, own.record.token_id)
    assert store.get_token_by_hash(own.record.token_hash) is None
    assert store.get_token_by_hash(everywhere.record.token_hash) is not None
