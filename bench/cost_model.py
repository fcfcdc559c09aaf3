"""Generate ``docs/cost.md``: dollars per workload from measured AWS calls and list prices.

    python -m bench.cost_model            # reads bench/results/calls.json, writes docs/cost.md
    python -m bench.cost_model --calls bench/results/<timestamp>.json

Inputs: the call counts ``bench.calls`` measured (``make bench`` refreshes
``bench/results/calls.json``) and the dated price tables below. Prices are public list
prices for us-east-1 as the author knew them on ``PRICES_DATE``: re-check them before
quoting a figure; change them here, not in the generated file.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
MIB = 1024**2

PRICES_DATE = "2025-06 (list prices, us-east-1; re-check before use)"
AWS = {
    "apigw_rest_per_million": 3.50,  # REST API, first 333 million requests/month
    "lambda_per_million_requests": 0.20,
    "lambda_gb_second": 0.0000166667,  # x86; arm64 is 0.0000133334
    "dynamodb_per_million_rru": 0.125,  # on-demand read request units (since Nov 2024)
    "dynamodb_per_million_wru": 0.625,  # on-demand write request units (since Nov 2024)
    "s3_put_per_thousand": 0.005,  # PUT, COPY, POST, LIST (UploadPart, multipart create/complete)
    "s3_get_per_thousand": 0.0004,  # GET, HEAD and all other requests
    "s3_storage_gib_month": 0.023,  # S3 Standard, first 50 TB
    "transfer_out_gib": 0.09,  # data transfer out to the internet, first 10 TB/month
    "fargate_vcpu_hour": 0.04048,
    "fargate_gib_hour": 0.004445,
    "stepfunctions_per_thousand_transitions": 0.025,  # Standard workflows
}
ECR = {
    "storage_gib_month": 0.10,
    "transfer_out_gib": 0.09,  # same as EC2 data transfer out; no per-request charge
}
# DigitalOcean Container Registry plans (same as Portside's plan table)
DIGITALOCEAN: dict[str, Any] = {
    "plans": [
        # slug, $/month, storage GiB, outbound transfer GiB included
        ("starter", 0.0, 0.5, 0.5),
        ("basic", 5.0, 5.0, 5.0),
        ("professional", 20.0, 100.0, 100.0),
    ],
    "storage_overage_gib_month": 0.02,
    "transfer_overage_gib": 0.01,
}

# Assumptions of the model (not measured here).
LAMBDA_MEMORY_GB = 1.0
LAMBDA_BASE_MS = 15.0  # warm handler time outside AWS calls
DYNAMODB_CALL_MS = 6.0  # in-region round trip
S3_CALL_MS = 15.0
UPLOAD_HOST = (0.25, 0.5)  # Fargate vCPU, GiB: the streaming upload host, always on
TYPICAL_LAYERS = 5
TYPICAL_BYTES = 50 * MIB
S3_GET_CLASS = {"GetObject", "HeadObject", "HeadBucket"}
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}
HOURS_PER_MONTH = 730
# The collection's state machine: each step is a Task (the step Lambda) and a Choice, with
# the Wait and the Pass around them: about this many state transitions per step.
GC_TRANSITIONS_PER_STEP = 4
GC_BLOBS = 1_000_000


@dataclass
class Cost:
    """Dollars of one workload, by line item."""

    items: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.items.values())


def load_calls(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if "operations" not in data and "calls" in data:
        data = data["calls"]
    return dict(data)


def op_requests(ops: dict[str, Any], names: list[str]) -> dict[str, float]:
    """Sum of HTTP requests, Lambda ms, RRU, WRU, S3 PUT- and GET-class calls of ``names``."""
    out = {"http": 0.0, "lambda_ms": 0.0, "rru": 0.0, "wru": 0.0, "s3_put": 0.0, "s3_get": 0.0}
    for name in names:
        op = ops[name]
        out["http"] += op["http_requests"]
        ddb = op["dynamodb_reads"] + op["dynamodb_writes"]
        out["lambda_ms"] += LAMBDA_BASE_MS * op["http_requests"] + DYNAMODB_CALL_MS * ddb
        out["lambda_ms"] += S3_CALL_MS * op["s3_calls"]
        out["rru"] += op["rru"]
        out["wru"] += op["wru"]
        for key, count in op["breakdown"].items():
            service, operation = key.split(".", 1)
            if service != "s3" or operation in S3_FREE:
                continue
            out["s3_get" if operation in S3_GET_CLASS else "s3_put"] += count
    return out


def portside_cost(req: dict[str, float], per: float, extra: dict[str, float]) -> Cost:
    items = {
        "API Gateway requests": req["http"] * AWS["apigw_rest_per_million"] / 1e6,
        "Lambda requests": req["http"] * AWS["lambda_per_million_requests"] / 1e6,
        "Lambda compute": req["lambda_ms"] / 1000 * LAMBDA_MEMORY_GB * AWS["lambda_gb_second"],
        "DynamoDB reads": req["rru"] * AWS["dynamodb_per_million_rru"] / 1e6,
        "DynamoDB writes": req["wru"] * AWS["dynamodb_per_million_wru"] / 1e6,
        "S3 requests": req["s3_put"] * AWS["s3_put_per_thousand"] / 1000
        + req["s3_get"] * AWS["s3_get_per_thousand"] / 1000,
        **extra,
    }
    return Cost({k: v * per for k, v in items.items()})


def gc_operation(ops: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The measured whole collection (``bench.calls``: ``gc_<N>_blobs``), if any."""
    for name, op in ops.items():
        if name.startswith("gc_") and "gc" in op:
            return name, op
    return None


