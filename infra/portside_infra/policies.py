"""Least-privilege IAM statements for each Portside workload.

Chalice's automatic policy cannot see what PynamoDB and the S3 adapter call, so it is off
(`autogen_policy: false`, `manage_iam_role: false`) and each function gets a role built
here with exactly the actions its code uses, on the table, its index, the bucket prefix
and the secret; never `*` for a data action.
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager

# PynamoDB reads, conditional writes, TransactWriteItems (which needs the per-item
# actions), BatchGetItem (probes) and BatchWriteItem; never Scan or table management.
API_TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
]
# Blobs, manifests and upload parts: GET (and presigning it), PUT, managed copy, delete,
# multipart. Blobs and manifests live under registries/, upload scratch under uploads/.
API_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def _index_arn(table: dynamodb.ITable) -> str:
    return f"{table.table_arn}/index/gsi1"


def _registries(bucket: s3.IBucket) -> str:
    return bucket.arn_for_objects("registries/*")


def _uploads(bucket: s3.IBucket) -> str:
    # Upload scratch (multipart data, tails) lives under uploads/<registry>/<id>/.
    return bucket.arn_for_objects("uploads/*")


def _list_registries(bucket: s3.IBucket) -> iam.PolicyStatement:
    # Without ListBucket, a HEAD/GET of a missing key answers 403 instead of 404.
    return iam.PolicyStatement(
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": ["registries/*", "uploads/*"]}},
    )


def api_statements(
    table: dynamodb.ITable, bucket: s3.IBucket, secret: secretsmanager.ISecret
) -> list[iam.PolicyStatement]:
    """The API function: the whole registry."""
    return [
        iam.PolicyStatement(
            actions=API_TABLE_ACTIONS, resources=[table.table_arn, _index_arn(table)]
        ),
        iam.PolicyStatement(
            actions=API_OBJECT_ACTIONS, resources=[_registries(bucket), _uploads(bucket)]
        ),
        _list_registries(bucket),
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn]
        ),
    ]


# What the upload host's requests call (portside/upload_host.py serves PATCH and PUT on an
# upload session, GET/DELETE of a session, and the monolithic POST ?digest=):
# - the token and registry reads of chalicelib/registry/auth.py (GetItem), the use stamp of
#   an API token (UpdateItem);
# - the session's item (GetItem, conditional PutItem as it advances, DeleteItem on cancel);
# - the commit transaction (blob record + storage counter + link, end of the session:
#   TransactWriteItems needs the per-item actions, ConditionCheckItem included).
# No Query (nothing on the upload path lists), no BatchGetItem, no BatchWriteItem, no index.
UPLOAD_TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
]
# Multipart (CreateMultipartUpload, UploadPart and CompleteMultipartUpload are s3:PutObject),
# reading back a tail or a chunked upload to hash it, deleting its own leftovers, aborting.
UPLOAD_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
]


def _blobs(bucket: s3.IBucket) -> str:
    # Committing copies nothing: a blob's bytes stay where its upload wrote them, under
    # registries/<registry>/blobs/ (chalicelib/registry/service.py, upload_data_prefix).
    return bucket.arn_for_objects("registries/*/blobs/*")


def upload_host_statements(
    table: dynamodb.ITable, bucket: s3.IBucket, secret: secretsmanager.ISecret
) -> list[iam.PolicyStatement]:
    """The upload host: upload bodies only. Nothing on manifests (registries/*/manifests/),
    no listing, no batch writes: a compromised task can write and delete blobs' bytes and
    upload scratch, not rewrite what a tag points to."""
    return [
        iam.PolicyStatement(actions=UPLOAD_TABLE_ACTIONS, resources=[table.table_arn]),
        iam.PolicyStatement(
            actions=UPLOAD_OBJECT_ACTIONS, resources=[_uploads(bucket), _blobs(bucket)]
        ),
        # Upload capabilities and registry JWTs are checked with the signing key.
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn]
        ),
    ]


def cleanup_statements(table: dynamodb.ITable, bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """cleanup-expired-uploads: query sessions by expiry (GSI1), abort their multipart
    uploads, delete their scratch objects and records. No secret: it signs nothing."""
    return [
        iam.PolicyStatement(actions=["dynamodb:Query"], resources=[_index_arn(table)]),
        iam.PolicyStatement(actions=["dynamodb:DeleteItem"], resources=[table.table_arn]),
        iam.PolicyStatement(
            actions=["s3:AbortMultipartUpload", "s3:DeleteObject"],
            resources=[_uploads(bucket)],
        ),
    ]


def purge_statements(table: dynamodb.ITable, bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """purge-deleted-registries: find deleting registries (GSI1), list and delete their
    objects, then their items. No secret, no reads of object content."""
    return [
        iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[table.table_arn, _index_arn(table)]
        ),
        iam.PolicyStatement(
            actions=["dynamodb:DeleteItem", "dynamodb:BatchWriteItem"],
            resources=[table.table_arn],
        ),
        iam.PolicyStatement(
            actions=["s3:DeleteObject"], resources=[_registries(bucket), _uploads(bucket)]
        ),
        _list_registries(bucket),
    ]


# ------------------------------------------------------------------ garbage collection
# The collector (chalicelib/registry/gc.py) reads and rewrites registry, manifest, tag, blob
# and session records (conditional writes and transactions), lists the registry's objects
# to find what no record names, reads manifests, deletes objects and aborts abandoned
# multipart uploads. It signs nothing: no secret.
GC_TABLE_ACTIONS = API_TABLE_ACTIONS
GC_OBJECT_ACTIONS = ["s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
# Recording a failure and releasing the registry: reads and conditional writes only.
GC_RECORD_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
]


def gc_step_statements(table: dynamodb.ITable, bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """gc-step: one bounded step of a collection."""
    return [
        iam.PolicyStatement(
            actions=GC_TABLE_ACTIONS, resources=[table.table_arn, _index_arn(table)]
        ),
        iam.PolicyStatement(
            actions=GC_OBJECT_ACTIONS, resources=[_registries(bucket), _uploads(bucket)]
        ),
        _list_registries(bucket),
        # Abandoned multipart uploads are found by listing them (a bucket-level action).
        iam.PolicyStatement(
            actions=["s3:ListBucketMultipartUploads"], resources=[bucket.bucket_arn]
        ),
    ]


def gc_failed_statements(table: dynamodb.ITable) -> list[iam.PolicyStatement]:
    """gc-failed: mark the collection failed and release the registry. No S3."""
    return [
        iam.PolicyStatement(
            actions=GC_RECORD_ACTIONS, resources=[table.table_arn, _index_arn(table)]
        ),
    ]


def scheduled_collections_statements(table: dynamodb.ITable) -> list[iam.PolicyStatement]:
    """scheduled-collections: find registries whose schedule is due and start their
    collections (records; the state machine grant is start_collections_statement)."""
    return [
        iam.PolicyStatement(
            actions=[*GC_RECORD_ACTIONS, "dynamodb:BatchGetItem"],
            resources=[table.table_arn, _index_arn(table)],
        ),
    ]


def reconcile_storage_statements(table: dynamodb.ITable) -> list[iam.PolicyStatement]:
    """reconcile-storage: list accounts and their registries (the index), read each
    registry's record and its blob and repository items (queries), and correct its counters
    (a conditional UpdateItem). No S3: it counts records, not objects."""
    return [
        iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            resources=[table.table_arn, _index_arn(table)],
        ),
    ]


def start_collections_statement(state_machine_arn: str) -> iam.PolicyStatement:
    """What starts a collection (the API, the schedule): executions of the collection
    state machine, nothing else of Step Functions."""
    return iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine_arn])


def gc_state_machine_statements(
    function_arns: list[str], state_machine_arn: str
) -> list[iam.PolicyStatement]:
    """The state machine: invoke its two functions, and start executions of itself
    (continue-as-new). Log delivery grants are CDK's own."""
    return [
        iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=function_arns),
        start_collections_statement(state_machine_arn),
    ]


# ------------------------------------------------------------------ quota threshold events
# quota-watch reads the table's stream (through its event source mapping, with the
# function's role) and publishes on one bus; it reads and writes no item.
STREAM_READ_ACTIONS = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
]


def put_events_statement(bus_arn: str) -> iam.PolicyStatement:
    """Publishing domain events (registry.alerts) on the bus, nothing else of EventBridge."""
    return iam.PolicyStatement(actions=["events:PutEvents"], resources=[bus_arn])


def quota_watch_statements(table: dynamodb.ITable, bus_arn: str) -> list[iam.PolicyStatement]:
    """quota-watch: the table's stream, and PutEvents on the bus."""
    stream = table.table_stream_arn
    if stream is None:
        raise ValueError("quota-watch needs the table's stream")
    return [
        iam.PolicyStatement(actions=STREAM_READ_ACTIONS, resources=[stream]),
        put_events_statement(bus_arn),
    ]


# ------------------------------------------------------------------ usage and billing
# registry.billing: snapshots read accounts and registries (the index) and write one
# snapshot per registry in a transaction with its month's item; the export reads months
# (the index), snapshots (the table), registry records, and writes its three files under
# exports/billing/ of the export bucket, reading back the manifest to never rewrite a
# final export.


def billing_exports_statements(exports: s3.IBucket) -> list[iam.PolicyStatement]:
    """Write and read back the billing files, and nothing else of the export bucket
    (ListBucket so that a missing manifest reads as 404, not 403)."""
    return [
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[exports.arn_for_objects("exports/billing/*")],
        ),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[exports.bucket_arn],
            conditions={"StringLike": {"s3:prefix": ["exports/billing/*"]}},
        ),
    ]


def snapshot_storage_statements(table: dynamodb.ITable) -> list[iam.PolicyStatement]:
    """snapshot-storage: list accounts and their registries, write snapshots."""
    return [
        iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[table.table_arn, _index_arn(table)]
        ),
        iam.PolicyStatement(
            actions=["dynamodb:PutItem", "dynamodb:UpdateItem"], resources=[table.table_arn]
        ),
    ]


def export_billing_statements(
    table: dynamodb.ITable, exports: s3.IBucket
) -> list[iam.PolicyStatement]:
    """export-billing: read usage and registries, write the month's files."""
    return [
        iam.PolicyStatement(
            actions=["dynamodb:GetItem", "dynamodb:Query"],
            resources=[table.table_arn, _index_arn(table)],
        ),
        *billing_exports_statements(exports),
    ]


# ------------------------------------------------------------------ egress metering
# registry.metering: per (registry, month) of a log object, read the registry's identity
# and record (GetItem), add the traffic (TransactWriteItems of a conditional PutItem of the
# marker and an UpdateItem of the month: the per-item actions), read the month back
# (GetItem), flag the cap (conditional UpdateItem), publish threshold events. No Query, no
# index, no deletions.
METER_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
METERED_LOG_PREFIXES = ("s3-access/*", "cloudfront/*")


def meter_access_logs_statements(
    table: dynamodb.ITable, log_bucket: s3.IBucket, bus_arn: str
) -> list[iam.PolicyStatement]:
    """meter-access-logs: read the log objects (S3 access logs, CloudFront logs) of the
    log bucket, nothing else of it (ListBucket so that a gone object reads as 404)."""
    return [
        iam.PolicyStatement(actions=METER_TABLE_ACTIONS, resources=[table.table_arn]),
        iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[log_bucket.arn_for_objects(p) for p in METERED_LOG_PREFIXES],
        ),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[log_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": list(METERED_LOG_PREFIXES)}},
        ),
        put_events_statement(bus_arn),
    ]


def meter_api_logs_statements(table: dynamodb.ITable) -> list[iam.PolicyStatement]:
    """meter-api-logs: the records come in the event (a CloudWatch Logs subscription);
    registries by name (GetItem) and the usage items. No S3, and no events: pulls and
    pushes have no thresholds."""
    return [iam.PolicyStatement(actions=METER_TABLE_ACTIONS, resources=[table.table_arn])]


def verify_direct_upload_statements(
    table: dynamodb.ITable, bucket: s3.IBucket
) -> list[iam.PolicyStatement]:
    """verify-direct-upload: read the assembled object, delete it on a mismatch, and commit
    the blob (the same table writes as a commit on the API)."""
    return [
        iam.PolicyStatement(
            actions=API_TABLE_ACTIONS, resources=[table.table_arn, _index_arn(table)]
        ),
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:DeleteObject"], resources=[_registries(bucket)]
        ),
        _list_registries(bucket),
    ]


def invoke_function_statement(function_arn: str) -> iam.PolicyStatement:
    """The API's asynchronous invocation of verify-direct-upload, and of nothing else."""
    return iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function_arn])
