"""The Portside CDK app: one stack per stage of stages.py.

cdk synth                 # every stage (what `make synth` and the tests check)
cdk deploy -c stage=dev   # one stage (what `make deploy STAGE=dev` runs)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import aws_cdk as cdk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from portside_infra.stack import PortsideStack
from stages import STAGES


def main() -> None:
    # chalice.cdk packages into ./chalice.out/<random>/ on every synth: start clean.
    shutil.rmtree(Path.cwd() / "chalice.out", ignore_errors=True)
    app = cdk.App()
    selected = app.node.try_get_context("stage")
    names = [selected] if selected else list(STAGES)
    for name in names:
        if name not in STAGES:
            raise SystemExit(f"unknown stage {name!r}; stages.py defines {', '.join(STAGES)}")
        stage = STAGES[name]
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
