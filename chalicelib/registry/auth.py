"""Who may do what: API tokens, scopes and the upload capability.

API tokens are random secrets stored only as SHA-256 hashes (a secret has 256 bits of
entropy, so an unsalted fast hash is enough and allows lookup by hash); comparisons of
secrets are done by the hash lookup, never by string equality on secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt

from .errors import (
    AccountSuspendedError,
    BadRequestError,
    BlobUploadUnknownError,
    DeniedError,
    NameInvalidError,
    NameUnknownError,
    TransferCapError,
    UnauthorizedError,
)
from .names import RepositoryName
from .plans import GIB, MIB, tier
from .ports import MetadataStore
from .records import RegistryRecord, TokenRecord

TOKEN_PREFIX = "pst_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
SCOPES = frozenset({"pull", "push", "admin"})
# Above admin and outside every tenant: manages accounts (registry.accounts), and grants
# nothing on any tenant's content. Never in SCOPES, so no tenant can mint it.
OPERATOR_SCOPE = "operator"


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

    @property
    def is_operator(self) -> bool:
        return OPERATOR_SCOPE in self.token.scopes

    @property
    def is_tenant(self) -> bool:
        """Holds a scope on its own account's registries (the local bootstrap token is
        operator and tenant admin at once; a deployment's operator token is not)."""
        return bool(self.token.scopes & SCOPES)