def gc_steps(gc: dict[str, Any], scale: float) -> dict[str, int]:
    """Steps of each phase of a collection ``scale`` times the measured one. A step reads
    pages of ``page`` items and stops after the page that takes it past ``budget`` items,
    so a phase over n items takes about n / budget steps (at least one)."""
    budget = int(gc["budget"])

    def steps(items: float) -> int:
        return max(1, math.ceil(items * scale / budget))

    return {
        "begin": 1,
        "wait": 1,
        # Scanning counts a repository and each of its manifests as one item.
        "scan": steps(gc["repositories_scanned"] + gc["manifests_scanned"]),
        "blobs": steps(gc["blobs_scanned"]),
        # The link sweep reads every repository's links (one per blob, the deleted ones'
        # before it deletes them) plus the repositories themselves.
        "links": steps(gc["blobs_scanned"] + gc["repositories_scanned"]),
        "objects": steps(gc["objects_scanned"]),
        "uploads": 1,
    }


def gc_cost(name: str, op: dict[str, Any]) -> tuple[Cost, dict[str, int], float]:
    """A collection of GC_BLOBS blobs, scaled linearly from the measured one (same mix of
    kept and deleted blobs, images and repositories): cost, steps by phase, scale."""
    gc = op["gc"]
    scale = GC_BLOBS / gc["blobs"]
    req = op_requests({name: op}, [name])
    steps = gc_steps(gc, scale)
    total_steps = sum(steps.values())
    ddb = op["dynamodb_reads"] + op["dynamodb_writes"]
    lambda_ms = LAMBDA_BASE_MS * total_steps + scale * (
        DYNAMODB_CALL_MS * ddb + S3_CALL_MS * op["s3_calls"]
    )
    items = {
        "Step Functions transitions": total_steps
        * GC_TRANSITIONS_PER_STEP
        * AWS["stepfunctions_per_thousand_transitions"]
        / 1000,
        "Lambda requests": total_steps * AWS["lambda_per_million_requests"] / 1e6,
        "Lambda compute": lambda_ms / 1000 * LAMBDA_MEMORY_GB * AWS["lambda_gb_second"],
        "DynamoDB reads": scale * req["rru"] * AWS["dynamodb_per_million_rru"] / 1e6,
        "DynamoDB writes": scale * req["wru"] * AWS["dynamodb_per_million_wru"] / 1e6,
        "S3 requests": scale
        * (
            req["s3_put"] * AWS["s3_put_per_thousand"] / 1000
            + req["s3_get"] * AWS["s3_get_per_thousand"] / 1000
        ),
    }
    return Cost(items), steps, scale


