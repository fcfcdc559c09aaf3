"""The management side of the registry: registries and plans, repositories, tags, manifests,
API tokens and docker credentials, for the /api/v1 API and the CLI.

Who may do what (checked here, once, for every operation):
- read (get, list, options): any scope on the registry;
- change content (delete tags, manifests, repositories): ``push`` or ``admin``;
- manage (create and delete registries, subscriptions, tokens, docker credentials): ``admin``.
A registry that does not exist and one the token may not see both answer NameUnknownError.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import untrusted_json
from .auth import SCOPES, Action, Authenticator, Principal, hash_token, new_token_secret, utcnow
from .digests import Digest
from .errors import (
    BadRequestError,
    ConcurrentWriteError,
    ConflictError,
    DeniedError,
    ManifestUnknownError,
    NameUnknownError,
    NotFoundError,
    RegistryError,
    UnprocessableError,
)
from .manifests import INDEX_TYPES, parse_manifest
from .names import RepositoryName, is_decimal, is_valid_registry_name, validate_tag
from .plans import TIERS, Tier
from .policies import BodyChildren, RetentionReport, RetentionService
from .ports import BlobStore, MetadataStore
from .quotas import quota_json
from .records import ManifestRecord, RegistryRecord, TagRecord, TokenRecord
from .rules import RegistrySettings
from .service import RegistryService

# Names the API's own paths use next to /registries/{name}.
RESERVED_REGISTRY_NAMES = frozenset({"options", "validate-name"})
MAX_EXPIRY_SECONDS = 365 * 24 * 3600
MAX_PAGE = 200
# A token wraps one sort key (a tag, digest, repository name or token id: at most a few
# hundred characters), so a longer one is not ours.
MAX_PAGE_TOKEN = 2048
EPOCH = datetime.fromtimestamp(0, UTC)  # stored times are timezone-aware


@dataclass(frozen=True)
class Page:
    size: int
    after: str | None

    @classmethod
    def parse(cls, per_page: str | None, page_token: str | None) -> Page:
        size = 20
        if per_page not in (None, ""):
            if not is_decimal(per_page) or not 1 <= int(per_page) <= MAX_PAGE:
                raise BadRequestError(f"per_page must be an integer from 1 to {MAX_PAGE}")
            size = int(per_page)
        after = None
        if page_token:
            # Tokens are ours ({"after": <key>}, base64url) but come back from the client:
            # anything else, including JSON nested deep enough to exhaust the decoder's
            # stack, is a bad request.
            if len(page_token) > MAX_PAGE_TOKEN:
                raise BadRequestError("invalid page_token: too long")
            try:
                decoded = untrusted_json.loads(
                    base64.urlsafe_b64decode(page_token.encode("ascii") + b"==")
                )
                after = decoded["after"]
                if not isinstance(after, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise BadRequestError("invalid page_token") from exc
        return cls(size, after)


def next_page_token(after: str) -> str:
    raw = json.dumps({"after": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class Listing:
    items: list[dict[str, Any]]
    next_page_token: str | None = None

    def links(self) -> dict[str, str]:
        return {"next_page_token": self.next_page_token} if self.next_page_token else {}


@dataclass
class CreatedToken:
    record: TokenRecord
    secret: str = field(repr=False)


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


class ManagementService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        registry: RegistryService,
        authenticator: Authenticator,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.registry = registry
        self.auth = authenticator
        self._clock = clock

    # ------------------------------------------------------------------ access

    def authenticate(self, secret: str) -> Principal:
        now = self._clock()
        principal = self.auth.authenticate_secret(secret, now)
        self.auth.record_use(principal, now)
        return principal

    def _visible_registry(self, principal: Principal, name: str) -> RegistryRecord:
        if not is_valid_registry_name(name):
            raise NameUnknownError(f"registry {name!r} not found", detail={"registry": name})
        return self.auth.visible_registry(principal, name, fresh=True)

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if "admin" not in principal.token.scopes:
            raise DeniedError("this needs a token with the admin scope")

    @staticmethod
    def _require_write(principal: Principal) -> None:
        if not principal.may(Action.DELETE):
            raise DeniedError("this needs a token with the push or admin scope")

    # ------------------------------------------------------------------ registries

    def registry_json(self, record: RegistryRecord) -> dict[str, Any]:
        return {
            "name": record.name,
            "created_at": iso(record.created_at),
            "storage_usage_bytes": record.storage_bytes,
            "storage_usage_bytes_updated_at": iso(record.storage_updated_at or record.created_at),
            "repository_count": record.repository_count,
            "subscription": self._subscription_json(record),
            # Used, limit, percent, hard or billed, and the threshold reached (quotas.py).
            "quota": quota_json(record),
        }

    @staticmethod
    def _subscription_json(record: RegistryRecord) -> dict[str, Any]:
        tier = TIERS.get(record.plan, TIERS["professional"])
        return {
            "tier": tier.to_json(),
            "created_at": iso(record.subscription_created_at or record.created_at),
            "updated_at": iso(record.subscription_updated_at or record.created_at),
        }

    def validate_name(self, name: Any) -> None:
        if not isinstance(name, str) or not is_valid_registry_name(name):
            raise UnprocessableError(
                "a registry name has 1-63 characters of a-z, 0-9 and '-', "
                "and neither starts nor ends with '-'",
                detail={"name": name},
            )
        if name in RESERVED_REGISTRY_NAMES:
            raise UnprocessableError(f"{name!r} is reserved", detail={"name": name})
        if self.store.get_registry(name) is not None:
            raise ConflictError(f"the registry name {name!r} is taken", detail={"name": name})

    def create_registry(self, principal: Principal, name: Any, tier_slug: Any) -> RegistryRecord:
        self._require_admin(principal)
        if principal.token.registries is not None:
            raise DeniedError("a token limited to some registries cannot create registries")
        tier = self._tier(tier_slug)
        self.validate_name(name)
        now = self._clock()
        record = RegistryRecord(
            name=name,
            account_id=principal.account_id,
            plan=tier.slug,
            created_at=now,
            storage_updated_at=now,
            subscription_created_at=now,
            subscription_updated_at=now,
        )
        try:
            self.store.put_registry(record)
        except ValueError as exc:  # lost a race for the name
            raise ConflictError(f"the registry name {name!r} is taken") from exc
        self.auth.forget_registry(name)  # it may be cached as absent
        return record

    def list_registries(self, principal: Principal) -> list[RegistryRecord]:
        return sorted(
            (
                r
                for r in self.store.list_registries(principal.account_id)
                if principal.may_use_registry(r.name)
            ),
            key=lambda r: r.name,
        )

    def get_registry(self, principal: Principal, name: str) -> RegistryRecord:
        return self._visible_registry(principal, name)

    def delete_registry(self, principal: Principal, name: str) -> None:
        """Hide the registry now; ``purge_deleted_registries`` removes its content later
        and then frees the name."""
        self._require_admin(principal)
        self._visible_registry(principal, name)
        if not self.store.mark_registry_deleting(name):
            raise NameUnknownError(f"registry {name!r} not found")
        self.auth.forget_registry(name)

    def purge_deleted_registries(self, budget: int = 1000) -> int:
        """Remove the content of deleted registries, resumably: each call does at most about
        ``budget`` deletions; a registry's record (its name) goes last."""
        finished = 0
        for name in self.store.list_deleting_registries(limit=10):
            record = self.store.get_registry(name)
            if record is None:
                continue
            # Objects are keyed by the registry's id: this removes exactly this incarnation.
            rid = record.registry_id
            if not self.blobs.delete_prefix(f"registries/{rid}/", budget):
                break
            if not self.blobs.delete_prefix(f"uploads/{rid}/", budget):
                break
            if not self.store.purge_registry(name, budget):
                break
            finished += 1
        return finished

    @staticmethod
    def _tier(slug: Any) -> Tier:
        if not isinstance(slug, str) or slug not in TIERS:
            raise UnprocessableError(
                f"unknown subscription tier {slug!r}; choose one of {', '.join(TIERS)}"
            )
        return TIERS[slug]

    def options(self, principal: Principal, registry: str | None) -> list[dict[str, Any]]:
        repositories, storage = 0, 0
        if registry:
            record = self._visible_registry(principal, registry)
            repositories, storage = record.repository_count, record.storage_bytes
        out = []
        for tier in TIERS.values():
            reasons = tier.ineligibility(repositories, storage)
            out.append({**tier.to_json(), "eligible": not reasons, "eligibility_reasons": reasons})
        return out

    def get_subscription(self, principal: Principal, name: str) -> dict[str, Any]:
        return self._subscription_json(self._visible_registry(principal, name))

    def update_subscription(
        self, principal: Principal, name: str, tier_slug: Any
    ) -> dict[str, Any]:
        self._require_admin(principal)
        tier = self._tier(tier_slug)
        for _ in range(3):
            record = self._visible_registry(principal, name)
            reasons = tier.ineligibility(record.repository_count, record.storage_bytes)
            if reasons:
                raise ConflictError(
                    f"registry {name!r} does not fit the {tier.slug} tier: {', '.join(reasons)}",
                    detail={"eligibility_reasons": reasons},
                )
            # Conditional on the limits as the counters are when it lands: a push committed
            # since this read makes it fail, and the read above is made again.
            if self.store.update_subscription(record, tier.slug, self._clock()):
                break
        else:
            raise ConcurrentWriteError("the registry changed while its plan was changed; retry")
        self.auth.forget_registry(name)
        return self._subscription_json(self._visible_registry(principal, name))

    # ------------------------------------------------------------------ content

    def _repo(self, principal: Principal, registry: str, repository: str) -> RepositoryName:
        record = self._visible_registry(principal, registry)
        try:
            repo = RepositoryName.parse(f"{registry}/{repository}").bound(record.registry_id)
        except RegistryError as exc:
            raise NotFoundError(f"repository {repository!r} not found") from exc
        if not self.store.repository_exists(repo):
            raise NotFoundError(f"repository {repository!r} not found in {registry!r}")
        return repo

    def list_repositories(self, principal: Principal, registry: str, page: Page) -> Listing:
        record = self._visible_registry(principal, registry)
        names = self.store.list_repositories(record.registry_id, page.after, page.size + 1)
        items = []
        for name in names[: page.size]:
            repo = RepositoryName(registry, name, record.registry_id)
            tag_count, manifest_count = self.store.count_repository(repo)
            items.append(
                {
                    "registry_name": registry,
                    "name": name,
                    "tag_count": tag_count,
                    "manifest_count": manifest_count,
                    "latest_manifest": self._latest_manifest(repo),
                }
            )
        more = len(names) > page.size
        return Listing(items, next_page_token(names[page.size - 1]) if more else None)

    def _all_tags(self, repo: RepositoryName) -> list[TagRecord]:
        tags: list[TagRecord] = []
        while True:
            batch = self.store.list_tags(repo, tags[-1].tag if tags else None, 1000)
            tags.extend(batch)
            if len(batch) < 1000:
                return tags

    def _latest_manifest(self, repo: RepositoryName) -> dict[str, Any] | None:
        """The manifest most recently tagged (or, without tags, most recently pushed)."""
        tags = self._all_tags(repo)
        if tags:
            latest = max(tags, key=lambda t: (t.updated_at or EPOCH, t.tag))
            record = self.store.get_manifest(repo, latest.digest)
        else:
            manifests = self.store.list_manifests(repo, None, 1000)
            record = max(manifests, key=lambda m: m.created_at or datetime.min, default=None)
        if record is None:
            return None
        by_digest: dict[str, list[str]] = {}
        for t in tags:
            by_digest.setdefault(t.digest, []).append(t.tag)
        return self._manifest_json(repo, record, by_digest.get(record.digest, []))

    def _manifest_json(
        self, repo: RepositoryName, record: ManifestRecord, tags: list[str]
    ) -> dict[str, Any]:
        return {
            "digest": record.digest,
            "registry_name": repo.registry,
            "repository": repo.repository,
            "media_type": record.media_type,
            "compressed_size_bytes": record.blobs_size,
            "size_bytes": record.blobs_size + record.size,
            "updated_at": iso(record.created_at),
            "tags": sorted(tags),
            "blobs": self._blobs_json(repo, record),
        }

    def _blobs_json(self, repo: RepositoryName, record: ManifestRecord) -> list[dict[str, Any]]:
        if record.media_type in INDEX_TYPES:
            return []
        parsed = parse_manifest(self.registry.manifest_body(repo, record), record.media_type)
        return [{"digest": b.digest, "compressed_size_bytes": b.size} for b in parsed.blobs]

    def delete_repository(self, principal: Principal, registry: str, repository: str) -> None:
        self._require_write(principal)
        repo = self._repo(principal, registry, repository)
        if not self.registry.delete_repository(repo):  # refused if a tag in it is immutable
            raise NotFoundError(f"repository {repository!r} not found in {registry!r}")

    def list_tags(
        self, principal: Principal, registry: str, repository: str, page: Page
    ) -> Listing:
        repo = self._repo(principal, registry, repository)
        tags = self.store.list_tags(repo, page.after, page.size + 1)
        shown = tags[: page.size]
        # Tags carry a copy of their manifest's sizes; older ones are looked up in one batch.
        manifests = self.store.get_manifests(repo, [t.digest for t in shown if not t.manifest])
        items = []
        for t in shown:
            record = t.manifest or manifests.get(t.digest)
            blobs_size = record.blobs_size if record else 0
            items.append(
                {
                    "registry_name": registry,
                    "repository": repository,
                    "tag": t.tag,
                    "manifest_digest": t.digest,
                    "compressed_size_bytes": blobs_size,
                    "size_bytes": blobs_size + (record.size if record else 0),
                    "updated_at": iso(t.updated_at),
                }
            )
        more = len(tags) > page.size
        return Listing(items, next_page_token(shown[-1].tag) if more else None)

    def delete_tag(self, principal: Principal, registry: str, repository: str, tag: str) -> None:
        self._require_write(principal)
        repo = self._repo(principal, registry, repository)
        try:
            validate_tag(tag)
        except RegistryError as exc:
            raise NotFoundError(f"tag {tag!r} not found") from exc
        try:  # through the service: it refuses tags an immutability rule protects
            self.registry.delete_manifest(repo, tag)
        except ManifestUnknownError as exc:
            raise NotFoundError(f"tag {tag!r} not found in {repo}") from exc

    def list_manifests(
        self, principal: Principal, registry: str, repository: str, page: Page
    ) -> Listing:
        repo = self._repo(principal, registry, repository)
        manifests = self.store.list_manifests(repo, page.after, page.size + 1)
        shown = manifests[: page.size]
        by_digest: dict[str, list[str]] = {}
        for t in self._all_tags(repo):
            by_digest.setdefault(t.digest, []).append(t.tag)
        items = [self._manifest_json(repo, m, by_digest.get(m.digest, [])) for m in shown]
        more = len(manifests) > page.size
        return Listing(items, next_page_token(shown[-1].digest) if more else None)

    def delete_manifest(
        self, principal: Principal, registry: str, repository: str, digest: str
    ) -> None:
        self._require_write(principal)
        repo = self._repo(principal, registry, repository)
        try:
            parsed = str(Digest.parse(digest))
        except RegistryError as exc:
            raise UnprocessableError(f"invalid digest {digest!r}") from exc
        try:
            self.registry.delete_manifest(repo, parsed)
        except ManifestUnknownError as exc:
            raise NotFoundError(f"manifest {digest} not found in {repo}") from exc

    # ------------------------------------------------------------------ settings

    # Retention rules, tag immutability rules and the GC schedule (registry.policies; the
    # routes are api/policies.py). Anyone who may see the registry reads them; changing
    # them needs ``admin``; applying retention (it deletes) needs ``push`` or ``admin``.

    def get_settings(self, principal: Principal, name: str) -> RegistryRecord:
        return self._visible_registry(principal, name)

    def update_settings(
        self,
        principal: Principal,
        name: str,
        change: Callable[[RegistrySettings, datetime], RegistrySettings],
    ) -> RegistryRecord:
        """Save ``change(current settings, now)``. Conditional on the version it read: a
        concurrent change of another part of the settings is read again and kept."""
        self._require_admin(principal)
        for _ in range(3):
            record = self._visible_registry(principal, name)
            now = self._clock()
            wanted = change(record.settings, now)
            try:
                updated = self.store.update_registry_settings(
                    name, record.registry_id, wanted, record.settings_version, now
                )
            except ConflictError:
                continue
            self.auth.forget_registry(name)
            return updated
        raise ConflictError(f"the settings of {name!r} kept changing; try again")

    def apply_retention(self, principal: Principal, name: str, dry_run: bool) -> RetentionReport:
        if not dry_run:
            self._require_write(principal)
        record = self._visible_registry(principal, name)
        service = RetentionService(self.store, BodyChildren(self.registry.manifest_body))
        return service.apply(record, dry_run, self._clock())

    # ------------------------------------------------------------------ tokens

    @staticmethod
    def token_json(record: TokenRecord) -> dict[str, Any]:
        return {
            "id": record.token_id,
            "name": record.name,
            "scopes": sorted(record.scopes),
            "registries": sorted(record.registries) if record.registries is not None else None,
            "created_at": iso(record.created_at),
            "expires_at": iso(record.expires_at),
            "last_used_at": iso(record.last_used_at),
        }

    def create_token(
        self,
        principal: Principal,
        name: Any,
        scopes: Any,
        registries: Any = None,
        expiry_seconds: Any = None,
    ) -> CreatedToken:
        """A new token of the caller's account, never broader than the caller."""
        self._require_admin(principal)
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise UnprocessableError("name must be 1-100 characters")
        if (
            not isinstance(scopes, list)
            or not scopes
            or not all(isinstance(s, str) and s in SCOPES for s in scopes)
        ):
            raise UnprocessableError(f"scopes must be a non-empty list from {sorted(SCOPES)}")
        limited: frozenset[str] | None = principal.token.registries
        if registries is not None:
            if not isinstance(registries, list) or not all(isinstance(r, str) for r in registries):
                raise UnprocessableError("registries must be a list of registry names")
            for registry in registries:
                self._visible_registry(principal, registry)
            limited = frozenset(registries)
        expires_at = self._bounded_expiry(principal, self._expiry(expiry_seconds))
        return self._mint(principal.account_id, name, frozenset(scopes), limited, expires_at)

    @staticmethod
    def _bounded_expiry(principal: Principal, wanted: datetime | None) -> datetime | None:
        """A token never outlives the token that created it."""
        ceiling = principal.token.expires_at
        if ceiling is None:
            return wanted
        return ceiling if wanted is None else min(wanted, ceiling)

    @staticmethod
    def _manages(principal: Principal, token: TokenRecord) -> bool:
        """A registry-limited admin sees and revokes only tokens within its registries."""
        mine = principal.token.registries
        return mine is None or (token.registries is not None and token.registries <= mine)

    def _expiry(self, expiry_seconds: Any) -> datetime | None:
        if expiry_seconds is None:
            return None
        if (
            isinstance(expiry_seconds, bool)
            or not isinstance(expiry_seconds, int)
            or not 1 <= expiry_seconds <= MAX_EXPIRY_SECONDS
        ):
            raise UnprocessableError(
                f"expiry_seconds must be an integer from 1 to {MAX_EXPIRY_SECONDS}"
            )
        return self._clock() + timedelta(seconds=expiry_seconds)

    def _mint(
        self,
        account_id: str,
        name: str,
        scopes: frozenset[str],
        registries: frozenset[str] | None,
        expires_at: datetime | None,
    ) -> CreatedToken:
        secret = new_token_secret()
        record = TokenRecord(
            token_id=secrets.token_hex(8),
            token_hash=hash_token(secret),
            account_id=account_id,
            name=name,
            scopes=scopes,
            registries=registries,
            expires_at=expires_at,
            created_at=self._clock(),
        )
        self.store.put_token(record)
        return CreatedToken(record, secret)

    def list_tokens(self, principal: Principal, page: Page) -> Listing:
        self._require_admin(principal)
        shown: list[TokenRecord] = []
        after, more = page.after, False
        while True:  # skip tokens outside the caller's registries without short pages
            batch = self.store.list_tokens(principal.account_id, after, page.size + 1)
            for token in batch:
                if len(shown) == page.size:
                    more = True
                    break
                if self._manages(principal, token):
                    shown.append(token)
            if more or len(batch) <= page.size:
                break
            after = batch[-1].token_id
        return Listing(
            [self.token_json(t) for t in shown],
            next_page_token(shown[-1].token_id) if more and shown else None,
        )

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        self._require_admin(principal)
        record = self.store.get_token_by_id(principal.account_id, token_id)
        if record is None or not self._manages(principal, record):
            raise NotFoundError(f"token {token_id!r} not found")
        self.store.delete_token(record.token_hash)

    def docker_credentials(
        self,
        principal: Principal,
        registry: str,
        read_write: bool,
        expiry_seconds: Any,
        registry_host: str,
    ) -> dict[str, Any]:
        """A docker config.json with a new token for this one registry: pull only unless
        ``read_write``, and non-expiring unless ``expiry_seconds``."""
        self._require_admin(principal)
        self._visible_registry(principal, registry)
        scopes = frozenset({"pull", "push"} if read_write else {"pull"})
        created = self._mint(
            principal.account_id,
            f"docker-credentials {registry} ({'read-write' if read_write else 'read-only'})",
            scopes,
            frozenset({registry}),
            self._bounded_expiry(principal, self._expiry(expiry_seconds)),
        )
        auth = base64.b64encode(f"{created.secret}:{created.secret}".encode()).decode()
        return {"auths": {registry_host: {"auth": auth}}}
