"""Access logs of the local runtime, written and delivered as AWS writes and delivers them.

Deployed, blob downloads go from S3 straight to clients, so the metering reads what AWS
logs beside the request path (docs/metering.md):

* S3 server access logs: the blob bucket logs into the log bucket under ``s3-access/``,
  one object of plain-text lines now and then, and each new object reaches the
  ``meter-access-logs`` Lambda as an EventBridge "Object Created" event.
* API Gateway access logs: one JSON record per request (the stage's format, contract of
  issue 11) in a CloudWatch Logs group whose subscription filter invokes the
  ``meter-api-logs`` Lambda with ``{"awslogs": {"data": base64(gzip(json))}}``.

moto logs nothing and delivers neither, so the local runtime does both here:
``S3AccessLogMiddleware`` wraps moto's WSGI app and writes one line in the real S3 server
access log format for each request on the blob bucket, counting the body bytes it actually
streamed (a 206 counts the range, a client that hangs up counts what it got);
``LocalAccessLogs.api_record`` takes one record per answer of the local gateway. Every
``PORTSIDE_LOCAL_LOG_FLUSH_SECONDS`` (default 5) the buffered lines become a log object in the
log bucket (moto) and an event to the handler, found from its handler string as the Lambda
runtime finds it (``schedules.resolve_handler``). S3 does not log requests on the log bucket
itself, and neither does this: only the blob bucket is logged.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from .schedules import LOCAL_ACCOUNT_ID, LambdaContext, resolve_handler

log = logging.getLogger("portside.local")

FLUSH_ENV = "PORTSIDE_LOCAL_LOG_FLUSH_SECONDS"
DEFAULT_FLUSH_SECONDS = 5.0
S3_LOG_PREFIX = "s3-access/"
S3_HANDLER = "chalicelib.events.handlers.meter_access_logs"
API_HANDLER = "chalicelib.events.handlers.meter_api_logs"
API_LOG_GROUP = "/portside/local/api-access"
# Made-up identities in AWS's shapes: the bucket owner's canonical id and the IAM role the
# registry presigns with (a presigned request's requester is its signer, not "-").
BUCKET_OWNER = "7f3c2a9e41d85b06c3e1f2a4b5d6c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4"
REQUESTER = f"arn:aws:sts::{LOCAL_ACCOUNT_ID}:assumed-role/portside-api/portside-api"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
_ERROR_BODY_PREFIX = 4096  # enough of an error body to read its <Code>
_CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)\s*$")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def flush_seconds_from_env() -> float:
    value = os.environ.get(FLUSH_ENV, "").strip()
    return float(value) if value else DEFAULT_FLUSH_SECONDS


def blob_bucket_name() -> str:
    from chalicelib.config import settings

    return settings().bucket


def log_bucket_name() -> str:
    """The log bucket as the Lambdas see it: settings' ``log_bucket`` (PORTSIDE_LOG_BUCKET),
    by default ``<blob bucket>-logs``."""
    from chalicelib.config import settings

    return settings().log_bucket


def log_time(when: datetime) -> str:
    """``[06/Feb/2019:00:00:38 +0000]`` (English month names whatever the locale)."""
    utc = when.astimezone(UTC)
    return f"[{utc.day:02d}/{MONTHS[utc.month - 1]}/{utc:%Y:%H:%M:%S} +0000]"


def quoted(value: str | None) -> str:
    """A quoted field (Request-URI, Referer, User-Agent): ``"-"`` when absent."""
    if not value:
        return '"-"'
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_key(key: str) -> str:
    """The key field: URL-encoded as S3 writes it ('/' kept)."""
    return quote(key, safe="/")


def s3_operation(method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> str:
    """The ``REST.<METHOD>.<RESOURCE>`` of a request, as S3's log names it."""
    if not key:
        if method == "POST" and "delete" in query:
            return "REST.POST.MULTI_OBJECT_DELETE"
        if method == "GET" and "uploads" in query:
            return "REST.GET.UPLOADS"
        for sub in ("acl", "policy", "versioning", "location", "notification", "logging"):
            if sub in query:
                return f"REST.{method}.{sub.upper()}"
        return f"REST.{method}.BUCKET"
    if "uploadId" in query:
        if method == "PUT":
            return "REST.COPY.PART" if "x-amz-copy-source" in headers else "REST.PUT.PART"
        return {"POST": "REST.POST.UPLOAD", "GET": "REST.GET.UPLOAD"}.get(
            method, f"REST.{method}.UPLOAD"
        )
    if method == "POST" and "uploads" in query:
        return "REST.POST.UPLOADS"
    if method == "PUT" and "x-amz-copy-source" in headers:
        return "REST.COPY.OBJECT"
    for sub in ("acl", "tagging"):
        if sub in query:
            return f"REST.{method}.{sub.upper()}"
    return f"REST.{method}.OBJECT"