class Authenticator:
    def __init__(
        self,
        store: MetadataStore,
        registry_ttl: timedelta = timedelta(0),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        # Registry records (owner, deleting) change rarely and every write re-checks them in
        # its transaction, so a warm process may reuse one for ``registry_ttl`` on the
        # request path. API token records are never cached: revocation applies at once.
        self._registry_ttl = registry_ttl
        self._clock = clock or utcnow
        self._registries: dict[str, tuple[datetime, RegistryRecord | None]] = {}

    def _registry(self, name: str) -> RegistryRecord | None:
        if not self._registry_ttl:
            return self._store.get_registry(name)
        now = self._clock()
        cached = self._registries.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = self._store.get_registry(name)
        if len(self._registries) > 10_000:
            self._registries.clear()
        self._registries[name] = (now + self._registry_ttl, record)
        return record

    def cached_registry(self, name: str) -> RegistryRecord | None:
        """The registry's record as the request path sees it (cached for ``registry_ttl``):
        writes that rely on it are conditional on what it says (its settings_version)."""
        return self._registry(name)

    def forget_registry(self, name: str) -> None:
        """Drop a cached registry record (this process changed it)."""
        self._registries.pop(name, None)

    def authenticate_secret(self, secret: str, now: datetime) -> Principal:
        record = self._store.get_token_by_hash(hash_token(secret))
        if record is None:
            raise UnauthorizedError("invalid credentials")
        if record.expires_at is not None and record.expires_at <= now:
            raise UnauthorizedError("token expired")
        if record.suspended:  # set on every token of a suspended account: no extra read
            raise AccountSuspendedError(record.account_id)
        return Principal(record)

    def authenticate_tenant(self, secret: str, now: datetime) -> Principal:
        """As ``authenticate_secret``, for the registry API (/v2/): a token that holds only
        the operator scope is refused there, whatever it asks (operating the service is
        not reading customers' images)."""
        principal = self.authenticate_secret(secret, now)
        if not principal.is_tenant:
            raise DeniedError("an operator token has no access to registry content")
        return principal

    def record_use(self, principal: Principal, now: datetime) -> None:
        """Note when a token was last used, at most once a minute per token, so that busy
        tokens do not turn every request into a write."""
        last = principal.token.last_used_at
        if last is None or now - last >= LAST_USED_RESOLUTION:
            self._store.touch_token(principal.token.token_hash, now)

    def visible_registry(
        self, principal: Principal, name: str, fresh: bool = False
    ) -> RegistryRecord:
        """The registry ``name`` if ``principal`` may see it. One that does not exist, is
        being deleted, belongs to another account or lies outside the token's list answers
        the same NameUnknownError: tokens cannot probe which names exist elsewhere.
        ``fresh`` skips the request-path cache (the management API shows current state)."""
        registry = self._store.get_registry(name) if fresh else self._registry(name)
        if (
            registry is None
            or registry.deleting
            or registry.account_id != principal.account_id
            or not principal.may_use_registry(name)
        ):
            raise NameUnknownError(
                f"registry {name!r} does not exist or is not accessible",
                detail={"registry": name},
            )
        return registry

    def require_registry(self, principal: Principal, repo: RepositoryName) -> RegistryRecord:
        return self.visible_registry(principal, repo.registry)

    def authorize(
        self, principal: Principal, repo: RepositoryName, action: Action, download: bool = False
    ) -> RepositoryName:
        """``repo`` bound to the registry incarnation its name resolves to now, unless
        ``principal`` may not do ``action`` on it. A record cached from an earlier
        incarnation binds that one: its items are gone, and every write re-checks the id.
        A ``download`` (a blob GET) is refused while the registry's transfer is capped."""
        record = self.require_registry(principal, repo)
        if not principal.may(action):
            raise DeniedError(
                f"token may not {action.value} {repo}",
                detail={"name": str(repo), "action": action.value},
            )
        if download:
            refusal = self.transfer_refusal(record)
            if refusal is not None:
                raise refusal
        return repo.bound(record.registry_id)

    def transfer_refusal(self, record: RegistryRecord) -> TransferCapError | None:
        """The error for downloads from ``record`` now, if its transfer is capped."""
        return transfer_cap_refusal(record, self._clock())

    def refuse_capped_download(self, grant: AccessGrant, repo: RepositoryName) -> None:
        """Refuse a blob GET that ``grant`` (a registry JWT) says is capped now."""
        grant.refuse_download(repo, self._clock())


class UploadCapability:
    """A signed, expiring grant to write one upload session.

    docker and containerd send no credentials to an upload ``Location`` on another origin,
    so the Location itself must carry the authority to write that session, and nothing else.
    """

    ALGORITHM = "HS256"

    def __init__(self, key: str, ttl: timedelta) -> None:
        self._key = derive_key(key, "upload-capability")
        self._ttl = ttl

    def issue(self, upload_id: str, repo: RepositoryName, now: datetime) -> str:
        claims = {
            "sid": upload_id,
            "repo": str(repo),
            "rid": repo.rid,  # the registry incarnation: a re-used name is another registry
            "exp": now + self._ttl,
            "iat": now,
        }
        return jwt.encode(claims, self._key, algorithm=self.ALGORITHM)

    def verify(self, capability: str, upload_id: str, repo: RepositoryName) -> RepositoryName:
        """``repo`` bound to the registry id the capability was issued for."""
        try:
            claims = jwt.decode(
                capability, self._key, algorithms=[self.ALGORITHM], options={"require": ["exp"]}
            )
        except jwt.PyJWTError as exc:
            raise BlobUploadUnknownError(f"upload capability rejected: {exc}") from exc
        rid = claims.get("rid")
        if claims.get("sid") != upload_id or claims.get("repo") != str(repo) or not rid:
            raise BlobUploadUnknownError("upload capability does not match this upload")
        return repo.bound(str(rid))


def utcnow() -> datetime:
    return datetime.now(UTC)


def transfer_cap_refusal(record: RegistryRecord, now: datetime) -> TransferCapError | None:
    """Downloads are refused while the metering's mark names the current UTC month and the
    registry's plan still caps transfer: the next month, or an upgrade, lifts it at once
    without anyone clearing the mark."""
    utc = now.astimezone(UTC)
    month = utc.strftime("%Y-%m")
    plan = tier(record.plan)
    cap = plan.transfer_cap
    if record.egress_capped_month != month or not cap:
        return None
    resumes = f"{utc.year + utc.month // 12}-{utc.month % 12 + 1:02d}-01"
    size = f"{cap // GIB} GiB" if cap % GIB == 0 else f"{cap / MIB:g} MiB"
    return TransferCapError(record.name, plan.name, size, month, resumes)


# --------------------------------------------------------------------------- registry JWTs
#
# The Docker token-auth protocol: a client that gets 401 with a Bearer challenge asks the
# token endpoint for a short-lived JWT listing the actions it may do on named repositories,
# then sends it with every request. The registry checks the JWT's signature and claims
# only: no database read on the request path. The API token behind it is checked once, at
# issue time, so revoking an API token takes effect within one JWT lifetime.

REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})
# What one token request may ask for. Clients ask for one repository, or a few when they
# mount blobs across repositories; each registry named costs a metadata read.
MAX_SCOPES = 100
MAX_SCOPE_REGISTRIES = 10


