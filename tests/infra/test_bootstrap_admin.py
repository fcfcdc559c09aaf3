"""infra/bootstrap_admin.py writes a working, hashed admin token (against moto)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

moto = pytest.importorskip("moto")
INFRA = Path(__file__).resolve().parents[2] / "infra"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("bootstrap_admin", INFRA / "bootstrap_admin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bootstrap_creates_an_admin_token_and_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "t"),
        ("AWS_SECRET_ACCESS_KEY", "t"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        from chalicelib.adapters.dynamo import DynamoMetadataStore
        from chalicelib.adapters.dynamo_models import bind_table, create_table
        from chalicelib.registry.auth import hash_token

        bind_table("portside-dev", "us-east-1")
        create_table()
        secret = load_script().bootstrap("portside-dev", "us-east-1", "acme", "first")
        store = DynamoMetadataStore()
        token = store.get_token_by_hash(hash_token(secret))
        assert token is not None and token.account_id == "acme"
        assert "admin" in token.scopes and secret.startswith("pst_")
        registry = store.get_registry("first")
        assert registry is not None and registry.account_id == "acme"
