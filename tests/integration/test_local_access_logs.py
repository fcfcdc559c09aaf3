"""The local runtime's access logs: S3 server access log lines in AWS's format for the
requests on the blob bucket (bytes sent = the bytes actually streamed, a Range GET counts
its range), written as log objects into the log bucket and delivered as EventBridge
"Object Created" events; API Gateway access-log records delivered as CloudWatch Logs
subscription events. First in-process (moto wrapped, handlers of this module), then through
``portside serve`` with the metering's own handlers."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
import requests

from chalicelib.adapters.s3 import s3_client
from chalicelib.registry.access_logs import S3_FIELDS, api_traffic, parse_s3_line, tokenize
from portside.local.access_logs import (
    LocalAccessLogs,
    log_time,
    logging_moto_server,
    quoted,
    s3_operation,
)
from portside.local.runtime import free_port
from tests.api.helpers import V2
from tests.support.server import RunningRegistry, start_registry

BLOBS = "ll-blobs"
LOGS = "ll-blobs-logs"
HERE = "tests.integration.test_local_access_logs"
KEY_PATTERN = re.compile(r"^s3-access/\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-F]{16}$")
# A line of AWS's documentation ("Amazon S3 server access log format", the example record
# with every field through aclRequired): the shape the local lines must have.
AWS_SAMPLE = (
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be DOC-EXAMPLE-BUCKET1 "
    "[06/Feb/2019:00:00:38 +0000] 192.0.2.3 "
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE "
    'REST.GET.VERSIONING - "GET /DOC-EXAMPLE-BUCKET1?versioning HTTP/1.1" 200 - 113 - 7 - '
    '"-" "S3Console/0.4" - '
    "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 "
    "ECDHE-RSA-AES128-GCM-SHA256 AuthHeader DOC-EXAMPLE-BUCKET1.s3.us-west-1.amazonaws.com "
    "TLSV1.2 arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes"
)
# Field shapes of a line, by position (what each field looks like in AWS's logs).
SHAPES = {
    "bucket_owner": r"[0-9a-f]{64}",
    "time": r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000",
    "request_id": r"[0-9A-Z]{16}",
    "operation": r"REST\.[A-Z]+\.[A-Z_]+",
    "request_uri": r"(GET|HEAD|PUT|POST|DELETE) \S+ HTTP/1\.[01]",
    "http_status": r"\d{3}",
    "bytes_sent": r"-|\d+",
    "object_size": r"-|\d+",
    "total_time": r"\d+",
    "turn_around_time": r"-|\d+",
    "signature_version": r"SigV4|SigV2|-",
    "authentication_type": r"AuthHeader|QueryString|-",
}

received: list[tuple[str, dict[str, Any]]] = []


def meter_access_logs(event: dict[str, Any], context: Any) -> None:
    """Stands in for the metering handler (found by its handler string, as Lambda does)."""
    received.append((context.function_name, event))


def meter_api_logs(event: dict[str, Any], context: Any) -> None:
    received.append((context.function_name, event))


def fields_of(line: str) -> dict[str, str]:
    return dict(zip(S3_FIELDS, tokenize(line), strict=True))


def assert_real_format(line: str) -> None:
    assert len(tokenize(line)) == len(tokenize(AWS_SAMPLE)) == len(S3_FIELDS), line
    for name, shape in SHAPES.items():
        assert re.fullmatch(shape, fields_of(line)[name]), (name, line)


def test_the_aws_sample_line_has_the_shapes_the_local_lines_are_held_to() -> None:
    assert_real_format(AWS_SAMPLE)


@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "operation"),
    [
        ("GET", "k", {}, {}, "REST.GET.OBJECT"),
        ("HEAD", "k", {}, {}, "REST.HEAD.OBJECT"),
        ("PUT", "k", {}, {}, "REST.PUT.OBJECT"),
        ("PUT", "k", {"partNumber": "1", "uploadId": "u"}, {}, "REST.PUT.PART"),
        (
            "PUT",
            "k",
            {"partNumber": "1", "uploadId": "u"},
            {"x-amz-copy-source": "b/s"},
            "REST.COPY.PART",
        ),
        ("PUT", "k", {}, {"x-amz-copy-source": "b/s"}, "REST.COPY.OBJECT"),
        ("POST", "k", {"uploads": ""}, {}, "REST.POST.UPLOADS"),
        ("POST", "k", {"uploadId": "u"}, {}, "REST.POST.UPLOAD"),
        ("DELETE", "k", {"uploadId": "u"}, {}, "REST.DELETE.UPLOAD"),
        ("DELETE", "k", {}, {}, "REST.DELETE.OBJECT"),
        ("GET", "", {"list-type": "2"}, {}, "REST.GET.BUCKET"),
        ("POST", "", {"delete": ""}, {}, "REST.POST.MULTI_OBJECT_DELETE"),
    ],
)
def test_operations_are_named_as_s3_names_them(
    method: str, key: str, query: dict[str, str], headers: dict[str, str], operation: str
) -> None:
    assert s3_operation(method, key, query, headers) == operation


def test_a_user_agent_with_quotes_and_spaces_stays_one_field() -> None:
    line = AWS_SAMPLE.replace('"S3Console/0.4"', quoted('curl "x" \\ 8.0'))
    assert fields_of(line)["user_agent"] == 'curl "x" \\ 8.0'
    assert fields_of(line)["acl_required"] == "Yes"


def test_log_times_use_english_month_names_in_utc() -> None:
    moment = datetime(2027, 1, 1, 0, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert log_time(moment) == "[31/Dec/2026:22:30:05 +0000]"


# ====================================================================== in-process


@pytest.fixture
def logged_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, LocalAccessLogs]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "local")
    port = free_port()
    s3 = s3_client(f"http://127.0.0.1:{port}", "us-east-1")
    logs = LocalAccessLogs(
        lambda: BLOBS,
        lambda: LOGS,
        flush_seconds=3600,
        s3_handler=f"{HERE}.meter_access_logs",
        api_handler=f"{HERE}.meter_api_logs",
        s3_client=lambda: s3,
    )
    server = logging_moto_server("127.0.0.1", port, logs.wrap_moto)
    server.start()
    received.clear()
    try:
        s3.create_bucket(Bucket=BLOBS)
        logs.create_log_bucket()
        assert logs.wait_idle()
        logs.flush()  # the bucket's creation: not what the tests look at
        received.clear()
        yield s3, logs
    finally:
        server.stop()


def log_lines(s3: Any, key: str) -> list[str]:
    text: str = s3.get_object(Bucket=LOGS, Key=key)["Body"].read().decode()
    return text.splitlines()


def test_a_presigned_download_is_logged_with_the_bytes_sent_full_and_ranged(
    logged_moto: tuple[Any, LocalAccessLogs],
) -> None:
    s3, logs = logged_moto
    key = "registries/0123456789abcdef0123456789abcdef/blobs/sha256/ab/x y+z"
    data = os.urandom(100_000)
    s3.put_object(Bucket=BLOBS, Key=key, Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BLOBS, "Key": key})
    assert len(requests.get(url, timeout=10).content) == len(data)
    ranged = requests.get(url, headers={"Range": "bytes=1000-2999"}, timeout=10)
    assert ranged.status_code == 206 and len(ranged.content) == 2000
    assert requests.head(url, timeout=10).status_code == 200
    missing = url.replace("x%20y", "nothing")
    assert requests.get(missing, timeout=10).status_code == 404

    assert logs.wait_idle()
    [log_key] = logs.flush()

    assert KEY_PATTERN.match(log_key)
    lines = log_lines(s3, log_key)
    for line in lines:
        assert_real_format(line)
    records = [parse_s3_line(line) for line in lines]
    by_op = [(r.operation, r.http_status, r.bytes_sent, r.object_size) for r in records if r]
    assert by_op == [
        ("REST.PUT.OBJECT", 200, 0, len(data)),
        ("REST.GET.OBJECT", 200, len(data), len(data)),
        ("REST.GET.OBJECT", 206, 2000, len(data)),
        ("REST.HEAD.OBJECT", 200, 0, len(data)),
        ("REST.GET.OBJECT", 404, records[-1].bytes_sent if records[-1] else 0, None),
    ]
    download = fields_of(lines[1])
    # S3 writes the key URL-encoded; the request URI as sent; the signer as requester.
    assert (
        download["key"] == "registries/0123456789abcdef0123456789abcdef/blobs/sha256/ab/x%20y%2Bz"
    )
    assert download["request_uri"].startswith(f"GET /{BLOBS}/registries/")
    assert "X-Amz-Signature=" in download["request_uri"]
    assert download["authentication_type"] == "QueryString"
    assert download["requester"].startswith("arn:aws:")
    assert fields_of(lines[-1])["error_code"] == "NoSuchKey"
    assert records[1] is not None and records[1].registry_id == "0123456789abcdef0123456789abcdef"
    assert records[1].egress_bytes + records[2].egress_bytes == len(data) + 2000  # type: ignore[union-attr]


def test_a_client_that_hangs_up_is_logged_with_what_reached_it_not_the_whole_object(
    logged_moto: tuple[Any, LocalAccessLogs],
) -> None:
    s3, logs = logged_moto
    key = "registries/0123456789abcdef0123456789abcdef/blobs/sha256/ab/big"
    data = os.urandom(32 * 1024 * 1024)
    s3.put_object(Bucket=BLOBS, Key=key, Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BLOBS, "Key": key})
    with requests.get(url, stream=True, timeout=10) as answer:
        answer.raw.read(1024 * 1024)
        # Hang up mid-body: SO_LINGER 0 makes the close a reset, as a killed client's is.
        sock = answer.raw._fp.fp.raw._sock  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert logs.wait_idle(timeout=20)
    [log_key] = logs.flush()
    records = [parse_s3_line(line) for line in log_lines(s3, log_key)]
    [download] = [r for r in records if r and r.operation == "REST.GET.OBJECT"]
    # What the client read, plus what sat in the two sockets' buffers; never the object.
    assert 1024 * 1024 <= download.bytes_sent < 16 * 1024 * 1024


def test_a_read_signed_with_a_header_is_logged_as_such_and_is_no_egress(
    logged_moto: tuple[Any, LocalAccessLogs],
) -> None:
    """What Portside reads itself (the SDK signs with a header) is not a client's download."""
    s3, logs = logged_moto
    key = "registries/0123456789abcdef0123456789abcdef/blobs/uploads/u1/data"
    s3.put_object(Bucket=BLOBS, Key=key, Body=b"x" * 5000)
    assert len(s3.get_object(Bucket=BLOBS, Key=key)["Body"].read()) == 5000
    assert logs.wait_idle()
    [log_key] = logs.flush()
    lines = log_lines(s3, log_key)
    read = fields_of(lines[-1])
    assert (read["operation"], read["authentication_type"]) == ("REST.GET.OBJECT", "AuthHeader")
    record = parse_s3_line(lines[-1])
    assert record is not None and record.bytes_sent == 5000 and record.egress_bytes == 0


