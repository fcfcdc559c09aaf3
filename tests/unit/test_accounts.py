"""AccountService over the in-memory stores: only the operator manages accounts; a new
account comes with a working admin token; suspension refuses its tokens and its writes and
resuming undoes it; deletion revokes every token, deletes every registry (the names are
free after the purge) and keeps the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.adapters.memory import MemoryBlobStore, MemoryMetadataStore
from chalicelib.adapters.memory_accounts import MemoryAccountStore
from chalicelib.registry.accounts import AccountService
from chalicelib.registry.auth import OPERATOR_SCOPE, SCOPES, Authenticator, Principal
from chalicelib.registry.errors import (
    AccountSuspendedError,
    ConflictError,
    DeniedError,
    UnauthorizedError,
    UnprocessableError,
)
from chalicelib.registry.management import ManagementService, NotFoundError, Page
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import AccountRecord
from chalicelib.registry.service import RegistryService

from .builders import FakeClock, make_token, push_blob, push_image
from .conftest import ACCOUNT

OPERATOR_ACCOUNT = "operators"


@pytest.fixture
def auth(store: MemoryMetadataStore, clock: FakeClock) -> Authenticator:
    return Authenticator(store, clock=clock)


@pytest.fixture
def accounts(store: MemoryMetadataStore, auth: Authenticator, clock: FakeClock) -> AccountService:
    return AccountService(MemoryAccountStore(store), store, auth, clock=clock)


@pytest.fixture
def management(
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    service: RegistryService,
    auth: Authenticator,
    clock: FakeClock,
) -> ManagementService:
    return ManagementService(store, blobs, service, auth, clock=clock)


@pytest.fixture
def operator(store: MemoryMetadataStore, auth: Authenticator, clock: FakeClock) -> Principal:
    secret = make_token(store, OPERATOR_ACCOUNT, {OPERATOR_SCOPE})
    return auth.authenticate_secret(secret, clock())


def login(auth: Authenticator, clock: FakeClock, secret: str) -> Principal:
    return auth.authenticate_tenant(secret, clock())


def test_creating_an_account_returns_a_working_admin_token_and_is_audited(
    accounts: AccountService,
    operator: Principal,
    management: ManagementService,
    auth: Authenticator,
    clock: FakeClock,
) -> None:
    created = accounts.create(operator, "Acme", "ops@acme.test", {"crm": "42"})
    assert created.account.name == "Acme" and created.account.status == "active"
    tenant = login(auth, clock, created.token.secret)
    assert tenant.account_id == created.account.account_id
    assert created.token.record.scopes == SCOPES  # never the operator scope
    registry = management.create_registry(tenant, "acme-new", "basic")
    assert registry.account_id == created.account.account_id
    shown = accounts.account_json(accounts.get(operator, created.account.account_id))
    assert shown["registry_count"] == 1 and shown["contact"] == "ops@acme.test"
    trail = accounts.audit(operator, created.account.account_id, Page(20, None)).items
    assert [(e["action"], e["actor"]["token_id"]) for e in trail] == [
        ("create", operator.token.token_id)
    ]


def test_account_ids_are_never_reused(accounts: AccountService, operator: Principal) -> None:
    first = accounts.create(operator, "Acme").account
    second = accounts.create(operator, "Acme").account
    assert first.account_id != second.account_id


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, 7, None])
def test_an_account_needs_a_name(
    accounts: AccountService, operator: Principal, name: object
) -> None:
    with pytest.raises(UnprocessableError):
        accounts.create(operator, name)


def test_metadata_must_be_strings(accounts: AccountService, operator: Principal) -> None:
    with pytest.raises(UnprocessableError):
        accounts.create(operator, "Acme", metadata={"n": 1})


def test_a_tenant_admin_can_do_nothing_with_accounts(
    accounts: AccountService,
    store: MemoryMetadataStore,
    auth: Authenticator,
    clock: FakeClock,
    operator: Principal,
) -> None:
    admin = login(auth, clock, make_token(store, ACCOUNT, {"pull", "push", "admin"}))
    target = accounts.create(operator, "Target").account.account_id
    for call in (
        lambda: accounts.create(admin, "Mine"),
        lambda: accounts.list(admin, Page(20, None)),
        lambda: accounts.get(admin, target),
        lambda: accounts.suspend(admin, target),
        lambda: accounts.resume(admin, target),
        lambda: accounts.delete(admin, target),
        lambda: accounts.audit(admin, target, Page(20, None)),
    ):
        with pytest.raises(DeniedError):
            call()


def test_an_operator_only_token_is_refused_on_the_registry_api(
    auth: Authenticator, store: MemoryMetadataStore, clock: FakeClock
) -> None:
    secret = make_token(store, OPERATOR_ACCOUNT, {OPERATOR_SCOPE})
    with pytest.raises(DeniedError, match="operator"):
        auth.authenticate_tenant(secret, clock())
    # Operator and admin of its own account (the local bootstrap token): a tenant too.
    both = make_token(store, ACCOUNT, {OPERATOR_SCOPE, "admin"})
    assert auth.authenticate_tenant(both, clock()).account_id == ACCOUNT


def test_listing_pages_and_sums_registries_and_storage(
    accounts: AccountService,
    operator: Principal,
    management: ManagementService,
    service: RegistryService,
    auth: Authenticator,
    clock: FakeClock,
) -> None:
    created = [accounts.create(operator, f"Tenant {n}") for n in range(3)]
    tenant = login(auth, clock, created[0].token.secret)
    for name in ("t0-a", "t0-b"):
        record = management.create_registry(tenant, name, "basic")
        push_blob(service, RepositoryName(name, "app", record.registry_id), b"x" * 100)
    seen: list[dict[str, object]] = []
    page = Page(2, None)
    while True:
        listing = accounts.list(operator, page)
        seen.extend(listing.items)
        if listing.next_page_token is None:
            break
        page = Page.parse("2", listing.next_page_token)
    by_id = {item["id"]: item for item in seen}
    assert set(by_id) == {c.account.account_id for c in created}
    first = by_id[created[0].account.account_id]
    assert first["registry_count"] == 2 and first["storage_usage_bytes"] == 200


def test_a_suspended_account_is_refused_until_resumed(
    accounts: AccountService,
    operator: Principal,
    management: ManagementService,
    service: RegistryService,
    auth: Authenticator,
    clock: FakeClock,
) -> None:
    created = accounts.create(operator, "Acme")
    account_id = created.account.account_id
    tenant = login(auth, clock, created.token.secret)
    record = management.create_registry(tenant, "acme-s", "basic")
    repo = RepositoryName("acme-s", "app", record.registry_id)
    push_image(service, repo, "v1", "before")

    clock.advance(timedelta(seconds=1))  # the trail is in time order
    suspended = accounts.suspend(operator, account_id)
    assert suspended.status == "suspended" and suspended.suspended_at == clock()
    with pytest.raises(AccountSuspendedError, match="suspended"):
        auth.authenticate_secret(created.token.secret, clock())
    # A JWT issued before still authorizes a push; the registry record refuses its writes.
    with pytest.raises(AccountSuspendedError):
        push_image(service, repo, "v2", "during")
    # The images stay stored and readable.
    assert service.resolve_manifest(repo, "v1") is not None
    accounts.suspend(operator, account_id)  # idempotent, and audited once

    clock.advance(timedelta(seconds=1))
    accounts.resume(operator, account_id)
    tenant = login(auth, clock, created.token.secret)
    push_image(service, repo, "v2", "after")
    actions = [e["action"] for e in accounts.audit(operator, account_id, Page(20, None)).items]
    assert actions == ["create", "suspend", "resume"]


def test_an_operator_cannot_suspend_or_delete_its_own_account(
    accounts: AccountService, store: MemoryMetadataStore, auth: Authenticator, clock: FakeClock
) -> None:
    both = login(auth, clock, make_token(store, ACCOUNT, {OPERATOR_SCOPE, "admin"}))
    accounts.accounts.put_account(AccountRecord(ACCOUNT, "local"))
    with pytest.raises(ConflictError):
        accounts.suspend(both, ACCOUNT)
    with pytest.raises(ConflictError):
        accounts.delete(both, ACCOUNT)


def test_deleting_an_account_revokes_tokens_and_frees_names_only_after_the_purge(
    accounts: AccountService,
    operator: Principal,
    management: ManagementService,
    service: RegistryService,
    auth: Authenticator,
    store: MemoryMetadataStore,
    blobs: MemoryBlobStore,
    clock: FakeClock,
) -> None:
    created = accounts.create(operator, "Acme")
    account_id = created.account.account_id
    tenant = login(auth, clock, created.token.secret)
    extra = management.create_token(tenant, "ci", ["push"]).secret
    record = management.create_registry(tenant, "acme-d", "basic")
    push_image(service, RepositoryName("acme-d", "app", record.registry_id), "v1", "doomed")

    clock.advance(timedelta(seconds=1))
    accounts.delete(operator, account_id)
    for secret in (created.token.secret, extra):
        with pytest.raises(UnauthorizedError):
            auth.authenticate_secret(secret, clock())
    with pytest.raises(NotFoundError):
        accounts.get(operator, account_id)
    with pytest.raises(ConflictError):  # taken until the purge
        management.validate_name("acme-d")
    clock.advance(timedelta(minutes=1))
    assert any(management.purge_deleted_registries() for _ in range(10))
    management.validate_name("acme-d")
    assert not [k for k in blobs.objects if record.registry_id in k]
    trail = accounts.audit(operator, account_id, Page(20, None)).items
    assert trail[-1]["action"] == "delete"
    assert trail[-1]["detail"] == {"tokens_revoked": "2", "registries_deleted": "1"}


def test_an_unknown_account_is_not_found(accounts: AccountService, operator: Principal) -> None:
    for call in (
        lambda: accounts.get(operator, "nope"),
        lambda: accounts.suspend(operator, "nope"),
        lambda: accounts.resume(operator, "nope"),
        lambda: accounts.delete(operator, "nope"),
        lambda: accounts.audit(operator, "nope", Page(20, None)),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_a_suspended_account_can_be_deleted_and_purged(
    accounts: AccountService,
    operator: Principal,
    management: ManagementService,
    service: RegistryService,
    auth: Authenticator,
    clock: FakeClock,
) -> None:
    created = accounts.create(operator, "Late payer")
    tenant = login(auth, clock, created.token.secret)
    record = management.create_registry(tenant, "late", "basic")
    push_image(service, RepositoryName("late", "app", record.registry_id), "v1", "kept")
    accounts.suspend(operator, created.account.account_id)
    accounts.delete(operator, created.account.account_id)
    assert any(management.purge_deleted_registries() for _ in range(10))
    management.validate_name("late")
