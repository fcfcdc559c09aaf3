"""A distribution-spec client on ``requests``: auth, blobs, manifests.

Authentication follows the registry's challenge: a ``Bearer`` challenge sends the client to
the token endpoint (``realm``, ``service``, ``scope``) with the credentials as HTTP Basic (an
identity token instead goes in the OAuth2 refresh-token form, POSTed), and tokens are cached
per scope; a ``Basic`` challenge gets the credentials directly. Downloads that the registry
redirects elsewhere (S3) never carry the registry's Authorization header.

Transient failures (a connection that failed or dropped, HTTP 429, 502, 503 or 504) are
retried with exponential backoff and jitter, honouring ``Retry-After`` on 429 and 503, but
only for requests that are safe to send again: GET, HEAD, PUT and DELETE with a body that can
be built again, and POSTs the caller marks ``idempotent``. A one-shot streamed body (a chunk of
upload data) is never sent twice. A blob download whose connection drops mid-body continues
with a ``Range`` request from the bytes already written (or starts again when the server
ignores ranges).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from .errors import DigestMismatch, RegistryError, describe_error
from .media import ACCEPT, check_digest, manifest_media_type, sha256_digest
from .reference import is_loopback_host

Progress = Callable[[int], None]
Body = bytes | Callable[[], Any] | None
TIMEOUT = (30, 300)
CHUNK = 1 << 20
EXTENSIONS_HEADER = "Portside-Extensions"
CLIENT_ID = "portside"  # names the client in OAuth2 token requests
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')
# Transient failures: retried when the request is safe to repeat.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
ATTEMPTS = 4
BACKOFF = 0.5  # seconds before the second attempt, doubled before each later one
RETRY_AFTER_CAP = 30.0  # the longest Retry-After honoured (longer ones wait this long)
REDIRECTS = (301, 302, 303, 307, 308)
_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(?:\d+|\*)$")
_UPLOAD_RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")


@dataclass(frozen=True)
class Credentials:
    """``identity_token``: ``password`` is docker's identity token (an OAuth2 refresh token,
    ``username`` unused), traded at the token endpoint with ``grant_type=refresh_token``."""

    username: str
    password: str = field(repr=False)
    identity_token: bool = False

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``('bearer', {'realm': ..., 'service': ..., 'scope': ...})`` from WWW-Authenticate."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


class ProgressReader:
    """A file slice for request bodies: ``read`` reports progress and feeds a hash; ``len``
    lets requests send a Content-Length instead of chunked encoding."""

    def __init__(
        self,
        stream: IO[bytes],
        length: int,
        progress: Progress | None = None,
        hasher: Any = None,
    ) -> None:
        self._stream = stream
        self._left = length
        self._length = length
        self._progress = progress
        self._hasher = hasher

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(wanted)
        if not data and wanted:
            raise OSError("the source ended before the expected size")
        self._left -= len(data)
        if self._hasher is not None:
            self._hasher.update(data)
        if self._progress is not None:
            self._progress(len(data))
        return data


class RegistryClient:
    """One registry host: ``request`` handles auth; the methods speak the distribution spec."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None = None,
        *,
        plain_http: bool | None = None,
        insecure: bool = False,
        session: requests.Session | None = None,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        retry_after_cap: float = RETRY_AFTER_CAP,
    ) -> None:
        self.host = host
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.retry_after_cap = retry_after_cap
        self.sleep: Callable[[float], None] = time.sleep
        use_http = is_loopback_host(host) if plain_http is None else plain_http
        self.base_url = f"{'http' if use_http else 'https'}://{host}"
        self.credentials = credentials
        self.verify_tls = not insecure
        self.session = session or requests.Session()
        self.session.verify = self.verify_tls
        adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # A separate session for other hosts (S3): never the registry's headers.
        self.foreign = requests.Session()
        self.foreign.verify = self.verify_tls
        self.foreign.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
        self.foreign.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=32))
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic = False
        self._ping: requests.Response | None = None

    # ------------------------------------------------------------ auth and requests

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(scope)
            if cached and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
        if self._basic and self.credentials is not None:
            return self.credentials.basic()
        return None

    def _fetch_token(self, params: dict[str, str], scope: str) -> None:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{self.host}: a Bearer challenge without a realm")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for item in scope.split(" "):
            if item:
                query.append(("scope", item))
        try:
            if self.credentials is not None and self.credentials.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": self.credentials.password,
                    "client_id": CLIENT_ID,
                    "scope": scope,
                }
                if params.get("service"):
                    form["service"] = params["service"]
                answer = self.session.post(realm, data=form, timeout=TIMEOUT)
            else:
                headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
                url = realm + ("&" if "?" in realm else "?") + urlencode(query)
                answer = self.session.get(url, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise RegistryError(f"token endpoint {realm} unreachable ({exc})") from exc
        if answer.status_code != 200:
            method = answer.request.method or "GET"
            message, code = describe_error(method, realm, answer.status_code, _json(answer))
            raise RegistryError(message, answer.status_code, code)
        body = _json(answer)
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token endpoint {realm} answered no token")
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 60.0
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + max(seconds - 10, seconds / 2))

    def request(
        self,
        method: str,
        url: str,
        scope: str = "",
        *,
        body: Body = None,
        headers: dict[str, str] | None = None,
        ok: Iterable[int] = (200,),
        stream: bool = False,
        idempotent: bool = False,
    ) -> requests.Response:
        """Send with the cached auth for ``scope``; on a 401 answer the challenge once and
        resend (``body``: bytes, or a callable that builds a fresh body for each attempt).

        A connection failure or an answer of 429, 502, 503 or 504 is retried (``attempts`` in
        all, backoff with jitter, ``Retry-After`` honoured up to ``retry_after_cap``) when the
        request is safe to repeat: GET, HEAD, PUT or DELETE, or ``idempotent`` (a POST the
        caller knows to be), and the body is not one-shot (see ``_once``)."""
        allowed = set(ok)
        repeatable = (method.upper() in REPEATABLE_METHODS or idempotent) and not getattr(
            body, "one_shot", False
        )
        limit = self.attempts if repeatable else 1
        failures = 0
        challenged = False
        while True:
            sent = dict(headers or {})
            auth = self._auth_header(scope)
            if auth:
                sent["Authorization"] = auth
            data = body() if callable(body) else body
            try:
                answer = self.session.request(
                    method,
                    url,
                    data=data,
                    headers=sent,
                    timeout=TIMEOUT,
                    allow_redirects=False,
                    stream=stream,
                )
            except requests.RequestException as exc:
                failures += 1
                if _transient(exc) and failures < limit:
                    self.sleep(self._backoff(failures))
                    continue
                raise RegistryError(
                    f"{method} {url}: {self.host} unreachable ({exc}){_attempts(failures)}"
                ) from exc
            status = answer.status_code
            if status == 401 and not challenged and self._answer_challenge(answer, scope):
                challenged = True
                answer.close()
                continue
            if status in allowed:
                return answer
            if status in RETRY_STATUSES and failures + 1 < limit:
                failures += 1
                delay = self._retry_delay(failures, answer)
                answer.close()
                self.sleep(delay)
                continue
            message, code = describe_error(method, url, status, _json(answer))
            answer.close()
            raise RegistryError(message + _attempts(failures + 1), status, code)

    def _backoff(self, failures: int) -> float:
        """The pause after the ``failures``-th failure: ``backoff`` doubled each time, with
        +-25% jitter so that parallel transfers do not come back in step."""
        return self.backoff * 2.0 ** (failures - 1) * random.uniform(0.75, 1.25)

    def _retry_delay(self, failures: int, answer: requests.Response) -> float:
        if answer.status_code in (429, 503):
            wanted = retry_after(answer.headers.get("Retry-After"))
            if wanted is not None:
                return min(wanted, self.retry_after_cap)
        return self._backoff(failures)

    def _answer_challenge(self, answer: requests.Response, scope: str) -> bool:
        scheme, params = parse_challenge(answer.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer":
            wanted = scope or params.get("scope", "")
            self._fetch_token(params, wanted)
            return True
        if scheme == "basic" and self.credentials is not None:
            # Another thread may have learnt it first: resending once is still right.
            self._basic = True
            return True
        return False

    # ------------------------------------------------------------ base

    def ping(self) -> requests.Response:
        """``GET /v2/`` (any answer but a transport failure): its headers advertise
        extensions on a 401 too."""
        if self._ping is None:
            try:
                self._ping = self.session.get(self.url("/v2/"), timeout=TIMEOUT)
            except requests.RequestException as exc:
                raise RegistryError(f"{self.base_url}/v2/ unreachable ({exc})") from exc
        return self._ping

    def extensions(self) -> set[str]:
        raw = self.ping().headers.get(EXTENSIONS_HEADER, "")
        return {item.strip() for item in raw.split(",") if item.strip()}

    # ------------------------------------------------------------ blobs

    def blob_exists(self, name: str, digest: str, scope: str) -> int | None:
        """The blob's size when the repository has it, else None."""
        answer = self.request("HEAD", self.url(f"/v2/{name}/blobs/{digest}"), scope, ok=(200, 404))
        if answer.status_code == 404:
            return None
        length = answer.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else -1

    def mount_blob(self, name: str, digest: str, source: str, scope: str) -> bool:
        """Cross-repository mount; False when the registry started an upload instead (it is
        cancelled)."""
        url = self.url(f"/v2/{name}/blobs/uploads/?" + urlencode({"mount": digest, "from": source}))
        answer = self.request("POST", url, scope, ok=(201, 202))
        if answer.status_code == 201:
            return True
        location = answer.headers.get("Location")
        if location:
            with contextlib.suppress(RegistryError):
                self.request(
                    "DELETE", urljoin(answer.url, location), scope, ok=(200, 202, 204, 404)
                )
        return False

    def start_upload(self, name: str, scope: str) -> str:
        answer = self.request(
            "POST",
            self.url(f"/v2/{name}/blobs/uploads/"),
            scope,
            ok=(202,),
            headers={"Content-Length": "0"},
        )
        return self._location(answer)

    def _location(self, answer: requests.Response) -> str:
        location = answer.headers.get("Location")
        if not location:
            raise RegistryError(f"{answer.request.method} {answer.url}: no Location header")
        return urljoin(answer.url, location)

    def upload_blob(
        self,
        name: str,
        digest: str,
        size: int,
        opener: Callable[[], IO[bytes]],
        scope: str,
        progress: Progress | None = None,
        chunk_size: int | None = None,
        *,
        resume: tuple[str, int] | None = None,
        acknowledged: Callable[[str, int], None] | None = None,
    ) -> None:
        """POST a session, then one PUT (``chunk_size`` None or >= size) or PATCH chunks and
        a closing PUT, each to the Location the previous answer gave.

        ``resume``: ``(location, offset)`` of a session that already holds the blob's first
        ``offset`` bytes; they are read from the source only to be hashed (not sent, not
        reported to ``progress``) and the rest goes in PATCH chunks. ``acknowledged`` is
        called with the new Location and offset after every chunk the registry accepted."""
        location, offset = resume if resume is not None else (self.start_upload(name, scope), 0)
        hasher = hashlib.sha256()
        with opener() as stream:
            _skip(stream, offset, hasher)
            if resume is None and (chunk_size is None or size <= chunk_size):
                self._put_final(location, digest, scope, stream, size, progress, hasher)
            else:
                step = chunk_size or max(1, size - offset)
                while offset < size:
                    length = min(step, size - offset)
                    reader = ProgressReader(stream, length, progress, hasher)
                    answer = self.request(
                        "PATCH",
                        location,
                        scope,
                        body=_once(reader),
                        ok=(202,),
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Length": str(length),
                            "Content-Range": f"{offset}-{offset + length - 1}",
                        },
                    )
                    location = self._location(answer)
                    offset += length
                    if acknowledged is not None:
                        acknowledged(location, offset)
                self._put_final(location, digest, scope, stream, 0, None, hasher)
        if "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(
                f"the source's bytes for {digest} hash to sha256:{hasher.hexdigest()}"
            )

    def upload_offset(self, location: str, scope: str) -> tuple[str, int] | None:
        """The upload status (``GET`` the Location): ``(location to continue at, bytes the
        session holds)``, or None when the session is gone (404) or its ``Range`` is not
        ``0-<last byte>``. An empty session's ``0-0`` reads as 1 byte (the spec's ambiguity:
        callers compare it with what they know was sent)."""
        answer = self.request("GET", location, scope, ok=(200, 204, 404))
        answer.close()
        if answer.status_code == 404:
            return None
        found = _UPLOAD_RANGE.match(answer.headers.get("Range", "").strip())
        if found is None:
            return None
        following = answer.headers.get("Location")
        return (urljoin(answer.url, following) if following else location), int(found[1]) + 1

    def _put_final(
        self,
        location: str,
        digest: str,
        scope: str,
        stream: IO[bytes],
        length: int,
        progress: Progress | None,
        hasher: Any,
    ) -> None:
        separator = "&" if "?" in location else "?"
        reader = ProgressReader(stream, length, progress, hasher)
        answer = self.request(
            "PUT",
            f"{location}{separator}{urlencode({'digest': digest})}",
            scope,
            body=_once(reader),
            ok=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        returned = answer.headers.get("Docker-Content-Digest")
        if returned and returned != digest:
            raise DigestMismatch(f"the registry stored {returned} for {digest}")

    def download_blob(
        self,
        name: str,
        digest: str,
        target: Path,
        scope: str,
        size: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        """GET the blob (following redirects without the registry's Authorization to other
        hosts) into ``target``, verifying size and digest; nothing is left at ``target``
        unless it verified (written to a temporary name, then renamed).

        A connection that drops mid-body (or a redirect target that fails transiently) is
        tried again, up to ``attempts`` in all: from the bytes already written with a
        ``Range`` request when the server answers it (206 from that byte), else from the
        start (``progress`` is given back what is thrown away)."""
        check_digest(digest)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        hasher = hashlib.sha256()
        written = 0
        failures = 0
        try:
            with partial.open("wb") as handle:
                while True:
                    try:
                        answer = self._open_blob(name, digest, scope, written)
                        if written and _range_start(answer) != written:
                            # The server ignored the Range: start again from the first byte.
                            handle.seek(0)
                            handle.truncate()
                            hasher = hashlib.sha256()
                            if progress is not None:
                                progress(-written)
                            written = 0
                            if answer.status_code != 200:
                                answer.close()
                                raise _Interrupted(f"HTTP {answer.status_code} to a Range")
                        with answer:
                            for chunk in answer.iter_content(CHUNK):
                                handle.write(chunk)
                                hasher.update(chunk)
                                written += len(chunk)
                                if progress is not None:
                                    progress(len(chunk))
                        break
                    except (requests.RequestException, _Interrupted) as exc:
                        if isinstance(exc, requests.RequestException) and not _transient(exc):
                            raise RegistryError(f"blob download {digest} failed ({exc})") from exc
                        if size is not None and written >= size:
                            break  # every byte arrived: the checks below decide
                        failures += 1
                        if failures >= self.attempts:
                            raise RegistryError(
                                f"blob download {digest} failed ({exc}){_attempts(failures)}"
                            ) from exc
                        self.sleep(self._backoff(failures))
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise DigestMismatch(f"blob {digest} from {self.host} hashes to {actual}")
            if size is not None and written != size:
                raise DigestMismatch(f"blob {digest}: {written} bytes, the manifest says {size}")
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()

    def _open_blob(self, name: str, digest: str, scope: str, offset: int) -> requests.Response:
        """The streamed answer (200, or 206 to the ``Range`` from ``offset``) at the end of
        the blob's redirects. A redirect target's transient failure raises ``_Interrupted``
        (the caller starts again at the registry, which may sign a fresh URL)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        wanted = (200, 206, *REDIRECTS)
        answer = self.request(
            "GET",
            self.url(f"/v2/{name}/blobs/{digest}"),
            scope,
            headers=headers,
            ok=wanted,
            stream=True,
        )
        for _ in range(5):
            if answer.status_code in (200, 206):
                return answer
            location = urljoin(answer.url, answer.headers.get("Location", ""))
            answer.close()
            same = urlsplit(location).netloc == urlsplit(self.base_url).netloc
            if same:
                answer = self.request(
                    "GET", location, scope, headers=headers, ok=wanted, stream=True
                )
                continue
            answer = self.foreign.get(
                location, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
            )
            if answer.status_code in RETRY_STATUSES:
                answer.close()
                raise _Interrupted(f"the redirect target answered HTTP {answer.status_code}")
            if answer.status_code not in wanted:
                answer.close()
                raise RegistryError(
                    f"blob {digest}: the redirect target answered HTTP {answer.status_code}",
                    answer.status_code,
                )
        answer.close()
        raise RegistryError(f"blob {digest}: too many redirects")

    # ------------------------------------------------------------ manifests

    def get_manifest(self, name: str, reference: str, scope: str) -> tuple[bytes, str, str]:
        """``(body, media type, digest)``, the digest verified against the bytes."""
        answer = self.request(
            "GET",
            self.url(f"/v2/{name}/manifests/{reference}"),
            scope,
            headers={"Accept": ACCEPT},
        )
        body = answer.content
        digest = sha256_digest(body)
        expected = reference if reference.startswith("sha256:") else None
        expected = expected or answer.headers.get("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatch(f"manifest {name}:{reference} hashes to {digest}, not {expected}")
        return body, manifest_media_type(body, answer.headers.get("Content-Type")), digest

    def put_manifest(
        self, name: str, reference: str, body: bytes, media_type: str, scope: str
    ) -> str:
        answer = self.request(
            "PUT",
            self.url(f"/v2/{name}/manifests/{reference}"),
            scope,
            body=body,
            headers={"Content-Type": media_type},
            ok=(200, 201, 202),
        )
        digest = sha256_digest(body)
        returned = answer.headers.get("Docker-Content-Digest")
        if returned and returned != digest:
            raise DigestMismatch(f"the registry stored manifest {returned}, sent {digest}")
        return digest


class _Interrupted(Exception):
    """A blob download that may succeed if tried again."""


class _OneShot:
    """A body for ``request`` that can be sent once: a streamed body cannot be replayed
    after a 401, so the upload authenticates before (the POST that starts the session); nor
    is it retried after a transient failure (``one_shot``)."""

    one_shot = True

    def __init__(self, reader: ProgressReader) -> None:
        self._reader = reader
        self._used = False

    def __call__(self) -> Any:
        if self._used:
            raise RegistryError(
                "the registry asked to authenticate again in the middle of an upload"
            )
        self._used = True
        return self._reader


def _once(reader: ProgressReader) -> _OneShot:
    return _OneShot(reader)


def _skip(stream: IO[bytes], count: int, hasher: Any) -> None:
    """Read (and hash) the first ``count`` bytes of ``stream``: what a resumed upload does
    not send again still counts in the digest the client checks."""
    left = count
    while left > 0:
        data = stream.read(min(CHUNK, left))
        if not data:
            raise OSError("the source ended before the expected size")
        hasher.update(data)
        left -= len(data)


def _transient(exc: requests.RequestException) -> bool:
    """A failed or dropped connection, or a timeout (a TLS verification failure is not)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    )


def _attempts(count: int) -> str:
    return f" (after {count} attempts)" if count > 1 else ""


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    text = (value or "").strip()
    if not text:
        return None
    if _SECONDS.match(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _range_start(answer: requests.Response) -> int | None:
    """The first byte of a 206 answer (its Content-Range), else None."""
    if answer.status_code != 206:
        return None
    found = _CONTENT_RANGE.match(answer.headers.get("Content-Range", "").strip())
    return int(found[1]) if found else None


def _json(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def iter_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