def test_a_log_object_is_announced_to_the_metering_handler_as_s3_announces_it(
    logged_moto: tuple[Any, LocalAccessLogs],
) -> None:
    s3, logs = logged_moto
    s3.put_object(Bucket=BLOBS, Key="registries/x", Body=b"x")
    assert logs.wait_idle()
    [log_key] = logs.flush()
    [(function, event)] = received
    size = s3.head_object(Bucket=LOGS, Key=log_key)["ContentLength"]
    assert function == "meter-access-logs"
    assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
    assert event["detail"]["bucket"] == {"name": LOGS}
    assert event["detail"]["object"]["key"] == log_key
    assert event["detail"]["object"]["size"] == size


def test_writing_the_log_bucket_is_not_logged(logged_moto: tuple[Any, LocalAccessLogs]) -> None:
    s3, logs = logged_moto

    def log_objects() -> set[str]:
        return {item["Key"] for item in s3.list_objects_v2(Bucket=LOGS).get("Contents", [])}

    before = log_objects()  # moto's state is the process's: earlier tests' objects stay
    s3.put_object(Bucket=BLOBS, Key="registries/x", Body=b"x")
    assert logs.wait_idle()
    [first] = logs.flush()
    s3.get_object(Bucket=LOGS, Key=first)
    assert logs.wait_idle()
    assert logs.flush() == []  # nothing new on the blob bucket: no second log object
    assert log_objects() - before == {first}


