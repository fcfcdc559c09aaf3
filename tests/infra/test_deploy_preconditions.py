"""What is checked before a deploy creates anything: stage settings (example placeholders,
domain consistency) and the Makefile's approval setting."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from stages import STAGES, Alarms, Domain, StageSettingError, check_deployable

from .conftest import INFRA, REPO


def _infra_app() -> ModuleType:
    # infra/app.py, not the Chalice app.py at the repository root.
    spec = importlib.util.spec_from_file_location("portside_infra_app", INFRA / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deploying_the_example_prod_stage_names_every_placeholder() -> None:
    with pytest.raises(StageSettingError) as refused:
        check_deployable(STAGES["prod"])
    message = str(refused.value)
    for setting in ("domain.name", "domain.hosted_zone_id", "domain.hosted_zone_name"):
        assert setting in message
    assert "alarms.email = 'ops@example.com'" in message


def test_a_stage_with_real_settings_is_deployable() -> None:
    real = dataclasses.replace(
        STAGES["prod"],
        domain=Domain(
            name="registry.acme.io", hosted_zone_id="Z0123456789ABC", hosted_zone_name="acme.io"
        ),
        alarms=Alarms(email="ops@acme.io"),
    )
    check_deployable(real)
    check_deployable(STAGES["dev"])  # no domain, no e-mail: nothing to replace


def test_cdk_app_refuses_a_placeholder_stage_before_synthesising_it() -> None:
    app = _infra_app()
    with pytest.raises(SystemExit) as refused:
        app.selected_stages("prod")
    assert "domain.name = 'registry.example.com'" in str(refused.value)
    assert [s.name for s in app.selected_stages("dev")] == ["dev"]
    # Synthesising every stage (make synth, the tests) keeps the examples.
    assert [s.name for s in app.selected_stages(None)] == list(STAGES)
    with pytest.raises(SystemExit, match="unknown stage 'qa'"):
        app.selected_stages("qa")


@pytest.mark.parametrize(
    ("domain", "complaint"),
    [
        (
            {"name": "r.acme.io", "certificate_arn": "arn:aws:acm:eu-west-1:1:certificate/x"},
            "us-east-1",
        ),
        ({"name": "r.acme.io"}, "certificate_arn"),
        ({"name": "r.acme.io", "hosted_zone_id": "Z1"}, "hosted_zone_name"),
        (
            {"name": "r.acme.io", "hosted_zone_id": "Z1", "hosted_zone_name": "other.io"},
            "not inside",
        ),
    ],
)
def test_inconsistent_domain_settings_fail_with_the_setting_named(
    domain: dict[str, str], complaint: str
) -> None:
    with pytest.raises(StageSettingError, match=complaint):
        Domain(**domain)


def _make_dry_run(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", "--always-make", "deploy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_deploy_approval_is_a_make_variable_that_ci_can_turn_off() -> None:
    assert "--require-approval broadening" in _make_dry_run("STAGE=dev")
    ci = _make_dry_run("STAGE=dev", "APPROVAL=never")
    assert "--require-approval never" in ci and "broadening" not in ci
    assert Path(REPO / "Makefile").read_text().count("APPROVAL ?= broadening") == 1
