"""Builds the source directory that `chalice package` (through `chalice.cdk.Chalice`) turns
into the Lambda deployment zip, keeping the zip small.

`chalice package` would pip-install requirements.txt with its dependencies, and PynamoDB
pulls in botocore: an 18 MB zip of libraries the Lambda runtime already has. So the staging
directory holds:

- ``app.py`` and ``chalicelib/`` (the Lambda's code and nothing else);
- ``vendor/``: ``pip install --no-deps`` of infra/lambda-vendor.txt (pure-Python wheels),
  which chalice copies into the zip as they are;
- an empty ``requirements.txt``, so chalice installs nothing by itself;
- ``.chalice/config.json``: the repository's ``.chalice/config.json`` (the one place for
  per-stage and per-function Lambda settings) as ``chalice package`` must see it for one
  stage, plus the settings the stack owns (see ``LambdaSettings.packaged``).

The Lambda runtime provides boto3, botocore, s3transfer, jmespath, urllib3, python-dateutil
and six; ``chalice package`` adds Chalice's own runtime module (``chalice/app.py``).
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalice.config import Config

INFRA_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = INFRA_DIR.parent
# Outside the repository on purpose: the upload host's image asset fingerprints the
# repository root (CDK walks it, .dockerignore notwithstanding), and a staging directory
# created or removed under it by another synth running at the same time breaks that walk.
BUILD_DIR = Path(
    os.environ.get("PORTSIDE_INFRA_BUILD_DIR")
    or Path(tempfile.gettempdir()) / "portside-infra-build"
)
VENDOR_REQUIREMENTS = INFRA_DIR / "lambda-vendor.txt"
CHALICE_CONFIG = REPO_ROOT / ".chalice" / "config.json"
# Lambda keeps this many concurrent executions unreserved in every account and region
# ("leave at least 100 simultaneous executions unreserved", PutFunctionConcurrency).
UNRESERVED_MINIMUM = 100

# chalicelib/ is exactly what the Lambda runs (the CLI, the local runtime and the upload
# host live in portside/), so it is copied whole.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")

# What the Lambda runtime (Python 3.11+) ships; never bundled.
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
)
LAMBDA_PYTHON = "3.11"


def vendor_pins() -> list[str]:
    lines = VENDOR_REQUIREMENTS.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def vendor_dir() -> Path:
    """Install the vendored libraries once per set of pins (cached in BUILD_DIR)."""
    pins = vendor_pins()
    key = hashlib.sha256("\n".join([LAMBDA_PYTHON, *pins]).encode()).hexdigest()[:12]
    target = BUILD_DIR / f"vendor-{key}"
    if (target / ".complete").exists():
        return target
    # A scratch directory of this process's own, renamed into place when complete: two
    # synths running at once never see each other's half-installed files.
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"vendor-{key}.", dir=BUILD_DIR))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-compile",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            LAMBDA_PYTHON,
            "--platform",
            "manylinux2014_aarch64",
            "--platform",
            "manylinux2014_x86_64",
            "--target",
            str(scratch),
            *pins,
        ],
        check=True,
    )
    shutil.rmtree(scratch / "bin", ignore_errors=True)
    for cache in scratch.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    (scratch / ".complete").write_text("\n".join(pins) + "\n")
    try:
        scratch.rename(target)
    except OSError:  # another process finished first: theirs is the same
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def build_source_dir(name: str, chalice_config: dict[str, Any]) -> Path:
    """A fresh staging directory for `chalice package`, of this process alone (under
    BUILD_DIR, removed when the process exits: the zip chalice builds from it is what
    deploys)."""
    vendor = vendor_dir()
    out = Path(tempfile.mkdtemp(prefix=f"lambda-{name}.", dir=BUILD_DIR))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    shutil.copy2(REPO_ROOT / "app.py", out / "app.py")
    shutil.copytree(REPO_ROOT / "chalicelib", out / "chalicelib", ignore=IGNORED)
    shutil.copytree(vendor, out / "vendor", ignore=shutil.ignore_patterns(".complete"))
    (out / "requirements.txt").write_text(
        "# Empty on purpose: libraries come from vendor/ (see infra/lambda-vendor.txt).\n"
    )
    (out / ".chalice").mkdir()
    (out / ".chalice" / "config.json").write_text(json.dumps(chalice_config, indent=2) + "\n")
    return out


@dataclass(frozen=True)
class LambdaSettings:
    """``.chalice/config.json`` as one Portside stage sees it.

    Lookups go through Chalice's own ``Config``, so precedence is exactly what ``chalice
    package`` applies: ``stages.<stage>.lambda_functions.<function>``, then
    ``stages.<stage>``, then ``lambda_functions.<function>``, then the top level.
    """

    stage: str
    raw: dict[str, Any]

    @classmethod
    def load(cls, stage: str, path: Path = CHALICE_CONFIG) -> LambdaSettings:
        raw: dict[str, Any] = json.loads(path.read_text())
        if stage not in raw.get("stages", {}):
            raise ValueError(
                f"{path}: no stages.{stage}; every stage of infra/stages.py needs an entry "
                "there (it may be empty)"
            )
        settings = cls(stage, raw)
        settings._refuse_stack_owned()
        return settings

    @property
    def injected_environment(self) -> list[str]:
        """The environment variables the file says the stack injects."""
        names: list[str] = self.raw["injected_by_stack"]["environment_variables"]
        return names

    def function(self, name: str) -> Config:
        return Config(chalice_stage=self.stage, function_name=name, config_from_disk=self.raw)

    def environment(self, function: str) -> dict[str, str]:
        return dict(self.function(function).environment_variables)

    def log_retention_days(self, function: str) -> int:
        days = self.function(function).log_retention_in_days
        if days is None:
            raise ValueError(f".chalice/config.json: no log_retention_in_days for {function}")
        return int(days)

    @property
    def api_gateway_stage(self) -> str:
        return str(self.function("api_handler").api_gateway_stage)

    def reserved_concurrency(self, functions: list[str]) -> dict[str, int]:
        reserved = {name: self.function(name).reserved_concurrency for name in functions}
        return {name: int(value) for name, value in reserved.items() if value is not None}

    def check_reserved_concurrency(
        self, functions: list[str], account_unreserved_concurrency: int | None
    ) -> None:
        """Refuse, at synth time, reservations the account cannot grant: CloudFormation
        would otherwise fail half-way through the deploy (a new account has 10 concurrent
        executions in all, and AWS keeps 100 unreserved, so it can reserve nothing)."""
        reserved = self.reserved_concurrency(functions)
        if not reserved:
            return
        total = sum(reserved.values())
        listed = ", ".join(f"{name}={value}" for name, value in sorted(reserved.items()))
        where = f".chalice/config.json reserves concurrency for stage {self.stage} ({listed})"
        if account_unreserved_concurrency is None:
            raise ValueError(
                f"{where}, but infra/stages.py does not set account_unreserved_concurrency "
                "for it. Set it to `aws lambda get-account-settings --query "
                "AccountLimit.UnreservedConcurrentExecutions` of the target account and "
                "region, or remove reserved_concurrency (docs/deploy.md, 'Reserved "
                "concurrency')."
            )
        allowed = max(account_unreserved_concurrency - UNRESERVED_MINIMUM, 0)
        if total > allowed:
            raise ValueError(
                f"{where}: {total} in all, but account_unreserved_concurrency is "
                f"{account_unreserved_concurrency} and AWS keeps {UNRESERVED_MINIMUM} "
                f"unreserved, so at most {allowed} can be reserved. Ask for a higher "
                "'Concurrent executions' quota (Service Quotas) or remove "
                "reserved_concurrency."
            )

    def packaged(self, chalice_stage: str, stack_settings: dict[str, Any]) -> dict[str, Any]:
        """The config.json ``chalice package`` reads in the staging directory.

        ``chalice.cdk`` names the Chalice stage after the CDK stack (``Portside-<name>``),
        so this stage's entry is renamed to that and the other stages are dropped.
        ``stack_settings`` (roles, the table name) join the stage's entry. Every
        ``log_retention_in_days`` is removed: with it, Chalice would add a
        ``/aws/lambda/...`` log group of its own, while the stack sends each function's
        logs to ``/portside/<stage>/<function>`` (the group its role may write to) and
        applies the retention there.
        """
        config = copy.deepcopy(self.raw)
        del config["injected_by_stack"]
        own = config.pop("stages")[self.stage]
        stage = {**own, **stack_settings}
        env = {
            **own.get("environment_variables", {}),
            **stack_settings.get("environment_variables", {}),
        }
        if env:
            stage["environment_variables"] = env
        config["stages"] = {chalice_stage: stage}
        _drop_key(config, "log_retention_in_days")
        return config

    def _refuse_stack_owned(self) -> None:
        owned = self.raw["injected_by_stack"]
        for scope, block in _scopes(self.raw):
            for key in owned["settings"]:
                if key in block:
                    raise ValueError(
                        f".chalice/config.json sets {key} in {scope}: the stack owns it"
                    )
            for name in owned["environment_variables"]:
                if name in block.get("environment_variables", {}):
                    raise ValueError(
                        f".chalice/config.json sets {name} in {scope}: the stack injects it "
                        "(it names a deployed resource)"
                    )


def _scopes(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every block of a Chalice config that may hold settings, with its path."""
    scopes: list[tuple[str, dict[str, Any]]] = [("the top level", raw)]
    for name, block in raw.get("lambda_functions", {}).items():
        scopes.append((f"lambda_functions.{name}", block))
    for stage, stage_block in raw.get("stages", {}).items():
        scopes.append((f"stages.{stage}", stage_block))
        for name, block in stage_block.get("lambda_functions", {}).items():
            scopes.append((f"stages.{stage}.lambda_functions.{name}", block))
    return scopes


def _drop_key(raw: dict[str, Any], key: str) -> None:
    for _scope, block in _scopes(raw):
        block.pop(key, None)
