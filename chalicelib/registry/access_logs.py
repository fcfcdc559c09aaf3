"""Parsers for the logs outbound traffic is metered from, and their attribution to
registries and months (registry.metering). Pure: text in, records out.

- S3 server access logs (the blob bucket's downloads; AWS "Amazon S3 server access log
  format"): one request per line, space-separated fields, ``[time]`` in brackets,
  ``"quoted"`` fields (request-URI, referer, user agent) that may hold spaces and
  backslash-escaped quotes, ``-`` for no value. AWS appends fields over time: a line is
  read by position and may end early (older lines stop after the user agent or the host
  id) or carry fields this parser does not know.
- CloudFront standard logs (W3C extended format, gzip): ``#Version`` and ``#Fields``
  header lines, then tab-separated values in the order ``#Fields`` names them.
- API Gateway access-log records in the JSON format the stack configures (docs/metering.md):
  manifest GETs answered 200 are pulls, manifest PUTs answered 201 are pushes.

Attribution: S3 keys (and CloudFront paths) of blobs and large manifest bodies start with
``registries/<registry id>/``; API paths name the registry (``/v2/<registry>/...``). The
month is the request's UTC month, not the log's delivery time.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol
from urllib.parse import parse_qsl, unquote

from .records import TrafficCounts

# Objects of a registry incarnation: service.blob_key, stored_key and manifest_key.
_REGISTRY_KEY = re.compile(r"^/?registries/([0-9a-f]{32})/")
# One field of an S3 access-log line: [bracketed], "quoted" (with \" and \\ inside), or a
# run of non-blanks.
_TOKEN = re.compile(r'\[[^\]]*\]|"(?:[^"\\]|\\.)*"|\S+')
_UNESCAPE = re.compile(r"\\(.)")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
# [06/Feb/2019:00:00:38 +0000]; S3 writes UTC, the offset is honoured anyway.
_CLF_TIME = re.compile(
    r"^(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)

GET_OBJECT = "REST.GET.OBJECT"
# Responses that carry the object's bytes (a Range GET answers 206); errors and 304s send
# an error document or nothing, which is not the registry's content.
_EGRESS_STATUSES = frozenset({200, 206})
S3_FIELDS = (
    "bucket_owner",
    "bucket",
    "time",
    "remote_ip",
    "requester",
    "request_id",
    "operation",
    "key",
    "request_uri",
    "http_status",
    "error_code",
    "bytes_sent",
    "object_size",
    "total_time",
    "turn_around_time",
    "referer",
    "user_agent",
    "version_id",
    "host_id",
    "signature_version",
    "cipher_suite",
    "authentication_type",
    "host_header",
    "tls_version",
    "access_point_arn",
    "acl_required",
)
# A line must reach the bytes sent to be of use.
_MIN_S3_FIELDS = S3_FIELDS.index("bytes_sent") + 1


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` of the moment in UTC."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def registry_id_of_key(key: str | None) -> str | None:
    """The registry id an object key (or a CloudFront path) belongs to, if any."""
    if not key:
        return None
    found = _REGISTRY_KEY.match(key)
    return found.group(1) if found else None


# ------------------------------------------------------------------ S3 server access logs


def tokenize(line: str) -> list[str]:
    """The fields of an S3 access-log line, brackets and quotes removed and escapes undone
    (``-`` stays ``-``)."""
    out = []
    for token in _TOKEN.findall(line):
        if len(token) >= 2 and token[0] == "[" and token[-1] == "]":
            out.append(token[1:-1])
        elif len(token) >= 2 and token[0] == '"' and token[-1] == '"':
            out.append(_UNESCAPE.sub(r"\1", token[1:-1]))
        else:
            out.append(token)
    return out


def parse_clf_time(text: str) -> datetime:
    found = _CLF_TIME.match(text)
    if found is None or found.group(2) not in _MONTHS:
        raise ValueError(f"not an access-log time: {text!r}")
    day, mon, year, hh, mm, ss, sign, oh, om = found.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    moment = datetime(
        int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset)
    )
    return moment.astimezone(UTC)


def _number(text: str | None) -> int | None:
    return int(text) if text and text != "-" and text.isdigit() else None


def _value(text: str | None) -> str | None:
    return None if text is None or text == "-" else text


@dataclass(frozen=True)
class S3AccessRecord:
    """One line of an S3 server access log. ``key`` is decoded (S3 writes it URL-encoded);
    ``None`` stands for ``-``. Fields past the known ones are kept in ``extra``."""

    bucket_owner: str
    bucket: str
    time: datetime
    remote_ip: str
    requester: str | None
    request_id: str
    operation: str
    key: str | None
    request_uri: str | None
    http_status: int | None
    error_code: str | None
    bytes_sent: int
    object_size: int | None = None
    total_time: int | None = None
    turn_around_time: int | None = None
    referer: str | None = None
    user_agent: str | None = None
    version_id: str | None = None
    host_id: str | None = None
    signature_version: str | None = None
    cipher_suite: str | None = None
    authentication_type: str | None = None
    host_header: str | None = None
    tls_version: str | None = None
    access_point_arn: str | None = None
    acl_required: str | None = None
    extra: tuple[str, ...] = ()

    @property
    def registry_id(self) -> str | None:
        return registry_id_of_key(self.key)

    @property
    def month(self) -> str:
        return month_of(self.time)

    @property
    def presigned(self) -> bool:
        """Authenticated by a signature in the query string: a presigned URL, which is how
        clients download blobs. Portside's own reads (hashing an upload assembled from
        several requests, a collection reading manifest bodies) sign with a header, and
        the requester cannot tell them apart (both are the same role). Lines that end
        before the authentication type (older formats) are judged by their request URI."""
        if self.authentication_type is not None:
            return self.authentication_type == "QueryString"
        query = (self.request_uri or "").partition("?")[2]
        return any(
            name in ("X-Amz-Signature", "X-Amz-Algorithm", "X-Amz-Credential", "Signature")
            for name, _ in parse_qsl(query.partition(" ")[0], keep_blank_values=True)
        )

    @property
    def egress_bytes(self) -> int:
        """Bytes of the registry's content sent to a client: object GETs through a
        presigned URL answered with content (200, or 206 for a range); HEADs, errors,
        Portside's own reads and everything else count none."""
        if self.operation != GET_OBJECT or self.http_status not in _EGRESS_STATUSES:
            return 0
        return self.bytes_sent if self.presigned else 0


