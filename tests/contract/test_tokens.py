"""API tokens: found by the hash of their secret or by id within their account, listed per
account in id order, revoked, and touched when used."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.registry.ports import MetadataStore
from chalicelib.registry.records import TokenRecord

from .helpers import LATER, START, unique


def token(account_id: str, token_id: str | None = None, **fields: object) -> TokenRecord:
    record = TokenRecord(
        token_id=token_id or unique("tok"),
        token_hash=unique("hash"),
        account_id=account_id,
        name="ci",
        scopes=frozenset({"pull", "push"}),
        created_at=START,
    )
    return replace(record, **fields)  # type: ignore[arg-type]


def test_a_token_reads_back_by_hash_and_by_id_within_its_account(
    store: MetadataStore,
) -> None:
    account = unique("acct")
    record = token(
        account,
        registries=frozenset({"acme", "acme-b"}),
        expires_at=START + (LATER - START) * 100,
    )
    store.put_token(record)
    assert store.get_token_by_hash(record.token_hash) == record
    assert store.get_token_by_id(account, record.token_id) == record
    assert store.get_token_by_id(unique("acct"), record.token_id) is None
    assert store.get_token_by_hash(unique("hash")) is None


def test_a_token_for_every_registry_keeps_no_registry_list(store: MetadataStore) -> None:
    record = token(unique("acct"), scopes=frozenset({"admin"}))
    store.put_token(record)
    found = store.get_token_by_hash(record.token_hash)
    assert found is not None
    assert (found.registries, found.scopes) == (None, frozenset({"admin"}))


def test_tokens_list_per_account_in_id_order_and_page_after_an_id(
    store: MetadataStore,
) -> None:
    account = unique("acct")
    records = [token(account, f"tok-{i}") for i in (3, 1, 4, 0, 2)]
    for record in records:
        store.put_token(record)
    store.put_token(token(unique("acct"), "tok-0"))  # another account's
    ids = [f"tok-{i}" for i in range(5)]
    assert [t.token_id for t in store.list_tokens(account, None, 100)] == ids
    assert [t.token_id for t in store.list_tokens(account, None, 2)] == ids[:2]
    assert [t.token_id for t in store.list_tokens(account, "tok-1", 2)] == ids[2:4]
    assert store.list_tokens(account, "tok-4", 2) == []
    assert store.list_tokens(unique("acct"), None, 10) == []


def test_a_deleted_token_is_gone_everywhere(store: MetadataStore) -> None:
    account = unique("acct")
    doomed, kept = token(account), token(account)
    store.put_token(doomed)
    store.put_token(kept)
    store.delete_token(doomed.token_hash)
    store.delete_token(doomed.token_hash)  # deleting again is no error
    assert store.get_token_by_hash(doomed.token_hash) is None
    assert store.get_token_by_id(account, doomed.token_id) is None
    assert [t.token_id for t in store.list_tokens(account, None, 10)] == [kept.token_id]


def test_touch_records_the_last_use_in_the_store_not_in_earlier_reads(
    store: MetadataStore,
) -> None:
    record = token(unique("acct"))
    store.put_token(record)
    earlier = store.get_token_by_hash(record.token_hash)
    store.touch_token(record.token_hash, LATER)
    found = store.get_token_by_hash(record.token_hash)
    assert found is not None and found.last_used_at == LATER
    # What was read or written before is a snapshot, as an item read from DynamoDB is.
    assert earlier is not None and earlier.last_used_at is None
    assert record.last_used_at is None


def test_touching_a_revoked_token_does_not_bring_it_back(store: MetadataStore) -> None:
    record = token(unique("acct"))
    store.put_token(record)
    store.delete_token(record.token_hash)
    store.touch_token(record.token_hash, LATER)
    assert store.get_token_by_hash(record.token_hash) is None
