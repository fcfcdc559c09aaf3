"""What the stack would deploy, asserted on the synthesised templates (aws_cdk.assertions)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk.assertions import Match
from portside_infra import policies

from .conftest import Synth

DATA_PREFIXES = ("dynamodb:", "s3:", "secretsmanager:GetSecretValue", "kms:Decrypt")
STAGE_NAMES = ["dev", "prod", "lite"]


def text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------------------ storage


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_buckets_are_private_encrypted_and_ssl_only(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    buckets = synth.of_type("AWS::S3::Bucket")
    assert len(buckets) == 3  # blobs, access logs, exports
    for props in (b["Properties"] for b in buckets.values()):
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        lifecycle = props["LifecycleConfiguration"]["Rules"]
        assert any(
            r.get("AbortIncompleteMultipartUpload") == {"DaysAfterInitiation": 1} for r in lifecycle
        )
    policies = synth.of_type("AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_blob_bucket_logs_access_notifies_eventbridge_and_expires_scratch(
    synths: dict[str, Synth],
) -> None:
    synth = synths["dev"]
    blob = synth.resources[_logical(synth, "BlobBucket")]["Properties"]
    logging = blob["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": _logical(synth, "AccessLogBucket")}
    assert "PartitionedPrefix" in logging["TargetObjectKeyFormat"]
    assert logging["LogFilePrefix"] == "s3-access/"  # what meter-access-logs reads
    notifications = synth.of_type("Custom::S3BucketNotifications")
    # The blob bucket's events, and the log bucket's (each log object is metered).
    notified = {text(c["Properties"]["BucketName"]) for c in notifications.values()}
    assert notified == {
        text({"Ref": _logical(synth, "BlobBucket")}),
        text({"Ref": _logical(synth, "AccessLogBucket")}),
    }
    for config in notifications.values():
        assert config["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}
    rules = blob["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "uploads/" and r["ExpirationInDays"] == 2 for r in rules)
    logs = synth.resources[_logical(synth, "AccessLogBucket")]["Properties"]
    assert any("ExpirationInDays" in r for r in logs["LifecycleConfiguration"]["Rules"])


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_table_schema_pitr_ttl_stream(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    synth.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": f"portside-{stage}",
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        },
    )


def test_prod_retains_data_dev_does_not(synths: dict[str, Synth]) -> None:
    prod, dev = synths["prod"], synths["dev"]
    prod.template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like({"DeletionProtectionEnabled": True}),
        },
    )
    prod.template.has_resource("AWS::SecretsManager::Secret", {"DeletionPolicy": "Retain"})
    for bucket in prod.of_type("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    dev.template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Delete"})


# ---------------------------------------------------------------------------- functions


def functions(synth: Synth) -> dict[str, Any]:
    return synth.of_type("AWS::Serverless::Function")


def env(synth: Synth, logical: str) -> dict[str, Any]:
    return functions(synth)[logical]["Properties"]["Environment"]["Variables"]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_schedule_is_present_with_its_rate(synths: dict[str, Synth], stage: str) -> None:
    fns = functions(synths[stage])
    assert set(fns) == {
        "APIHandler",
        "CleanupExpiredUploads",
        "PurgeDeletedRegistries",
        "ScheduledCollections",
        "ReconcileStorage",
        "GcStep",
        "GcFailed",
        "QuotaWatch",
        "SnapshotStorage",
        "ExportBilling",
        "MeterAccessLogs",
        "MeterApiLogs",
        "VerifyDirectUpload",
    }
    schedules = {
        logical: [
            (e["Type"], e["Properties"]["Schedule"])
            for e in fn["Properties"].get("Events", {}).values()
        ]
        for logical, fn in fns.items()
    }
    assert schedules == {
        "APIHandler": [],
        "CleanupExpiredUploads": [("Schedule", "rate(15 minutes)")],
        "PurgeDeletedRegistries": [("Schedule", "rate(1 minute)")],
        "ScheduledCollections": [("Schedule", "rate(15 minutes)")],
        "ReconcileStorage": [("Schedule", "rate(1 hour)")],
        "GcStep": [],
        "GcFailed": [],
        "QuotaWatch": [],  # fed by the table's stream (an event source mapping)
        "SnapshotStorage": [("Schedule", "rate(1 hour)")],
        "ExportBilling": [("Schedule", "rate(1 day)")],
        "MeterAccessLogs": [],  # an EventBridge rule on the log bucket's objects
        "MeterApiLogs": [],  # a subscription of the API's access-log group
        "VerifyDirectUpload": [],  # invoked asynchronously by the API
    }
    assert fns["ScheduledCollections"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.run_scheduled_collections_schedule"
    )
    assert fns["CleanupExpiredUploads"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.cleanup_expired_uploads_schedule"
    )
    assert fns["ReconcileStorage"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.reconcile_storage_schedule"
    )


def test_schedules_expand_to_eventbridge_rules_targeting_their_functions(
    synths: dict[str, Synth],
) -> None:
    """Run the SAM transform (as CloudFormation will) and look at the real rules."""
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(synths["dev"].json))
    expanded = transform(template, {}, _NoManagedPolicies())
    rules = {
        k: v["Properties"]
        for k, v in expanded["Resources"].items()
        if v["Type"] == "AWS::Events::Rule"
    }
    by_target = {
        r["Targets"][0]["Arn"]["Fn::GetAtt"][0]: r["ScheduleExpression"]
        for r in rules.values()
        if "ScheduleExpression" in r
    }
    assert by_target == {
        "CleanupExpiredUploads": "rate(15 minutes)",
        "PurgeDeletedRegistries": "rate(1 minute)",
        "ScheduledCollections": "rate(15 minutes)",
        "ReconcileStorage": "rate(1 hour)",
        "SnapshotStorage": "rate(1 hour)",
        "ExportBilling": "rate(1 day)",
    }
    assert all(r.get("State", "ENABLED") == "ENABLED" for r in rules.values())
    permissions = [
        v["Properties"]
        for v in expanded["Resources"].values()
        if v["Type"] == "AWS::Lambda::Permission"
        and v["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    # One per rule: the schedules', and the metering rule on the log bucket's objects.
    assert len(permissions) == len(by_target) + 1


def test_api_routes_and_no_s3_event_handlers(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    api = synth.resources["RestAPI"]["Properties"]
    assert set(api["DefinitionBody"]["paths"]) == {"/v2", "/v2/{proxy+}", "/api/v1/{proxy+}"}
    assert api["EndpointConfiguration"] == "REGIONAL"
    events = [
        e["Type"]
        for fn in functions(synth).values()
        for e in fn["Properties"].get("Events", {}).values()
    ]
    assert "S3" not in events  # S3 events reach handlers through EventBridge


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_functions_use_cdk_roles_and_own_log_groups(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    roles = synth.of_type("AWS::IAM::Role")
    for logical, fn in functions(synth).items():
        props = fn["Properties"]
        role = props["Role"]["Fn::GetAtt"][0]
        assert role in roles and role.startswith(logical)
        assert props["LoggingConfig"]["LogGroup"]["Ref"].startswith(f"{logical}Logs")
        assert props["Architectures"] == ["arm64"]


def role_statements(synth: Synth, role: str) -> list[dict[str, Any]]:
    out = []
    for policy in synth.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    for inline in synth.resources[role]["Properties"].get("Policies", []):
        out.extend(inline["PolicyDocument"]["Statement"])
    return out


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_no_data_action_on_a_wildcard_resource_anywhere(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    for logical, role in synth.of_type("AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns") or "Lambda" not in logical
        for statement in role_statements(synth, logical):
            data = [a for a in actions_of(statement) if a.startswith(DATA_PREFIXES) or a == "*"]
            if data and statement["Effect"] == "Allow":
                resources = statement["Resource"]
                resources = resources if isinstance(resources, list) else [resources]
                assert "*" not in resources, (logical, statement)
                assert all("*" not in a for a in data if not a.startswith("s3:")), statement


def _grants(synth: Synth, role: str) -> dict[str, set[str]]:
    """action -> the resources it is granted on (as text), for one role."""
    out: dict[str, set[str]] = {}
    for statement in role_statements(synth, role):
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        for action in actions_of(statement):
            out.setdefault(action, set()).update(text(r) for r in resources)
    return out


def _resource_kind(synth: Synth, resource: str) -> str:
    table, bucket = _logical(synth, "Table"), _logical(synth, "BlobBucket")
    secret = _logical(synth, "SigningKey")
    if _logical(synth, "ExportsBucket") in resource:
        return "exports" if "/exports/billing/*" in resource else "exports bucket"
    if table in resource:
        return "index" if "/index/gsi1" in resource else "table"
    if bucket in resource:
        if "/uploads/*" in resource:
            return "uploads"
        return "registries" if "/registries/*" in resource else "bucket"
    if secret in resource:
        return "secret"
    if "Logs" in resource:
        return "logs"
    return resource


def test_each_function_gets_exactly_its_grants(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]

    def grants(logical: str) -> dict[str, set[str]]:
        role = functions(synth)[logical]["Properties"]["Role"]["Fn::GetAtt"][0]
        return {a: {_resource_kind(synth, r) for r in rs} for a, rs in _grants(synth, role).items()}

    api = grants("APIHandler")
    for action in (
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:BatchGetItem",
    ):
        assert api[action] == {"table", "index"}
    for action in ("s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert api[action] == {"registries", "uploads"}
    # Billing exports on demand (POST /api/v1/billing/exports): exports/billing/ only.
    for action in ("s3:GetObject", "s3:PutObject"):
        assert api[action] == {"registries", "uploads", "exports"}
    assert api["s3:ListBucket"] == {"bucket", "exports bucket"}
    assert api["secretsmanager:GetSecretValue"] == {"secret"}
    assert "dynamodb:Scan" not in api and "s3:*" not in api
    # Large direct uploads: the API invokes the verifier, and no other function.
    verifier = {"Fn::GetAtt": ["VerifyDirectUpload", "Arn"]}
    assert env(synth, "APIHandler")["PORTSIDE_VERIFY_FUNCTION"] == verifier
    [invoked] = api["lambda:InvokeFunction"]
    assert "VerifyDirectUpload" in invoked
    assert grants("VerifyDirectUpload") == {
        **{a: {"table", "index"} for a in policies.API_TABLE_ACTIONS},
        "s3:GetObject": {"registries"},
        "s3:DeleteObject": {"registries"},
        "s3:ListBucket": {"bucket"},
        "logs:CreateLogStream": {"logs"},
        "logs:PutLogEvents": {"logs"},
    }

    assert grants("CleanupExpiredUploads") == {
        "dynamodb:Query": {"index"},
        "dynamodb:DeleteItem": {"table"},
        "s3:AbortMultipartUpload": {"uploads"},
        "s3:DeleteObject": {"uploads"},
        "logs:CreateLogStream": {"logs"},
        "logs:PutLogEvents": {"logs"},
    }
    assert grants("PurgeDeletedRegistries") == {
        "dynamodb:Query": {"table", "index"},
        "dynamodb:DeleteItem": {"table"},
        "dynamodb:BatchWriteItem": {"table"},
        "s3:DeleteObject": {"registries", "uploads"},
        "s3:ListBucket": {"bucket"},
        "logs:CreateLogStream": {"logs"},
        "logs:PutLogEvents": {"logs"},
    }
    # Recounts records and corrects counters: no S3, no writes but the conditional update.
    assert grants("ReconcileStorage") == {
        "dynamodb:GetItem": {"table", "index"},
        "dynamodb:Query": {"table", "index"},
        "dynamodb:UpdateItem": {"table", "index"},
        "logs:CreateLogStream": {"logs"},
        "logs:PutLogEvents": {"logs"},
    }
    # Only the API (which signs) knows where the secret is.
    assert "PORTSIDE_SIGNING_KEY_SECRET_ARN" in env(synth, "APIHandler")
    for logical in ("CleanupExpiredUploads", "PurgeDeletedRegistries"):
        assert "PORTSIDE_SIGNING_KEY_SECRET_ARN" not in env(synth, logical)


def test_quota_watch_reads_registry_records_of_the_table_stream(
    synths: dict[str, Synth],
) -> None:
    from chalicelib.adapters.dynamo_streams import REGISTRY_FILTER

    synth = synths["dev"]
    (mapping,) = synth.of_type("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert "QuotaWatch" in text(props["FunctionName"])  # the function's name, from its ARN
    assert props["EventSourceArn"] == {"Fn::GetAtt": [_logical(synth, "Table"), "StreamArn"]}
    assert props["StartingPosition"] == "LATEST"
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 < props["MaximumRetryAttempts"] <= 10
    assert props["MaximumRecordAgeInSeconds"] == 86400
    (only,) = props["FilterCriteria"]["Filters"]
    pattern = json.loads(only["Pattern"])
    # The filter the local runtime applies is the one that deploys; it names the keys of
    # registry records (REG#<name> / #META), so tokens and tags never reach the function.
    assert pattern == REGISTRY_FILTER == {
        "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "REG#"}]}, "sk": {"S": ["#META"]}}}
    }
    # Created after the role's policy: Lambda checks the stream permissions then.
    role = functions(synth)["QuotaWatch"]["Properties"]["Role"]["Fn::GetAtt"][0]
    assert any(d.startswith(role) for d in mapping.get("DependsOn", [])), mapping
    assert handler_of(synth, "QuotaWatch") == "chalicelib.events.handlers.quota_watch"
    assert env(synth, "QuotaWatch")["PORTSIDE_EVENT_BUS"] == "default"


def test_quota_watch_reads_the_stream_and_puts_events_on_the_bus_only(
    synths: dict[str, Synth],
) -> None:
    synth = synths["dev"]
    role = functions(synth)["QuotaWatch"]["Properties"]["Role"]["Fn::GetAtt"][0]
    grants = _grants(synth, role)
    stream = text({"Fn::GetAtt": [_logical(synth, "Table"), "StreamArn"]})
    for action in (
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    ):
        assert grants.pop(action) == {stream}
    (bus,) = grants.pop("events:PutEvents")
    assert "event-bus/default" in bus
    assert set(grants) == {"logs:CreateLogStream", "logs:PutLogEvents"}


def handler_of(synth: Synth, logical: str) -> str:
    return str(functions(synth)[logical]["Properties"]["Handler"])


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_function_environment(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    for logical in functions(synth):
        variables = env(synth, logical)
        assert variables["PORTSIDE_TABLE"] == f"portside-{stage}"
        assert variables["PORTSIDE_BUCKET"] == {"Ref": _logical(synth, "BlobBucket")}
    api = env(synth, "APIHandler")
    assert api["PORTSIDE_SIGNING_KEY_SECRET_ARN"] == {"Ref": _logical(synth, "SigningKey")}
    public = text(api["PORTSIDE_PUBLIC_URL"])
    if stage == "prod":
        assert api["PORTSIDE_PUBLIC_URL"] == "https://registry.example.com"
    else:  # CloudFront in front of the API: /v2/ at the root of a stable HTTPS host
        assert _logical(synth, "ApiDistribution") in public and "https://" in public


# ------------------------------------------------------------------------ public entry


def distribution_config(synth: Synth, prefix: str) -> dict[str, Any]:
    (dist,) = [
        v for k, v in synth.of_type("AWS::CloudFront::Distribution").items() if k.startswith(prefix)
    ]
    config: dict[str, Any] = dist["Properties"]["DistributionConfig"]
    return config


def behaviours(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]


def test_cloudfront_fronts_the_api_stage_without_a_cycle(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    config = distribution_config(synth, "ApiDistribution")
    (origin,) = config["Origins"]
    assert origin["OriginPath"] == "/api"
    assert "${RestAPI}.execute-api" in text(origin["DomainName"])
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert set(behavior["AllowedMethods"]) >= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
    # The API's integrations name the function by its fixed name, not by a reference,
    # so that the function can name the distribution in PORTSIDE_PUBLIC_URL.
    assert "APIHandler" not in text(synth.resources["RestAPI"])
    assert functions(synth)["APIHandler"]["Properties"]["FunctionName"] == "portside-dev-api"


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_api_behaviour_restores_www_authenticate_at_the_edge(
    synths: dict[str, Synth], stage: str
) -> None:
    """Every behaviour that reaches API Gateway runs the Lambda@Edge origin-response
    function of portside_edge/ (origin-response: it also runs on the 401s)."""
    synth = synths[stage]
    config = distribution_config(synth, "ApiDistribution")
    edge = synth.resources[_logical(synth, "OriginResponseFn")]
    assert edge["Type"] == "AWS::Lambda::Function"
    assert edge["Properties"]["Handler"] == "origin_response.handler"
    assert edge["Properties"]["Runtime"].startswith("python3.")
    assert "Architectures" not in edge["Properties"]  # x86_64: Lambda@Edge has no arm64
    assert "Environment" not in edge["Properties"]  # Lambda@Edge has no variables
    role = synth.resources[edge["Properties"]["Role"]["Fn::GetAtt"][0]]
    principals = text(role["Properties"]["AssumeRolePolicyDocument"])
    assert "edgelambda.amazonaws.com" in principals
    versions = {
        k
        for k, v in synth.of_type("AWS::Lambda::Version").items()
        if v["Properties"]["FunctionName"] == {"Ref": _logical(synth, "OriginResponseFn")}
    }
    for behavior in behaviours(config):
        (association,) = behavior["LambdaFunctionAssociations"]
        assert association["EventType"] == "origin-response"
        assert association["LambdaFunctionARN"]["Ref"] in versions


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_nothing_from_the_api_is_cached_errors_included(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    config = distribution_config(synth, "ApiDistribution")
    for behavior in behaviours(config):
        assert behavior["CachePolicyId"] == cloudfront.CachePolicy.CACHING_DISABLED.cache_policy_id
        # Authorization, Accept, every other viewer header and the whole query string go to
        # API Gateway; Host does not (API Gateway routes on its own name).
        assert behavior["OriginRequestPolicyId"] == (
            cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER.origin_request_policy_id
        )
    assert not synth.of_type("AWS::CloudFront::CachePolicy")
    # A 404 of a HEAD before a push must not be served again after it: no error caching.
    errors = {e["ErrorCode"]: e for e in config["CustomErrorResponses"]}
    assert set(errors) == {400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504}
    assert all(e == {"ErrorCode": code, "ErrorCachingMinTTL": 0} for code, e in errors.items())


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_api_gateways_own_refusals_are_oci_error_bodies(
    synths: dict[str, Synth], stage: str
) -> None:
    from chalicelib.registry.errors import ERROR_TABLE
    from portside_edge.gateway_responses import STACK_GATEWAY_RESPONSES

    body = synths[stage].resources["RestAPI"]["Properties"]["DefinitionBody"]
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == {a.response_type for a in STACK_GATEWAY_RESPONSES}
    assert {"INTEGRATION_TIMEOUT", "DEFAULT_5XX", "THROTTLED"} <= set(responses)
    for kind, response in responses.items():
        (template,) = response["responseTemplates"].values()
        (error,) = json.loads(template)["errors"]
        assert error["code"] in ERROR_TABLE and error["message"], kind
    assert responses["INTEGRATION_TIMEOUT"]["statusCode"] == "504"
    assert "statusCode" not in responses["DEFAULT_5XX"]  # each failure keeps its own 5xx


def test_gateway_responses_reach_the_deployed_rest_api(synths: dict[str, Synth]) -> None:
    """In the OpenAPI body, so the SAM transform carries them into the RestApi (and a change
    to them changes the deployment's id, which redeploys the stage)."""
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(synths["dev"].json))
    expanded = transform(template, {}, _NoManagedPolicies())
    (api,) = [v for v in expanded["Resources"].values() if v["Type"] == "AWS::ApiGateway::RestApi"]
    assert "DEFAULT_5XX" in api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]