def parse_s3_line(line: str) -> S3AccessRecord | None:
    """The record of one line; None for a blank line or one that is not an access-log
    record (too few fields, a time or status that does not parse)."""
    fields = tokenize(line)
    if len(fields) < _MIN_S3_FIELDS:
        return None
    values = dict(zip(S3_FIELDS, fields, strict=False))
    try:
        time = parse_clf_time(values["time"])
    except ValueError:
        return None
    key = _value(values["key"])
    return S3AccessRecord(
        bucket_owner=values["bucket_owner"],
        bucket=values["bucket"],
        time=time,
        remote_ip=values["remote_ip"],
        requester=_value(values["requester"]),
        request_id=values["request_id"],
        operation=values["operation"],
        key=unquote(key) if key is not None else None,
        request_uri=_value(values["request_uri"]),
        http_status=_number(values["http_status"]),
        error_code=_value(values["error_code"]),
        bytes_sent=_number(values["bytes_sent"]) or 0,
        object_size=_number(values.get("object_size")),
        total_time=_number(values.get("total_time")),
        turn_around_time=_number(values.get("turn_around_time")),
        referer=_value(values.get("referer")),
        user_agent=_value(values.get("user_agent")),
        version_id=_value(values.get("version_id")),
        host_id=_value(values.get("host_id")),
        signature_version=_value(values.get("signature_version")),
        cipher_suite=_value(values.get("cipher_suite")),
        authentication_type=_value(values.get("authentication_type")),
        host_header=_value(values.get("host_header")),
        tls_version=_value(values.get("tls_version")),
        access_point_arn=_value(values.get("access_point_arn")),
        acl_required=_value(values.get("acl_required")),
        extra=tuple(fields[len(S3_FIELDS) :]),
    )


