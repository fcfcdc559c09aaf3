"""`cdk synth` with the real CLI, offline, then cfn-lint (with the SAM translator) on
every template: zero errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stages import STAGES


def test_cli_synthesises_every_stage(cli_out: Path) -> None:
    templates = sorted(p.name for p in cli_out.glob("*.template.json"))
    assert templates == sorted(f"{s.stack_name}.template.json" for s in STAGES.values())
    for stage in STAGES.values():
        body = json.loads((cli_out / f"{stage.stack_name}.template.json").read_text())
        assert body["Transform"] == "AWS::Serverless-2016-10-31"  # chalice's SAM template


def test_cfn_lint_finds_no_errors(cli_out: Path) -> None:
    paths = [str(p) for p in sorted(cli_out.glob("*.template.json"))]
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "parseable", *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if ":E" in line.split(" ")[0] or ":E" in line]
    # cfn-lint exit codes are a bitmask: 2 = errors, 4 = warnings, 8 = informational.
    assert result.returncode & 2 == 0 and not errors, "\n".join(lines) + result.stderr
    # The only warnings left are redundant DependsOn that CDK's own constructs add.
    assert all(":W3005:" in line for line in lines), "\n".join(lines)


def test_docker_asset_is_only_the_upload_host_context(cli_out: Path) -> None:
    """.dockerignore keeps the venv, node_modules and cdk.out out of the image asset."""
    manifest = json.loads((cli_out / "Portside-dev.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    context = cli_out / image["source"]["directory"]
    names = {p.relative_to(context).parts[0] for p in context.rglob("*")}
    assert names == {
        ".dockerignore",
        "Dockerfile.upload-host",
        "requirements.txt",
        "infra",
        "chalicelib",
    }
    size = sum(p.stat().st_size for p in context.rglob("*") if p.is_file())
    assert size < 2_000_000, size
