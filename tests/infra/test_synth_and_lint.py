"""`cdk synth` with the real CLI, offline, then cfn-lint (with the SAM translator) on
every template: zero errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from stages import STAGES

from .conftest import REPO


def test_cli_synthesises_every_stage(cli_out: Path) -> None:
    templates = sorted(p.name for p in cli_out.glob("*.template.json"))
    assert templates == sorted(f"{s.stack_name}.template.json" for s in STAGES.values())
    for stage in STAGES.values():
        body = json.loads((cli_out / f"{stage.stack_name}.template.json").read_text())
        assert body["Transform"] == "AWS::Serverless-2016-10-31"  # chalice's SAM template


CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def _cfn_lint(*paths: str) -> subprocess.CompletedProcess[str]:
    # The console script: `python -m cfnlint` has no __main__ in current cfn-lint, and a
    # failure to start must not read as "no errors".
    return subprocess.run(
        [str(CFN_LINT), "--format", "parseable", *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cfn_lint_finds_no_errors(cli_out: Path) -> None:
    paths = [str(p) for p in sorted(cli_out.glob("*.template.json"))]
    result = _cfn_lint(*paths)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if ":E" in line.split(" ")[0] or ":E" in line]
    # cfn-lint exit codes are a bitmask: 2 = errors, 4 = warnings, 8 = informational; 1 is
    # a failure to run.
    assert result.returncode in (0, 4, 8, 12), result.stdout + result.stderr
    assert not errors, "\n".join(lines) + result.stderr
    # The only warnings left are redundant DependsOn that CDK's own constructs add.
    assert all(":W3005:" in line for line in lines), "\n".join(lines)


def test_cfn_lint_really_lints(tmp_path: Path) -> None:
    """The check above would pass vacuously if the linter did not run: it reports an error
    in a template that has one."""
    broken = tmp_path / "broken.template.json"
    broken.write_text(
        json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"Nope": 1}}}})
    )
    result = _cfn_lint(str(broken))
    assert result.returncode & 2, result.stdout + result.stderr
    assert ":E" in result.stdout


FIRST_PARTY = ("chalicelib", "portside", "portside_edge")


def _first_party_imports(entry: str) -> set[str]:
    """The repository files `entry` imports, transitively (first-party modules only)."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        relative = todo.pop()
        if relative in seen:
            continue
        seen.add(relative)
        tree = ast.parse((REPO / relative).read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] not in FIRST_PARTY:
                    continue
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # each package's __init__ runs too
                    base = REPO.joinpath(*parts[:i])
                    for candidate in (base / "__init__.py", base.with_suffix(".py")):
                        if candidate.is_file():
                            todo.append(str(candidate.relative_to(REPO)))
    return seen


def test_docker_asset_is_the_upload_host_and_everything_it_imports(cli_out: Path) -> None:
    """.dockerignore keeps the venv, node_modules and cdk.out out of the image asset, and
    lets in every module `python -m portside.upload_host` imports."""
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
        "portside",
        "portside_edge",
    }
    needed = _first_party_imports("portside/upload_host.py")
    assert "portside_edge/gateway_responses.py" in needed
    missing = sorted(path for path in needed if not (context / path).is_file())
    assert not missing, f"the image would lack {missing}"
    dockerfile = (context / "Dockerfile.upload-host").read_text()
    for package in FIRST_PARTY:
        assert f"COPY {package}" in dockerfile, package
    size = sum(p.stat().st_size for p in context.rglob("*") if p.is_file())
    assert size < 2_000_000, size
