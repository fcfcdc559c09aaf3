"""Repositories, tags and manifests through /api/v1, with content pushed through /v2/."""

from __future__ import annotations

from datetime import datetime

import pytest

from .helpers import OCI_MANIFEST, V2, Api, Image, assert_api_error, enc, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(admin: Api) -> str:
    name = unique("content")
    admin.create_registry(name)
    return name


def _repos(admin: Api, registry: str) -> dict[str, dict[str, object]]:
    body = admin.get(f"/api/v1/registries/{registry}/repositories", expect=200).json()
    return {r["name"]: r for r in body["repositories"]}


def _manifest_sizes(image: Image) -> tuple[int, int]:
    return image.compressed_size, image.compressed_size + len(image.manifest)


def test_repositories_list(admin: Api, v2: V2, registry: str) -> None:
    app = v2.push_image(f"{registry}/app", "v1", (1000, 3000))
    v2.tag(app, "v2")
    newer = v2.push_image(f"{registry}/app", "v3", (500,))
    untagged = v2.push_image(f"{registry}/app", None, (700,))
    nested = v2.push_image(f"{registry}/team/api/server", "latest", (1234,))

    repos = _repos(admin, registry)
    assert list(repos) == ["app", "team/api/server"]  # lexical order
    item = repos["app"]
    assert item["registry_name"] == registry
    assert item["tag_count"] == 3
    assert item["manifest_count"] == 3
    latest = item["latest_manifest"]
    assert isinstance(latest, dict)
    assert latest["digest"] == newer.digest  # the most recently tagged
    assert latest["tags"] == ["v3"]
    assert latest["media_type"] == OCI_MANIFEST
    compressed, size = _manifest_sizes(newer)
    assert latest["compressed_size_bytes"] == compressed
    assert latest["size_bytes"] == size
    assert untagged.digest != latest["digest"]

    deep = repos["team/api/server"]
    assert deep["tag_count"] == 1 and deep["manifest_count"] == 1
    assert isinstance(deep["latest_manifest"], dict)
    assert deep["latest_manifest"]["digest"] == nested.digest
    assert deep["latest_manifest"]["repository"] == "team/api/server"


def test_repository_with_only_a_blob_lists_without_a_manifest(
    admin: Api, v2: V2, registry: str
) -> None:
    v2.push_blob(f"{registry}/blobonly", b"just a blob")
    body = admin.get(f"/api/v1/registries/{registry}/repositories", expect=200, check=False).json()
    repos = {r["name"]: r for r in body["repositories"]}
    assert repos["blobonly"]["latest_manifest"] is None
    assert repos["blobonly"]["manifest_count"] == 0
    assert repos["blobonly"]["tag_count"] == 0


def test_repository_without_manifests_conforms_to_the_contract(
    admin: Api, v2: V2, registry: str
) -> None:
    v2.push_blob(f"{registry}/blobonly", b"just a blob")
    admin.get(f"/api/v1/registries/{registry}/repositories", expect=200)


def test_tags_list(admin: Api, v2: V2, registry: str) -> None:
    image = v2.push_image(f"{registry}/team/web", "b-tag", (4096, 100, 2000))
    v2.tag(image, "a-tag")
    other = v2.push_image(f"{registry}/team/web", "c-tag", (10,))
    before = datetime.now().astimezone()

    body = admin.get(
        f"/api/v1/registries/{registry}/repositories/{enc('team/web')}/tags", expect=200
    ).json()
    assert body["links"] == {}
    tags = {t["tag"]: t for t in body["tags"]}
    assert [t["tag"] for t in body["tags"]] == ["a-tag", "b-tag", "c-tag"]
    for name, pushed in (("a-tag", image), ("b-tag", image), ("c-tag", other)):
        tag = tags[name]
        assert tag["registry_name"] == registry
        assert tag["repository"] == "team/web"
        assert tag["manifest_digest"] == pushed.digest
        assert tag["compressed_size_bytes"] == pushed.config_size + sum(s for _, s in pushed.layers)
        assert tag["size_bytes"] == tag["compressed_size_bytes"] + len(pushed.manifest)
        updated = datetime.fromisoformat(tag["updated_at"])
        assert abs((updated - before).total_seconds()) < 120


