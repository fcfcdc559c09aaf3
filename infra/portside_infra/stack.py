"""One Portside stage as one CloudFormation stack."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as logs_destinations
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as sns_subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from chalice.cdk import Chalice
from constructs import Construct

from portside_edge.gateway_responses import STACK_GATEWAY_RESPONSES

from . import policies
from .lambda_bundle import REPO_ROOT, LambdaSettings, build_source_dir

# Chalice's names for the functions (lambda_functions keys) and their logical IDs.
API_FUNCTION = "api_handler"
SCHEDULED = {
    "cleanup-expired-uploads": "CleanupExpiredUploads",
    "purge-deleted-registries": "PurgeDeletedRegistries",
    "scheduled-collections": "ScheduledCollections",
    "snapshot-storage": "SnapshotStorage",
    "export-billing": "ExportBilling",
    "reconcile-storage": "ReconcileStorage",
}
# The Lambdas the garbage-collection state machine invokes (not scheduled, no API).
GC_FUNCTIONS = {"gc-step": "GcStep", "gc-failed": "GcFailed"}
# Functions fed by the table's DynamoDB stream (an event source mapping each).
STREAM_FUNCTIONS = {"quota-watch": "QuotaWatch"}
# Egress metering (registry.metering): log objects of the log bucket (EventBridge rule) and
# API Gateway access-log records (a CloudWatch Logs subscription).
METER_FUNCTIONS = {"meter-access-logs": "MeterAccessLogs", "meter-api-logs": "MeterApiLogs"}
# Invoked asynchronously by the API (registry.direct_uploads): verifies large direct uploads.
ASYNC_FUNCTIONS = {"verify-direct-upload": "VerifyDirectUpload"}
LOGICAL_IDS = {
    API_FUNCTION: "APIHandler",
    **SCHEDULED,
    **GC_FUNCTIONS,
    **STREAM_FUNCTIONS,
    **METER_FUNCTIONS,
    **ASYNC_FUNCTIONS,
}
# Where the log bucket receives each kind of log (chalicelib/events/handlers.py).
S3_ACCESS_LOG_PREFIX = "s3-access/"
CLOUDFRONT_LOG_PREFIX = "cloudfront/"
# The API stage's access-log record, exactly the format registry.access_logs parses and
# the local gateway writes (docs/metering.md). $context.path includes the stage.
API_ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","requestTime":"$context.requestTime",'
    '"requestTimeEpoch":$context.requestTimeEpoch,"httpMethod":"$context.httpMethod",'
    '"path":"$context.path","status":"$context.status",'
    '"responseLength":"$context.responseLength","ip":"$context.identity.sourceIp"}'
)
# quota-watch's mapping lets only registry records (REG#<name> / #META, dynamo_models.
# RegistryItem) through: the same pattern as chalicelib/adapters/dynamo_streams.py
# REGISTRY_FILTER, which the local runtime applies (tests/infra checks they agree).
REGISTRY_RECORD_FILTER = {
    "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "REG#"}]}, "sk": {"S": ["#META"]}}}
}
# The EventBridge bus quota threshold events are published on (PORTSIDE_EVENT_BUS).
EVENT_BUS = "default"
# The state machine's definition, shared with the local runtime (portside/local/
# stepfunctions.py), and which function's ARN each of its placeholders stands for.
GC_DEFINITION = REPO_ROOT / "infra" / "state_machines" / "garbage_collection.asl.json"
GC_PLACEHOLDERS = {"GcStepFunctionArn": "gc-step", "GcFailedFunctionArn": "gc-failed"}
# What starts collections (the API, and the schedule of per-registry collections).
GC_STARTERS = (API_FUNCTION, "scheduled-collections")
ROLE_PLACEHOLDER = "arn:aws:iam::000000000000:role/replaced-by-cdk"
UPLOAD_PORT = 8080
METRICS_NAMESPACE = "Portside"  # chalicelib/http/telemetry.py
METRICS_SERVICE = "portside"
# The Lambda@Edge origin-response function (stdlib Python, the asset as it is).
EDGE_DIR = REPO_ROOT / "portside_edge"
EDGE_HANDLER = "origin_response.handler"
# Only CloudFront reaches the upload host's ALB: its origin-facing servers' prefix list in the
# security group, and this header (a generated secret) on the listener rule that forwards.
CLOUDFRONT_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"
ORIGIN_VERIFY_HEADER = "X-Portside-Origin-Verify"
# The 4xx/5xx codes whose caching a distribution can set (CloudFront's CustomErrorResponse
# codes). Each gets an error-caching minimum TTL of 0: CloudFront caches 4xx/5xx answers to
# GET/HEAD for 10 s by default, and a cached 404 of a blob or manifest HEAD would outlive
# the push that creates it ("blob unknown" right after the upload).
CLOUDFRONT_ERROR_CODES = (400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504)


class PortsideStack(cdk.Stack):
    def __init__(self, scope: Construct, stage: Any, **kwargs: Any) -> None:
        super().__init__(scope, stage.stack_name, **kwargs)
        self.stage = stage
        removal = cdk.RemovalPolicy.RETAIN if stage.retain_data else cdk.RemovalPolicy.DESTROY

        self.secret = secretsmanager.Secret(
            self,
            "SigningKey",
            description=f"Portside {stage.name}: key of upload capabilities and registry JWTs",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=removal,
        )
        self.table = self._table(removal)
        self.log_bucket, self.bucket, self.exports_bucket = self._buckets(removal)

        self.domain_cert = self._certificate()
        self.upload_host: ecs_patterns.ApplicationLoadBalancedFargateService | None = None
        self.upload_distribution: cloudfront.Distribution | None = None
        self.api_distribution: cloudfront.Distribution | None = None

        # .chalice/config.json: every Lambda setting of this stage (Chalice's precedence).
        self.lambda_settings = LambdaSettings.load(stage.name)
        self.roles = self._function_roles()
        self.chalice = self._chalice_app()
        self._quota_watch_stream()
        self._metering()
        self._direct_upload_verification()
        self.public_url = self._public_entry()
        self.upload_url: str | None = None
        if stage.upload_host.enabled:
            self.upload_url = self._upload_host()
            self.chalice.add_environment_variable(
                "PORTSIDE_UPLOAD_URL", self.upload_url, LOGICAL_IDS[API_FUNCTION]
            )
        self.chalice.add_environment_variable(
            "PORTSIDE_PUBLIC_URL", self.public_url, LOGICAL_IDS[API_FUNCTION]
        )
        self.gc_state_machine = self._gc_state_machine()
        self._alarms()
        self._outputs()

    @property
    def availability_zones(self) -> list[str]:
        """Two AZs resolved at deploy time (Fn::GetAZs): synth needs no account lookup."""
        return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(2)]

    # ------------------------------------------------------------------ data

    def _table(self, removal: cdk.RemovalPolicy) -> dynamodb.Table:
        """The single table of chalicelib/adapters/dynamo_models.py."""
        string = dynamodb.AttributeType.STRING
        table = dynamodb.Table(
            self,
            "Table",
            table_name=self.stage.table,
            partition_key=dynamodb.Attribute(name="pk", type=string),
            sort_key=dynamodb.Attribute(name="sk", type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="ttl",
            # Garbage collection and metering consume the stream.
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            deletion_protection=self.stage.retain_data,
            removal_policy=removal,
        )
        table.add_global_secondary_index(
            index_name="gsi1",
            partition_key=dynamodb.Attribute(name="gsi1pk", type=string),
            sort_key=dynamodb.Attribute(name="gsi1sk", type=string),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table

    def _bucket(self, name: str, removal: cdk.RemovalPolicy, **props: Any) -> s3.Bucket:
        return s3.Bucket(
            self,
            name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            auto_delete_objects=removal == cdk.RemovalPolicy.DESTROY,
            **props,
        )

    def _buckets(self, removal: cdk.RemovalPolicy) -> tuple[s3.Bucket, s3.Bucket, s3.Bucket]:
        abort_uploads = s3.LifecycleRule(
            id="abort-incomplete-multipart-uploads",
            abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
        )
        # Access logs must be SSE-S3 (S3 cannot deliver them to an SSE-KMS bucket).
        log_bucket = self._bucket(
            "AccessLogBucket",
            removal,
            # Each delivered log object is metered (meter-access-logs, _metering).
            event_bridge_enabled=True,
            lifecycle_rules=[
                abort_uploads,
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=cdk.Duration.days(self.stage.access_log_retention_days),
                ),
            ],
        )
        bucket = self._bucket(
            "BlobBucket",
            removal,
            server_access_logs_bucket=log_bucket,
            server_access_logs_prefix=S3_ACCESS_LOG_PREFIX,
            # registries/<r>/... keys arrive as S3 events; logs land by date for metering.
            target_object_key_format=s3.TargetObjectKeyFormat.partitioned_prefix(
                s3.PartitionDateSource.EVENT_TIME
            ),
            event_bridge_enabled=True,
            lifecycle_rules=[
                abort_uploads,
                # Upload scratch (uploads/<registry>/<id>/) that an interrupted upload left
                # behind; sessions live an hour, the cleanup job normally removes it first.
                s3.LifecycleRule(
                    id="expire-upload-scratch",
                    prefix="uploads/",
                    expiration=cdk.Duration.days(2),
                ),
            ],
        )
        exports = self._bucket(
            "ExportsBucket",
            removal,
            versioned=True,
            lifecycle_rules=[
                abort_uploads,
                s3.LifecycleRule(
                    id="expire-replaced-exports",
                    noncurrent_version_expiration=cdk.Duration.days(
                        self.stage.exports_noncurrent_days
                    ),
                ),
                s3.LifecycleRule(
                    id="archive-old-exports",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=cdk.Duration.days(90),
                        )
                    ],
                ),
            ],
        )
        return log_bucket, bucket, exports

    # ------------------------------------------------------------ functions

    def _function_roles(self) -> dict[str, iam.Role]:
        statements = {
            API_FUNCTION: [
                *policies.api_statements(self.table, self.bucket, self.secret),
                # POST /api/v1/billing/exports (registry.billing).
                *policies.billing_exports_statements(self.exports_bucket),
            ],
            "cleanup-expired-uploads": policies.cleanup_statements(self.table, self.bucket),
            "purge-deleted-registries": policies.purge_statements(self.table, self.bucket),
            "scheduled-collections": policies.scheduled_collections_statements(self.table),
            "reconcile-storage": policies.reconcile_storage_statements(self.table),
            "gc-step": policies.gc_step_statements(self.table, self.bucket),
            "gc-failed": policies.gc_failed_statements(self.table),
            "snapshot-storage": policies.snapshot_storage_statements(self.table),
            "export-billing": policies.export_billing_statements(self.table, self.exports_bucket),
            "quota-watch": policies.quota_watch_statements(self.table, self._event_bus_arn()),
            "meter-access-logs": policies.meter_access_logs_statements(
                self.table, self.log_bucket, self._event_bus_arn()
            ),
            "meter-api-logs": policies.meter_api_logs_statements(self.table),
            "verify-direct-upload": policies.verify_direct_upload_statements(
                self.table, self.bucket
            ),
        }
        roles = {}
        for name, grants in statements.items():
            logical = LOGICAL_IDS[name]
            log_group = logs.LogGroup(
                self,
                f"{logical}Logs",
                log_group_name=f"/portside/{self.stage.name}/{name}",
                # log_retention_in_days of .chalice/config.json, applied to the group the
                # function really logs to (LoggingConfig, set in _chalice_app).
                retention=_retention(self.lambda_settings.log_retention_days(name)),
                removal_policy=cdk.RemovalPolicy.DESTROY,
            )
            role = iam.Role(
                self,
                f"{logical}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"Portside {self.stage.name} {name}",
            )
            for statement in grants:
                role.add_to_policy(statement)
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[f"{log_group.log_group_arn}"],
                )
            )
            roles[name] = role
            setattr(role, "portside_log_group", log_group)  # noqa: B010
        return roles

    def _chalice_config(self) -> dict[str, Any]:
        """The stage's part of .chalice/config.json, checked, plus what the stack owns: the
        roles it creates and the table's name (injected as environment)."""
        settings = self.lambda_settings
        settings.check_reserved_concurrency(
            list(LOGICAL_IDS), self.stage.account_unreserved_concurrency
        )
        injected = {"PORTSIDE_TABLE": self.stage.table}
        return settings.packaged(
            self.stage.stack_name,
            {
                "autogen_policy": False,
                "manage_iam_role": False,
                # chalice package wants a role ARN; _chalice_app replaces it, per function,
                # with the role _function_roles created.
                "iam_role_arn": ROLE_PLACEHOLDER,
                "environment_variables": injected,
            },
        )

    def _chalice_app(self) -> Chalice:
        # chalice package resolves the API Gateway service principal through a boto3 client,
        # which wants a region even offline.
        os.environ.setdefault("AWS_DEFAULT_REGION", self.stage.region or "us-east-1")
        source = build_source_dir(self.stage.stack_name, self._chalice_config())
        app = Chalice(self, "Api", source_dir=str(source))
        for name, logical in LOGICAL_IDS.items():
            function = app.get_resource(logical)
            role = self.roles[name]
            function.add_property_override("Role", role.role_arn)
            function.add_property_override(
                "LoggingConfig",
                {"LogGroup": role.portside_log_group.log_group_name},  # type: ignore[attr-defined]
            )
            app.add_environment_variable("PORTSIDE_BUCKET", self.bucket.bucket_name, logical)
        # Only the API signs (upload capabilities, registry JWTs): only it gets the secret.
        app.add_environment_variable(
            "PORTSIDE_SIGNING_KEY_SECRET_ARN", self.secret.secret_arn, LOGICAL_IDS[API_FUNCTION]
        )
        # Billing exports are written to the exports bucket (registry.billing).
        for fn in (API_FUNCTION, "export-billing"):
            app.add_environment_variable(
                "PORTSIDE_EXPORT_BUCKET", self.exports_bucket.bucket_name, LOGICAL_IDS[fn]
            )
        self._decouple_api_from_function(app)
        return app

    def _decouple_api_from_function(self, app: Chalice) -> None:
        """The API function's PORTSIDE_PUBLIC_URL names the CloudFront distribution, whose
        origin is the REST API, whose integrations name the function's ARN: a cycle. The
        function gets a fixed name and the integrations use the ARN built from it."""
        name = f"portside-{self.stage.name}-api"
        app.get_resource(LOGICAL_IDS[API_FUNCTION]).add_property_override("FunctionName", name)
        sam = json.loads((Path(app._sam_package_dir) / "sam.json").read_text())
        body = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
        uri = cdk.Fn.sub(
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
            f"{name}/invocations"
        )
        rest_api = app.get_resource("RestAPI")
        for path, methods in body["paths"].items():
            for method, spec in methods.items():
                if "x-amazon-apigateway-integration" in spec:
                    rest_api.add_property_override(
                        f"DefinitionBody.paths.{path}.{method}.x-amazon-apigateway-integration.uri",
                        uri,
                    )

    # ---------------------------------------------------- quota threshold events

    def _event_bus_arn(self) -> str:
        return self.format_arn(service="events", resource="event-bus", resource_name=EVENT_BUS)

    def _quota_watch_stream(self) -> lambda_.EventSourceMapping:
        """The table's stream -> quota-watch, registry records only (chalicelib.registry.
        alerts). Failures: a change whose events could not be published is reported as
        the batch's item failure and retried from there; a batch that keeps failing is
        halved (bisect) to isolate the record, and records are dropped after the retries
        or a day (the alert is lost, the registry is not affected)."""
        logical = STREAM_FUNCTIONS["quota-watch"]
        stream_arn = self.table.table_stream_arn
        assert stream_arn is not None, "the table has a stream (_table)"
        mapping = lambda_.EventSourceMapping(
            self,
            "QuotaWatchStream",
            target=self.chalice.get_function(logical),
            event_source_arn=stream_arn,
            # From deployment on: an older crossing is not announced late.
            starting_position=lambda_.StartingPosition.LATEST,
            batch_size=100,
            bisect_batch_on_error=True,
            report_batch_item_failures=True,
            retry_attempts=10,
            max_record_age=cdk.Duration.days(1),
            filters=[lambda_.FilterCriteria.filter(REGISTRY_RECORD_FILTER)],
        )
        # Lambda checks the role's stream permissions when it creates the mapping.
        mapping.node.add_dependency(self.roles["quota-watch"])
        self.chalice.add_environment_variable("PORTSIDE_EVENT_BUS", EVENT_BUS, logical)
        return mapping

    # ---------------------------------------------------- direct uploads

    def _direct_upload_verification(self) -> None:
        """The API invokes verify-direct-upload asynchronously for large direct uploads
        (registry.direct_uploads); Lambda retries a failed invocation twice, and a
        duplicate delivery does nothing (the verification claims the session first)."""
        logical = ASYNC_FUNCTIONS["verify-direct-upload"]
        arn = self.chalice.get_function(logical).function_arn
        self.chalice.add_environment_variable(
            "PORTSIDE_VERIFY_FUNCTION", arn, LOGICAL_IDS[API_FUNCTION]
        )
        self.roles[API_FUNCTION].add_to_policy(policies.invoke_function_statement(arn))

    # ---------------------------------------------------- egress metering

    def _metering(self) -> None:
        """Log objects -> meter-access-logs, API access logs -> meter-api-logs
        (registry.metering, docs/metering.md). Both are idempotent per log object, so
        redelivery and retries are harmless."""
        access = self._own_function(METER_FUNCTIONS["meter-access-logs"])
        events.Rule(
            self,
            "MeterAccessLogsRule",
            description="New S3 access-log and CloudFront log objects to meter-access-logs",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.log_bucket.bucket_name]},
                    "object": {
                        "key": [
                            {"prefix": S3_ACCESS_LOG_PREFIX},
                            {"prefix": CLOUDFRONT_LOG_PREFIX},
                        ]
                    },
                },
            ),
            targets=[
                events_targets.LambdaFunction(
                    access, retry_attempts=20, max_event_age=cdk.Duration.hours(24)
                )
            ],
        )
        self.chalice.add_environment_variable(
            "PORTSIDE_LOG_BUCKET", self.log_bucket.bucket_name, METER_FUNCTIONS["meter-access-logs"]
        )
        for logical in METER_FUNCTIONS.values():
            self.chalice.add_environment_variable("PORTSIDE_EVENT_BUS", EVENT_BUS, logical)

        # API Gateway writes the stage's access log to this group; its subscription feeds
        # meter-api-logs. A stage may log only once the account names a CloudWatch role
        # for API Gateway (one per account and region): _api_gateway_account.
        api_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            log_group_name=f"/portside/{self.stage.name}/api-access",
            retention=_retention(self.lambda_settings.log_retention_days(API_FUNCTION)),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        rest_api = self.chalice.get_resource("RestAPI")
        rest_api.add_property_override(
            "AccessLogSetting",
            {"DestinationArn": api_logs.log_group_arn, "Format": API_ACCESS_LOG_FORMAT},
        )
        rest_api.add_resource_dependency(self._api_gateway_account())
        logs.SubscriptionFilter(
            self,
            "MeterApiLogsSubscription",
            log_group=api_logs,
            destination=logs_destinations.LambdaDestination(
                self._own_function(METER_FUNCTIONS["meter-api-logs"])
            ),
            filter_pattern=logs.FilterPattern.all_events(),
        )

    def _own_function(self, logical: str) -> lambda_.IFunction:
        """A Chalice function as one of this stack's (Chalice's get_function imports it by
        an ARN CDK cannot place, so rule targets and log destinations would add no invoke
        permission)."""
        return lambda_.Function.from_function_attributes(
            self,
            f"{logical}Function",
            function_arn=self.chalice.get_function(logical).function_arn,
            same_environment=True,
        )

    def _api_gateway_account(self) -> apigateway.CfnAccount:
        """API Gateway's account-level CloudWatch role (AWS::ApiGateway::Account), without
        which a stage with access logging fails to deploy. The setting is one per account
        and region and the last stack to deploy names its own role: the role is retained
        when a stack is deleted, so that another stage's logging never points at a role
        that is gone."""
        role = iam.Role(
            self,
            "ApiGatewayCloudWatchRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway: write REST API access logs to CloudWatch Logs",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        role.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        account = apigateway.CfnAccount(
            self, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn
        )
        account.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        return account

    # ---------------------------------------------------- garbage collection

    def _gc_state_machine(self) -> sfn.StateMachine:
        """The engine of garbage collections: a Standard workflow looping over the gc-step
        Lambda (infra/state_machines/garbage_collection.asl.json). Its name is fixed, so
        that its ARN can be written before it exists: the state machine starts executions
        of itself (continue-as-new), and its role naming its own ARN would otherwise be a
        cycle."""
        name = f"portside-{self.stage.name}-gc"
        arn = self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        functions = {fn: self.chalice.get_function(LOGICAL_IDS[fn]) for fn in GC_FUNCTIONS}
        log_group = logs.LogGroup(
            self,
            "GcStateMachineLogs",
            # /aws/vendedlogs/: Step Functions' log delivery keeps its resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=_retention(self.lambda_settings.log_retention_days("gc-step")),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "GcStateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Portside {self.stage.name} garbage-collection state machine",
        )
        for statement in policies.gc_state_machine_statements(
            [fn.function_arn for fn in functions.values()], arn
        ):
            role.add_to_policy(statement)
        machine = sfn.StateMachine(
            self,
            "GcStateMachine",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            # Inline (DefinitionString), not an S3 asset: the template is complete, and
            # cfn-lint checks the definition.
            definition_body=sfn.DefinitionBody.from_string(GC_DEFINITION.read_text()),
            definition_substitutions={
                placeholder: functions[fn].function_arn
                for placeholder, fn in GC_PLACEHOLDERS.items()
            },
            role=role,
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ERROR, include_execution_data=False
            ),
        )
        for fn in GC_STARTERS:
            self.roles[fn].add_to_policy(policies.start_collections_statement(arn))
        # Every function that wires the garbage collector knows the engine's ARN.
        for logical in (LOGICAL_IDS[fn] for fn in (*GC_STARTERS, *GC_FUNCTIONS)):
            self.chalice.add_environment_variable("PORTSIDE_GC_STATE_MACHINE_ARN", arn, logical)
        return machine

    # ---------------------------------------------------------- entry points

    def _certificate(self) -> acm.ICertificate | None:
        """The certificate of the domain's two names, for the CloudFront distributions they
        are aliases of: CloudFront only takes certificates from us-east-1."""
        domain = self.stage.domain
        if domain is None:
            return None
        if domain.certificate_arn:  # stages.Domain checked that it is a us-east-1 ARN
            return acm.Certificate.from_certificate_arn(self, "Certificate", domain.certificate_arn)
        zone = self._zone()
        if zone is None:
            raise ValueError(f"stage {self.stage.name}: a domain needs certificate_arn or a zone")
        names: dict[str, Any] = {
            "domain_name": domain.name,
            "subject_alternative_names": [domain.uploads],
        }
        if self.region == "us-east-1":
            return acm.Certificate(
                self, "Certificate", validation=acm.CertificateValidation.from_dns(zone), **names
            )
        # From another region, a custom resource requests and DNS-validates it in us-east-1
        # (the one construct that does so within this stack; CDK marks it deprecated in
        # favour of a second stack with cross-region references).
        return acm.DnsValidatedCertificate(
            self, "Certificate", hosted_zone=zone, region="us-east-1", **names
        )

    def _zone(self) -> route53.IHostedZone | None:
        domain = self.stage.domain
        if domain is None or not (domain.hosted_zone_id and domain.hosted_zone_name):
            return None
        if not hasattr(self, "_hosted_zone"):
            self._hosted_zone = route53.HostedZone.from_hosted_zone_attributes(
                self,
                "Zone",
                hosted_zone_id=domain.hosted_zone_id,
                zone_name=domain.hosted_zone_name,
            )
        return self._hosted_zone

    def _public_entry(self) -> str:
        """docker needs /v2/ at the root of a host, while API Gateway serves the stage under
        /<stage>/: CloudFront in front of the API (origin path /<stage>) gives a host with
        /v2/ at its root, in every stage. A custom domain is an alias of this distribution,
        not an API Gateway custom domain, so that what the distribution does (restore
        WWW-Authenticate at the edge, never cache) holds for it too."""
        stage = self.stage
        self._gateway_responses()
        origin = origins.HttpOrigin(
            cdk.Fn.sub("${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}"),
            origin_path=f"/{self.lambda_settings.api_gateway_stage}",
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
        )
        domain = stage.domain
        self.edge_function = self._origin_response_function()
        self.api_distribution = cloudfront.Distribution(
            self,
            "ApiDistribution",
            comment=f"Portside {stage.name}: registry API (/v2/ at the root)",
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            error_responses=_no_error_caching(),
            **self._aliases(domain.name if domain else None),
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                # Nothing from /v2/ or /api/v1/ is cached: tokens, tags, upload states and
                # 404s all change; blob bytes never pass here (307 to S3).
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                # Every viewer header (Authorization, Accept, Content-Type, Content-Range,
                # Docker-*, ...) and query string, but not Host: API Gateway answers only to
                # its own host name. CloudFront refuses Authorization in a custom origin
                # request policy; the managed AllViewer* policies forward it when caching
                # is disabled.
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                # API Gateway renames WWW-Authenticate (x-amzn-Remapped-...); this puts it
                # back, on 401s too (viewer-side functions do not run on origin errors).
                edge_lambdas=[
                    cloudfront.EdgeLambda(
                        function_version=self.edge_function.current_version,
                        event_type=cloudfront.LambdaEdgeEventType.ORIGIN_RESPONSE,
                    )
                ],
                compress=False,
            ),
        )
        if domain is not None:
            self._alias_records("Api", domain.name, self.api_distribution)
            cdk.CfnOutput(
                self,
                "ApiDomainTarget",
                value=self.api_distribution.distribution_domain_name,
                description="DNS target (CNAME) of the registry domain, without a zone",
            )
            return f"https://{domain.name}"
        return f"https://{self.api_distribution.distribution_domain_name}"

    def _gateway_responses(self) -> None:
        """API Gateway's own refusals as OCI JSON. In the OpenAPI body (not as separate
        AWS::ApiGateway::GatewayResponse resources) so that SAM's deployment, whose id
        hashes the body, redeploys the stage when they change."""
        self.chalice.get_resource("RestAPI").add_property_override(
            "DefinitionBody.x-amazon-apigateway-gateway-responses", gateway_responses()
        )

    def _origin_response_function(self) -> cloudfront.experimental.EdgeFunction:
        """Lambda@Edge (created in us-east-1 whatever the stack's region: from another
        region CDK deploys it in a small companion stack) running portside_edge/."""
        if not (EDGE_DIR / "origin_response.py").is_file():
            raise FileNotFoundError(f"{EDGE_DIR}/origin_response.py: the edge function's code")
        return cloudfront.experimental.EdgeFunction(
            self,
            "OriginResponse",
            description=f"Portside {self.stage.name}: restore WWW-Authenticate, HEAD lengths",
            # Lambda@Edge: x86_64 only, no environment variables, at most 30 s on origin
            # events; the function only rewrites headers.
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler=EDGE_HANDLER,
            code=lambda_.Code.from_asset(
                str(EDGE_DIR), exclude=["__pycache__", "*.pyc", ".mypy_cache"]
            ),
            memory_size=128,
            timeout=cdk.Duration.seconds(5),
        )

    def _aliases(self, name: str | None) -> dict[str, Any]:
        """A distribution's custom name, when the stage has a domain."""
        if name is None:
            return {}
        return {
            "domain_names": [name],
            "certificate": self.domain_cert,
            "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
        }

    def _alias_records(
        self, prefix: str, name: str, distribution: cloudfront.IDistribution
    ) -> None:
        zone = self._zone()
        if zone is None:
            return
        target = route53.RecordTarget.from_alias(route53_targets.CloudFrontTarget(distribution))
        route53.ARecord(self, f"{prefix}Alias", zone=zone, record_name=name, target=target)
        route53.AaaaRecord(self, f"{prefix}AliasIpv6", zone=zone, record_name=name, target=target)

    def _upload_host(self) -> str:
        """The streaming upload host: the same code on ECS Fargate behind an ALB."""
        stage, config = self.stage, self.stage.upload_host
        # Public subnets and no NAT gateway (no idle cost); S3 and DynamoDB traffic stays
        # on the free gateway endpoints.
        vpc = ec2.Vpc(
            self,
            "UploadVpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        cluster = ecs.Cluster(
            self,
            "UploadCluster",
            vpc=vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED
                if stage.retain_data
                else ecs.ContainerInsights.DISABLED
            ),
        )
        log_group = logs.LogGroup(
            self,
            "UploadHostLogs",
            log_group_name=f"/portside/{stage.name}/upload-host",
            retention=_retention(self.lambda_settings.log_retention_days(API_FUNCTION)),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        domain = stage.domain
        upload_url = f"https://{domain.uploads}" if domain else None
        platform = ecs.CpuArchitecture.ARM64 if config.arm64 else ecs.CpuArchitecture.X86_64
        environment = {
            "PORT": str(UPLOAD_PORT),
            "THREADS": str(config.threads),
            "AWS_DEFAULT_REGION": self.region,
            "PORTSIDE_TABLE": stage.table,
            "PORTSIDE_BUCKET": self.bucket.bucket_name,
            "PORTSIDE_SIGNING_KEY_SECRET_ARN": self.secret.secret_arn,
            "PORTSIDE_PUBLIC_URL": self.public_url,
            # The application settings of .chalice/config.json, as the API function has them.
            **self.lambda_settings.environment(API_FUNCTION),
        }
        if upload_url:
            environment["PORTSIDE_UPLOAD_URL"] = upload_url
        # With a domain, CloudFront reaches the ALB over TLS too: the ALB presents a
        # certificate for uploads.<domain>, the Host CloudFront forwards (and checks the
        # certificate against). Without one there is no name to certify: HTTP.
        listener: dict[str, Any] = (
            {
                "protocol": elbv2.ApplicationProtocol.HTTPS,
                "listener_port": 443,
                "certificate": self._origin_certificate(),
                "ssl_policy": elbv2.SslPolicy.RECOMMENDED_TLS,
                "redirect_http": False,
            }
            if domain
            else {"protocol": elbv2.ApplicationProtocol.HTTP, "listener_port": 80}
        )
        service = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "UploadHost",
            cluster=cluster,
            cpu=config.cpu,
            memory_limit_mib=config.memory_mib,
            desired_count=config.min_tasks,
            min_healthy_percent=100,
            assign_public_ip=True,
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            public_load_balancer=True,
            # Whole layers arrive in one request: allow slow clients.
            idle_timeout=cdk.Duration.seconds(900),
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=platform,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            task_image_options=ecs_patterns.ApplicationLoadBalancedTaskImageOptions(
                image=ecs.ContainerImage.from_asset(
                    str(REPO_ROOT),
                    file="Dockerfile.upload-host",
                    platform=_asset_platform(config.arm64),
                ),
                container_port=UPLOAD_PORT,
                environment=environment,
                log_driver=ecs.LogDrivers.aws_logs(stream_prefix="upload", log_group=log_group),
            ),
            # Reached through CloudFront only (_restrict_to_cloudfront): no 0.0.0.0/0 rule.
            open_listener=False,
            **listener,
        )
        service.target_group.configure_health_check(path="/healthz", healthy_http_codes="200")
        service.target_group.set_attribute("deregistration_delay.timeout_seconds", "120")
        scaling = service.service.auto_scale_task_count(
            min_capacity=config.min_tasks, max_capacity=config.max_tasks
        )
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
        # Upload bodies only: not the API's policy (policies.upload_host_statements).
        for statement in policies.upload_host_statements(self.table, self.bucket, self.secret):
            service.task_definition.add_to_task_role_policy(statement)
        self.upload_host = service
        # The pattern outputs the ALB's name and http:// URL, which answer 403 to anyone
        # but CloudFront: the outputs name the distributions instead.
        for output in ("LoadBalancerDNS", "ServiceURL"):
            service.node.try_remove_child(output)
        port = 443 if domain else 80
        verify = self._restrict_to_cloudfront(service, port)

        # CloudFront gives the ALB its HTTPS front (and the domain's name, if any).
        self.upload_distribution = cloudfront.Distribution(
            self,
            "UploadDistribution",
            comment=f"Portside {stage.name}: upload host",
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            error_responses=_no_error_caching(),
            **self._aliases(domain.uploads if domain else None),
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.LoadBalancerV2Origin(
                    service.load_balancer,
                    protocol_policy=(
                        cloudfront.OriginProtocolPolicy.HTTPS_ONLY
                        if domain
                        else cloudfront.OriginProtocolPolicy.HTTP_ONLY
                    ),
                    custom_headers={ORIGIN_VERIFY_HEADER: verify},
                    # The longest CloudFront waits for the origin's first byte without a
                    # quota increase. It starts once the body is forwarded; the final
                    # PUT ?digest= answers within it whatever the blob's size, since
                    # committing copies nothing (docs/deploy.md).
                    read_timeout=cdk.Duration.seconds(60),
                    # Reuse connections to the ALB (idle timeout 900 s) as long as CloudFront
                    # allows without a quota increase, rather than 5 s.
                    keepalive_timeout=cdk.Duration.seconds(60),
                ),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER,
                compress=False,
            ),
        )
        if domain is not None:
            self._alias_records("Upload", domain.uploads, self.upload_distribution)
            cdk.CfnOutput(
                self,
                "UploadDomainTarget",
                value=self.upload_distribution.distribution_domain_name,
                description="DNS target (CNAME) of the upload domain, without a zone",
            )
        if upload_url is None:
            upload_url = f"https://{self.upload_distribution.distribution_domain_name}"
            service.task_definition.default_container.add_environment(  # type: ignore[union-attr]
                "PORTSIDE_UPLOAD_URL", upload_url
            )
        return upload_url

    def _origin_certificate(self) -> acm.ICertificate:
        """The ALB's certificate for uploads.<domain>, in the stack's region."""
        domain = self.stage.domain
        assert domain is not None and self.domain_cert is not None
        if self.region == "us-east-1":
            return self.domain_cert  # the CloudFront certificate covers uploads.<domain>
        if domain.origin_certificate_arn:
            return acm.Certificate.from_certificate_arn(
                self, "OriginCertificate", domain.origin_certificate_arn
            )
        zone = self._zone()
        if zone is None:
            raise ValueError(
                f"stage {self.stage.name}: outside us-east-1, the upload host's load balancer "
                f"needs a certificate for {domain.uploads} in {self.region}: set "
                "domain.origin_certificate_arn, or a hosted zone to validate one in"
            )
        return acm.Certificate(
            self,
            "OriginCertificate",
            domain_name=domain.uploads,
            validation=acm.CertificateValidation.from_dns(zone),
        )

    def _restrict_to_cloudfront(
        self, service: ecs_patterns.ApplicationLoadBalancedFargateService, port: int
    ) -> str:
        """Only CloudFront reaches the ALB, and only this stack's distribution gets past the
        listener. The security group admits CloudFront's origin-facing servers only (AWS's
        managed prefix list, whose id differs per region and is looked up at deploy time);
        other accounts' distributions come from the same addresses, so the listener
        forwards only requests carrying a secret header that our distribution adds, and
        answers anything else 403. Returns the header's value."""
        lookup = cr.AwsSdkCall(
            service="EC2",
            action="describeManagedPrefixLists",
            parameters={
                "Filters": [{"Name": "prefix-list-name", "Values": [CLOUDFRONT_PREFIX_LIST]}]
            },
            physical_resource_id=cr.PhysicalResourceId.of(CLOUDFRONT_PREFIX_LIST),
            output_paths=["PrefixLists.0.PrefixListId"],
        )
        prefix_list = cr.AwsCustomResource(
            self,
            "CloudFrontPrefixList",
            on_create=lookup,
            on_update=lookup,
            # Describe* has no resource-level permissions.
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
            ),
            install_latest_aws_sdk=False,
        )
        service.load_balancer.connections.allow_from(
            ec2.Peer.prefix_list(prefix_list.get_response_field("PrefixLists.0.PrefixListId")),
            ec2.Port.tcp(port),
            "CloudFront origin-facing servers only",
        )
        secret = secretsmanager.Secret(
            self,
            "UploadOriginSecret",
            description=f"Portside {self.stage.name}: {ORIGIN_VERIFY_HEADER}, CloudFront to ALB",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True
            ),
        )
        # A dynamic reference resolved by CloudFormation, in the distribution's origin
        # headers and the listener rule alike; the template never holds the value.
        value = secret.secret_value.unsafe_unwrap()
        listener = service.listener
        listener.add_action(
            "RefuseDirect",
            action=elbv2.ListenerAction.fixed_response(
                403,
                content_type="application/json",
                message_body=json.dumps(
                    {
                        "errors": [
                            {
                                "code": "DENIED",
                                "message": "the upload host is reached through CloudFront only",
                                "detail": None,
                            }
                        ]
                    }
                ),
            ),
        )
        cdk.Annotations.of(listener).acknowledge_warning(
            "@aws-cdk/aws-elbv2:listenerExistingDefaultActionReplaced",
            "the pattern's forward-everything default is replaced on purpose by a 403",
        )
        listener.add_action(
            "FromCloudFront",
            priority=1,
            conditions=[elbv2.ListenerCondition.http_header(ORIGIN_VERIFY_HEADER, [value])],
            action=elbv2.ListenerAction.forward([service.target_group]),
        )
        return value

    # ---------------------------------------------------------------- alarms

    def _alarms(self) -> None:
        config = self.stage.alarms
        topic = sns.Topic(self, "AlarmTopic", display_name=f"Portside {self.stage.name} alarms")
        if config.email:
            topic.add_subscription(sns_subscriptions.EmailSubscription(config.email))
        action = cw_actions.SnsAction(topic)
        five = cdk.Duration.minutes(5)
        dims = {"service": METRICS_SERVICE}

        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map=dims,
                statistic=statistic,
                period=five,
            )

        alarms: list[cloudwatch.Alarm] = [
            cloudwatch.MathExpression(
                expression="100 * errors / requests",
                using_metrics={
                    "errors": metric("ServerErrors", "Sum"),
                    "requests": metric("Requests", "Sum"),
                },
                period=five,
                label="5xx rate (%)",
            ).create_alarm(
                self,
                "ServerErrorRateAlarm",
                alarm_description="Share of /v2/ requests answered with a 5xx",
                threshold=config.server_error_rate * 100,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            metric("Latency", "p99").create_alarm(
                self,
                "LatencyP99Alarm",
                alarm_description="p99 of /v2/ request handling time (ms)",
                threshold=config.latency_p99_ms,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]
        for name, logical in LOGICAL_IDS.items():
            for metric_name, threshold in (("Errors", config.lambda_errors), ("Throttles", 1)):
                alarms.append(
                    cloudwatch.Metric(
                        namespace="AWS/Lambda",
                        metric_name=metric_name,
                        dimensions_map={"FunctionName": cdk.Fn.ref(logical)},
                        statistic="Sum",
                        period=five,
                    ).create_alarm(
                        self,
                        f"{logical}{metric_name}Alarm",
                        alarm_description=f"Lambda {metric_name.lower()} of {name}",
                        threshold=threshold,
                        evaluation_periods=1,
                        comparison_operator=(
                            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                        ),
                        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    )
                )
        # A collection that failed left its registry released but its garbage in place.
        alarms.append(
            self.gc_state_machine.metric_failed(period=five, statistic="Sum").create_alarm(
                self,
                "GcExecutionsFailedAlarm",
                alarm_description="Garbage-collection state machine executions that failed",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=(
                    cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                ),
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
        if self.upload_host is not None:
            lb = self.upload_host.load_balancer
            for code, label in (
                (elbv2.HttpCodeTarget.TARGET_5XX_COUNT, "Target"),
                (elbv2.HttpCodeElb.ELB_5XX_COUNT, "Elb"),
            ):
                source = (
                    lb.metrics.http_code_target if label == "Target" else lb.metrics.http_code_elb
                )
                alarms.append(
                    source(code, period=five, statistic="Sum").create_alarm(  # type: ignore[arg-type]
                        self,
                        f"UploadHost{label}5xxAlarm",
                        alarm_description=f"Upload host {label.lower()} 5xx responses",
                        threshold=config.upload_host_5xx,
                        evaluation_periods=1,
                        comparison_operator=(
                            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                        ),
                        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    )
                )
        for alarm in alarms:
            alarm.add_alarm_action(action)

    # --------------------------------------------------------------- outputs

    def _outputs(self) -> None:
        host = cdk.Fn.select(2, cdk.Fn.split("/", self.public_url))
        cdk.CfnOutput(
            self,
            "RegistryUrl",
            value=self.public_url,
            description="Base URL of the registry (/v2/) and the management API",
        )
        cdk.CfnOutput(
            self,
            "RegistryHost",
            value=host,
            description="docker login <host>; images are <host>/<registry>/<repo>",
        )
        cdk.CfnOutput(
            self,
            "UploadUrl",
            value=self.upload_url or "(no upload host)",
            description="PORTSIDE_UPLOAD_URL: the streaming upload host",
        )
        cdk.CfnOutput(self, "TableName", value=self.table.table_name)
        cdk.CfnOutput(self, "BlobBucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "AccessLogBucketName", value=self.log_bucket.bucket_name)
        cdk.CfnOutput(self, "ExportsBucketName", value=self.exports_bucket.bucket_name)
        cdk.CfnOutput(self, "SigningKeySecretArn", value=self.secret.secret_arn)


RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def _no_error_caching() -> list[cloudfront.ErrorResponse]:
    return [
        cloudfront.ErrorResponse(http_status=code, ttl=cdk.Duration.seconds(0))
        for code in CLOUDFRONT_ERROR_CODES
    ]


def gateway_responses() -> dict[str, Any]:
    """API Gateway's own refusals that can be customized, as OCI error bodies, in the form
    of the `x-amazon-apigateway-gateway-responses` OpenAPI extension. The table is
    portside_edge/gateway_responses.py, which the local gateway answers from too (so tests
    see the bodies clients will see); REQUEST_TOO_LARGE is not in it because API Gateway
    ignores a customized 413."""
    out: dict[str, Any] = {}
    for answer in STACK_GATEWAY_RESPONSES:
        status = answer.stack_status_code()
        out[answer.response_type] = {
            **({"statusCode": status} if status is not None else {}),
            "responseTemplates": answer.templates(),
        }
    return out


def _retention(days: int) -> logs.RetentionDays:
    if days not in RETENTION:
        raise ValueError(f"log retention must be one of {sorted(RETENTION)} days, not {days}")
    return RETENTION[days]


def _asset_platform(arm64: bool) -> Any:
    from aws_cdk import aws_ecr_assets as ecr_assets

    return ecr_assets.Platform.LINUX_ARM64 if arm64 else ecr_assets.Platform.LINUX_AMD64
