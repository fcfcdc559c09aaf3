"""The upload host image is not built here (no docker engine can pull base images): these
check the basics of Dockerfile.upload-host and .dockerignore instead."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile.upload-host").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_base_image_is_pinned_and_from_a_public_registry() -> None:
    (base,) = [rest for word, rest in instructions() if word == "FROM"]
    assert ":" in base and not base.endswith(":latest")
    assert base.startswith("public.ecr.aws/")  # no Docker Hub rate limits in CodeBuild/CI


def test_runs_the_upload_host_as_a_non_root_user() -> None:
    steps = instructions()
    words = [w for w, _ in steps]
    assert words[-1] == "CMD"
    assert json.loads(steps[-1][1]) == ["python", "-m", "portside.upload_host"]
    users = [rest for word, rest in steps if word == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert words.index("USER") < words.index("CMD")


def test_exposes_the_port_it_listens_on() -> None:
    steps = instructions()
    assert ("EXPOSE", "8080") in steps
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "PORT=8080" in env
    assert any(word == "HEALTHCHECK" and "/healthz" in rest for word, rest in steps)


def test_installs_pinned_requirements_and_copies_only_what_exists() -> None:
    for word, rest in instructions():
        if word == "COPY":
            source = rest.split()[0]
            assert (REPO / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"
    for path in ("requirements.txt", "infra/upload-host/requirements.txt"):
        for line in (REPO / path).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                assert "==" in line, f"{path}: {line} is not pinned"


def test_dockerignore_keeps_heavy_directories_out() -> None:
    for path in (
        ".venv/bin/python",
        "infra/node_modules/x",
        "infra/cdk.out/x",
        ".git/HEAD",
        "tests/unit/x.py",
        "chalicelib/__pycache__/x.pyc",
    ):
        assert ignored(path), path
    for path in ("portside/upload_host.py", "requirements.txt", "Dockerfile.upload-host"):
        assert not ignored(path), path


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a directory match covers its files."""
    result = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = prefixes
        if pattern.startswith("**/"):
            candidates = [
                "/".join(parts[i:j])
                for i in range(len(parts))
                for j in range(i + 1, len(parts) + 1)
            ]
            pattern = pattern[3:]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            result = not negate
    return result
