"""The Portside CDK app: one stack per stage of stages.py.

cdk synth                 # every stage (what `make synth` and the tests check)
cdk deploy -c stage=dev   # one stage (what `make deploy STAGE=dev` runs)

A stage named with `-c stage=` must be deployable: one that still carries the example
domain, zone or e-mail of stages.py is refused here, before anything is synthesised (and so
before `cdk bootstrap` or `cdk deploy` creates anything). Synthesising every stage (no
`-c stage=`) keeps the examples, which the offline checks use.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import aws_cdk as cdk

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The repository root, after everything else: the stack reads portside_edge/ (the edge
# function's gateway-response table) whether or not the project is pip-installed.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from portside_infra.stack import PortsideStack
from stages import STAGES, Stage, StageSettingError, check_deployable


def selected_stages(selected: str | None) -> list[Stage]:
    """The stages to synthesise: the one named (checked for deployment), else all."""
    if not selected:
        return list(STAGES.values())
    if selected not in STAGES:
        raise SystemExit(f"unknown stage {selected!r}; stages.py defines {', '.join(STAGES)}")
    stage = STAGES[selected]
    try:
        check_deployable(stage)
    except StageSettingError as exc:
        raise SystemExit(f"error: {exc}") from None
    return [stage]


def main() -> None:
    # chalice.cdk packages into ./chalice.out/<random>/ on every synth: start clean.
    shutil.rmtree(Path.cwd() / "chalice.out", ignore_errors=True)
    app = cdk.App()
    for stage in selected_stages(app.node.try_get_context("stage")):
        env = cdk.Environment(
            account=stage.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=stage.region or os.environ.get("CDK_DEFAULT_REGION"),
        )
        PortsideStack(
            app, stage, env=env, description=f"Portside container registry, stage {stage.name}"
        )
    app.synth()


if __name__ == "__main__":
    main()
