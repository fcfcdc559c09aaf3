"""Create the first admin API token of a deployed stage (run once, with AWS credentials).

A fresh stack has no token, and every management call needs one. This writes one token
record straight into the stage's table, the way the local runtime does: only the SHA-256
hash is stored, the secret is printed once. Optionally it also creates a first registry.

    .venv/bin/python infra/bootstrap_admin.py --stage dev [--account ACCOUNT] [--registry NAME]

Then: `portside auth init --api-url <RegistryUrl> --token <printed token>`; create further
(narrower) tokens with `portside token create` and revoke this one when done.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import STAGES

from chalicelib.adapters.dynamo import DynamoMetadataStore
from chalicelib.adapters.dynamo_models import bind_table
from chalicelib.registry.auth import SCOPES, hash_token, new_token_secret
from chalicelib.registry.records import RegistryRecord, TokenRecord


def bootstrap(table: str, region: str, account: str, registry: str | None) -> str:
    bind_table(table, region)
    store = DynamoMetadataStore()
    now = datetime.now(UTC)
    secret = new_token_secret()
    token_hash = hash_token(secret)
    store.put_token(
        TokenRecord(
            token_id=token_hash[:16],
            token_hash=token_hash,
            account_id=account,
            name="bootstrap-admin",
            scopes=SCOPES,
            created_at=now,
        )
    )
    if registry and store.get_registry(registry) is None:
        store.put_registry(RegistryRecord(name=registry, account_id=account, created_at=now))
    return secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, choices=sorted(STAGES))
    parser.add_argument("--account", default="default", help="Portside account of the token")
    parser.add_argument("--registry", help="also create this registry (professional plan)")
    parser.add_argument(
        "--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    args = parser.parse_args()
    stage = STAGES[args.stage]
    region = stage.region or args.region
    if not region:
        parser.error("no region: set AWS_REGION or pass --region")
    secret = bootstrap(stage.table, region, args.account, args.registry)
    print(f"admin token for account {args.account!r} on table {stage.table} (shown once):")
    print(secret)


if __name__ == "__main__":
    main()