def test_api_records_are_delivered_as_a_cloudwatch_logs_subscription_event(
    logged_moto: tuple[Any, LocalAccessLogs],
) -> None:
    _, logs = logged_moto
    started = datetime(2026, 12, 2, 22, 10, 15, tzinfo=UTC).timestamp()
    logs.api_record(started, "r-1", "GET", "/v2/acme/app/manifests/latest", 200, 527, "10.0.0.1")
    logs.api_record(started, "r-2", "PUT", "/v2/acme/app/manifests/v2", 201, 0, "10.0.0.1")
    assert logs.wait_idle()
    logs.flush()
    [(function, event)] = received
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    assert function == "meter-api-logs"
    assert data["messageType"] == "DATA_MESSAGE"
    assert data["logGroup"] and data["logStream"]
    messages = [json.loads(e["message"]) for e in data["logEvents"]]
    assert messages[0] == {
        "requestId": "r-1",
        "requestTime": "02/Dec/2026:22:10:15 +0000",
        "requestTimeEpoch": int(started * 1000),
        "httpMethod": "GET",
        "path": "/v2/acme/app/manifests/latest",
        "status": "200",
        "responseLength": "527",
        "ip": "10.0.0.1",
    }
    assert all(e["timestamp"] == int(started * 1000) for e in data["logEvents"])
    traffic = api_traffic(e["message"] for e in data["logEvents"])
    assert (
        traffic.traffic[("acme", "2026-12")].pulls,
        traffic.traffic[("acme", "2026-12")].pushes,
    ) == (1, 1)


