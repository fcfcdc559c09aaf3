"""Cold start: import time of the Lambda handler module and size of the deployment package.

Import time: a fresh interpreter imports ``app`` (the Chalice entry point) and reports the
import's duration (``time.perf_counter`` around ``import app``); the median of several runs,
plus the slowest modules from ``-X importtime``. Interpreter start-up is reported apart.

Package: there is no packaging step in the repository yet, so the zip is built here as
Lambda would get it: ``app.py`` and ``chalicelib/`` (without ``portside/local``, the local
runtime), Chalice's runtime module (``chalice/__init__.py``, ``chalice/app.py``, what
``chalice package`` vendors) and the files of the installed ``pynamodb``,
``aws-lambda-powertools``, ``PyJWT`` distributions and their non-AWS dependencies, taken from
the virtualenv's package records; boto3/botocore/s3transfer/jmespath/urllib3/dateutil/six
are left out (the Lambda Python runtime provides them).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from .peers import ROOT

RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
}
PACKAGED = ["pynamodb", "aws-lambda-powertools", "PyJWT", "typing_extensions"]
PROBE = (
    "import time; t = time.perf_counter(); import app; "
    "print(round((time.perf_counter() - t) * 1000, 2))"
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTSIDE_"))}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def import_time(runs: int = 7) -> dict[str, Any]:
    imports, walls = [], []
    for _ in range(runs):
        started = _now()
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        walls.append((_now() - started) * 1000)
        imports.append(float(out.stdout.strip().splitlines()[-1]))
    bare = []
    for _ in range(runs):
        started = _now()
        subprocess.run([sys.executable, "-c", "pass"], env=_env(), timeout=60, check=True)
        bare.append((_now() - started) * 1000)
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import app"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stderr
    # Top-level packages (no dot in the name) by their cumulative import time.
    cumulative: dict[str, int] = {}
    for line in trace.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        name = fields[2].strip()
        if "." not in name:
            cumulative[name] = max(cumulative.get(name, 0), int(fields[1]))
    top = [(us, name) for name, us in cumulative.items()]
    top.sort(reverse=True)
    return {
        "import_ms": {
            "median": statistics.median(imports),
            "min": min(imports),
            "max": max(imports),
        },
        "process_ms": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
        "interpreter_ms": statistics.median(bare),
        "runs": runs,
        "top_level_imports_ms": {name: round(us / 1000, 1) for us, name in top[:10]},
    }


def _now() -> float:
    import time

    return time.perf_counter()


def _dist_files(name: str, seen: set[str]) -> list[Path]:
    key = name.lower().replace("_", "-")
    if key in seen or key in RUNTIME_PROVIDED:
        return []
    seen.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return []
    files = [
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if ".dist-info" not in str(f)
        and not str(f).endswith(".pyc")
        and "__pycache__" not in str(f)
        and not str(f).startswith("..")
    ]
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        dep = req.split(";")[0].split("[")[0]
        for sep in "<>=!~ (":
            dep = dep.split(sep)[0]
        files += _dist_files(dep.strip(), seen)
    return files


def package(out: Path) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    entries: list[tuple[Path, str]] = [(ROOT / "app.py", "app.py")]
    for path in sorted((ROOT / "chalicelib").rglob("*")):
        rel = path.relative_to(ROOT)
        if (
            path.is_file()
            and "__pycache__" not in rel.parts
            and rel.parts[:2] != ("chalicelib", "local")
        ):
            entries.append((path, str(rel)))
    import chalice

    chalice_dir = Path(chalice.__file__).parent
    for name in ("__init__.py", "app.py"):
        entries.append((chalice_dir / name, f"chalice/{name}"))
    seen: set[str] = set()
    deps: list[Path] = []
    for name in PACKAGED:
        deps += _dist_files(name, seen)
    site = Path(md.distribution("pynamodb").locate_file(""))
    for path in deps:
        if path.is_file():
            entries.append((path, str(path.relative_to(site))))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path, arc in entries:
            zf.write(path, arc)
    return {
        "zip_bytes": out.stat().st_size,
        "zip_mb": round(out.stat().st_size / 1e6, 2),
        "files": len(entries),
        "distributions": sorted(seen),
        "how": "zip -9 of app.py, chalicelib/ (minus portside/local), chalice/{__init__,app}.py "
        "and the installed files of the distributions listed (boto3/botocore and their "
        "dependencies left out: the Lambda runtime provides them)",
    }