def gc_section(ops: dict[str, Any]) -> list[str]:
    found = gc_operation(ops)
    if found is None:
        return []
    name, op = found
    gc = op["gc"]
    cost, steps, scale = gc_cost(name, op)
    measured_steps = gc_steps(gc, 1.0)
    total_steps = sum(steps.values())
    kept, deleted = gc["blobs_kept"], gc["blobs_deleted"]
    per_thousand = ", ".join(f"{k} x{v * 1000 / gc['blobs']:g}" for k, v in op["breakdown"].items())
    lines = [
        "## Garbage collection, per million blobs",
        "",
        f"Measured (`{name}`): {op['description']}. Counted from its start to its last "
        f"step: {op['total_calls']} AWS calls in all; per 1,000 blobs: "
        f"{per_thousand}.",
        "",
        f"Scaled linearly to {GC_BLOBS:,} blobs with the same mix ({kept * 100 // gc['blobs']}"
        f"% kept, {deleted * 100 // gc['blobs']}% deleted, images of "
        f"{gc['blobs'] // max(1, gc['manifests_scanned'])} blobs). A step reads pages of "
        f"{gc['page']} items and ends after the page that takes it past {gc['budget']:,} "
        "items; the measured collection took "
        + ", ".join(f"{k} {v}" for k, v in measured_steps.items())
        + f" steps ({gc['steps']} in all); a collection of {GC_BLOBS:,} blobs takes about "
        + ", ".join(f"{k} {v}" for k, v in steps.items())
        + f": {total_steps:,} steps, each a Lambda invocation of the step handler and about "
        f"{GC_TRANSITIONS_PER_STEP} Step Functions state transitions (Task, Choice and the "
        "Wait/Pass around them).",
        "",
        "| line item | per million blobs |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {money(v)} |" for k, v in cost.items.items()]
    lines += [
        f"| **total** | **{money(cost.total)}** |",
        "",
        "Deleted blobs dominate: each costs a conditional transaction of four items (its "
        "record, its key index entry, the registry's and the collection's counters: 8 WRU), "
        "the DeleteItem of its link and an S3 DeleteObject (free); a kept blob costs its "
        "mark (a batch write) and its share of the listing pages. S3 LIST requests "
        "(ListObjectsV2, ListMultipartUploads) are charged at the PUT rate. Scaling is linear from "
        f"{gc['blobs']} blobs (x{scale:g}), so the repositories grow with the blobs. The "
        "measured collection reads each listing in one short page, so scaling it counts more "
        "listing calls (DynamoDB Query, S3 LIST) than full pages need; on the other hand a "
        "Query is counted at one 4 KB page (0.5 RRU, as everywhere in this model) although a "
        "full page of 500 records reads about 25. Both touch only the small reads and S3 "
        "lines.",
        "",
    ]
    return lines


def do_monthly(storage_gib: float, transfer_gib: float) -> tuple[str, float]:
    """The cheapest DigitalOcean plan bill for a month of this usage."""
    best: tuple[str, float] | None = None
    for slug, price, storage, transfer in DIGITALOCEAN["plans"]:
        if slug == "starter" and (storage_gib > storage or transfer_gib > transfer):
            continue  # no overage on starter
        bill = (
            price
            + max(0.0, storage_gib - storage) * DIGITALOCEAN["storage_overage_gib_month"]
            + max(0.0, transfer_gib - transfer) * DIGITALOCEAN["transfer_overage_gib"]
        )
        if best is None or bill < best[1]:
            best = (slug, bill)
    assert best is not None
    return best


def money(x: float) -> str:
    if x >= 1 or x == 0:
        return f"${x:,.2f}"
    return f"${x:.3f}" if x >= 0.01 else f"${x:.4f}"


