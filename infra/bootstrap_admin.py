"""Create the first operator token of a deployed stage (run once, with AWS credentials).

A fresh stack has no token, and every management call needs one. This writes one token
record straight into the stage's table, the way the local runtime does: only the SHA-256
hash is stored, the secret is printed once. The token holds the ``operator`` scope only: it
onboards, suspends and deletes tenant accounts (``portside account ...``,
``/api/v1/accounts``) and has no access to any tenant's images. With ``--account`` it also
onboards a first tenant, through the same code as ``POST /api/v1/accounts``, and prints that
account's admin token; ``--registry`` then creates a first registry in it.

    .venv/bin/python infra/bootstrap_admin.py --stage dev [--account NAME [--registry NAME]]

Then: `portside auth init --api-url <RegistryUrl> --token <operator token>` and
`portside account create <name>` for each tenant (see docs/operating.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import STAGES

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.dynamo_accounts import DynamoAccountStore
from chalicelib.adapters.dynamo_models import bind_table
from chalicelib.registry.accounts import OPERATOR_ACCOUNT, AccountService
from chalicelib.registry.auth import (
    OPERATOR_SCOPE,
    Authenticator,
    Principal,
    hash_token,
    new_token_secret,
)
from chalicelib.registry.records import RegistryRecord, TokenRecord


@dataclass
class Bootstrapped:
    operator_token: str
    account_id: str | None = None
    admin_token: str | None = None  # the first tenant's, with --account


def bootstrap(
    table: str, region: str, account: str | None = None, registry: str | None = None
) -> Bootstrapped:
    bind_table(table, region)
    store = DynamoMetadataStore()
    now = datetime.now(UTC)
    secret = new_token_secret()
    operator = TokenRecord(
        token_id=secrets.token_hex(8),
        token_hash=hash_token(secret),
        account_id=OPERATOR_ACCOUNT,
        name="bootstrap-operator",
        scopes=frozenset({OPERATOR_SCOPE}),
        created_at=now,
    )
    store.put_token(operator)
    out = Bootstrapped(secret)
    if account:
        service = AccountService(DynamoAccountStore(), store, Authenticator(store))
        created = service.create(Principal(operator), account)
        out.account_id = created.account.account_id
        out.admin_token = created.token.secret
        if registry and store.get_registry(registry) is None:
            store.put_registry(
                RegistryRecord(name=registry, account_id=out.account_id, created_at=now)
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, choices=sorted(STAGES))
    parser.add_argument("--account", help="also onboard a first tenant account of this name")
    parser.add_argument(
        "--registry", help="with --account: also create this registry in it (professional plan)"
    )
    parser.add_argument(
        "--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    args = parser.parse_args()
    if args.registry and not args.account:
        parser.error("--registry needs --account (a registry belongs to a tenant account)")
    stage = STAGES[args.stage]
    region = stage.region or args.region
    if not region:
        parser.error("no region: set AWS_REGION or pass --region")
    done = bootstrap(stage.table, region, args.account, args.registry)
    print(f"operator token for table {stage.table} (shown once; no access to images):")
    print(done.operator_token)
    if done.admin_token:
        print()
        print(f"admin token of account {args.account!r} (id {done.account_id}; shown once):")
        print(done.admin_token)


if __name__ == "__main__":
    main()
