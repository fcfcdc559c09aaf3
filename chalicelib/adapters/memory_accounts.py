"""In-memory AccountStore, sharing the lock, tokens and registries of a MemoryMetadataStore
(the DynamoDB adapters share one table the same way), for unit tests of the core."""

from __future__ import annotations

from dataclasses import replace

from chalicelib.registry.records import AccountRecord, AuditRecord

from .memory import MemoryMetadataStore


def _copy_account(record: AccountRecord) -> AccountRecord:
    return replace(record, metadata=dict(record.metadata))


class MemoryAccountStore:
    def __init__(self, metadata: MemoryMetadataStore) -> None:
        self._metadata = metadata
        self._lock = metadata._lock
        self.accounts: dict[str, AccountRecord] = {}
        self.audit: dict[str, dict[str, AuditRecord]] = {}  # account -> sort key -> entry

    def put_account(self, record: AccountRecord) -> None:
        with self._lock:
            if record.account_id in self.accounts:
                raise ValueError(f"account {record.account_id!r} already exists")
            self.accounts[record.account_id] = _copy_account(record)

    def get_account(self, account_id: str) -> AccountRecord | None:
        with self._lock:
            record = self.accounts.get(account_id)
            return _copy_account(record) if record else None

    def list_accounts(self, after: str | None, limit: int) -> list[AccountRecord]:
        with self._lock:
            ids = sorted(i for i in self.accounts if after is None or i > after)
            return [_copy_account(self.accounts[i]) for i in ids[:limit]]

    def update_account(self, record: AccountRecord) -> bool:
        with self._lock:
            if record.account_id not in self.accounts:
                return False
            self.accounts[record.account_id] = _copy_account(record)
            return True

    def delete_account(self, account_id: str) -> None:
        with self._lock:
            self.accounts.pop(account_id, None)

    def set_suspended(self, account_id: str, suspended: bool) -> None:
        with self._lock:
            for token in self._metadata.tokens.values():
                if token.account_id == account_id:
                    token.suspended = suspended
            for registry in self._metadata.registries.values():
                # As the DynamoDB store, which finds them through the account's index
                # partition: registries being deleted are no longer there.
                if registry.account_id == account_id and not registry.deleting:
                    registry.suspended = suspended

    def put_audit(self, record: AuditRecord) -> None:
        with self._lock:
            entry = replace(record, detail=dict(record.detail))
            self.audit.setdefault(record.account_id, {})[record.sort_key] = entry

    def list_audit(self, account_id: str, after: str | None, limit: int) -> list[AuditRecord]:
        with self._lock:
            trail = self.audit.get(account_id, {})
            keys = sorted(k for k in trail if after is None or k > after)
            return [replace(trail[k], detail=dict(trail[k].detail)) for k in keys[:limit]]