def derive_key(secret: str, purpose: str) -> bytes:
    """One key per purpose from the shared signing secret, so a JWT minted for one use
    (an upload capability) can never verify as another (a registry access token)."""
    return hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True)
class AccessGrant:
    """What a registry JWT allows: actions per repository, and the catalog."""

    token_id: str
    account_id: str
    registries: frozenset[str] | None
    repositories: dict[str, frozenset[str]]
    catalog: bool = False
    # The id of each registry granted, as it was when the grant was made: the grant holds
    # for that incarnation only, never for a registry that takes the name later.
    registry_ids: dict[str, str] = field(default_factory=dict)
    # Registries whose transfer was capped when the grant was made (name -> the refusal's
    # fields): a push token still HEADs blobs, but its blob GETs are refused without a read.
    capped: dict[str, dict[str, str]] = field(default_factory=dict)

    def refuse_download(self, repo: RepositoryName, now: datetime) -> None:
        """Refuse a blob GET if the grant was made while the registry was capped, unless
        the month it was capped for has ended since (an upgrade is not seen before the
        token expires: that is the JWT lifetime's part of the cap's lag)."""
        fields = self.capped.get(repo.registry)
        if fields is not None and fields.get("month") == now.astimezone(UTC).strftime("%Y-%m"):
            raise TransferCapError(repo.registry, **fields)

    def allows(self, repo: RepositoryName, action: Action) -> bool:
        return (
            action.value in self.repositories.get(str(repo), frozenset())
            and repo.registry in self.registry_ids
        )

    def bind(self, repo: RepositoryName) -> RepositoryName:
        return repo.bound(self.registry_ids[repo.registry])

    def may_use_registry(self, registry: str) -> bool:
        return self.registries is None or registry in self.registries


@dataclass(frozen=True)
class RequestedScope:
    kind: str  # "repository" or "registry"
    name: str
    actions: frozenset[str]

    @classmethod
    def parse_all(cls, values: list[str]) -> list[RequestedScope]:
        """``repository:<name>:pull,push`` and ``registry:catalog:*``; several may be given
        as repeated parameters or space-separated (the OAuth2 form). More than
        ``MAX_SCOPES`` (malformed ones included) is refused: each costs work to grant."""
        items = [item for value in values for item in value.split()]
        if len(items) > MAX_SCOPES:
            raise BadRequestError(
                f"a token request may ask for at most {MAX_SCOPES} scopes, not {len(items)}",
                detail={"scopes": len(items), "limit": MAX_SCOPES},
            )
        scopes = []
        for item in items:
            kind, sep, rest = item.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not name:
                continue  # malformed scopes grant nothing, as in distribution
            scopes.append(cls(kind, name, frozenset(a for a in actions.split(",") if a)))
        return scopes


