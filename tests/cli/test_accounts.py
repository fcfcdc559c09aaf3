"""portside account: the operator onboards a tenant (its admin token printed once), lists,
suspends, resumes and deletes it, and reads the audit trail; a tenant's token cannot."""

from __future__ import annotations

from tests.support.server import RunningRegistry

from .conftest import Cli, unique_name
from .oci import pull_manifest, push_image, try_start_upload


def _secret(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.startswith("    pst_")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_an_operator_onboards_suspends_resumes_and_deletes_a_tenant(
    cli: Cli, server: RunningRegistry
) -> None:
    name = unique_name("tenant")
    created = cli("account", "create", name, "--contact", "ops@t.test", "--meta", "crm=7").ok()
    assert "only this once" in created.stdout and "crm=7" in created.stdout
    secret = _secret(created.stdout)
    account_id = next(
        a["id"] for a in cli("account", "list", "-o", "json").ok().json() if a["name"] == name
    )

    tenant = cli.with_env(PORTSIDE_TOKEN=secret)
    registry = unique_name("treg")
    tenant("registry", "create", registry, "--tier", "basic").ok()
    push_image(server.url, registry, "app", "v1", (secret, secret))
    shown = cli("account", "get", account_id, "-o", "json").ok().json()
    assert shown["registry_count"] == 1 and shown["storage_usage_bytes"] > 0

    assert "Suspended account" in cli("account", "suspend", account_id).ok().stdout
    pulled = pull_manifest(server.url, registry, "app", "v1", (secret, secret))
    assert pulled.status_code == 403 and "suspended" in pulled.text
    assert "suspended" in tenant("registry", "list").failed()

    cli("account", "resume", account_id).ok()
    assert pull_manifest(server.url, registry, "app", "v1", (secret, secret)).status_code == 200

    cli("account", "delete", account_id, "--force").ok()
    assert try_start_upload(server.url, registry, "app", (secret, secret)).status_code == 401
    audit = cli("account", "audit", account_id, "-o", "json").ok().json()
    assert [e["action"] for e in audit] == ["create", "suspend", "resume", "delete"]
    assert "delete" in cli("account", "audit", account_id).ok().stdout


def test_a_tenant_token_cannot_manage_accounts(cli: Cli) -> None:
    secret = _secret(cli("account", "create", unique_name("tenant")).ok().stdout)
    line = cli.with_env(PORTSIDE_TOKEN=secret)("account", "list").failed()
    assert "operator" in line


def test_deleting_asks_for_confirmation(cli: Cli) -> None:
    created = cli("account", "create", unique_name("tenant"), "-o", "json").ok().json()
    account_id = created["account"]["id"]
    refused = cli("account", "delete", account_id, input="n\n")
    assert refused.exit_code == 1
    assert cli("account", "get", account_id, "-o", "json").ok().json()["status"] == "active"