def test_custom_domain_is_an_alias_of_the_cloudfront_distributions(
    synths: dict[str, Synth],
) -> None:
    """No API Gateway custom domain (it would bypass the edge function and the cache
    settings): the names are aliases of the distributions, with a us-east-1 certificate."""
    synth = synths["prod"]
    assert not synth.of_type("AWS::ApiGateway::DomainName")
    assert not synth.of_type("AWS::ApiGateway::BasePathMapping")
    cert = _logical(synth, "Certificate")
    for prefix, name in (
        ("ApiDistribution", "registry.example.com"),
        ("UploadDistribution", "uploads.registry.example.com"),
    ):
        config = distribution_config(synth, prefix)
        assert config["Aliases"] == [name]
        assert config["ViewerCertificate"] == {
            "AcmCertificateArn": {"Ref": cert},
            "MinimumProtocolVersion": "TLSv1.2_2021",
            "SslSupportMethod": "sni-only",
        }
    # The stack (synthesised in us-east-1) requests the certificate in its own region.
    synth.template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {
            "DomainName": "registry.example.com",
            "SubjectAlternativeNames": ["uploads.registry.example.com"],
            "ValidationMethod": "DNS",
        },
    )
    records = {
        (r["Properties"]["Name"], r["Properties"]["Type"]): r["Properties"]["AliasTarget"]
        for r in synth.of_type("AWS::Route53::RecordSet").values()
    }
    assert set(records) == {
        (f"{host}.", kind)
        for host in ("registry.example.com", "uploads.registry.example.com")
        for kind in ("A", "AAAA")
    }
    for (host, _), target in records.items():
        prefix = "UploadDistribution" if host.startswith("uploads.") else "ApiDistribution"
        assert target["DNSName"] == {"Fn::GetAtt": [_logical(synth, prefix), "DomainName"]}