def render(calls: dict[str, Any], source: str) -> str:
    ops = calls["operations"]
    layers = TYPICAL_LAYERS
    pull_ops = ["token_issue_again", f"pull_{layers}"]
    push_ops = (
        ["token_issue_again"]
        + ["blob_head"] * (layers + 1)
        + ["blob_push"]
        + ["blob_push_10mib"] * layers
        + ["manifest_push"]
    )
    pull_req = op_requests(ops, pull_ops)
    pull_req["http"] += 1  # the first, unauthenticated GET /v2/: a 401, no AWS call
    pull_req["lambda_ms"] += LAMBDA_BASE_MS
    pull_req["s3_get"] += layers + 1  # the presigned GETs the clients follow
    pull_gib = TYPICAL_BYTES / GIB
    million = 1e6
    pull = portside_cost(
        pull_req, million, {"Data transfer out": pull_gib * AWS["transfer_out_gib"]}
    )
    push_req = op_requests(ops, push_ops)
    push_req["http"] += 1  # the 401 ping
    push_req["lambda_ms"] += LAMBDA_BASE_MS
    push = portside_cost(push_req, million, {})
    upload_host_month = HOURS_PER_MONTH * (
        UPLOAD_HOST[0] * AWS["fargate_vcpu_hour"] + UPLOAD_HOST[1] * AWS["fargate_gib_hour"]
    )
    ecr_pull = million * pull_gib * ECR["transfer_out_gib"]
    do_slug, do_pull = do_monthly(TYPICAL_BYTES / GIB, million * pull_gib)
    do_storage_slug, do_storage_100 = do_monthly(100, 0)
    lines = [
        "# What Portside costs to run",
        "",
        "<!-- Generated by `python -m bench.cost_model` from measured AWS call counts; "
        "do not edit by hand. -->",
        "",
        f"Call counts: `{source}` (commit {calls.get('commit', '?')}, measured "
        f"{calls.get('measured_at', '?')} by `bench/calls.py`: {calls.get('method', '')}).",
        f"Prices: {PRICES_DATE}. They are list prices kept in `bench/cost_model.py`; "
        "free tiers, volume discounts and savings plans are ignored.",
        "",
        "## Workloads",
        "",
        f"- **Pull** of a typical image: {layers} layers, {TYPICAL_BYTES // MIB} MiB in all, "
        "as docker does it: `GET /v2/` (401), a JWT from `/v2/token`, the manifest by "
        f"tag, the config and {layers} layer GETs (each a 307 to a presigned S3 GET). "
        f"{int(pull_req['http'])} API requests; measured operations: "
        + ", ".join(f"`{n}`" for n in dict.fromkeys(pull_ops))
        + ".",
        "- **Push** of the same image: `GET /v2/` (401), a JWT, a HEAD of each of the "
        f"{layers + 1} blobs, "
        f"the config (`blob_push`, 64 KiB) and {layers} layers of 10 MiB (`blob_push_10mib`: "
        "POST, PATCH, PUT through the S3 multipart path) and the manifest (`manifest_push`). "
        f"{int(push_req['http'])} requests. Upload bodies go to the upload host (a container, "
        "costed apart below); they are counted here as API Gateway + Lambda requests as well, "
        "an upper bound for the Lambda-served small bodies.",
        "- **Storage**: one GiB of (deduplicated) blobs for a month.",
        "",
        "Model: each HTTP request is one API Gateway REST request and one Lambda invocation of "
        f"{LAMBDA_MEMORY_GB:g} GB lasting {LAMBDA_BASE_MS:g} ms plus {DYNAMODB_CALL_MS:g} ms per "
        f"DynamoDB call and {S3_CALL_MS:g} ms per S3 call (assumed in-region latencies; cold "
        "starts ignored). DynamoDB request units as `bench/awscalls.py` counts them (items <= "
        "4 KB read, <= 1 KB written; transactions at twice the units). S3 DELETE and "
        "AbortMultipartUpload are free; GET/HEAD at the GET rate; the rest at the PUT rate.",
        "",
        "## Per million pulls (typical image)",
        "",
        "| line item | Portside |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {money(v)} |" for k, v in pull.items.items()]
    transfer = pull.items["Data transfer out"]
    lines += [
        f"| **total** | **{money(pull.total)}** |",
        f"| of which not data transfer | {money(pull.total - transfer)} |",
        "",
        "| registry | per million pulls | how |",
        "|---|---:|---|",
        f"| Portside on AWS | {money(pull.total)} | above |",
        f"| AWS ECR | {money(ecr_pull)} | no request charge; data transfer out "
        f"{money(ECR['transfer_out_gib'])}/GiB |",
        f"| DigitalOcean Container Registry | {money(do_pull)} | `{do_slug}` plan plus "
        f"{money(DIGITALOCEAN['transfer_overage_gib'])}/GiB outbound transfer beyond the "
        "plan's allowance, one month |",
        "",
        "Pulls to compute in the same AWS region cost no data transfer: then Portside's "
        f"figure is the request part, {money(pull.total - transfer)}, and ECR's is $0.",
        "",
        "## Per GiB-month stored",
        "",
        "| registry | per GiB-month | note |",
        "|---|---:|---|",
        f"| Portside on AWS | {money(AWS['s3_storage_gib_month'])} | S3 Standard; metadata "
        "items in DynamoDB are negligible |",
        f"| AWS ECR | {money(ECR['storage_gib_month'])} | |",
        f"| DigitalOcean | {money(DIGITALOCEAN['storage_overage_gib_month'])} beyond the plan | "
        f"100 GiB for a month: {money(do_storage_100)} (cheapest: `{do_storage_slug}` plan "
        "plus overage) |",
        "",
        "## Per million pushes (typical image)",
        "",
        "| line item | Portside |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {money(v)} |" for k, v in push.items.items()]
    lines += [
        f"| **total** | **{money(push.total)}** |",
        "",
        f"Plus the upload host, always on: Fargate {UPLOAD_HOST[0]:g} vCPU / "
        f"{UPLOAD_HOST[1]:g} GiB, {money(upload_host_month)} a month. AWS ECR and "
        "DigitalOcean charge nothing per push (storage accrues as above; DigitalOcean's plans "
        "cap repositories and storage).",
        "",
        *gc_section(ops),
        "## Calls behind the figures",
        "",
        "| operation | HTTP requests | DynamoDB reads | DynamoDB writes | S3 calls | RRU | WRU "
        "| calls |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    gc_op = gc_operation(ops)
    for name in dict.fromkeys(pull_ops + push_ops + ([gc_op[0]] if gc_op else [])):
        op = ops[name]
        detail = ", ".join(f"{k} x{v}" for k, v in op["breakdown"].items())
        lines.append(
            f"| `{name}` | {op['http_requests']} | {op['dynamodb_reads']} | "
            f"{op['dynamodb_writes']} | {op['s3_calls']} | {op['rru']:g} | {op['wru']:g} | "
            f"{detail} |"
        )
    lines += [
        "",
        "## Prices used",
        "",
        f"As of {PRICES_DATE}.",
        "",
        "| item | price |",
        "|---|---:|",
    ]
    lines += [f"| AWS {k} | {v:g} |" for k, v in AWS.items()]
    lines += [f"| ECR {k} | {v:g} |" for k, v in ECR.items()]
    lines += [
        f"| DigitalOcean {slug} | ${price:g}/month, {storage:g} GiB storage, {transfer:g} GiB "
        "transfer |"
        for slug, price, storage, transfer in DIGITALOCEAN["plans"]
    ]
    lines += [
        f"| DigitalOcean storage overage | ${DIGITALOCEAN['storage_overage_gib_month']:g}"
        "/GiB-month |",
        f"| DigitalOcean transfer overage | ${DIGITALOCEAN['transfer_overage_gib']:g}/GiB |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", default=str(ROOT / "bench" / "results" / "calls.json"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "cost.md"))
    args = parser.parse_args(argv)
    path = Path(args.calls)
    calls = load_calls(path)
    try:
        source = str(path.resolve().relative_to(ROOT))
    except ValueError:
        source = str(path)
    Path(args.out).write_text(render(calls, source))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
