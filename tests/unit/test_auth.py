"""API tokens, authorization per registry and action, and the upload capability."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.registry.auth import (
    TOKEN_PREFIX,
    Action,
    Authenticator,
    UploadCapability,
    derive_key,
    hash_token,
    new_token_secret,
)
from chalicelib.registry.errors import (
    BlobUploadUnknownError,
    DeniedError,
    NameUnknownError,
    UnauthorizedError,
)

from .builders import KEY, START, make_token
from .conftest import ACCOUNT, FOREIGN_REGISTRY, REGISTRY, SIBLING_REGISTRY, named

REPO = named(REGISTRY, "team/app")


@pytest.fixture
def authenticator(store: MemoryMetadataStore) -> Authenticator:
    return Authenticator(store)


def test_token_secrets_are_prefixed_random_and_stored_as_sha256() -> None:
    a, b = new_token_secret(), new_token_secret()
    assert a.startswith(TOKEN_PREFIX)
    assert a != b
    assert len(a) > 40
    assert hash_token(a) == hashlib.sha256(a.encode()).hexdigest()


def test_known_token_authenticates_to_its_account(
    store: MemoryMetadataStore, authenticator: Authenticator
) -> None:
    secret = make_token(store, ACCOUNT, {"pull"})
    principal = authenticator.authenticate_secret(secret, START)
    assert principal.account_id == ACCOUNT
    assert store.get_token_by_hash(hash_token(secret)) is not None
    assert secret not in {t.token_hash for t in store.tokens.values()}


def test_unknown_token_is_unauthorized(authenticator: Authenticator) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        authenticator.authenticate_secret(new_token_secret(), START)
    assert caught.value.status == 401


def test_expired_token_is_unauthorized_from_its_expiry_on(
    store: MemoryMetadataStore, authenticator: Authenticator
) -> None:
    expires = START + timedelta(hours=1)
    secret = make_token(store, ACCOUNT, {"push"}, expires_at=expires)
    assert authenticator.authenticate_secret(secret, expires - timedelta(seconds=1))
    with pytest.raises(UnauthorizedError, match="expired"):
        authenticator.authenticate_secret(secret, expires)


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ({"pull"}, {Action.PULL}),
        ({"push"}, {Action.PULL, Action.PUSH, Action.DELETE}),
        ({"admin"}, {Action.PULL, Action.PUSH, Action.DELETE}),
        (set(), set()),
    ],
)
def test_scopes_grant_actions(
    store: MemoryMetadataStore,
    authenticator: Authenticator,
    scopes: set[str],
    allowed: set[Action],
) -> None:
    principal = authenticator.authenticate_secret(make_token(store, ACCOUNT, scopes), START)
    for action in Action:
        if action in allowed:
            authenticator.authorize(principal, REPO, action)
        else:
            with pytest.raises(DeniedError) as caught:
                authenticator.authorize(principal, REPO, action)
            assert caught.value.status == 403
            assert caught.value.detail == {"name": str(REPO), "action": action.value}


def test_token_limited_to_another_registry_sees_name_unknown(
    store: MemoryMetadataStore, authenticator: Authenticator
) -> None:
    secret = make_token(store, ACCOUNT, {"admin"}, registries={SIBLING_REGISTRY})
    principal = authenticator.authenticate_secret(secret, START)
    authenticator.authorize(principal, named(SIBLING_REGISTRY, "app"), Action.PUSH)
    with pytest.raises(NameUnknownError) as caught:
        authenticator.authorize(principal, REPO, Action.PULL)
    assert caught.value.status == 404


def test_registry_of_another_account_is_indistinguishable_from_a_missing_one(
    store: MemoryMetadataStore, authenticator: Authenticator
) -> None:
    principal = authenticator.authenticate_secret(make_token(store, ACCOUNT, {"admin"}), START)
    with pytest.raises(NameUnknownError) as foreign:
        authenticator.authorize(principal, named(FOREIGN_REGISTRY, "app"), Action.PULL)
    with pytest.raises(NameUnknownError) as missing:
        authenticator.authorize(principal, named("nosuch", "app"), Action.PULL)
    assert foreign.value.message.replace(FOREIGN_REGISTRY, "X") == missing.value.message.replace(
        "nosuch", "X"
    )


# ------------------------------------------------------------------ upload capability


@pytest.fixture
def capability() -> UploadCapability:
    return UploadCapability(KEY, timedelta(hours=1))


def now() -> datetime:
    return datetime.now(UTC)


def test_capability_verifies_for_its_session_and_repository(capability: UploadCapability) -> None:
    token = capability.issue("upload-1", REPO, now())
    capability.verify(token, "upload-1", REPO)  # does not raise
    claims = jwt.decode(token, derive_key(KEY, "upload-capability"), algorithms=["HS256"])
    assert (claims["sid"], claims["repo"]) == ("upload-1", str(REPO))


def test_expired_capability_is_rejected(capability: UploadCapability) -> None:
    token = capability.issue("upload-1", REPO, now() - timedelta(hours=2))
    with pytest.raises(BlobUploadUnknownError, match="rejected"):
        capability.verify(token, "upload-1", REPO)


def test_tampered_capability_is_rejected(capability: UploadCapability) -> None:
    token = capability.issue("upload-1", REPO, now())
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(BlobUploadUnknownError):
        capability.verify(f"{header}.{payload}.{flipped}", "upload-1", REPO)
    forged = jwt.encode(
        {"sid": "upload-1", "repo": str(REPO), "exp": now() + timedelta(hours=1)},
        "another-key-that-is-also-32-bytes-long",
        algorithm="HS256",
    )
    with pytest.raises(BlobUploadUnknownError):
        capability.verify(forged, "upload-1", REPO)
    with pytest.raises(BlobUploadUnknownError):
        capability.verify("not-a-jwt", "upload-1", REPO)


def test_unsigned_capability_is_rejected(capability: UploadCapability) -> None:
    unsigned = jwt.encode(
        {"sid": "upload-1", "repo": str(REPO), "exp": now() + timedelta(hours=1)},
        None,
        algorithm="none",
    )
    with pytest.raises(BlobUploadUnknownError):
        capability.verify(unsigned, "upload-1", REPO)


def test_capability_without_expiry_is_rejected(capability: UploadCapability) -> None:
    token = jwt.encode({"sid": "upload-1", "repo": str(REPO)}, KEY, algorithm="HS256")
    with pytest.raises(BlobUploadUnknownError):
        capability.verify(token, "upload-1", REPO)


def test_capability_for_another_session_is_rejected(capability: UploadCapability) -> None:
    token = capability.issue("upload-1", REPO, now())
    with pytest.raises(BlobUploadUnknownError, match="does not match"):
        capability.verify(token, "upload-2", REPO)


def test_capability_for_another_repository_is_rejected(capability: UploadCapability) -> None:
    token = capability.issue("upload-1", REPO, now())
    with pytest.raises(BlobUploadUnknownError, match="does not match"):
        capability.verify(token, "upload-1", named(REGISTRY, "team/other"))
    with pytest.raises(BlobUploadUnknownError, match="does not match"):
        capability.verify(token, "upload-1", named(SIBLING_REGISTRY, "team/app"))
