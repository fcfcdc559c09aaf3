"""Parsers of the logs egress is metered from, on lines in the real formats: S3 server
access logs (AWS "Amazon S3 server access log format"), CloudFront standard logs (W3C,
gzip) and the API Gateway access-log records the stack configures."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

from chalicelib.registry.access_logs import (
    api_traffic,
    cloudfront_traffic,
    parse_api_record,
    parse_cloudfront_log,
    parse_s3_line,
    registry_id_of_key,
    s3_traffic,
    tokenize,
)
from chalicelib.registry.records import TrafficCounts

RID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
HOST_ID = "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234="
BLOB_ENCODED = f"registries/{RID}/blobs/uploads/u1/data"
TAIL = (
    f"{HOST_ID} SigV4 ECDHE-RSA-AES128-GCM-SHA256 QueryString "
    "portside-blobs.s3.us-east-1.amazonaws.com TLSv1.3 - -"
)


def s3_line(
    operation: str = "REST.GET.OBJECT",
    key: str = BLOB_ENCODED,
    status: str = "200",
    error: str = "-",
    sent: str = "1048576",
    size: str = "1048576",
    time: str = "02/Dec/2026:22:10:15 +0000",
    agent: str = '"docker/20.10.24 go/go1.19.8 os/linux arch/amd64"',
    tail: str = TAIL,
    method: str = "GET",
) -> str:
    uri = (
        f'"{method} /{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300'
        '&X-Amz-Signature=5d6b0c7e HTTP/1.1"'
    )
    line = (
        f"{OWNER} portside-blobs [{time}] 192.0.2.3 - 3E57427F3EXAMPLE {operation} {key} {uri} "
        f'{status} {error} {sent} {size} 12 11 "-" {agent} - {tail}'
    )
    return line.rstrip()


# ------------------------------------------------------------------ S3 access logs


def test_portsides_own_reads_signed_with_a_header_are_not_egress() -> None:
    """Hashing an upload assembled from several requests, or a collection reading manifest
    bodies, GETs the registry's objects with the Lambda's role like a presigned URL would:
    only the authentication type tells them apart."""
    own = s3_line(tail=TAIL.replace("QueryString", "AuthHeader")).replace(
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300&X-Amz-Signature=5d6b0c7e", ""
    )
    record = parse_s3_line(own)
    assert record is not None and record.authentication_type == "AuthHeader"
    assert not record.presigned and record.egress_bytes == 0
    assert s3_traffic(own + "\n" + s3_line()).traffic == {
        (RID, "2026-12"): TrafficCounts(egress_bytes=1048576, downloads=1)
    }


def test_an_older_line_without_the_authentication_type_is_judged_by_its_query() -> None:
    short = s3_line(tail="")
    short = short[: short.rindex(" -")]
    assert parse_s3_line(short).egress_bytes == 1048576  # type: ignore[union-attr]
    unsigned = short.replace(
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300&X-Amz-Signature=5d6b0c7e", ""
    )
    assert parse_s3_line(unsigned).egress_bytes == 0  # type: ignore[union-attr]


def test_tokenizer_keeps_brackets_quotes_and_escaped_quotes_together() -> None:
    line = r'a [06/Feb/2019:00:00:38 +0000] "GET /x HTTP/1.1" "agent \"quoted\" (x; y)" -'
    assert tokenize(line) == [
        "a",
        "06/Feb/2019:00:00:38 +0000",
        "GET /x HTTP/1.1",
        'agent "quoted" (x; y)',
        "-",
    ]


def test_a_get_answered_200_is_egress_of_the_registry_in_the_keys_prefix() -> None:
    record = parse_s3_line(s3_line())
    assert record is not None
    assert record.operation == "REST.GET.OBJECT"
    assert record.http_status == 200
    assert record.bytes_sent == 1048576 == record.egress_bytes
    assert record.object_size == 1048576
    assert record.registry_id == RID
    assert record.time == datetime(2026, 12, 2, 22, 10, 15, tzinfo=UTC)
    assert record.month == "2026-12"
    assert record.user_agent == "docker/20.10.24 go/go1.19.8 os/linux arch/amd64"
    assert record.request_uri is not None and record.request_uri.startswith("GET /registries/")
    assert record.referer is None and record.requester is None
    assert (record.signature_version, record.tls_version) == ("SigV4", "TLSv1.3")
    assert record.host_header == "portside-blobs.s3.us-east-1.amazonaws.com"
    assert record.authentication_type == "QueryString"


def test_a_range_get_answered_206_counts_the_bytes_sent_not_the_object_size() -> None:
    record = parse_s3_line(s3_line(status="206", sent="524288", size="10485760"))
    assert record is not None
    assert (record.http_status, record.egress_bytes, record.object_size) == (206, 524288, 10485760)


def test_a_head_sends_no_content() -> None:
    record = parse_s3_line(
        s3_line(operation="REST.HEAD.OBJECT", method="HEAD", sent="-", size="1048576")
    )
    assert record is not None
    assert record.bytes_sent == 0 and record.egress_bytes == 0


def test_errors_carry_their_code_and_count_no_egress() -> None:
    denied = parse_s3_line(s3_line(status="403", error="AccessDenied", sent="243", size="-"))
    missing = parse_s3_line(s3_line(status="404", error="NoSuchKey", sent="330", size="-"))
    expired = parse_s3_line(s3_line(status="403", error="AccessDenied", sent="-", size="-"))
    assert denied is not None and missing is not None and expired is not None
    assert (denied.http_status, denied.error_code, denied.bytes_sent) == (403, "AccessDenied", 243)
    assert (missing.error_code, missing.object_size) == ("NoSuchKey", None)
    assert denied.egress_bytes == missing.egress_bytes == expired.egress_bytes == 0


def test_a_304_sends_no_content() -> None:
    record = parse_s3_line(s3_line(status="304", sent="-"))
    assert record is not None and record.egress_bytes == 0


def test_user_agents_with_spaces_and_escaped_quotes() -> None:
    agent = r'"aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64 \"quoted part\" md/arch#x86_64"'
    record = parse_s3_line(s3_line(agent=agent))
    assert record is not None
    assert record.user_agent == (
        'aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64 "quoted part" md/arch#x86_64'
    )
    # The fields after the agent are still where they belong.
    assert record.host_id == HOST_ID and record.signature_version == "SigV4"
    assert record.egress_bytes == 1048576


def test_keys_are_url_decoded() -> None:
    key = f"registries%2F{RID}%2Fblobs%2Fsha256%3Aab%20cd%2Bx"
    record = parse_s3_line(s3_line(key=key))
    assert record is not None
    assert record.key == f"registries/{RID}/blobs/sha256:ab cd+x"
    assert record.registry_id == RID


def test_a_request_without_a_key() -> None:
    record = parse_s3_line(s3_line(operation="REST.GET.BUCKET", key="-"))
    assert record is not None
    assert record.key is None and record.registry_id is None and record.egress_bytes == 0


def test_older_lines_without_the_trailing_fields() -> None:
    # Lines from before AWS added the host id, signature version, ... end after the agent.
    short = s3_line(tail="")
    short = short[: short.rindex(" -")]  # drop the version id too
    record = parse_s3_line(short)
    assert record is not None
    assert record.user_agent is not None and record.version_id is None
    assert record.host_id is None and record.tls_version is None
    assert record.egress_bytes == 1048576
    # Cut right after the bytes sent: still enough to meter.
    cut = " ".join(s3_line().split(" ")[:16])
    assert cut.endswith(" 1048576")
    minimal = parse_s3_line(cut)
    assert minimal is not None and minimal.egress_bytes == 1048576


def test_lines_with_newer_fields_than_the_parser_knows() -> None:
    newer = s3_line(tail=TAIL.removesuffix(" -") + ' Yes "future field" 42')
    record = parse_s3_line(newer)
    assert record is not None
    assert record.acl_required == "Yes"
    assert record.extra == ("future field", "42")
    assert record.egress_bytes == 1048576


def test_access_point_and_acl_fields_in_place() -> None:
    arn = "arn:aws:s3:us-east-1:123456789012:accesspoint/example-AP"
    tail = f"{HOST_ID} SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader host TLSv1.2 {arn} Yes"
    record = parse_s3_line(s3_line(tail=tail))
    assert record is not None
    assert (record.access_point_arn, record.acl_required) == (arn, "Yes")


def test_garbage_lines_are_not_records() -> None:
    assert parse_s3_line("") is None
    assert parse_s3_line("not an access log line") is None
    bad_time = s3_line(time="yesterday at noon")
    assert parse_s3_line(bad_time) is None


def test_the_time_offset_is_honoured() -> None:
    record = parse_s3_line(s3_line(time="01/Jan/2027:01:30:00 +0200"))
    assert record is not None
    assert record.time == datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert record.month == "2026-12"


def test_registry_id_of_key() -> None:
    assert registry_id_of_key(f"registries/{RID}/manifests/sha256/abc") == RID
    assert registry_id_of_key(f"/registries/{RID}/blobs/x") == RID
    assert registry_id_of_key("uploads/scratch/x") is None
    assert registry_id_of_key(f"registries/{RID.upper()}/x") is None
    assert registry_id_of_key(f"registries/{RID}") is None
    assert registry_id_of_key(None) is None


def test_s3_traffic_groups_egress_per_registry_and_month() -> None:
    text = "\n".join(
        [
            s3_line(sent="100"),
            s3_line(status="206", sent="50"),
            s3_line(key=f"registries/{OTHER}/blobs/x", sent="7"),
            s3_line(time="01/Jan/2027:00:00:01 +0000", sent="3"),
            s3_line(operation="REST.HEAD.OBJECT", method="HEAD", sent="-"),
            s3_line(status="404", error="NoSuchKey", sent="300"),
            s3_line(key="exports/billing/2026-11/usage.csv", sent="999"),
            "",
            "garbage",
        ]
    )
    parsed = s3_traffic(text + "\n")
    assert parsed.traffic == {
        (RID, "2026-12"): TrafficCounts(egress_bytes=150, downloads=2),
        (OTHER, "2026-12"): TrafficCounts(egress_bytes=7, downloads=1),
        (RID, "2027-01"): TrafficCounts(egress_bytes=3, downloads=1),
    }
    assert (parsed.lines, parsed.skipped, parsed.unattributed_bytes) == (8, 1, 999)


# ------------------------------------------------------------------ CloudFront


CF_FIELDS = (
    "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status "
    "cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id "
    "x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher "
    "x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port "
    "time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len "
    "sc-range-start sc-range-end"
)


def cf_line(
    date: str = "2026-12-02",
    time: str = "22:10:15",
    sent: str = "2048",
    method: str = "GET",
    stem: str = f"/registries/{RID}/blobs/uploads/u1/data",
    status: str = "200",
) -> str:
    values = [
        date, time, "IAD89-C1", sent, "192.0.2.10", method, "d111111abcdef8.cloudfront.net",
        stem, status, "-", "docker/20.10.24%20go/go1.19.8", "X-Amz-Expires=300", "-", "Miss",
        "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==", "blobs.example.com",
        "https", "310", "0.002", "-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "Miss", "HTTP/2.0",
        "-", "-", "11040", "0.001", "Miss", "application/octet-stream", sent, "-", "-",
    ]  # fmt: skip
    return "\t".join(values)


def cf_file(lines: list[str]) -> bytes:
    text = "#Version: 1.0\n#Fields: " + CF_FIELDS + "\n" + "\n".join(lines) + "\n"
    return gzip.compress(text.encode())


def test_cloudfront_log_fields_by_the_fields_line() -> None:
    records = list(parse_cloudfront_log(cf_file([cf_line()])))
    assert len(records) == 1
    record = records[0]
    assert record is not None
    assert record.time == datetime(2026, 12, 2, 22, 10, 15, tzinfo=UTC)
    assert (record.method, record.status, record.sc_bytes) == ("GET", 200, 2048)
    assert record.registry_id == RID and record.edge_location == "IAD89-C1"
    assert record.host == "d111111abcdef8.cloudfront.net"


def test_cloudfront_fields_in_another_order() -> None:
    text = (
        "#Version: 1.0\n#Fields: cs-uri-stem sc-status cs-method time date sc-bytes\n"
        f"/registries/{RID}/x\t206\tGET\t00:00:01\t2027-01-01\t10\n"
    )
    assert cloudfront_traffic(text).traffic == {(RID, "2027-01"): TrafficCounts(10, downloads=1)}


def test_cloudfront_traffic_counts_gets_with_content_per_registry_and_month() -> None:
    data = cf_file(
        [
            cf_line(sent="100"),
            cf_line(status="206", sent="40"),
            cf_line(method="HEAD", sent="300"),
            cf_line(status="403", sent="500"),
            cf_line(date="2026-11-30", time="23:59:59", sent="5"),
            cf_line(stem=f"/registries%2F{OTHER}%2Fblobs%2Fx", sent="9"),
            cf_line(stem="/favicon.ico", sent="77"),
            "broken",
        ]
    )
    parsed = cloudfront_traffic(data)
    assert parsed.traffic == {
        (RID, "2026-12"): TrafficCounts(140, downloads=2),
        (RID, "2026-11"): TrafficCounts(5, downloads=1),
        (OTHER, "2026-12"): TrafficCounts(9, downloads=1),
    }
    assert (parsed.lines, parsed.skipped, parsed.unattributed_bytes) == (8, 1, 77)


# ------------------------------------------------------------------ API Gateway records


def api_record(
    method: str = "GET",
    path: str = "/v2/acme/team/app/manifests/latest",
    status: str = "200",
    epoch_ms: int = 1796249415000,  # 2026-12-02T22:10:15Z
    **extra: object,
) -> str:
    record: dict[str, object] = {
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "requestTime": "02/Dec/2026:22:10:15 +0000",
        "requestTimeEpoch": epoch_ms,
        "httpMethod": method,
        "path": path,
        "status": status,
        "responseLength": "1234",
        "ip": "192.0.2.44",
    }
    record.update(extra)
    return json.dumps(record)


def test_an_api_record_in_the_contract_format() -> None:
    record = parse_api_record(api_record())
    assert record is not None
    assert record.time == datetime(2026, 12, 2, 22, 10, 15, tzinfo=UTC)
    assert (record.method, record.status, record.response_length) == ("GET", 200, 1234)
    assert record.pulled_registry == "acme" and record.pushed_registry is None


def test_api_records_without_epoch_use_the_request_time() -> None:
    record = parse_api_record(api_record(requestTimeEpoch="-"))
    assert record is not None
    assert record.time == datetime(2026, 12, 2, 22, 10, 15, tzinfo=UTC)


def test_api_traffic_counts_manifest_gets_as_pulls_puts_as_pushes_and_blob_redirects() -> None:
    messages = [
        api_record(),
        api_record(path="/v2/acme/app/manifests/sha256:abc"),
        api_record(method="HEAD"),  # a check, not a pull
        api_record(status="404"),
        api_record(status="401"),
        api_record(path="/v2/acme/app/blobs/sha256:abc", status="307"),  # a presigned URL
        api_record(path="/prod/v2/acme/team/app/blobs/sha256%3Aabc", status="307"),
        api_record(method="HEAD", path="/v2/acme/app/blobs/sha256:abc", status="200"),
        api_record(path="/v2/acme/app/blobs/uploads/u1", status="307"),  # not a blob
        api_record(path="/v2/acme/app/tags/list"),
        api_record(method="PUT", status="201"),
        api_record(method="PUT", status="400"),
        api_record(path="/prod/v2/other/app/manifests/1.0"),  # execute-api: stage first
        api_record(epoch_ms=1798761600000),  # 2027-01-01T00:00:00Z
        "not json",
        json.dumps({"requestId": "x"}),
    ]
    parsed = api_traffic(messages)
    assert parsed.traffic == {
        ("acme", "2026-12"): TrafficCounts(pulls=2, pushes=1, redirects=2),
        ("other", "2026-12"): TrafficCounts(pulls=1),
        ("acme", "2027-01"): TrafficCounts(pulls=1),
    }
    assert (parsed.lines, parsed.skipped) == (16, 2)
