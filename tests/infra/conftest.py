"""Fixtures for the deployment checks: the CDK app synthesised in-process (for
aws_cdk.assertions) and with the real `cdk` CLI (for cfn-lint), both offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
ACCOUNT = "123456789012"
REGION = "us-east-1"
OFFLINE_ENV = {
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "CDK_DISABLE_VERSION_CHECK": "1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "CDK_DEFAULT_ACCOUNT": ACCOUNT,
    "CDK_DEFAULT_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}

pytest.importorskip("aws_cdk", reason="run `make infra-deps` (make test does)")
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))


class Synth:
    """One stage synthesised in-process: its template and the Chalice construct."""

    def __init__(self, stack: Any) -> None:
        import aws_cdk as cdk
        from aws_cdk.assertions import Template

        self.stack = stack
        self.template = Template.from_stack(stack)
        self.json: dict[str, Any] = self.template.to_json()
        self.resources: dict[str, Any] = self.json["Resources"]
        self.zip_path = Path(stack.chalice._sam_package_dir) / "deployment.zip"
        # The cloud assembly directory: CDK stages every asset there (asset.<hash>[.zip])
        # while the stack is built, so it holds exactly what `cdk deploy` uploads.
        self.outdir = Path(cdk.Stage.of(stack).outdir)  # type: ignore[union-attr]

    def of_type(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}


# What the Lambda runtime provides besides the standard library (its /var/runtime), as
# import names.
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")


def lambda_runtime_dir(target: Path) -> Path:
    """A directory holding only the libraries the Lambda runtime provides, linked from this
    venv (same versions as the runtime's, within what requirements pin)."""
    import sysconfig

    target.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for module in RUNTIME_MODULES:
        source = site / module if (site / module).exists() else site / f"{module}.py"
        (target / source.name).symlink_to(source)
    return target


@pytest.fixture(scope="session")
def synths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Synth]]:
    import aws_cdk as cdk
    from portside_infra import cdk_context
    from portside_infra.stack import PortsideStack
    from stages import STAGES

    # Synthesis changes the process environment (chalice loads the app with each stage's
    # environment variables): give it back afterwards, so later tests and the servers
    # they start do not inherit, say, PORTSIDE_TABLE=portside-prod.
    saved_env = dict(os.environ)
    os.environ.update(OFFLINE_ENV)
    work = tmp_path_factory.mktemp("cdk")
    cwd = os.getcwd()
    os.chdir(work)  # chalice.cdk packages into ./chalice.out/
    try:
        out = {}
        for name, stage in STAGES.items():
            app = cdk.App(outdir=str(work / f"{name}.out"), context=cdk_context())
            stack = PortsideStack(app, stage, env=cdk.Environment(account=ACCOUNT, region=REGION))
            out[name] = Synth(stack)
        os.environ.clear()
        os.environ.update({**saved_env, **OFFLINE_ENV})
        yield out
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture(scope="session")
def cli_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cdk synth` of every stage by the npm CLI that `make infra-deps` installs."""
    cdk_bin = INFRA / "node_modules" / ".bin" / "cdk"
    if not cdk_bin.exists():
        pytest.fail("infra/node_modules/.bin/cdk is missing: run `make infra-deps`")
    out = tmp_path_factory.mktemp("cdk-cli") / "cdk.out"
    env = {**os.environ, **OFFLINE_ENV}
    for key in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(key, None)
    result = subprocess.run(
        [
            str(cdk_bin),
            "synth",
            "--quiet",
            "--no-notices",
            "--no-version-reporting",
            "--app",
            f"{sys.executable} app.py",
            "-o",
            str(out),
        ],
        cwd=INFRA,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    shutil.rmtree(INFRA / "chalice.out", ignore_errors=True)
    return out
