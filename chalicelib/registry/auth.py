"""Who may do what: API tokens, scopes and the upload capability.

API tokens are random secrets stored only as SHA-256 hashes (a secret has 256 bits of
entropy, so an unsalted fast hash is enough and allows lookup by hash); comparisons of
secrets are done by the hash lookup, never by string equality on secrets.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt

from .errors import BlobUploadUnknownError, DeniedError, NameUnknownError, UnauthorizedError
from .names import RepositoryName
from .ports import MetadataStore
from .records import TokenRecord

TOKEN_PREFIX = "pst_"
SCOPES = frozenset({"pull", "push", "admin"})


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


# Which token scopes grant an action. Push implies pull: every client HEADs blobs it pushes.
GRANTING_SCOPES: dict[Action, frozenset[str]] = {
    Action.PULL: frozenset({"pull", "push", "admin"}),
    Action.PUSH: frozenset({"push", "admin"}),
    Action.DELETE: frozenset({"push", "admin"}),
}


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    token: TokenRecord

    @property
    def account_id(self) -> str:
        return self.token.account_id

    def may_use_registry(self, registry: str) -> bool:
        return self.token.registries is None or registry in self.token.registries

    def may(self, action: Action) -> bool:
        return bool(self.token.scopes & GRANTING_SCOPES[action])


class Authenticator:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def authenticate_secret(self, secret: str, now: datetime) -> Principal:
        record = self._store.get_token_by_hash(hash_token(secret))
        if record is None:
            raise UnauthorizedError("invalid credentials")
        if record.expires_at is not None and record.expires_at <= now:
            raise UnauthorizedError("token expired")
        return Principal(record)

    def authorize(self, principal: Principal, repo: RepositoryName, action: Action) -> None:
        """Refuse unless ``principal`` may do ``action`` on ``repo``.

        A registry that does not exist and one that belongs to another account (or is
        outside the token's registry list) answer the same NAME_UNKNOWN, so that tokens
        cannot probe which registry names exist elsewhere.
        """
        registry = self._store.get_registry(repo.registry)
        if (
            registry is None
            or registry.account_id != principal.account_id
            or not principal.may_use_registry(repo.registry)
        ):
            raise NameUnknownError(
                f"registry {repo.registry!r} does not exist or is not accessible",
                detail={"name": str(repo)},
            )
        if not principal.may(action):
            raise DeniedError(
                f"token may not {action.value} {repo}",
                detail={"name": str(repo), "action": action.value},
            )


class UploadCapability:
    """A signed, expiring grant to write one upload session.

    docker and containerd send no credentials to an upload ``Location`` on another origin,
    so the Location itself must carry the authority to write that session, and nothing else.
    """

    ALGORITHM = "HS256"

    def __init__(self, key: str, ttl: timedelta) -> None:
        self._key = key
        self._ttl = ttl

    def issue(self, upload_id: str, repo: RepositoryName, now: datetime) -> str:
        claims = {"sid": upload_id, "repo": str(repo), "exp": now + self._ttl, "iat": now}
        return jwt.encode(claims, self._key, algorithm=self.ALGORITHM)

    def verify(self, capability: str, upload_id: str, repo: RepositoryName) -> None:
        try:
            claims = jwt.decode(
                capability, self._key, algorithms=[self.ALGORITHM], options={"require": ["exp"]}
            )
        except jwt.PyJWTError as exc:
            raise BlobUploadUnknownError(f"upload capability rejected: {exc}") from exc
        if claims.get("sid") != upload_id or claims.get("repo") != str(repo):
            raise BlobUploadUnknownError("upload capability does not match this upload")


def utcnow() -> datetime:
    return datetime.now(UTC)