def bucket_and_key(environ: dict[str, Any]) -> tuple[str, str]:
    """The bucket and (decoded) key a request names: path-style, or the bucket in the host
    (virtual-hosted style)."""
    path = unquote(environ.get("PATH_INFO", "/") or "/")
    host = (environ.get("HTTP_HOST") or "").split(":", 1)[0]
    if ".s3." in host or host.endswith(".s3.amazonaws.com"):
        return host.split(".s3", 1)[0], path.lstrip("/")
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


# moto hands a whole object over as one chunk: the body is passed on in slices this size, so
# that a client that hangs up is charged what reached the socket, not the whole object.
_SLICE = 64 * 1024


class _Counted:
    """A response body that counts the bytes the server wrote (and keeps the start of an
    error body), then reports once, when the server closes it. A slice counts once the
    server asks for the next one (it has written this one): a write that fails because the
    client hung up ends the iteration with that slice uncounted."""

    def __init__(
        self, body: Iterable[bytes], keep_prefix: bool, done: Callable[[int, bytes], None]
    ) -> None:
        self._body = body
        self._keep = keep_prefix
        self._done = done
        self._sent = 0
        self._prefix = b""
        self._reported = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            if self._keep and len(self._prefix) < _ERROR_BODY_PREFIX:
                self._prefix += chunk[: _ERROR_BODY_PREFIX - len(self._prefix)]
            for start in range(0, len(chunk), _SLICE):
                piece = chunk[start : start + _SLICE]
                yield piece
                self._sent += len(piece)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._reported:
                self._reported = True
                self._done(self._sent, self._prefix)


class S3AccessLogMiddleware:
    """Wraps moto's WSGI app: one S3 server access log line per request on ``bucket``."""

    def __init__(
        self,
        app: WsgiApp,
        bucket: Callable[[], str],
        write: Callable[[str], None],
        in_flight: Callable[[int], None] = lambda change: None,
    ) -> None:
        self._app = app
        self._bucket = bucket
        self._write = write
        # Told +1 when a logged request begins and -1 once its line is written (the line
        # comes after the client has its last byte: see LocalAccessLogs.wait_idle).
        self._in_flight = in_flight

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        bucket, key = bucket_and_key(environ)
        if not bucket or bucket != self._bucket():
            return self._app(environ, start_response)
        received = time.time()
        answer: dict[str, Any] = {}

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            answer["status"] = int(status.split(" ", 1)[0])
            answer["headers"] = {name.lower(): value for name, value in headers}
            answer["first_byte"] = time.time()
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        self._in_flight(1)
        try:
            body = self._app(environ, recording_start_response)
        except BaseException:
            self._in_flight(-1)
            raise

        def done(sent: int, prefix: bytes) -> None:
            try:
                self._write(self._line(environ, bucket, key, answer, received, sent, prefix))
            except Exception:  # a log line must never break the download it describes
                log.exception("could not write an S3 access log line")
            finally:
                self._in_flight(-1)

        return _Counted(body, True, done)

    def _line(
        self,
        environ: dict[str, Any],
        bucket: str,
        key: str,
        answer: dict[str, Any],
        received: float,
        sent: int,
        prefix: bytes,
    ) -> str:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query_string = environ.get("QUERY_STRING", "")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        request_headers = {
            name[5:].replace("_", "-").lower(): value
            for name, value in environ.items()
            if name.startswith("HTTP_")
        }
        if environ.get("CONTENT_LENGTH"):
            request_headers["content-length"] = str(environ["CONTENT_LENGTH"])
        status = int(answer.get("status", 500))
        headers: dict[str, str] = answer.get("headers", {})
        finished = time.time()
        error_code = "-"
        if status >= 400:
            match = _ERROR_CODE.search(prefix)
            error_code = match.group(1).decode("ascii", "replace") if match else "-"
        if method == "HEAD":
            sent = 0
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if not uri:
            uri = quote(environ.get("PATH_INFO", "/"), safe="/")
            uri += f"?{query_string}" if query_string else ""
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        authorization = request_headers.get("authorization", "")
        signed_by_query = "X-Amz-Signature" in query or "Signature" in query
        if authorization.startswith("AWS4-") or "X-Amz-Algorithm" in query:
            signature = "SigV4"
        elif authorization or signed_by_query:
            signature = "SigV2"
        else:
            signature = "-"
        auth_type = "QueryString" if signed_by_query else ("AuthHeader" if authorization else "-")
        first_byte = float(answer.get("first_byte", finished))
        fields = [
            BUCKET_OWNER,
            bucket,
            log_time(datetime.fromtimestamp(received, UTC)),
            environ.get("REMOTE_ADDR") or "-",
            REQUESTER if signature != "-" else "-",
            headers.get("x-amz-request-id") or secrets.token_hex(8).upper(),
            s3_operation(method, key, query, request_headers),
            encode_key(key) if key else "-",
            quoted(f"{method} {uri} {protocol}"),
            str(status),
            error_code,
            str(sent) if sent else "-",
            object_size(method, headers, request_headers) if key else "-",
            str(max(int((finished - received) * 1000), 0)),
            str(max(int((first_byte - received) * 1000), 0)),
            quoted(request_headers.get("referer")),
            quoted(request_headers.get("user-agent")),
            headers.get("x-amz-version-id") or "-",
            headers.get("x-amz-id-2") or base64.b64encode(secrets.token_bytes(48)).decode(),
            signature,
            "-",  # cipher suite: plain HTTP
            auth_type,
            request_headers.get("host") or "-",
            "-",  # TLS version: plain HTTP
            "-",  # access point ARN
            "-",  # aclRequired: no ACL was needed
        ]
        return " ".join(fields)


