"""The Lambda deployment zip stays small, leaves out what the runtime provides, and imports
on its own: the handler module is imported from the unpacked zip plus only the libraries the
Lambda runtime ships (boto3, botocore, s3transfer, jmespath, urllib3, dateutil, six)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from portside_infra.lambda_bundle import RUNTIME_PROVIDED, VENDOR_REQUIREMENTS

from .conftest import Synth

ZIP_BUDGET_BYTES = 5 * 1024 * 1024
IMPORT_BUDGET_SECONDS = 3.0  # cold import of app.py; measured about 0.3-0.5 s here
REPO = Path(__file__).resolve().parents[2]
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")


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
    runtime = tmp_path / "runtime"  # stands in for the Lambda runtime's /var/runtime
    runtime.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for module in RUNTIME_MODULES:
        source = site / module if (site / module).exists() else site / f"{module}.py"
        (runtime / source.name).symlink_to(source)
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
    config_path = REPO / "infra" / "build" / "lambda-Portside-dev" / ".chalice" / "config.json"
    stage = json.loads(config_path.read_text())["stages"]["Portside-dev"]
    assert stage["autogen_policy"] is False and stage["manage_iam_role"] is False
    assert (config_path.parent.parent / "requirements.txt").read_text().startswith("#")
