"""The Lambda deployment zip stays small, leaves out what the runtime provides, and imports
on its own: the handler module is imported from the unpacked zip plus only the libraries the
Lambda runtime ships (boto3, botocore, s3transfer, jmespath, urllib3, dateutil, six)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from portside_infra.lambda_bundle import (
    CHALICE_CONFIG,
    RUNTIME_PROVIDED,
    VENDOR_REQUIREMENTS,
    LambdaSettings,
)
from portside_infra.stack import LOGICAL_IDS, METRICS_NAMESPACE, METRICS_SERVICE
from stages import STAGES

from .conftest import RUNTIME_MODULES, Synth, lambda_runtime_dir

ZIP_BUDGET_BYTES = 5 * 1024 * 1024
IMPORT_BUDGET_SECONDS = 3.0  # cold import of app.py; measured about 0.3-0.5 s here
REPO = Path(__file__).resolve().parents[2]


def test_zip_size_and_contents(synths: dict[str, Synth]) -> None:
    zip_path = synths["dev"].zip_path
    size = zip_path.stat().st_size
    print(f"\nLambda deployment.zip: {size / 1024 / 1024:.2f} MiB (budget 5 MiB)")
    assert size < ZIP_BUDGET_BYTES
    with zipfile.ZipFile(zip_path) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    for module in RUNTIME_MODULES:
        assert module not in tops, f"{module} is provided by the Lambda runtime"
    assert not any(t.startswith(("moto", "cheroot", "click", "rich", "requests")) for t in tops)
    assert {"app.py", "chalice", "chalicelib", "pynamodb", "aws_lambda_powertools", "jwt"} <= tops
    assert "local" not in {
        n.split("/")[1]
        for n in archive.namelist()
        if n.startswith("chalicelib/") and n.count("/") > 1
    }


def test_handler_imports_with_only_the_runtime_libraries(
    synths: dict[str, Synth], tmp_path: Path
) -> None:
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(synths["dev"].zip_path) as archive:
        archive.extractall(unpacked)
    runtime = lambda_runtime_dir(tmp_path / "runtime")  # stands in for /var/runtime
    probe = (
        "import sys, time, json\n"
        "t = time.perf_counter()\n"
        "import app\n"
        "elapsed = time.perf_counter() - t\n"
        "handlers = [app.app.__class__.__name__]\n"
        "from chalicelib.events import handlers as h\n"
        "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
        "outside = sorted({f for f in files if 'site-packages' in f})\n"
        "print(json.dumps({'seconds': elapsed, 'app': handlers, 'outside': outside}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=unpacked,
        env={
            "PYTHONPATH": f"{unpacked}:{runtime}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PORTSIDE_SIGNING_KEY": "x",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\nimport app (cold, no .pyc): {report['seconds'] * 1000:.0f} ms")
    assert report["app"] == ["Chalice"]
    assert report["outside"] == [], "modules came from the venv, not the zip"
    assert report["seconds"] < IMPORT_BUDGET_SECONDS


def test_vendor_pins_match_the_app_requirements() -> None:
    app = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            app[name.lower()] = version
    for line in VENDOR_REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            assert name.lower() not in RUNTIME_PROVIDED
            if name.lower() in app:
                assert app[name.lower()] == version, name
    vendored = {
        line.split("==")[0].lower()
        for line in VENDOR_REQUIREMENTS.read_text().split()
        if "==" in line
    }
    assert set(app) - {"chalice"} <= vendored  # chalice package adds chalice/app.py itself


def test_chalice_config_turns_off_autogen_policy(synths: dict[str, Synth]) -> None:
    config_path = Path(synths["dev"].stack.chalice.source_dir) / ".chalice" / "config.json"
    stage = json.loads(config_path.read_text())["stages"]["Portside-dev"]
    assert stage["autogen_policy"] is False and stage["manage_iam_role"] is False
    assert (config_path.parent.parent / "requirements.txt").read_text().startswith("#")


# ------------------------------------------------- .chalice/config.json drives the Lambdas


def _root_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(CHALICE_CONFIG.read_text())
    return config


def _function(synth: Synth, logical: str) -> dict[str, Any]:
    props: dict[str, Any] = synth.resources[logical]["Properties"]
    return props


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_lambda_settings_come_from_the_chalice_config(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    settings = LambdaSettings.load(stage)
    for name, logical in LOGICAL_IDS.items():
        function = _function(synth, logical)
        config = settings.function(name)
        assert function["MemorySize"] == config.lambda_memory_size, name
        assert function["Timeout"] == config.lambda_timeout, name
        assert function["Architectures"] == [config.lambda_architecture], name
        assert function.get("ReservedConcurrentExecutions") == config.reserved_concurrency
        (group,) = [
            r["Properties"]
            for r in synth.of_type("AWS::Logs::LogGroup").values()
            if r["Properties"].get("LogGroupName") == f"/portside/{stage}/{name}"
        ]
        assert group["RetentionInDays"] == config.log_retention_in_days, name
        env = function["Environment"]["Variables"]
        for key, value in settings.environment(name).items():
            assert env[key] == value, (name, key)
        # Whatever the file does not set, the stack injects, and the file says so.
        assert set(env) - set(settings.environment(name)) <= set(settings.injected_environment)
    # Chalice would add /aws/lambda/... groups of its own for log_retention_in_days.
    assert not [
        r
        for r in synth.of_type("AWS::Logs::LogGroup").values()
        if "/aws/lambda/" in json.dumps(r["Properties"].get("LogGroupName"))
    ]


def test_stages_differ_where_the_chalice_config_says() -> None:
    dev, prod = LambdaSettings.load("dev"), LambdaSettings.load("prod")
    assert dev.environment("api_handler")["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert prod.environment("api_handler")["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert dev.log_retention_days("purge-deleted-registries") == 14
    assert prod.log_retention_days("purge-deleted-registries") == 90
    # The alarms read Powertools' metrics under the names the functions are given.
    api_env = prod.environment("api_handler")
    assert api_env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
    assert api_env["POWERTOOLS_SERVICE_NAME"] == METRICS_SERVICE


def test_every_stage_has_an_entry_in_the_chalice_config() -> None:
    assert set(_root_config()["stages"]) == set(STAGES)
    with pytest.raises(ValueError, match=r"no stages\.staging"):
        LambdaSettings.load("staging")


@pytest.mark.parametrize(
    ("scope", "block"),
    [
        (["environment_variables"], {"PORTSIDE_BUCKET": "mine"}),
        (["stages", "prod", "lambda_functions", "api_handler"], {"iam_role_arn": "arn:x"}),
    ],
)
def test_the_chalice_config_may_not_set_what_the_stack_owns(
    tmp_path: Path, scope: list[str], block: dict[str, Any]
) -> None:
    raw = _root_config()
    target = raw
    for key in scope:
        target = target.setdefault(key, {})
    target.update(block)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=next(iter(block))):
        LambdaSettings.load("prod", path)


def test_packaged_config_names_the_stack_stage_and_leaves_log_groups_to_the_stack() -> None:
    packaged = LambdaSettings.load("dev").packaged(
        "Portside-dev", {"iam_role_arn": "arn:role", "environment_variables": {"A": "1"}}
    )
    assert list(packaged["stages"]) == ["Portside-dev"]
    stage = packaged["stages"]["Portside-dev"]
    assert stage["environment_variables"] == {"POWERTOOLS_LOG_LEVEL": "DEBUG", "A": "1"}
    assert stage["iam_role_arn"] == "arn:role"
    assert "log_retention_in_days" not in json.dumps(packaged)
    assert "injected_by_stack" not in packaged
    # The repository's file is left as it is.
    assert "log_retention_in_days" in json.dumps(LambdaSettings.load("dev").raw)


def _reserving(stage: str, value: int) -> LambdaSettings:
    raw = _root_config()
    functions = raw["stages"][stage].setdefault("lambda_functions", {})
    functions["purge-deleted-registries"] = {"reserved_concurrency": value}
    functions["cleanup-expired-uploads"] = {"reserved_concurrency": value}
    return LambdaSettings(stage, raw)


def test_reserved_concurrency_needs_the_accounts_unreserved_concurrency() -> None:
    settings = _reserving("prod", 1)
    names = list(LOGICAL_IDS)
    with pytest.raises(ValueError, match="account_unreserved_concurrency") as refused:
        settings.check_reserved_concurrency(names, None)
    assert "purge-deleted-registries=1" in str(refused.value)
    # A new account: 10 in all, nothing can be reserved.
    with pytest.raises(ValueError, match="at most 0 can be reserved"):
        settings.check_reserved_concurrency(names, 10)
    with pytest.raises(ValueError, match="at most 1 can be reserved"):
        settings.check_reserved_concurrency(names, 101)
    settings.check_reserved_concurrency(names, 102)
    # Nothing reserved: nothing to state.
    LambdaSettings.load("prod").check_reserved_concurrency(names, None)


def test_synth_of_a_stage_that_reserves_beyond_the_account_fails_before_packaging(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import aws_cdk as cdk
    from portside_infra import cdk_context
    from portside_infra import stack as stack_module

    reserving = _reserving("lite", 1)
    monkeypatch.setattr(stack_module.LambdaSettings, "load", classmethod(lambda cls, s: reserving))

    def no_packaging(*args: Any, **kwargs: Any) -> Path:
        raise AssertionError("packaging must not start")

    monkeypatch.setattr(stack_module, "build_source_dir", no_packaging)
    app = cdk.App(outdir=str(tmp_path / "out"), context=cdk_context())
    stage = replace(STAGES["lite"], account_unreserved_concurrency=50)
    with pytest.raises(ValueError, match="account_unreserved_concurrency is 50"):
        stack_module.PortsideStack(
            app, stage, env=cdk.Environment(account="123456789012", region="us-east-1")
        )