def object_size(method: str, headers: dict[str, str], request_headers: dict[str, str]) -> str:
    """The object's total size: from a 206's Content-Range, a GET/HEAD's Content-Length,
    an upload's request Content-Length; ``-`` where there is no object."""
    content_range = headers.get("content-range", "")
    match = _CONTENT_RANGE_TOTAL.search(content_range)
    if match:
        return match.group(1)
    if method in ("GET", "HEAD") and headers.get("content-length", "").isdigit():
        return headers["content-length"] if "etag" in headers else "-"
    if method == "PUT" and request_headers.get("content-length", "").isdigit():
        return request_headers["content-length"]
    return "-"


def s3_log_key(when: datetime) -> str:
    """``s3-access/YYYY-mm-DD-HH-MM-SS-<16 uppercase hex>``, as S3 names its log objects."""
    return f"{S3_LOG_PREFIX}{when.astimezone(UTC):%Y-%m-%d-%H-%M-%S}-{secrets.token_hex(8).upper()}"


def object_created_event(
    bucket: str, key: str, size: int, etag: str, now: datetime
) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object (bucket with EventBridge enabled)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": LOCAL_ACCOUNT_ID,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag,
                "sequencer": f"{time.time_ns():X}",
            },
            "request-id": secrets.token_hex(8).upper(),
            "requester": "s3.amazonaws.com",
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


def api_access_record(
    started: float, request_id: str, method: str, path: str, status: int, length: int, ip: str
) -> dict[str, str | int]:
    """One API Gateway access-log record in the stage's format (contract of issue 11)."""
    return {
        "requestId": request_id,
        "requestTime": log_time(datetime.fromtimestamp(started, UTC)).strip("[]"),
        "requestTimeEpoch": int(started * 1000),
        "httpMethod": method,
        "path": path,
        "status": str(status),
        "responseLength": str(length),
        "ip": ip,
    }


def subscription_event(
    messages: list[tuple[int, str]], log_group: str = API_LOG_GROUP, log_stream: str = "local"
) -> dict[str, Any]:
    """What a CloudWatch Logs subscription filter hands a Lambda: ``messages`` as
    (timestamp ms, message) in one gzipped, base64-encoded DATA_MESSAGE."""
    data = {
        "messageType": "DATA_MESSAGE",
        "owner": LOCAL_ACCOUNT_ID,
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": ["meter-api-logs"],
        "logEvents": [
            # CloudWatch event ids are 56-digit decimal strings.
            {
                "id": f"{timestamp:020d}{secrets.randbits(110):036d}"[:56],
                "timestamp": timestamp,
                "message": message,
            }
            for timestamp, message in messages
        ],
    }
    payload = base64.b64encode(gzip.compress(json.dumps(data).encode())).decode("ascii")
    return {"awslogs": {"data": payload}}


