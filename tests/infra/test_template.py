"""What the stack would deploy, asserted on the synthesised templates (aws_cdk.assertions)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

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
    notifications = synth.of_type("Custom::S3BucketNotifications")
    (config,) = notifications.values()
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
    assert set(fns) == {"APIHandler", "CleanupExpiredUploads", "PurgeDeletedRegistries"}
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
    }
    assert fns["CleanupExpiredUploads"]["Properties"]["Handler"] == (
        "chalicelib.events.handlers.cleanup_expired_uploads_schedule"
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
        r["Targets"][0]["Arn"]["Fn::GetAtt"][0]: r["ScheduleExpression"] for r in rules.values()
    }
    assert by_target == {
        "CleanupExpiredUploads": "rate(15 minutes)",
        "PurgeDeletedRegistries": "rate(1 minute)",
    }
    assert all(r.get("State", "ENABLED") == "ENABLED" for r in rules.values())
    permissions = [
        v["Properties"]
        for v in expanded["Resources"].values()
        if v["Type"] == "AWS::Lambda::Permission"
        and v["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert len(permissions) == 2


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
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert api[action] == {"registries", "uploads"}
    assert api["s3:ListBucket"] == {"bucket"}
    assert api["secretsmanager:GetSecretValue"] == {"secret"}
    assert "dynamodb:Scan" not in api and "s3:*" not in api

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
    # Only the API (which signs) knows where the secret is.
    assert "PORTSIDE_SIGNING_KEY_SECRET_ARN" in env(synth, "APIHandler")
    for logical in ("CleanupExpiredUploads", "PurgeDeletedRegistries"):
        assert "PORTSIDE_SIGNING_KEY_SECRET_ARN" not in env(synth, logical)


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


def test_cloudfront_fronts_the_api_stage_without_a_cycle(synths: dict[str, Synth]) -> None:
    synth = synths["dev"]
    (dist,) = [
        v
        for k, v in synth.of_type("AWS::CloudFront::Distribution").items()
        if k.startswith("ApiDistribution")
    ]
    config = dist["Properties"]["DistributionConfig"]
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
    cache = next(iter(synth.of_type("AWS::CloudFront::CachePolicy").values()))
    headers = cache["Properties"]["CachePolicyConfig"]["ParametersInCacheKeyAndForwardedToOrigin"]
    assert "Authorization" in headers["HeadersConfig"]["Headers"]


def test_custom_domain_maps_the_stage_to_the_root(synths: dict[str, Synth]) -> None:
    synth = synths["prod"]
    assert not synth.of_type("AWS::CloudFront::Distribution")
    synth.template.has_resource_properties(
        "AWS::ApiGateway::DomainName",
        {
            "DomainName": "registry.example.com",
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "SecurityPolicy": "TLS_1_2",
        },
    )
    synth.template.has_resource_properties(
        "AWS::ApiGateway::BasePathMapping",
        {
            "RestApiId": {"Ref": "RestAPI"},
            "Stage": {"Ref": "RestAPI.Stage"},
        },
    )
    synth.template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {
            "DomainName": "registry.example.com",
            "SubjectAlternativeNames": ["uploads.registry.example.com"],
        },
    )
    synth.template.resource_count_is("AWS::Route53::RecordSet", 2)


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
    (task,) = synth.of_type("AWS::ECS::TaskDefinition").values()
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    api_role = functions(synth)["APIHandler"]["Properties"]["Role"]["Fn::GetAtt"][0]
    task_grants = {a: r for a, r in _grants(synth, role).items() if not a.startswith("logs:")}
    api_grants = {a: r for a, r in _grants(synth, api_role).items() if not a.startswith("logs:")}
    assert task_grants == api_grants
    synth.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "HealthCheckPath": "/healthz",
            "TargetType": "ip",
        },
    )
    (target,) = service["Properties"]["LoadBalancers"]
    assert target["ContainerPort"] == 8080


def test_upload_host_urls(synths: dict[str, Synth]) -> None:
    assert container_env(synths["prod"])["PORTSIDE_UPLOAD_URL"] == (
        "https://uploads.registry.example.com"
    )
    synths["prod"].template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener", {"Protocol": "HTTPS", "Port": 443}
    )
    dev = text(container_env(synths["dev"])["PORTSIDE_UPLOAD_URL"])
    assert _logical(synths["dev"], "UploadDistribution") in dev


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