@dataclass
class ParsedLog:
    """What a log object holds for metering: traffic per (registry key, month), where the
    registry key is a registry id (S3, CloudFront) or a registry name (API records)."""

    traffic: dict[tuple[str, str], TrafficCounts]
    lines: int = 0
    skipped: int = 0  # lines that were not records
    unattributed_bytes: int = 0  # egress of objects outside registries/<id>/


def _add(
    traffic: dict[tuple[str, str], TrafficCounts],
    key: tuple[str, str],
    egress: int = 0,
    pulls: int = 0,
    pushes: int = 0,
    downloads: int = 0,
    redirects: int = 0,
) -> None:
    was = traffic.get(key, TrafficCounts())
    traffic[key] = TrafficCounts(
        was.egress_bytes + egress,
        was.pulls + pulls,
        was.pushes + pushes,
        was.downloads + downloads,
        was.redirects + redirects,
    )


class _EgressRecord(Protocol):
    @property
    def registry_id(self) -> str | None: ...
    @property
    def month(self) -> str: ...
    @property
    def egress_bytes(self) -> int: ...


def _egress(records: Iterable[_EgressRecord | None]) -> ParsedLog:
    """Egress per (registry id, month) of the records of one log object (None: a line that
    is not a record)."""
    out = ParsedLog({})
    for record in records:
        out.lines += 1
        if record is None:
            out.skipped += 1
            continue
        egress = record.egress_bytes
        if not egress:
            continue
        rid = record.registry_id
        if rid is None:
            out.unattributed_bytes += egress
            continue
        _add(out.traffic, (rid, record.month), egress=egress, downloads=1)
    return out


def s3_traffic(text: str) -> ParsedLog:
    """Egress per (registry id, month) of an S3 access-log object."""
    return _egress(parse_s3_line(line) for line in text.splitlines() if line.strip())


# ------------------------------------------------------------------ CloudFront standard logs


@dataclass(frozen=True)
class CloudFrontRecord:
    time: datetime
    edge_location: str | None
    sc_bytes: int
    client_ip: str | None
    method: str
    host: str | None
    uri_stem: str  # decoded
    status: int | None

    @property
    def registry_id(self) -> str | None:
        return registry_id_of_key(self.uri_stem)

    @property
    def month(self) -> str:
        return month_of(self.time)

    @property
    def egress_bytes(self) -> int:
        if self.method != "GET" or self.status not in _EGRESS_STATUSES:
            return 0
        return self.sc_bytes


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def parse_cloudfront_log(data: bytes | str) -> Iterator[CloudFrontRecord | None]:
    """The records of a CloudFront standard log file (gzip or text), in order; None for a
    line that does not parse. Positions come from the ``#Fields`` line (CloudFront has
    added fields over time; a file may also repeat its header)."""
    positions: dict[str, int] = {}
    for line in _text(data).splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                names = line.removeprefix("#Fields:").split()
                positions = {name: i for i, name in enumerate(names)}
            continue
        yield _cloudfront_record(line.split("\t"), positions)


def _cloudfront_record(values: list[str], positions: Mapping[str, int]) -> CloudFrontRecord | None:
    def get(name: str) -> str | None:
        index = positions.get(name)
        if index is None or index >= len(values):
            return None
        return _value(values[index])

    date, time, stem, method = get("date"), get("time"), get("cs-uri-stem"), get("cs-method")
    if not (date and time and stem and method):
        return None
    try:
        moment = datetime.fromisoformat(f"{date}T{time}").replace(tzinfo=UTC)
    except ValueError:
        return None
    return CloudFrontRecord(
        time=moment,
        edge_location=get("x-edge-location"),
        sc_bytes=_number(get("sc-bytes")) or 0,
        client_ip=get("c-ip"),
        method=method,
        host=get("cs(Host)"),
        uri_stem=unquote(stem),
        status=_number(get("sc-status")),
    )


