"""registry create/get/list/delete/validate-name/options and subscriptions."""

from __future__ import annotations

from tests.support.server import RunningRegistry

from .conftest import Cli, push, unique_name

MIB = 1024 * 1024
GIB = 1024 * MIB


def test_create_get_and_list(cli: Cli) -> None:
    name = unique_name()
    created = cli("registry", "create", name, "--tier", "basic", "-o", "json").ok().json()
    assert created["name"] == name
    assert created["subscription"]["tier"]["slug"] == "basic"
    assert created["repository_count"] == 0

    got = cli("-o", "json", "registry", "get", name).ok().json()
    assert got["name"] == name and got["subscription"]["tier"]["slug"] == "basic"

    table = cli("registry", "get", name).ok().stdout
    assert name in table and "basic" in table and "$5.00/month" in table
    assert "0 of 5" in table  # repositories against the tier's allowance

    listed = cli("registry", "list", "-o", "json").ok().json()
    assert name in {item["name"] for item in listed}
    table = cli("registry", "list").ok().stdout
    assert "NAME" in table and "TIER" in table
    row = next(line for line in table.splitlines() if name in line)
    assert "basic" in row


def test_create_table_output_and_duplicate_name(cli: Cli) -> None:
    name = unique_name()
    table = cli("registry", "create", name, "--tier", "professional").ok().stdout
    assert name in table and "professional" in table.lower()
    line = cli("registry", "create", name, "--tier", "basic").failed()
    assert line.startswith("Error: ")


def test_create_refuses_an_invalid_name_with_the_api_message(cli: Cli) -> None:
    cli("registry", "create", "Not_Valid", "--tier", "basic").failed()


def test_validate_name(cli: Cli, server: RunningRegistry) -> None:
    free = unique_name()
    out = cli("registry", "validate-name", free).ok()
    assert free in out.stdout and "available" in out.stdout
    cli("registry", "validate-name", server.registry).failed()  # taken
    cli("registry", "validate-name", "bad-").failed()  # invalid


def test_options_lists_every_tier_with_price_and_allowances(cli: Cli) -> None:
    tiers = cli("registry", "options", "-o", "json").ok().json()
    by_slug = {tier["slug"]: tier for tier in tiers}
    assert set(by_slug) == {"starter", "basic", "professional"}
    assert by_slug["starter"]["monthly_price_in_cents"] == 0
    assert by_slug["basic"]["monthly_price_in_cents"] == 500
    assert by_slug["professional"]["monthly_price_in_cents"] == 2000
    assert by_slug["starter"]["included_storage_bytes"] == 500 * MIB
    assert all(tier["eligible"] for tier in tiers)  # a new, empty registry fits all

    table = cli("registry", "options").ok().stdout
    for header in ("TIER", "PRICE/MONTH", "REPOSITORIES", "STORAGE", "TRANSFER", "ELIGIBLE"):
        assert header in table
    starter = next(line for line in table.splitlines() if line.lstrip().startswith("starter"))
    assert "$0.00" in starter and "500 MiB" in starter and "hard cap" in starter
    assert "not allowed" in starter
    professional = next(line for line in table.splitlines() if "professional" in line)
    assert "$20.00" in professional and "unlimited" in professional and "100 GiB" in professional


def test_subscription_get_and_upgrade(cli: Cli) -> None:
    name = unique_name()
    cli("registry", "create", name, "--tier", "basic").ok()
    sub = cli("registry", "subscription", "get", name, "-o", "json").ok().json()
    assert sub["tier"]["slug"] == "basic"
    table = cli("registry", "subscription", "get", name).ok().stdout
    assert "$5.00/month" in table and "5 GiB" in table

    updated = cli(
        "registry", "subscription", "update", name, "--tier", "professional", "-o", "json"
    )
    assert updated.ok().json()["tier"]["slug"] == "professional"
    assert (
        cli("registry", "get", name, "-o", "json").ok().json()["subscription"]["tier"]["slug"]
        == "professional"
    )


def test_a_refused_downgrade_prints_the_reasons(cli: Cli, server: RunningRegistry) -> None:
    name = unique_name()
    cli("registry", "create", name, "--tier", "basic").ok()
    push(server, name, "one", "v1")
    push(server, name, "team/two", "v1")

    options = cli("registry", "options", "--registry", name, "-o", "json").ok().json()
    starter = next(tier for tier in options if tier["slug"] == "starter")
    assert starter["eligible"] is False
    assert "OverRepositoryLimit" in starter["eligibility_reasons"]
    table = cli("registry", "options", "--registry", name).ok().stdout
    starter_row = next(line for line in table.splitlines() if line.lstrip().startswith("starter"))
    assert "no" in starter_row.split() and "repositories" in starter_row

    line = cli("registry", "subscription", "update", name, "--tier", "starter").failed()
    assert "2 repositories" in line and "starter includes 1" in line
    # nothing changed
    sub = cli("registry", "subscription", "get", name, "-o", "json").ok().json()
    assert sub["tier"]["slug"] == "basic"


def test_delete_asks_for_confirmation(cli: Cli) -> None:
    name = unique_name()
    cli("registry", "create", name, "--tier", "basic").ok()

    refused = cli("registry", "delete", name, input="n\n")
    assert refused.exit_code == 1
    assert "Aborted" in refused.stderr
    cli("registry", "get", name).ok()

    no_answer = cli("registry", "delete", name)  # stdin closed: no confirmation
    assert no_answer.exit_code == 1
    cli("registry", "get", name).ok()

    cli("registry", "delete", name, input="y\n").ok()
    cli("registry", "get", name).failed()
    assert name not in {r["name"] for r in cli("registry", "list", "-o", "json").ok().json()}


def test_delete_with_force(cli: Cli) -> None:
    name = unique_name()
    cli("registry", "create", name, "--tier", "basic").ok()
    out = cli("registry", "delete", name, "--force").ok()
    assert name in out.stdout
    cli("registry", "get", name).failed()