def test_tag_delete_keeps_the_manifest(admin: Api, v2: V2, registry: str) -> None:
    image = v2.push_image(f"{registry}/svc", "keep", (300,))
    v2.tag(image, "drop")
    base = f"/api/v1/registries/{registry}/repositories/svc/tags"
    admin.delete(f"{base}/drop", expect=204)
    assert [t["tag"] for t in admin.get(base).json()["tags"]] == ["keep"]
    assert v2.manifest_status(f"{registry}/svc", "drop") == 404
    assert v2.manifest_status(f"{registry}/svc", image.digest) == 200
    assert_api_error(admin.delete(f"{base}/drop"), 404, "not_found")
    assert_api_error(admin.delete(f"{base}/..bad"), 404, "not_found")
    # Deleting the last tag still leaves the manifest pullable by digest.
    admin.delete(f"{base}/keep", expect=204)
    assert v2.manifest_status(f"{registry}/svc", image.digest) == 200
    manifests = admin.get(f"/api/v1/registries/{registry}/repositories/svc/manifests").json()
    assert [(m["digest"], m["tags"]) for m in manifests["manifests"]] == [(image.digest, [])]


def test_manifests_list(admin: Api, v2: V2, registry: str) -> None:
    one = v2.push_image(f"{registry}/a/b", "one", (111, 222))
    v2.tag(one, "uno")
    two = v2.push_image(f"{registry}/a/b", None, (333,))
    body = admin.get(
        f"/api/v1/registries/{registry}/repositories/{enc('a/b')}/manifests", expect=200
    ).json()
    listed = {m["digest"]: m for m in body["manifests"]}
    assert [m["digest"] for m in body["manifests"]] == sorted(listed)  # digest order
    assert set(listed) == {one.digest, two.digest}
    for image, tags in ((one, ["one", "uno"]), (two, [])):
        item = listed[image.digest]
        assert item["tags"] == tags
        assert item["repository"] == "a/b" and item["registry_name"] == registry
        assert item["media_type"] == OCI_MANIFEST
        assert [(b["digest"], b["compressed_size_bytes"]) for b in item["blobs"]] == image.blobs
        compressed, size = _manifest_sizes(image)
        assert item["compressed_size_bytes"] == compressed
        assert item["size_bytes"] == size


def test_manifest_delete_removes_its_tags(admin: Api, v2: V2, registry: str) -> None:
    image = v2.push_image(f"{registry}/x/y", "t1", (64,))
    v2.tag(image, "t2")
    keep = v2.push_image(f"{registry}/x/y", "t3", (65,))
    repo = f"/api/v1/registries/{registry}/repositories/{enc('x/y')}"
    admin.delete(f"{repo}/manifests/{image.digest}", expect=204)
    assert [t["tag"] for t in admin.get(f"{repo}/tags").json()["tags"]] == ["t3"]
    assert [m["digest"] for m in admin.get(f"{repo}/manifests").json()["manifests"]] == [
        keep.digest
    ]
    for reference in ("t1", "t2", image.digest):
        assert v2.manifest_status(f"{registry}/x/y", reference) == 404
    assert_api_error(admin.delete(f"{repo}/manifests/{image.digest}"), 404, "not_found")


def test_manifest_delete_with_a_malformed_digest(admin: Api, v2: V2, registry: str) -> None:
    v2.push_image(f"{registry}/bad", "t", (10,))
    answer = admin.delete(
        f"/api/v1/registries/{registry}/repositories/bad/manifests/not-a-digest", check=False
    )
    # The contract check of the Api client proves 422 is documented for this operation.
    assert answer.status_code == 422, answer.text
    assert answer.json()["id"] == "unprocessable_entity"


def test_repository_delete(admin: Api, v2: V2, registry: str) -> None:
    gone = v2.push_image(f"{registry}/org/gone", "v1", (50,))
    v2.push_image(f"{registry}/org/stays", "v1", (51,))
    path = f"/api/v1/registries/{registry}/repositories/{enc('org/gone')}"
    admin.delete(path, expect=204)
    assert list(_repos(admin, registry)) == ["org/stays"]
    assert v2.manifest_status(f"{registry}/org/gone", "v1") == 404
    assert v2.manifest_status(f"{registry}/org/gone", gone.digest) == 404
    assert_api_error(admin.delete(path), 404, "not_found")
    assert_api_error(admin.get(f"{path}/tags"), 404, "not_found")
    assert_api_error(admin.get(f"{path}/manifests"), 404, "not_found")
    registry_body = admin.get(f"/api/v1/registries/{registry}").json()["registry"]
    assert registry_body["repository_count"] == 1


