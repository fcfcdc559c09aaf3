"""Secrets never show again after creation: not in the server log (run at DEBUG), not in
any later API answer, and not in the table, which holds only their SHA-256 hashes."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3
import pytest

from tests.api.helpers import V2, Api, basic, bearer

from .conftest import World

pytestmark = pytest.mark.integration


def _scenario(world: World) -> tuple[list[str], list[str]]:
    """Create, use and list tokens every way there is; return (secrets, JWTs) and the text
    of every answer sent after each secret's creation."""
    admin = Api(world.url, world.tokens["admin1"].secret, check=False)
    registry = world.names["A"]
    secrets = [t.secret for t in world.tokens.values()]
    jwts: list[str] = []
    for scopes in (["pull"], ["push"], ["admin"]):
        secrets.append(admin.create_token(scopes, [registry])["token"])
    for read_write in ("false", "true"):
        config = admin.get(
            f"/api/v1/registries/{registry}/docker-credentials",
            params={"read_write": read_write, "expiry_seconds": "3600"},
        ).json()
        auth = base64.b64decode(config["auths"][world.server.host]["auth"]).decode()
        secrets.append(auth.partition(":")[0])
    for secret in secrets:
        V2.basic(world.url, secret).request("GET", "/v2/")
        V2.basic(world.url, secret).request("GET", f"/v2/{registry}/app/tags/list")
        Api(world.url, secret, check=False).get("/api/v1/registries")
        token = V2(world.url, None).jwt(secret, f"repository:{registry}/app:pull,push")
        jwts.append(token)
        V2(world.url, bearer(token)).request("GET", f"/v2/{registry}/app/tags/list")
        V2(world.url, bearer(token)).request("GET", f"/v2/{registry}/app/manifests/v1")
        V2(world.url, bearer(token + "x")).request("GET", f"/v2/{registry}/app/tags/list")
        V2(world.url, basic(secret + "x")).request("GET", "/v2/")
    return secrets, jwts


def test_secrets_are_never_shown_again(world: World) -> None:
    secrets, jwts = _scenario(world)
    assert len(secrets) >= 10 and len(jwts) == len(secrets)
    admin = Api(world.url, world.tokens["admin1"].secret, check=False)
    later = [
        admin.get("/api/v1/tokens", params={"per_page": 200}).text,
        admin.get("/api/v1/registries").text,
        admin.get(f"/api/v1/registries/{world.names['A']}").text,
        admin.get(f"/api/v1/registries/{world.names['A']}/repositories").text,
        Api(world.url, world.tokens["admin2"].secret, check=False).get("/api/v1/tokens").text,
        Api(world.url, world.tokens["admin_a"].secret, check=False).get("/api/v1/tokens").text,
    ]
    listed = json.loads(later[0])["tokens"]
    assert listed and all("token" not in item for item in listed)
    # `portside serve` shows the bootstrap token once, in its start-up banner (the moment
    # it is set up, as the API shows a token when it creates it); nothing after may.
    text = world.server.log_path.read_text(errors="replace")
    banner_end = text.index("docker push")
    assert world.tokens["admin1"].secret not in text[text.index("\n", banner_end) :]
    log = text[text.index("\n", banner_end) :]
    assert '"request"' in log or "request" in log  # the DEBUG request log is on
    for value in secrets + jwts:
        if value != world.tokens["admin1"].secret:
            assert value not in text, "a secret or JWT is in the server log"
        assert value not in log, "a secret or JWT is in the server log"
        for text in later:
            assert value not in text, "a secret or JWT is in a later API answer"
        # Nor any long piece of it (e.g. a prefix, or the JWT's signature).
        for piece in (value[4:24], value.rsplit(".", 1)[-1][:20]):
            assert piece not in log


def test_tokens_are_stored_only_as_hashes(world: World) -> None:
    secrets, _ = _scenario(world)
    client = boto3.client(
        "dynamodb",
        endpoint_url=world.server.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    items: list[dict[str, object]] = []
    for page in client.get_paginator("scan").paginate(TableName="portside"):
        items.extend(page["Items"])
    dump = json.dumps(items, default=str)
    assert len(items) > 20
    for secret in secrets:
        assert secret not in dump
        assert secret[4:24] not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() in dump  # stored as its hash
