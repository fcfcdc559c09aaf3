"""Tenant accounts, managed by the operator of a Portside deployment.

An account owns registries and API tokens (their ``account_id``). Only a token with the
``operator`` scope (auth.OPERATOR_SCOPE) may create, list, suspend, resume and delete
accounts; that scope belongs to no tenant and grants nothing on any tenant's content.

Suspension is cheap on the request path, because it is copied where the request path
already reads: onto every token record of the account (authentication refuses a suspended
token, with the account in the message) and onto every registry record (every write into a
registry is conditional on that record, so pushes are refused at once). A registry JWT
issued before the suspension keeps working for reads until it expires (its TTL, five
minutes by default): the token endpoint refuses to issue another. Images stay stored.

Deleting an account revokes every token at once and deletes every registry as a registry
delete does (hidden at once, purged in the background; the names are free after the
purge). The account record goes last, so a delete interrupted half way is finished by the
next one. Every action is recorded in the account's audit trail.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .auth import SCOPES, Authenticator, Principal, hash_token, new_token_secret, utcnow
from .errors import BadRequestError, ConflictError, DeniedError, NotFoundError, UnprocessableError
from .management import CreatedToken, Listing, Page, iso, next_page_token
from .ports import AccountStore, MetadataStore
from .records import (
    ACCOUNT_ACTIVE,
    ACCOUNT_SUSPENDED,
    AccountRecord,
    AuditRecord,
    TokenRecord,
)

MAX_NAME = 100
MAX_CONTACT = 254
MAX_METADATA_ENTRIES = 20
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 256
# Tokens revoked and registries deleted per store call when an account is deleted.
BATCH = 100
# What an account id can be: ours are hex; older deployments wrote ids such as "local" or
# "acme" with infra/bootstrap_admin.py. Anything else names no account and never reaches
# the store (DynamoDB refuses keys over 2 KB, and sort-key conditions over 1 KB).
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_AFTER = 1024
# The account of a deployment's operator tokens (infra/bootstrap_admin.py): no account
# record, no registries, and no id this module generates (those are hex).
OPERATOR_ACCOUNT = "_operator"


@dataclass
class CreatedAccount:
    account: AccountRecord
    token: CreatedToken = field(repr=False)


def new_account_id() -> str:
    """Random, never derived from the name: an id is never reused, so nothing issued to a
    deleted account (a JWT names its account) can mean a later one."""
    return secrets.token_hex(8)


class AccountService:
    def __init__(
        self,
        accounts: AccountStore,
        store: MetadataStore,
        authenticator: Authenticator,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.accounts = accounts
        self.store = store
        self.auth = authenticator
        self._clock = clock

    # ------------------------------------------------------------------ access

    @staticmethod
    def _require_operator(principal: Principal) -> None:
        if not principal.is_operator:
            raise DeniedError("managing accounts needs a token with the operator scope")

    def _account(self, account_id: str) -> AccountRecord:
        valid = ACCOUNT_ID.match(account_id)
        record = self.accounts.get_account(account_id) if valid else None
        if record is None:
            raise NotFoundError(f"account {account_id!r} not found")
        return record

    @staticmethod
    def _not_own(principal: Principal, account_id: str, action: str) -> None:
        # An operator that is also a tenant (the local bootstrap token) would lock itself out.
        if principal.account_id == account_id:
            raise ConflictError(f"a token cannot {action} the account it belongs to")

    def _audit(
        self,
        principal: Principal,
        account_id: str,
        action: str,
        detail: dict[str, str] | None = None,
    ) -> None:
        self.accounts.put_audit(
            AuditRecord(
                account_id=account_id,
                action=action,
                actor_token_id=principal.token.token_id,
                actor_name=principal.token.name,
                at=self._clock(),
                detail=detail or {},
            )
        )

    # ------------------------------------------------------------------ json

    def account_json(self, record: AccountRecord) -> dict[str, Any]:
        registries = self.store.list_registries(record.account_id)
        return {
            "id": record.account_id,
            "name": record.name,
            "contact": record.contact,
            "metadata": dict(record.metadata),
            "status": record.status,
            "created_at": iso(record.created_at),
            "suspended_at": iso(record.suspended_at),
            "registry_count": len(registries),
            "storage_usage_bytes": sum(r.storage_bytes for r in registries),
        }

    @staticmethod
    def audit_json(record: AuditRecord) -> dict[str, Any]:
        return {
            "id": record.audit_id,
            "account_id": record.account_id,
            "action": record.action,
            "actor": {"token_id": record.actor_token_id, "name": record.actor_name},
            "at": iso(record.at),
            "detail": dict(record.detail),
        }

    # ------------------------------------------------------------------ operations

    def create(
        self, principal: Principal, name: Any, contact: Any = None, metadata: Any = None
    ) -> CreatedAccount:
        """A new active account and its first admin token (every scope, every registry of
        the account, no expiry); the token's secret is in the answer and nowhere else."""
        self._require_operator(principal)
        now = self._clock()
        record = AccountRecord(
            account_id=new_account_id(),
            name=_name(name),
            contact=_contact(contact),
            metadata=_metadata(metadata),
            status=ACCOUNT_ACTIVE,
            created_at=now,
        )
        self.accounts.put_account(record)
        secret = new_token_secret()
        token = TokenRecord(
            token_id=secrets.token_hex(8),
            token_hash=hash_token(secret),
            account_id=record.account_id,
            name="first admin",
            scopes=SCOPES,
            created_at=now,
        )
        self.store.put_token(token)
        self._audit(principal, record.account_id, "create", {"name": record.name})
        return CreatedAccount(record, CreatedToken(token, secret))

    def list(self, principal: Principal, page: Page) -> Listing:
        self._require_operator(principal)
        found = self.accounts.list_accounts(_after(page), page.size + 1)
        shown = found[: page.size]
        more = len(found) > page.size
        return Listing(
            [self.account_json(r) for r in shown],
            next_page_token(shown[-1].account_id) if more else None,
        )

    def get(self, principal: Principal, account_id: str) -> AccountRecord:
        self._require_operator(principal)
        return self._account(account_id)

    def suspend(self, principal: Principal, account_id: str) -> AccountRecord:
        """Idempotent: suspending again re-copies the flag (it catches a token created in
        the same instant as the first suspension), and is recorded once."""
        self._require_operator(principal)
        self._not_own(principal, account_id, "suspend")
        record = self._account(account_id)
        changed = record.status != ACCOUNT_SUSPENDED
        if changed:
            record = replace(record, status=ACCOUNT_SUSPENDED, suspended_at=self._clock())
            if not self.accounts.update_account(record):
                raise NotFoundError(f"account {account_id!r} not found")
        # The account record first: should this stop half way, it says "suspended" and
        # suspending again finishes the copies.
        self.accounts.set_suspended(account_id, True)
        self._forget_registries(account_id)
        if changed:
            self._audit(principal, account_id, "suspend")
        return record

    def resume(self, principal: Principal, account_id: str) -> AccountRecord:
        self._require_operator(principal)
        record = self._account(account_id)
        changed = record.status != ACCOUNT_ACTIVE
        if changed:
            record = replace(record, status=ACCOUNT_ACTIVE, suspended_at=None)
            if not self.accounts.update_account(record):
                raise NotFoundError(f"account {account_id!r} not found")
        self.accounts.set_suspended(account_id, False)
        self._forget_registries(account_id)
        if changed:
            self._audit(principal, account_id, "resume")
        return record

    def delete(self, principal: Principal, account_id: str) -> None:
        """Revoke every token, delete every registry (purged later, as a registry delete
        is), then forget the account. Its audit trail stays."""
        self._require_operator(principal)
        self._not_own(principal, account_id, "delete")
        self._account(account_id)
        # Tokens first: once they are gone nobody can create a registry the loop below
        # would miss. Paged by id (the token index may still list a token just deleted).
        revoked, after = 0, None
        while batch := self.store.list_tokens(account_id, after, BATCH):
            for token in batch:
                self.store.delete_token(token.token_hash)
            revoked += len(batch)
            after = batch[-1].token_id
        deleted = 0
        for registry in self.store.list_registries(account_id):
            if self.store.mark_registry_deleting(registry.name):
                deleted += 1
            self.auth.forget_registry(registry.name)
        self.accounts.delete_account(account_id)
        self._audit(
            principal,
            account_id,
            "delete",
            {"tokens_revoked": str(revoked), "registries_deleted": str(deleted)},
        )

    def audit(self, principal: Principal, account_id: str, page: Page) -> Listing:
        """The trail of one account, oldest first; readable after the account is deleted
        (its id is then only known from a listing or an earlier answer)."""
        self._require_operator(principal)
        if not ACCOUNT_ID.match(account_id):
            raise NotFoundError(f"account {account_id!r} not found")
        found = self.accounts.list_audit(account_id, _after(page), page.size + 1)
        if not found and page.after is None:
            self._account(account_id)  # 404 for an id that never had an account
        shown = found[: page.size]
        more = len(found) > page.size
        return Listing(
            [self.audit_json(r) for r in shown],
            next_page_token(shown[-1].sort_key) if more else None,
        )

    def _forget_registries(self, account_id: str) -> None:
        """This process's cached registry records (other processes' expire within the
        cache's TTL; writes re-check the record itself meanwhile)."""
        for registry in self.store.list_registries(account_id):
            self.auth.forget_registry(registry.name)


# ---------------------------------------------------------------------- validation


def _after(page: Page) -> str | None:
    if page.after is not None and len(page.after.encode("utf-8")) > MAX_AFTER:
        raise BadRequestError("invalid page_token")
    return page.after


def _name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_NAME:
        raise UnprocessableError(f"name must be 1-{MAX_NAME} characters")
    return value.strip()


def _contact(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CONTACT:
        raise UnprocessableError(f"contact must be a string of at most {MAX_CONTACT} characters")
    return value or None


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA_ENTRIES
        or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and 1 <= len(k) <= MAX_METADATA_KEY
            and len(v) <= MAX_METADATA_VALUE
            for k, v in value.items()
        )
    ):
        raise UnprocessableError(
            f"metadata must be an object of at most {MAX_METADATA_ENTRIES} string values "
            f"(keys of 1-{MAX_METADATA_KEY} characters, values of at most "
            f"{MAX_METADATA_VALUE})"
        )
    return dict(value)