def test_content_of_unknown_things_is_404(admin: Api, registry: str) -> None:
    none = unique("none")
    for path in (
        f"/api/v1/registries/{none}/repositories",
        f"/api/v1/registries/{none}/repositories/app/tags",
        f"/api/v1/registries/{none}/repositories/app/manifests",
        f"/api/v1/registries/{registry}/repositories/nothing/tags",
        f"/api/v1/registries/{registry}/repositories/nothing/manifests",
        f"/api/v1/registries/{registry}/repositories/{enc('Not Valid')}/tags",
    ):
        assert_api_error(admin.get(path), 404, "not_found")
    for path in (
        f"/api/v1/registries/{registry}/repositories/nothing",
        f"/api/v1/registries/{registry}/repositories/nothing/tags/v1",
        f"/api/v1/registries/{registry}/repositories/nothing/manifests/sha256:{'0' * 64}",
    ):
        assert_api_error(admin.delete(path), 404, "not_found")


# ------------------------------------------------------------------------------ pagination


@pytest.fixture(scope="module")
def populated(admin: Api, v2: V2) -> str:
    registry = unique("paged")
    admin.create_registry(registry)
    for i in range(5):
        v2.push_image(f"{registry}/repo{i}", f"t{i}", (20,))
    image = v2.push_image(f"{registry}/repo0", "t-extra", (21,))
    for i in range(4):
        v2.tag(image, f"more{i}")
    for size in (22, 23, 24):
        v2.push_image(f"{registry}/repo0", None, (size,))
    return registry


@pytest.mark.parametrize("per_page", [1, 2, 3, 200])
def test_pagination_of_repositories_tags_manifests(
    admin: Api, populated: str, per_page: int
) -> None:
    base = f"/api/v1/registries/{populated}/repositories"
    full = admin.get(base, params={"per_page": 200}).json()["repositories"]
    assert len(full) == 5
    assert admin.all_pages(base, "repositories", per_page) == full

    tags = admin.get(f"{base}/repo0/tags", params={"per_page": 200}).json()["tags"]
    assert len(tags) == 6
    assert admin.all_pages(f"{base}/repo0/tags", "tags", per_page) == tags

    manifests = admin.get(f"{base}/repo0/manifests", params={"per_page": 200}).json()
    assert len(manifests["manifests"]) == 5
    paged = admin.all_pages(f"{base}/repo0/manifests", "manifests", per_page)
    assert paged == manifests["manifests"]


def test_default_page_size_is_20(admin: Api, v2: V2, registry: str) -> None:
    image = v2.push_image(f"{registry}/many", "t00", (5,))
    for i in range(1, 22):
        v2.tag(image, f"t{i:02d}")
    path = f"/api/v1/registries/{registry}/repositories/many/tags"
    first = admin.get(path, expect=200).json()
    assert len(first["tags"]) == 20
    token = first["links"]["next_page_token"]
    second = admin.get(path, params={"page_token": token}, expect=200).json()
    assert [t["tag"] for t in second["tags"]] == ["t20", "t21"]
    assert second["links"] == {}


def test_pagination_of_tokens(admin: Api) -> None:
    for _ in range(3):
        admin.create_token(["pull"])
    full = admin.get("/api/v1/tokens", params={"per_page": 200}).json()["tokens"]
    assert len(full) >= 4
    for per_page in (1, 2, 3):
        paged = admin.all_pages("/api/v1/tokens", "tokens", per_page)
        assert [t["id"] for t in paged] == [t["id"] for t in full]


@pytest.mark.parametrize(
    "params",
    [
        {"page_token": "!!!not-base64!!!"},
        {"page_token": "bm90IGpzb24"},  # base64 of "not json"
        {"page_token": "eyJiZWZvcmUiOiAxfQ"},  # {"before": 1}
        {"page_token": "eyJhZnRlciI6IDF9"},  # {"after": 1}
        {"per_page": "0"},
        {"per_page": "201"},
        {"per_page": "-1"},
        {"per_page": "ten"},
    ],
)
def test_invalid_pagination_is_400(admin: Api, populated: str, params: dict[str, str]) -> None:
    base = f"/api/v1/registries/{populated}/repositories"
    for path in (base, f"{base}/repo0/tags", f"{base}/repo0/manifests", "/api/v1/tokens"):
        assert_api_error(admin.get(path, params=params), 400, "bad_request")