# ------------------------------------------------------------------------- upload host


def container_env(synth: Synth) -> dict[str, Any]:
    (task,) = synth.of_type("AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return {e["Name"]: e["Value"] for e in container["Environment"]}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_upload_host_is_wired_to_bucket_table_and_secret(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    (service,) = synth.of_type("AWS::ECS::Service").values()
    assert service["Properties"]["LaunchType"] == "FARGATE"
    variables = container_env(synth)
    assert variables["PORTSIDE_TABLE"] == f"portside-{stage}"
    assert variables["PORTSIDE_BUCKET"] == {"Ref": _logical(synth, "BlobBucket")}
    assert variables["PORTSIDE_SIGNING_KEY_SECRET_ARN"] == {"Ref": _logical(synth, "SigningKey")}
    assert variables["PORT"] == "8080"
    assert variables["PORTSIDE_PUBLIC_URL"] == env(synth, "APIHandler")["PORTSIDE_PUBLIC_URL"]
    # Its URL is the API function's upload base URL.
    assert env(synth, "APIHandler")["PORTSIDE_UPLOAD_URL"] == variables["PORTSIDE_UPLOAD_URL"]
    synth.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "HealthCheckPath": "/healthz",
            "TargetType": "ip",
        },
    )
    (target,) = service["Properties"]["LoadBalancers"]
    assert target["ContainerPort"] == 8080


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_upload_host_role_has_only_what_an_upload_needs(
    synths: dict[str, Synth], stage: str
) -> None:
    synth = synths[stage]
    (task,) = synth.of_type("AWS::ECS::TaskDefinition").values()
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    table = {"Fn::GetAtt": [_logical(synth, "Table"), "Arn"]}
    bucket_arn = {"Fn::GetAtt": [_logical(synth, "BlobBucket"), "Arn"]}

    def objects(pattern: str) -> dict[str, Any]:
        return {"Fn::Join": ["", [bucket_arn, f"/{pattern}"]]}

    statements = sorted(
        (
            {k: v for k, v in s.items() if k != "Effect"}
            for s in role_statements(synth, role)
            if s["Effect"] == "Allow"
        ),
        key=text,
    )
    assert statements == sorted(
        [
            {
                "Action": [
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                ],
                "Resource": table,
            },
            {
                "Action": [
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:PutObject",
                ],
                "Resource": [objects("registries/*/blobs/*"), objects("uploads/*")],
            },
            {
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Ref": _logical(synth, "SigningKey")},
            },
        ],
        key=text,
    )


