"""The API base endpoint ``/v2/`` and authentication challenges."""

from __future__ import annotations

import uuid

import pytest

from .helpers import RegistryClient, assert_error
from .targets import Target

API_VERSION_HEADER = "Docker-Distribution-API-Version"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_base_endpoint_answers_200_with_api_version_when_authenticated(
    client: RegistryClient, method: str
) -> None:
    resp = client.request(method, "/v2/")
    assert resp.status_code == 200, resp.text
    assert resp.headers.get(API_VERSION_HEADER) == "registry/2.0"


def test_base_endpoint_without_credentials_answers_401_challenge_with_error_body(
    anonymous: RegistryClient,
) -> None:
    resp = anonymous.get("/v2/")
    assert resp.headers.get("WWW-Authenticate"), "401 must carry a WWW-Authenticate challenge"
    assert_error(resp, 401, "UNAUTHORIZED")


def test_base_endpoint_head_without_credentials_answers_401_challenge(
    anonymous: RegistryClient,
) -> None:
    resp = anonymous.head("/v2/")
    assert resp.status_code == 401
    assert resp.headers.get("WWW-Authenticate")


@pytest.mark.parametrize("which", ["wrong-password", "made-up-credentials"])
def test_base_endpoint_with_wrong_credentials_answers_401_challenge_with_error_body(
    target: Target, which: str
) -> None:
    made_up = "x" + uuid.uuid4().hex
    auth = (
        (target.username, target.password + "x")
        if which == "wrong-password"
        else (made_up, made_up)
    )
    resp = RegistryClient(target.url, auth).get("/v2/")
    assert resp.headers.get("WWW-Authenticate")
    assert_error(resp, 401, "UNAUTHORIZED")


def test_repository_endpoints_without_credentials_answer_401(
    anonymous: RegistryClient, client: RegistryClient, repo: str
) -> None:
    image = client.push_oci_image(repo, "v1")
    for resp in (
        anonymous.get(f"/v2/{repo}/manifests/v1"),
        anonymous.get(f"/v2/{repo}/tags/list"),
        anonymous.get(f"/v2/{repo}/manifests/{image.digest}"),
        anonymous.post(f"/v2/{repo}/blobs/uploads/"),
    ):
        assert resp.headers.get("WWW-Authenticate"), resp.url
        assert_error(resp, 401, "UNAUTHORIZED")
