"""AccountStore, against the in-memory store and DynamoDB alike: accounts read back, list in
id order, update and delete; the audit trail reads back oldest first and pages; suspension
is copied onto the account's tokens and registries, where authentication and every write
into a registry see it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from chalicelib.adapters.dynamo_accounts import DynamoAccountStore
from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.adapters.memory_accounts import MemoryAccountStore
from chalicelib.registry.errors import AccountSuspendedError
from chalicelib.registry.ports import AccountStore, MetadataStore
from chalicelib.registry.records import (
    ACCOUNT_SUSPENDED,
    AccountRecord,
    AuditRecord,
    TokenRecord,
)

from .helpers import START, bound, digest_of, manifest, new_registry, unique


@pytest.fixture
def accounts(store: MetadataStore) -> AccountStore:
    if isinstance(store, MemoryMetadataStore):
        return MemoryAccountStore(store)
    return DynamoAccountStore()


def account(account_id: str | None = None) -> AccountRecord:
    return AccountRecord(
        account_id=account_id or unique("acct"),
        name="Acme Corp",
        contact="ops@acme.test",
        metadata={"plan": "gold"},
        created_at=START,
    )


def token(account_id: str) -> TokenRecord:
    return TokenRecord(
        token_id=unique("tok"),
        token_hash=unique("hash"),
        account_id=account_id,
        name="ci",
        scopes=frozenset({"push"}),
        created_at=START,
    )


def test_an_account_reads_back_updates_and_is_deleted(accounts: AccountStore) -> None:
    record = account()
    accounts.put_account(record)
    assert accounts.get_account(record.account_id) == record
    with pytest.raises(ValueError):
        accounts.put_account(replace(record, name="someone else"))
    suspended = replace(record, status=ACCOUNT_SUSPENDED, suspended_at=START)
    assert accounts.update_account(suspended)
    assert accounts.get_account(record.account_id) == suspended
    accounts.delete_account(record.account_id)
    assert accounts.get_account(record.account_id) is None
    assert not accounts.update_account(record)


def test_accounts_list_in_id_order_after_a_given_id(accounts: AccountStore) -> None:
    prefix = unique("list")
    ids = [f"{prefix}-{n}" for n in (3, 1, 2)]
    for account_id in ids:
        accounts.put_account(account(account_id))
    # The table is shared with other tests: page from just before this test's ids.
    page = accounts.list_accounts(f"{prefix}-0", 2)
    assert [a.account_id for a in page] == [f"{prefix}-1", f"{prefix}-2"]
    page = accounts.list_accounts(page[-1].account_id, 1)
    assert [a.account_id for a in page] == [f"{prefix}-3"]


def test_the_audit_trail_reads_back_oldest_first_and_pages(accounts: AccountStore) -> None:
    account_id = unique("acct")
    entries = [
        AuditRecord(account_id, action, "tok-1", "operator", START + timedelta(seconds=n))
        for n, action in enumerate(("create", "suspend", "resume"))
    ]
    for entry in reversed(entries):
        accounts.put_audit(entry)
    assert accounts.list_audit(account_id, None, 10) == entries
    assert accounts.list_audit(account_id, entries[0].sort_key, 1) == [entries[1]]
    assert accounts.list_audit(unique("acct"), None, 10) == []


def test_suspension_is_copied_onto_tokens_and_registries_and_refuses_writes(
    store: MetadataStore, accounts: AccountStore
) -> None:
    account_id = unique("acct")
    mine, other = token(account_id), token(unique("acct"))
    store.put_token(mine)
    store.put_token(other)
    registry = new_registry(store, account_id)
    bystander = new_registry(store)
    repo = bound(registry, "app")

    accounts.set_suspended(account_id, True)
    found = store.get_token_by_hash(mine.token_hash)
    assert found is not None and found.suspended
    assert not store.get_token_by_hash(other.token_hash).suspended  # type: ignore[union-attr]
    live = store.get_registry(registry.name)
    assert live is not None and live.suspended
    assert not store.get_registry(bystander.name).suspended  # type: ignore[union-attr]
    with pytest.raises(AccountSuspendedError):
        store.commit_blob(repo, digest_of("layer"), 10, START)
    with pytest.raises(AccountSuspendedError):
        store.put_manifest(repo, manifest("m"), "v1", True, START)
    assert not store.repository_exists(repo)

    accounts.set_suspended(account_id, False)
    assert not store.get_token_by_hash(mine.token_hash).suspended  # type: ignore[union-attr]
    assert store.commit_blob(repo, digest_of("layer"), 10, START)
    # A bystander's registry took writes all along.
    assert store.commit_blob(bound(bystander, "app"), digest_of("other"), 10, START)