# ====================================================================== portside serve


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with start_registry(
        tmp_path_factory.mktemp("local-logs"),
        registry="logs",
        extra_env={"PORTSIDE_LOCAL_LOG_FLUSH_SECONDS": "0.5"},
    ) as running:
        yield running


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_downloads_through_portside_serve_are_logged_delivered_and_metered(
    serving: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "local")
    v2 = V2.basic(serving.url, serving.token)
    image = v2.push_image("logs/app", "latest", (300_000,))
    layer, size = image.layers[0]
    redirect = v2.request("GET", f"/v2/logs/app/blobs/{layer}")
    assert redirect.status_code == 307
    location = redirect.headers["Location"]
    # The presigned URL is path-style: /<bucket>/<key>.
    blob_key = unquote(urlsplit(location).path).split("/", 2)[2]
    assert len(requests.get(location, timeout=10).content) == size
    ranged = requests.get(location, headers={"Range": "bytes=0-9999"}, timeout=10)
    assert (ranged.status_code, len(ranged.content)) == (206, 10_000)
    assert v2.manifest_status("logs/app", "latest") == 200

    s3 = s3_client(serving.aws_endpoint, "us-east-1")

    def downloads() -> list[Any]:
        listed = s3.list_objects_v2(Bucket="portside-blobs-logs", Prefix="s3-access/")
        lines = [
            line
            for item in listed.get("Contents", [])
            for line in s3.get_object(Bucket="portside-blobs-logs", Key=item["Key"])["Body"]
            .read()
            .decode()
            .splitlines()
        ]
        parsed = [parse_s3_line(line) for line in lines]
        for line in lines:
            assert_real_format(line)
        return [r for r in parsed if r and r.operation == "REST.GET.OBJECT" and r.key == blob_key]

    got = wait_for(lambda: (found := downloads()) and len(found) >= 2 and found)
    assert sorted((r.http_status, r.bytes_sent) for r in got) == [(200, size), (206, 10_000)]
    [rid] = {r.registry_id for r in got}
    assert rid is not None

    # The metering handlers received the events: the month's counters (read as stored,
    # USAGE#<rid> / MONTH#<month>) hold the bytes sent and the manifest GET as a pull.
    dynamodb = boto3.client("dynamodb", endpoint_url=serving.aws_endpoint, region_name="us-east-1")
    month = datetime.now(UTC).strftime("%Y-%m")

    def metered() -> tuple[int, int] | None:
        item = dynamodb.get_item(
            TableName="portside",
            Key={"pk": {"S": f"USAGE#{rid}"}, "sk": {"S": f"MONTH#{month}"}},
            ConsistentRead=True,
        ).get("Item", {})
        counts = tuple(int(item.get(name, {}).get("N", "0")) for name in ("egress_bytes", "pulls"))
        return counts if counts[0] >= size + 10_000 and counts[1] >= 1 else None  # type: ignore[return-value]

    assert wait_for(metered) == (size + 10_000, 1), serving.log_tail()
    assert "delivering access logs" not in serving.log_tail(400)