def test_upload_key_layout_is_inside_the_upload_role_and_manifests_are_not() -> None:
    """The role's object patterns cover every key an upload writes, and no manifest."""
    from fnmatch import fnmatchcase

    from chalicelib.registry.digests import Digest
    from chalicelib.registry.service import (
        manifest_key,
        upload_data_prefix,
        upload_prefix,
    )

    patterns = ("registries/*/blobs/*", "uploads/*")
    digest = Digest.parse("sha256:" + "a" * 64)
    for key in (upload_data_prefix("r1", "u1") + "data", upload_prefix("r1", "u1") + "tail-0"):
        assert any(fnmatchcase(key, p) for p in patterns), key
    for key in (manifest_key("r1", digest), manifest_key("r1", digest, "rev1")):
        assert not any(fnmatchcase(key, p) for p in patterns), key


def test_upload_host_urls(synths: dict[str, Synth]) -> None:
    assert container_env(synths["prod"])["PORTSIDE_UPLOAD_URL"] == (
        "https://uploads.registry.example.com"
    )
    dev = text(container_env(synths["dev"])["PORTSIDE_UPLOAD_URL"])
    assert _logical(synths["dev"], "UploadDistribution") in dev


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_upload_distribution_waits_the_longest_allowed_and_caches_nothing(
    synths: dict[str, Synth], stage: str
) -> None:
    config = distribution_config(synths[stage], "UploadDistribution")
    (origin,) = config["Origins"]
    assert origin["CustomOriginConfig"]["OriginReadTimeout"] == 60
    assert origin["CustomOriginConfig"]["OriginKeepaliveTimeout"] == 60
    behavior = config["DefaultCacheBehavior"]
    assert behavior["CachePolicyId"] == cloudfront.CachePolicy.CACHING_DISABLED.cache_policy_id
    assert all(e["ErrorCachingMinTTL"] == 0 for e in config["CustomErrorResponses"])