def cloudfront_traffic(data: bytes | str) -> ParsedLog:
    """Egress per (registry id, month) of a CloudFront standard log file."""
    return _egress(parse_cloudfront_log(data))


# ------------------------------------------------------------------ API Gateway access logs

# /v2/<registry>/<repository...>/manifests/<reference>
_MANIFEST_PATH = re.compile(r"^/v2/([^/]+)/.+/manifests/[^/]+$")
# /v2/<registry>/<repository...>/blobs/<digest> (the colon maybe still encoded)
_BLOB_PATH = re.compile(
    r"^/v2/([^/]+)/.+/blobs/[a-z0-9]+(?:[+._-][a-z0-9]+)*(?::|%3[Aa])[a-zA-Z0-9=_-]+$"
)


@dataclass(frozen=True)
class ApiAccessRecord:
    request_id: str
    time: datetime
    method: str
    path: str
    status: int | None
    response_length: int | None
    ip: str | None

    @property
    def month(self) -> str:
        return month_of(self.time)

    def _registry_of(self, pattern: re.Pattern[str]) -> str | None:
        path = self.path
        if not path.startswith("/v2/"):
            # ``$context.path`` on the execute-api endpoint starts with the stage.
            _, _, rest = path.lstrip("/").partition("/")
            path = "/" + rest
        found = pattern.match(path)
        return unquote(found.group(1)) if found else None

    def _manifest_registry(self) -> str | None:
        return self._registry_of(_MANIFEST_PATH)

    @property
    def redirected_registry(self) -> str | None:
        """The registry a blob GET answered 307 (a presigned URL issued) belongs to."""
        if self.method != "GET" or self.status != 307:
            return None
        return self._registry_of(_BLOB_PATH)

    @property
    def pulled_registry(self) -> str | None:
        """The registry a manifest GET answered 200 pulled from (HEADs are not pulls)."""
        if self.method != "GET" or self.status != 200:
            return None
        return self._manifest_registry()

    @property
    def pushed_registry(self) -> str | None:
        """The registry a manifest PUT answered 201 pushed to."""
        if self.method != "PUT" or self.status != 201:
            return None
        return self._manifest_registry()


def parse_api_record(message: str) -> ApiAccessRecord | None:
    """One access-log record (a JSON object); None if it is not one."""
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        epoch = data.get("requestTimeEpoch")
        if epoch not in (None, "", "-"):
            moment = datetime.fromtimestamp(int(epoch) / 1000, UTC)
        else:
            moment = parse_clf_time(str(data["requestTime"]))
        return ApiAccessRecord(
            request_id=str(data.get("requestId") or ""),
            time=moment,
            method=str(data["httpMethod"]).upper(),
            path=str(data["path"]),
            status=_number(str(data.get("status") or "")),
            response_length=_number(str(data.get("responseLength") or "")),
            ip=_value(data.get("ip")),
        )
    except (KeyError, ValueError, TypeError, OverflowError):
        return None


def api_traffic(messages: Iterable[str]) -> ParsedLog:
    """Pulls, pushes and blob redirects per (registry name, month) of API access-log
    records."""
    out = ParsedLog({})
    for message in messages:
        out.lines += 1
        record = parse_api_record(message)
        if record is None:
            out.skipped += 1
            continue
        if (name := record.pulled_registry) is not None:
            _add(out.traffic, (name, record.month), pulls=1)
        elif (name := record.pushed_registry) is not None:
            _add(out.traffic, (name, record.month), pushes=1)
        elif (name := record.redirected_registry) is not None:
            _add(out.traffic, (name, record.month), redirects=1)
    return out
