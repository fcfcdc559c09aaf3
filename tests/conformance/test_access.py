"""Portside's tenancy and token scopes: registries as the first name segment, scoped tokens."""

from __future__ import annotations

import uuid

import pytest
import requests

from .helpers import RegistryClient, assert_error, error_codes, unique
from .targets import SCOPED_TOKENS, TENANT_NAMESPACES, Target

REFUSED = (401, 403)


def scoped_client(
    target: Target, scopes: list[str], registries: list[str] | None
) -> RegistryClient:
    assert target.create_token is not None
    token = target.create_token(scopes, registries)
    return RegistryClient(target.url, (token, token))


def new_registry(target: Target) -> str:
    assert target.create_registry is not None
    name = f"other{uuid.uuid4().hex[:12]}"
    target.create_registry(name)
    return name


@pytest.mark.requires(TENANT_NAMESPACES)
def test_repository_in_unknown_registry_answers_404_name_unknown(
    client: RegistryClient,
) -> None:
    name = f"{unique('nosuchregistry')}/app"
    assert_error(client.start_upload(name), 404, "NAME_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(client.get_manifest(name, "latest"), 404, "NAME_UNKNOWN")


@pytest.mark.requires(SCOPED_TOKENS)
def test_pull_only_token_can_read_but_not_push(
    client: RegistryClient, target: Target, repo: str
) -> None:
    image = client.push_oci_image(repo, "v1")
    reader = scoped_client(target, ["pull"], [target.registry])
    assert reader.get("/v2/").status_code == 200
    got = reader.get_manifest(repo, "v1")
    assert got.status_code == 200
    assert got.content == image.body
    assert reader.get(f"/v2/{repo}/tags/list").status_code == 200
    assert_error(reader.start_upload(repo), REFUSED, "DENIED", "UNAUTHORIZED")
    assert_error(
        reader.put_manifest(repo, "v2", image.body, image.media_type),
        REFUSED,
        "DENIED",
        "UNAUTHORIZED",
    )
    assert_error(
        reader.delete(f"/v2/{repo}/manifests/{image.digest}"), REFUSED, "DENIED", "UNAUTHORIZED"
    )
    assert client.get_manifest(repo, image.digest).status_code == 200


@pytest.mark.requires(SCOPED_TOKENS)
def test_push_token_can_push_into_its_registry(target: Target) -> None:
    writer = scoped_client(target, ["pull", "push"], [target.registry])
    repo = f"{target.registry}/{unique('pushed')}"
    image = writer.push_oci_image(repo, "v1")
    assert writer.get_manifest(repo, "v1").content == image.body


def _refusal_signature(resp: requests.Response) -> tuple[int, tuple[str, ...]]:
    assert resp.status_code in (401, 403, 404), resp.text
    assert resp.content, "refusal must carry a JSON error body"
    assert_error(
        resp, resp.status_code, "DENIED", "UNAUTHORIZED", "NAME_UNKNOWN", "MANIFEST_UNKNOWN"
    )
    return resp.status_code, tuple(sorted(error_codes(resp)))


@pytest.mark.requires(SCOPED_TOKENS)
def test_token_for_another_registry_cannot_read_and_learns_nothing_about_existence(
    client: RegistryClient, target: Target, repo: str
) -> None:
    image = client.push_oci_image(repo, "v1")
    outsider = scoped_client(target, ["pull", "push"], [new_registry(target)])
    missing = f"{target.registry}/{unique('missing')}"
    for path_existing, path_missing in (
        (f"/v2/{repo}/manifests/v1", f"/v2/{missing}/manifests/v1"),
        (f"/v2/{repo}/manifests/{image.digest}", f"/v2/{missing}/manifests/{image.digest}"),
        (f"/v2/{repo}/tags/list", f"/v2/{missing}/tags/list"),
    ):
        existing = outsider.get(path_existing, headers={"Accept": image.media_type})
        absent = outsider.get(path_missing, headers={"Accept": image.media_type})
        assert _refusal_signature(existing) == _refusal_signature(absent), (
            "an outsider must not be able to tell an existing repository from a missing one"
        )
    assert_error(
        outsider.start_upload(repo), (401, 403, 404), "DENIED", "UNAUTHORIZED", "NAME_UNKNOWN"
    )


@pytest.mark.requires(SCOPED_TOKENS)
def test_token_for_another_registry_cannot_read_blobs(
    client: RegistryClient, target: Target, repo: str
) -> None:
    image = client.push_oci_image(repo, "v1")
    config_digest = client.get_manifest(repo, "v1").json()["config"]["digest"]
    outsider = scoped_client(target, ["pull"], [new_registry(target)])
    resp = outsider.get(outsider.blob_path(repo, config_digest))
    assert resp.status_code in (401, 403, 404), resp.status_code
    assert_error(resp, resp.status_code, "DENIED", "UNAUTHORIZED", "NAME_UNKNOWN", "BLOB_UNKNOWN")
    assert image.digest  # the content really exists for the owner
