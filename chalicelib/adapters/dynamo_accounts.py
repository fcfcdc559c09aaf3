"""AccountStore on DynamoDB: the same single table as everything else (see dynamo_models).

Keys this adds (pk / sk):

  ACCOUNT#<account id>      #META                      account record (name, contact,
                                                         metadata, status, times)
  AUDIT#<account id>        <at>#<audit id>            one operator action on the account
                                                         (oldest first); kept after the
                                                         account is deleted

GSI1 (gsi1pk / gsi1sk):
  ACCOUNTS                  <account id>               every account, for the operator's list

Suspension is copied, not looked up: ``set_suspended`` writes ``suspended`` onto every
``TOKEN#`` item of the account (found through GSI1 ``TOKENS#<account>``) and every live
``REG#`` item (GSI1 ``ACCOUNT#<account>``). Authentication reads the token item anyway, and
every write into a registry is already conditional on its ``REG#`` item
(``dynamo._registry_is``), so a suspension costs the request path nothing. GSI reads are
eventually consistent: a token created in the same instant as a suspension can miss the
flag; suspending again (idempotent) catches it.
"""

from __future__ import annotations

from typing import cast

from pynamodb.attributes import JSONAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.registry.records import AccountRecord, AuditRecord

from .dynamo_models import META, Item, RegistryItem, TokenItem

ACCOUNTS_INDEX = "ACCOUNTS"


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def audit_pk(account_id: str) -> str:
    return f"AUDIT#{account_id}"


class AccountItem(Item):
    account_id = UnicodeAttribute()
    name = UnicodeAttribute()
    contact = UnicodeAttribute(null=True)
    metadata = JSONAttribute(null=True)
    status = UnicodeAttribute()
    created_at = UTCDateTimeAttribute(null=True)
    suspended_at = UTCDateTimeAttribute(null=True)


class AuditItem(Item):
    account_id = UnicodeAttribute()
    audit_id = UnicodeAttribute()
    action = UnicodeAttribute()
    actor_token_id = UnicodeAttribute()
    actor_name = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    detail = JSONAttribute(null=True)


class DynamoAccountStore:
    def __init__(self) -> None:
        # dynamo_models.bind_table resets the connections of the models it lists; these
        # share its Meta (so its table and region) and must not keep an older connection.
        for model in (AccountItem, AuditItem):
            model._connection = None

    def put_account(self, record: AccountRecord) -> None:
        try:
            _account_item(record).save(condition=Item.pk.does_not_exist())
        except PutError as exc:
            if _is_condition_failure(exc):
                raise ValueError(f"account {record.account_id!r} already exists") from exc
            raise

    def get_account(self, account_id: str) -> AccountRecord | None:
        try:
            item = AccountItem.get(account_pk(account_id), META, consistent_read=True)
        except AccountItem.DoesNotExist:
            return None
        return _account_record(item)

    def list_accounts(self, after: str | None, limit: int) -> list[AccountRecord]:
        condition = AccountItem.gsi1sk > after if after is not None else None
        found = AccountItem.gsi1.query(ACCOUNTS_INDEX, condition, limit=limit)
        return [_account_record(cast(AccountItem, item)) for item in found]

    def update_account(self, record: AccountRecord) -> bool:
        try:
            _account_item(record).save(condition=Item.pk.exists())
        except PutError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def delete_account(self, account_id: str) -> None:
        Item(account_pk(account_id), META).delete()

    def set_suspended(self, account_id: str, suspended: bool) -> None:
        # Resuming removes the attribute: a resumed item is the same as one never suspended.
        for token in TokenItem.gsi1.query(f"TOKENS#{account_id}"):
            _flag(
                TokenItem(token.pk, token.sk),
                TokenItem.suspended.set(True) if suspended else TokenItem.suspended.remove(),
                Item.pk.exists(),
            )
        for found in RegistryItem.gsi1.query(f"ACCOUNT#{account_id}"):
            registry = cast(RegistryItem, found)
            # Only the incarnation found: a name deleted and re-created meanwhile (by
            # anyone) is another registry, not this account's.
            _flag(
                RegistryItem(registry.pk, registry.sk),
                RegistryItem.suspended.set(True) if suspended else RegistryItem.suspended.remove(),
                Item.pk.exists() & (RegistryItem.registry_id == registry.registry_id),
            )

    def put_audit(self, record: AuditRecord) -> None:
        AuditItem(
            audit_pk(record.account_id),
            record.sort_key,
            account_id=record.account_id,
            audit_id=record.audit_id,
            action=record.action,
            actor_token_id=record.actor_token_id,
            actor_name=record.actor_name,
            at=record.at,
            detail=record.detail or None,
        ).save()

    def list_audit(self, account_id: str, after: str | None, limit: int) -> list[AuditRecord]:
        condition = AuditItem.sk > after if after is not None else None
        found = AuditItem.query(audit_pk(account_id), condition, limit=limit)
        return [
            AuditRecord(
                account_id=item.account_id,
                action=item.action,
                actor_token_id=item.actor_token_id,
                actor_name=item.actor_name,
                at=item.at,
                audit_id=item.audit_id,
                detail=dict(item.detail or {}),
            )
            for item in found
        ]


def _account_item(record: AccountRecord) -> AccountItem:
    return AccountItem(
        account_pk(record.account_id),
        META,
        gsi1pk=ACCOUNTS_INDEX,
        gsi1sk=record.account_id,
        account_id=record.account_id,
        name=record.name,
        contact=record.contact,
        metadata=record.metadata or None,
        status=record.status,
        created_at=record.created_at,
        suspended_at=record.suspended_at,
    )


def _account_record(item: AccountItem) -> AccountRecord:
    return AccountRecord(
        account_id=item.account_id,
        name=item.name,
        contact=item.contact,
        metadata=dict(item.metadata or {}),
        status=item.status,
        created_at=item.created_at,
        suspended_at=item.suspended_at,
    )


def _flag(item: Item, action: Action, condition: Condition) -> None:
    try:
        item.update(actions=[action], condition=condition)
    except UpdateError as exc:
        if not _is_condition_failure(exc):  # gone meanwhile (revoked, purged): nothing to flag
            raise


def _is_condition_failure(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


__all__ = ["AccountItem", "AuditItem", "DynamoAccountStore"]
