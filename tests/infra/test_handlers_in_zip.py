"""Every Lambda handler string of every synthesized stage resolves in the artifact that
deploys, and runs on a representative event, in an interpreter that has only what the Lambda
runtime provides; and the upload host image's Python environment starts and answers.

Synthesis and cfn-lint check that a handler string is well formed, never that it exists:
a schedule handler defined inside a factory function passes both and fails every
invocation on AWS with ``Runtime.HandlerNotFound``. So here each function's code is taken
from the cloud assembly (the staged asset ``cdk deploy`` uploads), unpacked, and its handler
is imported and invoked by tests/infra/lambda_probe.py under ``python -I -S`` with
``sys.path`` = that code + boto3/botocore/s3transfer/jmespath/urllib3/dateutil/six, with the
function's own environment from the template, against moto on loopback (table, bucket and
the signing-key secret). A handler that cannot be imported, raises, or answers 5xx fails.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from portside_infra.lambda_bundle import BUILD_DIR

from chalicelib.application import create_app
from portside.local.runtime import free_port
from portside.local.schedules import app_schedules, scheduled_event

from .conftest import REGION, Synth, lambda_runtime_dir

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("lambda_probe.py")
DOCKERFILE = REPO / "Dockerfile.upload-host"
PUBLIC_URL = "https://registry.example.test"
UPLOAD_URL = "https://uploads.example.test"
REGISTRY = "probe"
GC_STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:123456789012:stateMachine:portside-probe-gc"
# Functions a state machine invokes, by the placeholder its definition names them with.
STATE_MACHINE_KINDS = {"GcStepFunctionArn": "gc-step", "GcFailedFunctionArn": "gc-failed"}
# The Python runtime's own environment (the function's variables come on top).
RUNTIME_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


# ------------------------------------------------------------------ the AWS stand-in


@dataclass
class Aws:
    endpoint: str
    secret_arn: str
    tokens: dict[str, str]  # table name -> API token of the probe registry

    def bucket(self, table: str) -> str:
        return f"{table}-blobs"

    def injected(self, table: str) -> dict[str, str]:
        """Test values of what the stack injects from deployed resources."""
        return {
            "PORTSIDE_BUCKET": self.bucket(table),
            # Billing exports (registry.billing): the blob bucket stands in for the exports one.
            "PORTSIDE_EXPORT_BUCKET": self.bucket(table),
            "PORTSIDE_SIGNING_KEY_SECRET_ARN": self.secret_arn,
            "PORTSIDE_PUBLIC_URL": PUBLIC_URL,
            "PORTSIDE_UPLOAD_URL": UPLOAD_URL,
            "PORTSIDE_GC_STATE_MACHINE_ARN": GC_STATE_MACHINE_ARN,
            "PORTSIDE_LOG_BUCKET": self.log_bucket(table),
            # Large direct uploads' verifier: the API probes never complete one.
            "PORTSIDE_VERIFY_FUNCTION": (
                f"arn:aws:lambda:{REGION}:123456789012:function:{table}-verify-direct-upload"
            ),
            "AWS_DEFAULT_REGION": REGION,
        }

    def log_bucket(self, table: str) -> str:
        return f"{table}-logs"

    def put_log(self, table: str, key: str, body: bytes) -> None:
        """A log object in the log bucket, as S3's log delivery writes one."""
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=self.log_bucket(table))
        s3.put_object(Bucket=self.log_bucket(table), Key=key, Body=body)

    def provision(self, table: str) -> str:
        """Table, bucket, a registry and a token, made by the local runtime's own code in a
        process of its own (PynamoDB binds its table per process)."""
        if table not in self.tokens:
            env = {
                **RUNTIME_ENV,
                "HOME": os.environ.get("HOME", "/root"),
                "AWS_ENDPOINT_URL": self.endpoint,
                "PORTSIDE_TABLE": table,
                "PORTSIDE_BUCKET": self.bucket(table),
                "PORTSIDE_SIGNING_KEY": "provisioning-only",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
            code = (
                "from portside.local.runtime import provision\n"
                f"print(provision({REGISTRY!r}, None).token)\n"
            )
            done = subprocess.run(
                [sys.executable, "-c", code],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            self.tokens[table] = done.stdout.strip().splitlines()[-1]
        return self.tokens[table]


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        secrets = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        arn = secrets.create_secret(Name="portside-probe-signing-key", SecretString="k" * 64)["ARN"]
        yield Aws(endpoint, arn, {})
    finally:
        server.stop()


# ------------------------------------------------------------- the template's functions


@dataclass(frozen=True)
class Function:
    stage: str
    logical_id: str
    handler: str
    runtime: str
    properties: dict[str, Any]
    kind: str  # "api", "schedule", an edge event type, or "" when unknown


def _ref_target(resources: dict[str, Any], value: Any) -> str | None:
    """The logical ID of the function a Ref/GetAtt (possibly through a Version) names."""
    if isinstance(value, dict):
        if "Ref" in value:
            name = value["Ref"]
        elif "Fn::GetAtt" in value:
            name = value["Fn::GetAtt"][0]
        else:
            return None
        resource = resources.get(name, {})
        if resource.get("Type") == "AWS::Lambda::Version":
            return _ref_target(resources, resource["Properties"]["FunctionName"])
        return str(name)
    return None


def _edge_associations(resources: dict[str, Any]) -> dict[str, str]:
    """Function logical ID -> CloudFront event type it is associated with."""
    found: dict[str, str] = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudFront::Distribution":
            continue
        config = resource["Properties"]["DistributionConfig"]
        behaviours = [config.get("DefaultCacheBehavior", {}), *config.get("CacheBehaviors", [])]
        for behaviour in behaviours:
            for association in behaviour.get("LambdaFunctionAssociations", []):
                target = _ref_target(resources, association["LambdaFunctionARN"])
                if target:
                    found[target] = association["EventType"]
    return found


def _state_machine_tasks(resources: dict[str, Any]) -> dict[str, str]:
    """Function logical ID -> its kind, for the functions state machines invoke."""
    found: dict[str, str] = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        substitutions = resource["Properties"].get("DefinitionSubstitutions", {})
        for placeholder, value in substitutions.items():
            target = _ref_target(resources, value)
            if target:
                found[target] = STATE_MACHINE_KINDS.get(placeholder, placeholder)
    return found


def _stream_consumers(resources: dict[str, Any]) -> dict[str, str]:
    """Function logical ID -> "dynamodb-stream", for the functions a DynamoDB stream's
    event source mapping feeds."""
    found: dict[str, str] = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        props = resource["Properties"]
        if "StreamArn" in json.dumps(props.get("EventSourceArn")):
            # The function's name, as CDK writes it: {"Fn::Select": [6, {"Fn::Split":
            # [":", {"Fn::GetAtt": [<function>, "Arn"]}]}]}.
            written = json.dumps(props["FunctionName"])
            named = re.findall(r'"Fn::GetAtt": \["([^"]+)", "Arn"\]', written)
            found.update((name, "dynamodb-stream") for name in named)
    return found


def _log_consumers(resources: dict[str, Any]) -> dict[str, str]:
    """Function logical ID -> "log-object" for the target of the rule on S3 "Object
    Created" events, "cloudwatch-logs" for a log group subscription's destination."""
    found: dict[str, str] = {}
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Events::Rule" and "aws.s3" in json.dumps(
            props.get("EventPattern", {}).get("source")
        ):
            for target in props.get("Targets", []):
                name = _ref_target(resources, target["Arn"])
                if name:
                    found[name] = "log-object"
        elif resource["Type"] == "AWS::Logs::SubscriptionFilter":
            name = _ref_target(resources, props["DestinationArn"])
            if name:
                found[name] = "cloudwatch-logs"
    return found


def _async_invoked(resources: dict[str, Any]) -> dict[str, str]:
    """Function logical ID -> "direct-verify" for the function another function's
    PORTSIDE_VERIFY_FUNCTION names (the API invokes it asynchronously)."""
    found: dict[str, str] = {}
    for resource in resources.values():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        named = re.findall(
            r'"Fn::GetAtt": \["([^"]+)", "Arn"\]',
            json.dumps(variables.get("PORTSIDE_VERIFY_FUNCTION")),
        )
        found.update((name, "direct-verify") for name in named)
    return found


def template_functions(stage: str, synth: Synth) -> list[Function]:
    resources = synth.resources
    edge = {
        **_edge_associations(resources),
        **_state_machine_tasks(resources),
        **_stream_consumers(resources),
        **_log_consumers(resources),
        **_async_invoked(resources),
    }
    functions = []
    for logical, resource in resources.items():
        if resource["Type"] not in ("AWS::Lambda::Function", "AWS::Serverless::Function"):
            continue
        props = resource["Properties"]
        events = props.get("Events", {})
        if any(e["Type"] == "Schedule" for e in events.values()):
            kind = "schedule"
        elif resource["Type"] == "AWS::Serverless::Function" and logical == "APIHandler":
            kind = "api"  # Chalice's name for the function behind the REST API
        else:
            kind = edge.get(logical, "")
        functions.append(
            Function(stage, logical, props["Handler"], props.get("Runtime", ""), props, kind)
        )
    return functions


def _skip_reason(function: Function) -> str | None:
    if not function.runtime.startswith("python"):
        return f"{function.runtime}: not Python"
    if "ZipFile" in function.properties.get("Code", {}):
        return "inline code of CDK's own (not a Portside artifact)"
    return None


def staged_code(synth: Synth, function: Function, unpacked: Path) -> Path:
    """The unpacked code of ``function`` as the cloud assembly stages it for upload."""
    code = function.properties.get("CodeUri") or function.properties.get("Code") or {}
    key = code.get("Key") or code.get("S3Key")
    assert isinstance(key, str), f"{function.logical_id}: code is not a staged asset: {code}"
    asset_hash = key.removesuffix(".zip")
    directory = synth.outdir / f"asset.{asset_hash}"
    archive = synth.outdir / f"asset.{asset_hash}.zip"
    if directory.is_dir():
        return directory
    assert archive.is_file(), f"{function.logical_id}: {key} is not in {synth.outdir}"
    target = unpacked / asset_hash
    if not target.exists():
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
    return target


# ---------------------------------------------------------------------------- events


def rest_event(
    method: str, path: str, token: str | None = None, body: bytes = b""
) -> dict[str, Any]:
    """An API Gateway REST proxy event for the stage ``api`` as Lambda receives it."""
    prefix = "/api/v1" if path.startswith("/api/v1/") else "/v2"
    rest = path[len(prefix) :].lstrip("/")
    resource = f"{prefix}/{{proxy+}}" if rest else prefix
    headers = {
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "docker/27.0.0 go/go1.22",
        "X-Forwarded-Proto": "https",
    }
    if token and prefix == "/v2":  # docker login: the token as user and password
        basic = base64.b64encode(f"{token}:{token}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    elif token:  # the management API takes the token as a bearer
        headers["Authorization"] = f"Bearer {token}"
    if body:
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Length"] = str(len(body))
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": rest} if rest else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "r1",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "203.0.113.10", "userAgent": headers["User-Agent"]},
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


# label, method, path, authenticated, expected status (None: anything below 500)
API_CASES: list[tuple[str, str, str, bool, int | None]] = [
    ("GET /v2/ anonymous", "GET", "/v2/", False, 401),
    ("HEAD /v2/ anonymous", "HEAD", "/v2/", False, 401),
    ("GET /v2/", "GET", "/v2/", True, 200),
    ("HEAD /v2/", "HEAD", "/v2/", True, 200),
    ("HEAD unknown manifest", "HEAD", f"/v2/{REGISTRY}/app/manifests/latest", True, 404),
    ("GET tags of a new repository", "GET", f"/v2/{REGISTRY}/app/tags/list", True, None),
    ("POST blob upload", "POST", f"/v2/{REGISTRY}/app/blobs/uploads/", True, 202),
    ("GET /api/v1/registries", "GET", "/api/v1/registries", True, 200),
    ("GET /api/v1/registries anonymous", "GET", "/api/v1/registries", False, 401),
]


def origin_response_event(method: str, status: str, headers: dict[str, str]) -> dict[str, Any]:
    """A CloudFront origin-response event (Lambda@Edge)."""
    return {
        "Records": [
            {
                "cf": {
                    "config": {
                        "distributionDomainName": "d111111abcdef8.cloudfront.net",
                        "distributionId": "EDFDVBD6EXAMPLE",
                        "eventType": "origin-response",
                        "requestId": str(uuid.uuid4()),
                    },
                    "request": {
                        "clientIp": "203.0.113.10",
                        "headers": {"host": [{"key": "Host", "value": "registry.example.test"}]},
                        "method": method,
                        "querystring": "",
                        "uri": "/v2/",
                    },
                    "response": {
                        "headers": {
                            k.lower(): [{"key": k, "value": v}] for k, v in headers.items()
                        },
                        "status": status,
                        "statusDescription": "",
                    },
                }
            }
        ]
    }


def stream_event() -> dict[str, Any]:
    """A DynamoDB stream batch as Lambda delivers it after the mapping's filter: the probe
    registry's record going from 79% to 80% of the starter plan's storage."""

    def image(storage: int) -> dict[str, Any]:
        return {
            "pk": {"S": f"REG#{REGISTRY}"},
            "sk": {"S": "#META"},
            "registry_id": {"S": "0" * 32},
            "account_id": {"S": "probe"},
            "plan": {"S": "starter"},
            "storage_bytes": {"N": str(storage)},
            "repository_count": {"N": "0"},
        }

    limit = 500 * 1024 * 1024
    return {
        "Records": [
            {
                "eventID": uuid.uuid4().hex,
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": int(time.time()),
                    "Keys": {"pk": {"S": f"REG#{REGISTRY}"}, "sk": {"S": "#META"}},
                    "OldImage": image(limit * 79 // 100),
                    "NewImage": image(limit * 80 // 100),
                    "SequenceNumber": "111",
                    "SizeBytes": 300,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": f"arn:aws:dynamodb:{REGION}:123456789012:table/probe/"
                "stream/2026-12-02T00:00:00.000",
            }
        ]
    }


# An S3 server access log line (the real format) of a 1 MiB blob download; and the key S3
# delivers it under in the log bucket.
PROBE_LOG_KEY = "s3-access/2026-12-02-22-15-01-0123456789ABCDEF"
PROBE_LOG_LINE = (
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be probe-blobs "
    "[02/Dec/2026:22:10:15 +0000] 192.0.2.3 - 3E57427F3EXAMPLE REST.GET.OBJECT "
    f"registries/{'0' * 32}/blobs/uploads/u1/data "
    f'"GET /registries/{"0" * 32}/blobs/uploads/u1/data?X-Amz-Expires=300 HTTP/1.1" '
    '200 - 1048576 1048576 12 11 "-" "docker/27.0.0 go/go1.22" - '
    "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 "
    "ECDHE-RSA-AES128-GCM-SHA256 QueryString probe-blobs.s3.us-east-1.amazonaws.com TLSv1.3 - -"
)


def log_object_event(bucket: str, key: str) -> dict[str, Any]:
    """EventBridge's S3 "Object Created" event for a new log object."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": "aws.s3",
        "detail-type": "Object Created",
        "account": "123456789012",
        "region": REGION,
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}},
    }


def api_logs_event() -> dict[str, Any]:
    """A CloudWatch Logs subscription batch of API access-log records: two pulls of the
    probe registry."""
    record = {
        "requestId": "r-1",
        "requestTime": "02/Dec/2026:22:10:15 +0000",
        "requestTimeEpoch": 1796249415000,
        "httpMethod": "GET",
        "path": f"/api/v2/{REGISTRY}/app/manifests/latest",
        "status": "200",
        "responseLength": "1234",
        "ip": "192.0.2.1",
    }
    batch = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "/portside/probe/api-access",
        "logStream": uuid.uuid4().hex,
        "logEvents": [
            {"id": str(i), "timestamp": 1796249415000, "message": json.dumps(record)}
            for i in range(2)
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()
    return {"awslogs": {"data": data}}


def cases_for(function: Function, token: str) -> list[dict[str, Any]]:
    if function.kind == "api":
        return [
            {"label": label, "event": rest_event(method, path, token if auth else None)}
            for label, method, path, auth, _ in API_CASES
        ]
    if function.kind == "schedule":
        return [{"label": "scheduled event", "event": scheduled_event(function.logical_id)}]
    # What the state machine passes (infra/state_machines/garbage_collection.asl.json), for
    # a collection that does not exist: nothing to do, and nothing to fail.
    unknown = {"registry_id": f"{REGISTRY}-unknown", "gc_uuid": str(uuid.uuid4())}
    if function.kind == "gc-step":
        return [{"label": "step of an unknown collection", "event": {**unknown, "iterations": 0}}]
    if function.kind == "gc-failed":
        error = {"Error": "States.Timeout", "Cause": "probe"}
        return [{"label": "failure of an unknown collection", "event": {**unknown, "error": error}}]
    if function.kind == "dynamodb-stream":
        return [{"label": "registry record crossing 80%", "event": stream_event()}]
    if function.kind == "log-object":
        # Aws.log_bucket: the test value of the stack's PORTSIDE_LOG_BUCKET.
        bucket = f"{function.properties['Environment']['Variables']['PORTSIDE_TABLE']}-logs"
        event = log_object_event(bucket, PROBE_LOG_KEY)
        return [{"label": "new S3 access-log object", "event": event}]
    if function.kind == "cloudwatch-logs":
        return [{"label": "API access-log batch", "event": api_logs_event()}]
    if function.kind == "direct-verify":
        # What the API sends (LambdaVerificationQueue), for an upload that does not exist.
        return [{"label": "unknown direct upload", "event": {"upload_id": uuid.uuid4().hex}}]
    if function.kind == "origin-response":
        challenge = f'Bearer realm="{PUBLIC_URL}/v2/token",service="portside"'
        return [
            {
                "label": "401 with a remapped challenge",
                "event": origin_response_event(
                    "GET", "401", {"x-amzn-Remapped-WWW-Authenticate": challenge}
                ),
            },
            {
                "label": "HEAD of a manifest",
                "event": origin_response_event(
                    "HEAD", "200", {"Content-Length": "0", "Docker-Content-Digest": "sha256:0"}
                ),
            },
        ]
    raise AssertionError(
        f"{function.stage}/{function.logical_id} ({function.handler}): no representative "
        "event for this kind of function; add one to tests/infra/test_handlers_in_zip.py"
    )


# ------------------------------------------------------------------------------ probe


def _environment(function: Function, aws: Aws) -> dict[str, str]:
    variables = function.properties.get("Environment", {}).get("Variables", {})
    table = variables.get("PORTSIDE_TABLE", "")
    injected = aws.injected(table)
    env = dict(RUNTIME_ENV)
    for name, value in variables.items():
        if isinstance(value, str):
            env[name] = value
        else:
            assert name in injected, f"{function.logical_id}: no test value for {name}={value}"
            env[name] = injected[name]
    return env


def _stdlib_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({paths["stdlib"], paths["platstdlib"]})


def run_probe(
    function: Function, code: Path, runtime: Path, aws: Aws, workdir: Path
) -> dict[str, Any]:
    token = ""
    table = function.properties.get("Environment", {}).get("Variables", {}).get("PORTSIDE_TABLE")
    if function.kind in (
        "api",
        "schedule",
        "gc-step",
        "gc-failed",
        "cloudwatch-logs",
        "direct-verify",
    ):
        token = aws.provision(table)
    if function.kind == "log-object":
        aws.provision(table)  # the table
        aws.put_log(table, PROBE_LOG_KEY, (PROBE_LOG_LINE + "\n").encode())
    env = {
        **_environment(function, aws),
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.properties.get("MemorySize", 128)),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "LAMBDA_TASK_ROOT": str(code),
        "LAMBDA_RUNTIME_DIR": str(runtime),
        "_HANDLER": function.handler,
    }
    spec_path = workdir / f"{function.stage}-{function.logical_id}.json"
    report_path = spec_path.with_suffix(".report.json")
    spec = {
        "path": [str(code), str(runtime)],
        "handler": function.handler,
        "function_name": function.logical_id,
        "memory_mb": function.properties.get("MemorySize", 128),
        "timeout_s": function.properties.get("Timeout", 3),
        "events": cases_for(function, token),
        "report": str(report_path),
    }
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(PROBE), str(spec_path)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and report_path.exists(), done.stderr[-3000:]
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["stderr"] = done.stderr
    return report


def _failures(function: Function, report: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    where = f"{function.stage}/{function.logical_id} {function.handler}"
    if report["import_error"]:
        return [f"{where}: cannot be resolved\n{report['import_error']}"]
    failures = []
    expected = {label: status for label, _, _, _, status in API_CASES}
    for outcome in report["results"]:
        label = outcome["label"]
        if "error" in outcome:
            failures.append(f"{where} [{label}] raised\n{outcome['error']}")
            continue
        result = outcome["result"]
        if function.kind == "api":
            status = result["statusCode"]
            want = expected[label]
            if status >= 500 or (want is not None and status != want):
                body = str(result.get("body"))[:300]
                failures.append(f"{where} [{label}] answered {status}, not {want}: {body}")
        elif function.kind == "gc-step" and not (
            isinstance(result, dict) and result.get("done") is True
        ):
            failures.append(f"{where} [{label}] returned {result!r}, not done")
        elif function.kind == "dynamodb-stream" and result != {"batchItemFailures": []}:
            failures.append(f"{where} [{label}] returned {result!r}: events not published")
        elif function.kind == "log-object" and not (
            isinstance(result, dict) and result.get("lines") == 1 and "egress_bytes" in result
        ):
            failures.append(f"{where} [{label}] returned {result!r}: the log was not metered")
        elif function.kind == "cloudwatch-logs" and not (
            isinstance(result, dict) and result.get("records") == 2
        ):
            failures.append(f"{where} [{label}] returned {result!r}: records not metered")
        elif function.kind == "direct-verify" and not (
            isinstance(result, dict) and result.get("status") == "skipped"
        ):
            failures.append(f"{where} [{label}] returned {result!r}: not a clean no-op")
        elif function.kind == "origin-response" and (
            not isinstance(result, dict) or int(result.get("status", 500)) >= 500
        ):
            failures.append(f"{where} [{label}] returned {result!r}")
    outside = [f for f in report["module_files"] if not f.startswith(roots)]
    if outside:
        failures.append(f"{where}: imported from outside the artifact and runtime: {outside}")
    return failures


def test_every_handler_of_every_stage_resolves_and_runs_in_the_deployed_artifact(
    synths: dict[str, Synth], aws: Aws, tmp_path: Path
) -> None:
    runtime = lambda_runtime_dir(tmp_path / "runtime")
    unpacked = tmp_path / "code"
    declared_schedules = {s.handler_string for s in app_schedules(create_app())}
    failures: list[str] = []
    ran: list[str] = []
    skipped: list[str] = []
    for stage, synth in sorted(synths.items()):
        functions = template_functions(stage, synth)
        kinds = [f.kind for f in functions]
        assert kinds.count("api") == 1 and kinds.count("schedule") >= 1, (stage, kinds)
        assert kinds.count("gc-step") == kinds.count("gc-failed") == 1, (stage, kinds)
        assert kinds.count("dynamodb-stream") == 1, (stage, kinds)  # quota-watch
        assert kinds.count("log-object") == kinds.count("cloudwatch-logs") == 1, (stage, kinds)
        assert kinds.count("direct-verify") == 1, (stage, kinds)
        # The local runtime fires exactly the schedules the template deploys.
        deployed = {f.handler for f in functions if f.kind == "schedule"}
        assert deployed == declared_schedules, stage
        for function in functions:
            reason = _skip_reason(function)
            if reason:
                skipped.append(f"{stage}/{function.logical_id}: {reason}")
                continue
            code = staged_code(synth, function, unpacked)
            roots = (str(code), str(runtime), *_stdlib_roots())
            report = run_probe(function, code, runtime, aws, tmp_path)
            failures += _failures(function, report, roots)
            ran.append(f"{stage}/{function.logical_id} {function.handler} ({function.kind})")
    print("\nran:\n  " + "\n  ".join(ran) + "\nskipped:\n  " + "\n  ".join(skipped))
    assert not failures, "\n\n".join(failures)


def test_a_handler_missing_from_the_artifact_fails_the_probe(
    synths: dict[str, Synth], aws: Aws, tmp_path: Path
) -> None:
    """The probe is not kinder than AWS: a handler string naming a function that is not a
    module attribute (the bug of schedules defined inside a factory) is reported."""
    synth = synths["lite"]
    schedule = next(f for f in template_functions("lite", synth) if f.kind == "schedule")
    broken = Function(
        schedule.stage,
        schedule.logical_id,
        "chalicelib.events.handlers.not_a_module_attribute",
        schedule.runtime,
        schedule.properties,
        schedule.kind,
    )
    runtime = lambda_runtime_dir(tmp_path / "runtime")
    code = staged_code(synth, broken, tmp_path / "code")
    report = run_probe(broken, code, runtime, aws, tmp_path)
    assert "Runtime.HandlerNotFound" in report["import_error"]


# ------------------------------------------------------------------------- upload host


@dataclass(frozen=True)
class ImageRecipe:
    python: str  # major.minor of the base image
    copies: list[tuple[str, str]]  # (source in the repository, destination under WORKDIR)
    requirements: list[str]  # -r files of the pip install, relative to WORKDIR
    command: list[str]


def read_dockerfile(path: Path = DOCKERFILE) -> ImageRecipe:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    instructions = [line for line in lines if not line.startswith("#")]
    base = next(line for line in instructions if line.startswith("FROM "))
    match = re.search(r"python:(\d+\.\d+)", base)
    assert match, base
    workdir = next(line.split()[1] for line in instructions if line.startswith("WORKDIR "))
    copies = []
    requirements: list[str] = []
    command: list[str] = []
    for line in instructions:
        words = shlex.split(line)
        if words[0] == "COPY":
            assert not any(w.startswith("--from") for w in words), line
            *sources, target = [w for w in words[1:] if not w.startswith("--")]
            for source in sources:
                destination = target
                if destination.startswith(workdir):
                    destination = destination[len(workdir) :]
                copies.append((source, destination.lstrip("./") or "."))
        elif words[0] == "RUN" and "pip" in words and "install" in words:
            requirements += [words[i + 1] for i, w in enumerate(words) if w == "-r"]
        elif words[0] == "CMD":
            command = json.loads(line[len("CMD") :])
    return ImageRecipe(match.group(1), copies, requirements, command)


def image_site_packages(app: Path, requirements: list[str]) -> Path:
    """``pip install`` of the image's requirement files into a target directory, cached
    per content (as the image layer is), so later runs cost nothing."""
    texts = [(app / r).read_text() for r in requirements]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = hashlib.sha256("\n".join([python, *texts]).encode()).hexdigest()[:12]
    target = BUILD_DIR / f"upload-host-site-{key}"
    if (target / ".complete").exists():
        return target
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"upload-host-site-{key}.", dir=BUILD_DIR))
    args = [a for r in requirements for a in ("-r", str(app / r))]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(scratch),
            *args,
        ],
        check=True,
        timeout=600,
    )
    (scratch / ".complete").write_text("")
    try:
        scratch.rename(target)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _task_environment(synth: Synth, aws: Aws) -> dict[str, str]:
    (task,) = synth.of_type("AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    env: dict[str, str] = {}
    variables = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
    injected = aws.injected(str(variables.get("PORTSIDE_TABLE", "")))
    for name, value in variables.items():
        if isinstance(value, str):
            env[name] = value
        else:
            assert name in injected, f"upload host: no test value for {name}={value}"
            env[name] = injected[name]
    return env


def test_upload_host_image_environment_starts_and_answers(
    synths: dict[str, Synth], aws: Aws, tmp_path: Path
) -> None:
    recipe = read_dockerfile()
    assert recipe.python == f"{sys.version_info.major}.{sys.version_info.minor}", (
        "the image's Python differs from this interpreter: the check below would not hold"
    )
    app = tmp_path / "app"  # the image's WORKDIR, with exactly what the Dockerfile copies
    for source, destination in recipe.copies:
        origin = REPO / source
        target = app / destination
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            if destination.endswith("/") or destination == ".":
                target = target / origin.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    site = image_site_packages(app, recipe.requirements)
    assert recipe.command[:2] == ["python", "-m"], recipe.command
    module = recipe.command[2]

    env = _task_environment(synths["dev"], aws)
    aws.provision(env["PORTSIDE_TABLE"])
    port = free_port()
    env.update(
        {
            **RUNTIME_ENV,
            "HOME": str(tmp_path),
            "AWS_ENDPOINT_URL": aws.endpoint,
            "PORT": str(port),
        }
    )
    # python -m <module> with the WORKDIR first and the image's site-packages; nothing of
    # this venv or the work tree (-I -S).
    launcher = (
        "import runpy, sys\n"
        f"sys.path[:0] = [{str(app)!r}, {str(site)!r}]\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    log = (tmp_path / "upload-host.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", launcher],
        cwd=app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = _wait_for(f"{base}/healthz", server)
        assert health == (200, b"ok")
        # An upload body with no valid capability reaches the dispatcher (DynamoDB, the
        # secret) and is refused, not a crash.
        request = urllib.request.Request(
            f"{base}/v2/{REGISTRY}/app/blobs/uploads/{uuid.uuid4().hex}",
            data=b"layer bytes",
            method="PATCH",
            headers={"Content-Type": "application/octet-stream"},
        )
        status = _status(request)
        assert 400 <= status < 500, status
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    output = (tmp_path / "upload-host.log").read_text()
    assert "Traceback" not in output, output[-3000:]


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_for(url: str, server: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "the upload host exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), response.read()
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within 30 s")
