"""AWS calls per registry operation: the targets of issue 5, enforced.

The counts come from ``bench.calls`` (the same botocore hook and flows as ``make bench``),
run once per session in a fresh interpreter: the registry runs in-process there, on moto,
untouched by whatever other tests did to this process's caches and environment.

Targets (after authentication; the clients authenticate with a Bearer JWT):
- a pull of an image with L layers (manifest GET by tag, config GET, L layer GETs):
  at most 2 + L DynamoDB reads and no writes;
- a blob push (POST, PATCH, PUT): at most 6 AWS calls;
- a manifest push: one batch read and one transaction;
- a tag list: one query.
A target not met yet is an ``xfail(strict=True)`` carrying the measured count: when the
code meets it, the test XPASSes, fails, and the marker must go. Independently, no operation
may cost more calls than it did when this file was written (``BASELINE``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Measured after the push-path optimisations (2026-11-28), then after blobs began to stay
# where their upload wrote them (2026-12-02): the 10 MiB push lost its CopyObject and the
# DeleteObject of the source; pushing a blob the registry already holds costs one read
# (the link must name the existing copy's key) and the DeleteObject of the redundant copy.
# Completing a multipart upload claims the session first (one conditional write), so that
# a concurrent completion or PATCH cannot replace a part (issue 9).
# (total AWS calls, DynamoDB reads, DynamoDB writes, S3 calls).
BASELINE: dict[str, tuple[int, int, int, int]] = {
    "token_issue": (3, 2, 1, 0),
    "token_issue_again": (2, 2, 0, 0),
    "ping_basic": (1, 1, 0, 0),
    "ping_bearer": (0, 0, 0, 0),
    "blob_push_first": (7, 2, 4, 1),
    "blob_push": (6, 2, 3, 1),
    "blob_push_monolithic": (4, 1, 2, 1),
    "blob_push_10mib": (13, 2, 4, 7),
    "blob_commit_10mib": (7, 1, 2, 4),
    "blob_commit_1gib": (4, 1, 2, 1),
    "blob_push_existing": (9, 3, 4, 2),
    "blob_push_basic": (7, 3, 3, 1),
    "manifest_push": (2, 1, 1, 0),
    "manifest_push_again": (2, 1, 1, 0),
    "manifest_push_new_tag": (2, 1, 1, 0),
    "manifest_head_tag": (1, 1, 0, 0),
    "manifest_get_tag": (1, 1, 0, 0),
    "manifest_get_digest": (1, 1, 0, 0),
    "blob_head": (1, 1, 0, 0),
    "blob_get": (1, 1, 0, 0),
    "tag_list": (1, 1, 0, 0),
    "pull_1": (3, 3, 0, 0),
    "pull_5": (7, 7, 0, 0),
    "pull_10": (12, 12, 0, 0),
    "pull_5_basic": (14, 14, 0, 0),
}


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("perf") / "calls.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTSIDE_"))}
    env["POWERTOOLS_METRICS_DISABLED"] = "true"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.calls", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"bench.calls failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    data: dict[str, Any] = json.loads(out.read_text())
    return dict(data["operations"])


def _calls(op: dict[str, Any]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in op["breakdown"].items()) or "none"


@pytest.mark.parametrize("layers", [1, 5, 10])
def test_pull_costs_at_most_2_plus_l_reads_and_no_writes(ops: dict[str, Any], layers: int) -> None:
    op = ops[f"pull_{layers}"]
    assert op["http_requests"] == 2 + layers  # manifest, config, layers
    assert op["dynamodb_writes"] == 0, _calls(op)
    assert op["dynamodb_reads"] <= 2 + layers, _calls(op)
    assert op["s3_calls"] == 0, _calls(op)  # blob bytes come from presigned URLs


def test_blob_push_costs_at_most_6_calls(ops: dict[str, Any]) -> None:
    op = ops["blob_push"]
    assert op["http_requests"] == 3
    assert op["total_calls"] <= 6, _calls(op)


def test_monolithic_blob_push_costs_at_most_6_calls(ops: dict[str, Any]) -> None:
    op = ops["blob_push_monolithic"]
    assert op["total_calls"] <= 6, _calls(op)


@pytest.mark.parametrize("name", ["manifest_push", "manifest_push_again", "manifest_push_new_tag"])
def test_manifest_push_is_one_batch_read_and_one_transaction(
    ops: dict[str, Any], name: str
) -> None:
    op = ops[name]
    assert op["breakdown"] == {"dynamodb.BatchGetItem": 1, "dynamodb.TransactWriteItems": 1}, (
        _calls(op)
    )


def test_final_put_of_a_1_gib_blob_copies_and_rereads_nothing(ops: dict[str, Any]) -> None:
    """Committing a blob leaves its bytes where the upload put them: the final PUT of a
    1 GiB layer costs at most what a 10 MiB one does, and never a copy or a read of S3."""
    large, small = ops["blob_commit_1gib"], ops["blob_commit_10mib"]
    assert large["http_requests"] == 1
    for op in (large, small):
        assert not {"s3.CopyObject", "s3.UploadPartCopy"} & set(op["breakdown"]), _calls(op)
    assert "s3.GetObject" not in large["breakdown"], _calls(large)  # hashed while streaming
    assert large["total_calls"] <= small["total_calls"], (_calls(large), _calls(small))


def test_tag_list_is_one_query(ops: dict[str, Any]) -> None:
    op = ops["tag_list"]
    assert op["breakdown"] == {"dynamodb.Query": 1}, _calls(op)


def test_bearer_requests_need_no_database_read_for_auth(ops: dict[str, Any]) -> None:
    assert ops["ping_bearer"]["total_calls"] == 0, _calls(ops["ping_bearer"])


@pytest.mark.parametrize("name", sorted(BASELINE))
def test_no_operation_costs_more_calls_than_before(ops: dict[str, Any], name: str) -> None:
    total, reads, writes, s3 = BASELINE[name]
    op = ops[name]
    measured = (op["total_calls"], op["dynamodb_reads"], op["dynamodb_writes"], op["s3_calls"])
    assert all(m <= b for m, b in zip(measured, (total, reads, writes, s3), strict=True)), (
        f"{name}: (calls, reads, writes, s3) grew from {BASELINE[name]} to {measured}: "
        f"{_calls(op)}. If the growth is intended, update BASELINE (and docs/cost.md: "
        "python -m bench.cost_model)."
    )