class RegistryTokens:
    ALGORITHM = "HS256"
    ISSUER = "portside"

    def __init__(self, secret: str, service: str, ttl: timedelta) -> None:
        self._key = derive_key(secret, "registry-jwt")
        self.service = service
        self.ttl = ttl

    def grant(
        self, principal: Principal, scopes: list[RequestedScope], authorizer: Authenticator
    ) -> AccessGrant:
        """Intersect what was asked with what the API token may do. Repositories the
        token may not see are granted nothing (never an error: no existence leak).

        Each registry named is read once, and a request naming more than
        ``MAX_SCOPE_REGISTRIES`` registries is refused before any read: the cost of a
        token request is bounded whatever it asks for."""
        registries = {
            scope.name.partition("/")[0] for scope in scopes if scope.kind == "repository"
        }
        if len(registries) > MAX_SCOPE_REGISTRIES:
            raise BadRequestError(
                f"a token request may name at most {MAX_SCOPE_REGISTRIES} registries, "
                f"not {len(registries)}",
                detail={"registries": len(registries), "limit": MAX_SCOPE_REGISTRIES},
            )
        visible: dict[str, str | None] = {}  # registry name -> id, None if not visible
        # Registries a read-only garbage collection runs on: no write scope for them (their
        # writes would be refused anyway; see registry.gc).
        read_only: set[str] = set()
        repositories: dict[str, frozenset[str]] = {}
        catalog = False
        refusals: dict[str, TransferCapError] = {}  # registries whose transfer is capped
        for scope in scopes:
            if scope.kind == "registry" and scope.name == "catalog":
                catalog = principal.may(Action.PULL)
                continue
            if scope.kind != "repository":
                continue
            try:
                repo = RepositoryName.parse(scope.name)
            except NameInvalidError:
                continue
            wanted = REPOSITORY_ACTIONS if "*" in scope.actions else scope.actions
            if repo.registry not in visible:
                try:
                    record = authorizer.require_registry(principal, repo)
                    if record.read_only:
                        # A cached record may outlive the collection: writes would be
                        # refused for the cache's lifetime after it ended. Read it again.
                        authorizer.forget_registry(repo.registry)
                        record = authorizer.require_registry(principal, repo)
                    visible[repo.registry] = record.registry_id
                    if record.read_only:
                        read_only.add(repo.registry)
                    refusal = authorizer.transfer_refusal(record)
                    if refusal is not None:
                        refusals[repo.registry] = refusal
                except NameUnknownError:
                    visible[repo.registry] = None
            if visible[repo.registry] is None:
                continue
            allowed = {
                action.value
                for action in (Action.PULL, Action.PUSH, Action.DELETE)
                if action.value in wanted
                and principal.may(action)
                and (action is Action.PULL or repo.registry not in read_only)
            }
            if "pull" in allowed and repo.registry in refusals and "push" not in allowed:
                # A pull of a capped registry: docker prints the message of this 429.
                raise refusals[repo.registry]
            repositories[str(repo)] = frozenset(allowed) | repositories.get(str(repo), frozenset())
        return AccessGrant(
            principal.token.token_id,
            principal.account_id,
            principal.token.registries,
            repositories,
            catalog,
            {name: rid for name, rid in visible.items() if rid is not None},
            {name: refusal.fields for name, refusal in refusals.items()},
        )

    def issue(self, grant: AccessGrant, now: datetime) -> str:
        access: list[dict[str, object]] = [
            {"type": "repository", "name": name, "actions": sorted(actions)}
            for name, actions in sorted(grant.repositories.items())
        ]
        if grant.catalog:
            access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
        claims = {
            "iss": self.ISSUER,
            "sub": grant.token_id,
            "aud": self.service,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(12),
            "access": access,
            "account": grant.account_id,
            "registries": sorted(grant.registries) if grant.registries is not None else None,
            "rids": grant.registry_ids,
        }
        if grant.capped:
            claims["capped"] = grant.capped
        return jwt.encode(claims, self._key, algorithm=self.ALGORITHM)

    def verify(self, token: str) -> AccessGrant:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.ALGORITHM],  # never "none", never one the token names
                audience=self.service,
                issuer=self.ISSUER,
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid registry token: {exc}") from exc
        try:
            repositories: dict[str, frozenset[str]] = {}
            catalog = False
            for entry in claims.get("access") or []:
                if entry["type"] == "repository":
                    repositories[entry["name"]] = frozenset(entry["actions"])
                elif entry["type"] == "registry" and entry["name"] == "catalog":
                    catalog = True
            registries = claims.get("registries")
            rids = claims.get("rids") or {}
            capped = claims.get("capped") or {}
            return AccessGrant(
                str(claims["sub"]),
                str(claims["account"]),
                frozenset(registries) if registries is not None else None,
                repositories,
                catalog,
                {str(name): str(rid) for name, rid in dict(rids).items()},
                {str(name): {k: str(v) for k, v in dict(f).items()} for name, f in capped.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnauthorizedError("malformed registry token claims") from exc
