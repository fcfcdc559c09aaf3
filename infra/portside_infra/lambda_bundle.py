"""Builds the source directory that `chalice package` (through `chalice.cdk.Chalice`) turns
into the Lambda deployment zip, keeping the zip small.

`chalice package` would pip-install requirements.txt with its dependencies, and PynamoDB
pulls in botocore: an 18 MB zip of libraries the Lambda runtime already has. So the staging
directory holds:

- ``app.py`` and ``chalicelib/`` (the Lambda's code and nothing else);
- ``vendor/``: ``pip install --no-deps`` of infra/lambda-vendor.txt (pure-Python wheels),
  which chalice copies into the zip as they are;
- an empty ``requirements.txt``, so chalice installs nothing by itself;
- ``.chalice/config.json`` with the stage settings (written by the stack).

The Lambda runtime provides boto3, botocore, s3transfer, jmespath, urllib3, python-dateutil
and six; ``chalice package`` adds Chalice's own runtime module (``chalice/app.py``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

INFRA_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = INFRA_DIR.parent
BUILD_DIR = INFRA_DIR / "build"
VENDOR_REQUIREMENTS = INFRA_DIR / "lambda-vendor.txt"

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
    """Install the vendored libraries once per set of pins (cached under infra/build/)."""
    pins = vendor_pins()
    key = hashlib.sha256("\n".join([LAMBDA_PYTHON, *pins]).encode()).hexdigest()[:12]
    target = BUILD_DIR / f"vendor-{key}"
    if (target / ".complete").exists():
        return target
    scratch = BUILD_DIR / f"vendor-{key}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
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
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target


def build_source_dir(name: str, chalice_config: dict[str, Any]) -> Path:
    """A fresh staging directory for `chalice package` (infra/build/lambda-<name>/)."""
    vendor = vendor_dir()
    out = BUILD_DIR / f"lambda-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "app.py", out / "app.py")
    shutil.copytree(REPO_ROOT / "chalicelib", out / "chalicelib", ignore=IGNORED)
    shutil.copytree(vendor, out / "vendor", ignore=shutil.ignore_patterns(".complete"))
    (out / "requirements.txt").write_text(
        "# Empty on purpose: libraries come from vendor/ (see infra/lambda-vendor.txt).\n"
    )
    (out / ".chalice").mkdir()
    (out / ".chalice" / "config.json").write_text(json.dumps(chalice_config, indent=2) + "\n")
    return out
