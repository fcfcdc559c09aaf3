"""infra/bootstrap_admin.py writes a working, hashed operator token, and optionally onboards a
first tenant account (against moto)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

moto = pytest.importorskip("moto")
INFRA = Path(__file__).resolve().parents[2] / "infra"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("bootstrap_admin", INFRA / "bootstrap_admin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through it
    spec.loader.exec_module(module)
    return module


def _aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "t"),
        ("AWS_SECRET_ACCESS_KEY", "t"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(key, value)


def test_bootstrap_creates_an_operator_token_that_manages_accounts_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _aws(monkeypatch)
    with moto.mock_aws():
        from chalicelib.adapters.dynamo import DynamoMetadataStore
        from chalicelib.adapters.dynamo_models import bind_table, create_table
        from chalicelib.registry.auth import Authenticator, hash_token
        from chalicelib.registry.errors import DeniedError

        bind_table("portside-dev", "us-east-1")
        create_table()
        done = load_script().bootstrap("portside-dev", "us-east-1")
        store = DynamoMetadataStore()
        token = store.get_token_by_hash(hash_token(done.operator_token))
        assert token is not None and token.scopes == frozenset({"operator"})
        assert done.operator_token.startswith("pst_") and done.admin_token is None
        auth = Authenticator(store)
        assert auth.authenticate_secret(done.operator_token, token.created_at).is_operator
        with pytest.raises(DeniedError):  # no access to registry content
            auth.authenticate_tenant(done.operator_token, token.created_at)


def test_bootstrap_can_onboard_a_first_account_with_a_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _aws(monkeypatch)
    with moto.mock_aws():
        from chalicelib.adapters.dynamo import DynamoMetadataStore
        from chalicelib.adapters.dynamo_accounts import DynamoAccountStore
        from chalicelib.adapters.dynamo_models import bind_table, create_table
        from chalicelib.registry.auth import hash_token

        bind_table("portside-dev", "us-east-1")
        create_table()
        done = load_script().bootstrap("portside-dev", "us-east-1", "Acme", "first")
        store = DynamoMetadataStore()
        assert done.admin_token is not None and done.account_id is not None
        admin = store.get_token_by_hash(hash_token(done.admin_token))
        assert admin is not None and admin.account_id == done.account_id
        assert admin.scopes == frozenset({"pull", "push", "admin"})
        account = DynamoAccountStore().get_account(done.account_id)
        assert account is not None and account.name == "Acme"
        registry = store.get_registry("first")
        assert registry is not None and registry.account_id == done.account_id