def _ingress_rules(synth: Synth) -> list[dict[str, Any]]:
    rules = [v["Properties"] for v in synth.of_type("AWS::EC2::SecurityGroupIngress").values()]
    for group in synth.of_type("AWS::EC2::SecurityGroup").values():
        rules.extend(group["Properties"].get("SecurityGroupIngress", []))
    return rules


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_nothing_is_open_to_the_internet(synths: dict[str, Synth], stage: str) -> None:
    for rule in _ingress_rules(synths[stage]):
        assert rule.get("CidrIp") != "0.0.0.0/0" and rule.get("CidrIpv6") != "::/0", rule


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_only_cloudfront_reaches_the_load_balancer(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    (lb,) = synth.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    (lb_group,) = [g["Fn::GetAtt"][0] for g in lb["Properties"]["SecurityGroups"]]
    (rule,) = [
        r
        for r in _ingress_rules(synth)
        if r.get("GroupId", {}).get("Fn::GetAtt", [""])[0] == lb_group
    ]
    # CloudFront's origin-facing prefix list, looked up at deploy time by name.
    lookup_id = rule["SourcePrefixListId"]["Fn::GetAtt"][0]
    lookup = synth.resources[lookup_id]
    assert lookup["Type"] == "Custom::AWS"
    call = json.loads(lookup["Properties"]["Create"])
    assert (call["service"], call["action"]) == ("EC2", "describeManagedPrefixLists")
    assert call["parameters"]["Filters"] == [
        {"Name": "prefix-list-name", "Values": ["com.amazonaws.global.cloudfront.origin-facing"]}
    ]
    # With a domain, CloudFront to ALB is TLS too (HTTPS origin, certificate for the Host
    # CloudFront forwards); without one, HTTP on port 80.
    port, protocol = (443, "HTTPS") if stage == "prod" else (80, "HTTP")
    assert (rule["FromPort"], rule["ToPort"]) == (port, port)

    # The listener refuses whatever lacks the distribution's secret header.
    (listener,) = synth.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    assert (listener["Properties"]["Port"], listener["Properties"]["Protocol"]) == (port, protocol)
    if stage == "prod":
        assert listener["Properties"]["Certificates"] == [
            {"CertificateArn": {"Ref": _logical(synth, "Certificate")}}
        ]
    (default,) = listener["Properties"]["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "403"
    (forward,) = synth.of_type("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    (condition,) = forward["Properties"]["Conditions"]
    assert condition["Field"] == "http-header"
    header = condition["HttpHeaderConfig"]
    (origin,) = distribution_config(synth, "UploadDistribution")["Origins"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == f"{protocol.lower()}-only"
    (sent,) = origin["OriginCustomHeaders"]
    assert sent == {"HeaderName": header["HttpHeaderName"], "HeaderValue": header["Values"][0]}
    # A value CloudFormation resolves from a generated secret: not in the template.
    assert "{{resolve:secretsmanager:" in text(sent["HeaderValue"])
    assert _logical(synth, "UploadOriginSecret") in text(sent["HeaderValue"])
    (action,) = forward["Properties"]["Actions"]
    assert action["Type"] == "forward"
    (service,) = synth.of_type("AWS::ECS::Service").values()
    (target,) = service["Properties"]["LoadBalancers"]
    assert action["TargetGroupArn"] == target["TargetGroupArn"]
    # Nothing points users at the load balancer itself.
    assert not [k for k in synth.json.get("Outputs", {}) if "LoadBalancer" in k]


def test_upload_host_off_means_no_service_and_no_upload_url(synths: dict[str, Synth]) -> None:
    synth = synths["lite"]
    for kind in (
        "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::EC2::VPC",
    ):
        assert not synth.of_type(kind), kind
    for logical in functions(synth):
        assert "PORTSIDE_UPLOAD_URL" not in env(synth, logical)


# ------------------------------------------------------------------------------ alarms


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_alarms(synths: dict[str, Synth], stage: str) -> None:
    synth = synths[stage]
    alarms = synth.of_type("AWS::CloudWatch::Alarm")
    names = set(alarms)
    topic = _logical(synth, "AlarmTopic")
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
    rate = alarms[_logical(synth, "ServerErrorRateAlarm")]["Properties"]
    metrics = {m["Id"]: m for m in rate["Metrics"]}
    assert metrics["errors"]["MetricStat"]["Metric"]["MetricName"] == "ServerErrors"
    assert metrics["errors"]["MetricStat"]["Metric"]["Namespace"] == "Portside"
    latency = alarms[_logical(synth, "LatencyP99Alarm")]["Properties"]
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p99")
    for fn in ("APIHandler", "CleanupExpiredUploads", "PurgeDeletedRegistries"):
        for kind in ("Errors", "Throttles"):
            (match,) = [n for n in names if n.startswith(f"{fn}{kind}Alarm")]
            assert alarms[match]["Properties"]["Dimensions"] == [
                {"Name": "FunctionName", "Value": {"Ref": fn}}
            ]
    alb = [n for n in names if n.startswith("UploadHost") and "5xx" in n]
    assert len(alb) == (0 if stage == "lite" else 2)


def _logical(synth: Synth, prefix: str) -> str:
    """The one logical id CDK derived from a construct id (prefix + hash)."""
    matches = [k for k in synth.resources if k.startswith(prefix) and len(k) == len(prefix) + 8]
    assert len(matches) == 1, (prefix, matches)
    return matches[0]


class _NoManagedPolicies:
    """The SAM transform's managed-policy lookup, offline (our functions use none)."""

    def load(self) -> dict[str, str]:
        return {}

    def get(self, name: str) -> None:
        return None


# ------------------------------------------------------------------ another region


@pytest.fixture(scope="module")
def eu_prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """A stage with a real-looking domain, deployed outside us-east-1."""
    import os

    import aws_cdk as cdk
    from portside_infra import cdk_context
    from portside_infra.stack import PortsideStack
    from stages import STAGES, Alarms, Domain

    from .conftest import ACCOUNT, OFFLINE_ENV

    stage = dataclasses.replace(
        STAGES["prod"],  # its Lambda settings (.chalice/config.json), another domain
        domain=Domain(
            name="registry.acme.io", hosted_zone_id="Z0123456789ABC", hosted_zone_name="acme.io"
        ),
        alarms=Alarms(email="ops@acme.io"),
    )
    saved_env, cwd = dict(os.environ), os.getcwd()
    work = tmp_path_factory.mktemp("cdk-eu")
    os.environ.update({**OFFLINE_ENV, "AWS_DEFAULT_REGION": "eu-west-1"})
    os.chdir(work)
    try:
        app = cdk.App(outdir=str(work / "out"), context=cdk_context())
        env = cdk.Environment(account=ACCOUNT, region="eu-west-1")
        stack = PortsideStack(app, stage, env=env)
        yield app.synth(), stack
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def test_outside_us_east_1_the_edge_function_and_certificate_live_in_us_east_1(
    eu_prod: tuple[Any, Any],
) -> None:
    assembly, stack = eu_prod
    regions = {s.stack_name: s.environment.region for s in assembly.stacks}
    assert regions[stack.stack_name] == "eu-west-1"
    (edge_stack,) = [name for name, region in regions.items() if region == "us-east-1"]
    edge = assembly.get_stack_by_name(edge_stack).template["Resources"]
    assert [
        v["Properties"]["Handler"] for v in edge.values() if v["Type"] == "AWS::Lambda::Function"
    ] == ["origin_response.handler"]
    main = assembly.get_stack_by_name(stack.stack_name).template["Resources"]
    # CloudFront's certificate is requested in us-east-1; the ALB's in the stack's region.
    (cloudfront_cert,) = [
        v["Properties"]
        for v in main.values()
        if v["Type"] == "AWS::CloudFormation::CustomResource"
        and v["Properties"].get("Region") == "us-east-1"
    ]
    assert cloudfront_cert["DomainName"] == "registry.acme.io"
    (regional,) = [
        v["Properties"]
        for v in main.values()
        if v["Type"] == "AWS::CertificateManager::Certificate"
    ]
    assert regional["DomainName"] == "uploads.registry.acme.io"


# ------------------------------------------------------------------------ usage and billing


def test_billing_schedules_run_their_handlers_with_only_their_grants(
    synths: dict[str, Synth],
) -> None:
    synth = synths["dev"]
    table, exports = _logical(synth, "Table"), _logical(synth, "ExportsBucket")

    def grants(logical: str) -> dict[str, set[str]]:
        role = functions(synth)[logical]["Properties"]["Role"]["Fn::GetAtt"][0]
        return _grants(synth, role)

    fns = functions(synth)
    assert fns["SnapshotStorage"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.snapshot_storage_schedule"
    )
    assert fns["ExportBilling"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.export_billing_schedule"
    )
    snapshot = grants("SnapshotStorage")
    assert set(snapshot) == {
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert all(table in r for r in snapshot["dynamodb:PutItem"])
    export = grants("ExportBilling")
    assert set(export) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    for action in ("s3:GetObject", "s3:PutObject"):
        (resource,) = export[action]
        assert exports in resource and "/exports/billing/*" in resource
    # The API writes on-demand exports (POST /api/v1/billing/exports) to the same place.
    api = grants("APIHandler")
    assert any(exports in r and "/exports/billing/*" in r for r in api["s3:PutObject"])
    for logical in ("ExportBilling", "APIHandler"):
        assert env(synth, logical)["PORTSIDE_EXPORT_BUCKET"] == {"Ref": exports}
    assert "PORTSIDE_EXPORT_BUCKET" not in env(synth, "SnapshotStorage")


# ------------------------------------------------------------------------ egress metering


def test_new_log_objects_are_metered_by_meter_access_logs(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    rules = {
        k: v["Properties"]
        for k, v in synth.of_type("AWS::Events::Rule").items()
        if "EventPattern" in v["Properties"]
    }
    (rule,) = [r for r in rules.values() if r["EventPattern"].get("source") == ["aws.s3"]]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": _logical(synth, "AccessLogBucket")}]},
            "object": {"key": [{"prefix": "s3-access/"}, {"prefix": "cloudfront/"}]},
        },
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["MeterAccessLogs", "Arn"]}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 86400
    assert handler_of(synth, "MeterAccessLogs") == "chalicelib.events.handlers.meter_access_logs"
    variables = env(synth, "MeterAccessLogs")
    assert variables["PORTSIDE_LOG_BUCKET"] == {"Ref": _logical(synth, "AccessLogBucket")}
    permissions = [
        p["Properties"]
        for p in synth.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
        and "MeterAccessLogs" in text(p["Properties"]["FunctionName"])
    ]
    assert len(permissions) == 1


def test_the_api_stage_logs_the_metering_format_to_a_subscribed_group(
    synths: dict[str, Synth],
) -> None:
    from chalicelib.registry.access_logs import parse_api_record

    synth = synths["dev"]
    api = synth.resources["RestAPI"]
    setting = api["Properties"]["AccessLogSetting"]
    group = _logical(synth, "ApiAccessLogs")
    assert setting["DestinationArn"] == {"Fn::GetAtt": [group, "Arn"]}
    # The format, filled in as API Gateway would, is a record the metering parses.
    sample = (
        setting["Format"]
        .replace("$context.requestTimeEpoch", "1796249415000")
        .replace("$context.requestTime", "02/Dec/2026:22:10:15 +0000")
        .replace("$context.requestId", "r-1")
        .replace("$context.httpMethod", "GET")
        .replace("$context.path", "/api/v2/acme/app/manifests/latest")
        .replace("$context.status", "200")
        .replace("$context.responseLength", "1234")
        .replace("$context.identity.sourceIp", "192.0.2.1")
    )
    assert set(json.loads(sample)) == {
        "requestId",
        "requestTime",
        "requestTimeEpoch",
        "httpMethod",
        "path",
        "status",
        "responseLength",
        "ip",
    }
    record = parse_api_record(sample)
    assert record is not None and record.pulled_registry == "acme"
    # A stage may log only once the account names API Gateway's CloudWatch role.
    (account,) = synth.of_type("AWS::ApiGateway::Account")
    assert account in api.get("DependsOn", [])
    (subscription,) = synth.of_type("AWS::Logs::SubscriptionFilter").values()
    props = subscription["Properties"]
    assert props["LogGroupName"] == {"Ref": group}
    assert props["DestinationArn"] == {"Fn::GetAtt": ["MeterApiLogs", "Arn"]}
    assert props["FilterPattern"] == ""
    assert handler_of(synth, "MeterApiLogs") == "chalicelib.events.handlers.meter_api_logs"


def test_metering_functions_get_exactly_their_grants(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    log_bucket = _logical(synth, "AccessLogBucket")

    def grants(logical: str) -> dict[str, set[str]]:
        role = functions(synth)[logical]["Properties"]["Role"]["Fn::GetAtt"][0]
        out = {}
        for action, resources in _grants(synth, role).items():
            kinds = set()
            for r in resources:
                if log_bucket in r and ("/s3-access/*" in r or "/cloudfront/*" in r):
                    kinds.add("log objects")
                elif log_bucket in r:
                    kinds.add("log bucket")
                elif "event-bus/default" in r:
                    kinds.add("bus")
                else:
                    kinds.add(_resource_kind(synth, r))
            out[action] = kinds
        return out

    table = {a: {"table"} for a in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")}
    logs_grants = {"logs:CreateLogStream": {"logs"}, "logs:PutLogEvents": {"logs"}}
    assert grants("MeterAccessLogs") == {
        **table,
        "s3:GetObject": {"log objects"},
        "s3:ListBucket": {"log bucket"},
        "events:PutEvents": {"bus"},
        **logs_grants,
    }
    assert grants("MeterApiLogs") == {**table, **logs_grants}