class LocalAccessLogs:
    """Buffers S3 log lines and API records; ``flush`` delivers what has come since."""

    def __init__(
        self,
        blob_bucket: Callable[[], str] = blob_bucket_name,
        log_bucket: Callable[[], str] = log_bucket_name,
        flush_seconds: float | None = None,
        s3_handler: str = S3_HANDLER,
        api_handler: str = API_HANDLER,
        s3_client: Callable[[], Any] | None = None,
    ) -> None:
        self.blob_bucket = blob_bucket
        self.log_bucket = log_bucket
        self.flush_seconds = (
            flush_seconds if flush_seconds is not None else (flush_seconds_from_env())
        )
        self.s3_handler = s3_handler
        self.api_handler = api_handler
        self._s3_client = s3_client or _default_s3_client
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._lines: list[str] = []
        self._idle = threading.Condition()
        self._in_flight = 0
        self._records: list[tuple[int, str]] = []

    # ------------------------------------------------------------------ writers

    def wrap_moto(self, app: WsgiApp) -> WsgiApp:
        return S3AccessLogMiddleware(app, self.blob_bucket, self.s3_line, self._count)

    def _count(self, change: int) -> None:
        with self._idle:
            self._in_flight += change
            if self._in_flight <= 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every logged request has its line. A client has the last byte of
        an answer before the server closes it and the line is written, so whoever wants
        the lines of requests it has just made (a test) waits for this before ``flush``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight <= 0, timeout)

    def s3_line(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def api_record(
        self,
        started: float,
        request_id: str,
        method: str,
        path: str,
        status: int,
        length: int,
        ip: str,
    ) -> None:
        record = api_access_record(started, request_id, method, path, status, length, ip)
        with self._lock:
            self._records.append((int(started * 1000), json.dumps(record)))

    # ------------------------------------------------------------------ delivery

    def create_log_bucket(self) -> None:
        client = self._s3_client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=self.log_bucket())

    def flush(self) -> list[str]:
        """Deliver what was buffered: a log object and its event, a subscription event.
        Returns the keys of the log objects written."""
        with self._flush_lock:
            with self._lock:
                lines, self._lines = self._lines, []
                records, self._records = self._records, []
            keys = []
            if lines:
                keys.append(self._deliver_s3(lines))
            if records:
                self._invoke(self.api_handler, "meter-api-logs", subscription_event(records))
            return keys

    def _deliver_s3(self, lines: list[str]) -> str:
        now = datetime.now(UTC)
        key = s3_log_key(now)
        body = ("\n".join(lines) + "\n").encode("utf-8")
        bucket = self.log_bucket()
        put = self._s3_client().put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="text/plain"
        )
        etag = str(put.get("ETag", "")).strip('"')
        event = object_created_event(bucket, key, len(body), etag, now)
        self._invoke(self.s3_handler, "meter-access-logs", event)
        return key

    def _invoke(self, handler_string: str, function_name: str, event: dict[str, Any]) -> None:
        try:
            handler = resolve_handler(handler_string)
            handler(event, LambdaContext(function_name=function_name))
        except Exception:
            # As on AWS: the log stays where it was written; the failed invocation is logged.
            log.exception("delivering access logs to %s failed", handler_string)

    def run(self, stop: threading.Event) -> None:
        """Flush every ``flush_seconds`` until ``stop`` is set, then once more."""
        while not stop.wait(self.flush_seconds):
            self.flush()
        self.flush()


_client: Any = None


def _default_s3_client() -> Any:
    """An S3 client of the AWS stand-in the Lambdas talk to (made once)."""
    global _client
    if _client is None:
        from chalicelib.adapters.s3 import s3_client
        from chalicelib.config import settings

        _client = s3_client(settings().aws_endpoint_url, settings().region)
    return _client


def logging_moto_server(host: str, port: int, wrap: Callable[[WsgiApp], WsgiApp]) -> Any:
    """moto's ``ThreadedMotoServer`` with its WSGI app wrapped by ``wrap``: it builds the
    app inside its thread entry, so the entry is replaced by one that builds the same app
    (moto's domain dispatcher over its backends) and serves it wrapped."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class LoggingMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(self._ip_address, self._port, wrap(app), True)
            self._server_ready_event.set()
            self._server.serve_forever()

    return LoggingMotoServer(ip_address=host, port=port, verbose=False)
