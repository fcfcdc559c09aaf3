"""How a blob gets to the registry: the upload-strategy seam.

``StandardUploader`` speaks the distribution spec (monolithic PUT, or PATCH chunks for big
blobs; a cross-repository mount first when a source repository is known). An interrupted
chunked upload resumes: the session's Location is kept in a state file after every chunk the
registry accepted, and the spec's upload status (``GET`` the Location: ``Range: 0-<last
byte>``) says where to continue.
``DirectUploader`` speaks Portside's direct-uploads/v1 extension (docs/direct-uploads.md): the
registry hands out presigned S3 multipart URLs, the parts go to S3 in parallel without the
registry's credentials, and the registry verifies the assembled object before the blob exists.
An interrupted direct upload resumes: the upload id is kept in a state file, and the status
route says which parts S3 already holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import requests

from .errors import DigestMismatch, RegistryError
from .model import Blob
from .registry import TIMEOUT, Progress, ProgressReader, RegistryClient

DIRECT_EXTENSION = "direct-uploads/v1"
# S3 multipart limits: every part but the last at least 5 MiB, none over 5 GiB, 10,000 parts.
S3_MIN_PART_SIZE = 5 << 20
S3_MAX_PART_SIZE = 5 << 30
S3_MAX_PARTS = 10_000
STRATEGIES = ("auto", "standard", "direct")


class BlobUploader(Protocol):
    """Uploads one blob the registry lacks; answers ``uploaded``, ``mounted`` or ``exists``.

    ``sent`` counts the blob bytes it put on the wire (retries included, parts a resumed
    upload skipped not), which is what a resume saves and a benchmark wants to see."""

    name: str
    sent: SentBytes

    def upload(self, repository: str, blob: Blob, scope: str, progress: Progress) -> str: ...

    def forget(self, repository: str, digest: str) -> None:
        """Drop any resume state of ``digest``: the registry has it (a push killed after the
        commit but before the state was dropped leaves one behind)."""
        ...


class SentBytes:
    """A thread-safe count of blob bytes sent, fed by wrapping a transfer's progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def metered(self, progress: Progress) -> Progress:
        def counted(count: int) -> None:
            # Negative counts take back a failed attempt's display; its bytes were sent.
            if count > 0:
                with self._lock:
                    self.total += count
            progress(count)

        return counted


class _ResumeState:
    """An uploader's resume state: one private JSON file per registry URL, repository and
    digest under ``state_dir`` (None: none kept)."""

    client: RegistryClient
    state_dir: Path | None

    def _state_path(self, repository: str, digest: str) -> Path | None:
        return _state_file_path(self.state_dir, self.client, repository, digest)

    def _read_state(self, repository: str, digest: str) -> dict[str, Any]:
        """The saved state; empty when there is none or it cannot be read."""
        path = self._state_path(repository, digest)
        if path is None:
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _drop_state(self, repository: str, digest: str) -> None:
        path = self._state_path(repository, digest)
        if path is not None:
            path.unlink(missing_ok=True)

    def forget(self, repository: str, digest: str) -> None:
        self._drop_state(repository, digest)


class StandardUploader(_ResumeState):
    name = "standard"

    def __init__(
        self,
        client: RegistryClient,
        chunk_size: int | None = 64 << 20,
        mount_from: Sequence[str] = (),
        state_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.chunk_size = chunk_size
        self.mount_from = list(mount_from)
        self.state_dir = state_dir
        self.sent = SentBytes()

    def upload(self, repository: str, blob: Blob, scope: str, progress: Progress) -> str:
        for source in self.mount_from:
            if source == repository:
                continue
            try:
                mount_scope = f"{scope} repository:{source}:pull"
                if self.client.mount_blob(repository, blob.digest, source, mount_scope):
                    return "mounted"
            except RegistryError:
                continue
        resume = self._resume_point(repository, blob, scope)
        if resume is not None:
            progress(resume[1])  # on the display, not in ``sent``: those bytes stay put

        def acknowledged(location: str, offset: int) -> None:
            state = {"location": location, "offset": offset}
            _write_state(self._state_path(repository, blob.digest), state)

        try:
            self.client.upload_blob(
                repository,
                blob.digest,
                blob.size,
                blob.opener,
                scope,
                self.sent.metered(progress),
                self.chunk_size,
                resume=resume,
                acknowledged=acknowledged,
            )
        except DigestMismatch:
            self._drop_state(repository, blob.digest)
            raise
        except RegistryError as exc:
            # The registry refused the session (4xx): it is of no use to a later run. A
            # connection failure or 5xx keeps it for the next push to resume.
            if exc.status is not None and 400 <= exc.status < 500:
                self._drop_state(repository, blob.digest)
            raise
        self._drop_state(repository, blob.digest)
        return "uploaded"

    def _resume_point(self, repository: str, blob: Blob, scope: str) -> tuple[str, int] | None:
        """``(location, offset)`` to continue a saved session at, or None to start over (no
        state, the session gone, or a ``Range`` we cannot trust: one that holds less than
        the chunks the registry acknowledged, or more than the blob)."""
        data = self._read_state(repository, blob.digest)
        location, saved = data.get("location"), data.get("offset")
        if not isinstance(location, str) or not isinstance(saved, int) or saved < 1:
            self._drop_state(repository, blob.digest)
            return None
        try:
            status = self.client.upload_offset(location, scope)
        except RegistryError as exc:
            if exc.status is None or exc.status >= 500:
                raise  # the registry is unreachable now; the session may still be there
            status = None
        # The registry may hold more than the state says (a chunk acknowledged as the client
        # stopped), but not less, nor more than the blob.
        if status is None or not saved <= status[1] <= blob.size:
            self._drop_state(repository, blob.digest)
            return None
        return status


class DirectUploader(_ResumeState):
    name = "direct"

    def __init__(
        self,
        client: RegistryClient,
        state_dir: Path | None = None,
        *,
        part_workers: int = 4,
        poll_interval: float = 0.5,
        verify_timeout: float = 3600.0,
        recomplete_interval: float = 60.0,
        attempts: int = 2,
        mount_from: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.state_dir = state_dir
        self.part_workers = part_workers
        self.poll_interval = poll_interval
        self.verify_timeout = verify_timeout
        self.recomplete_interval = recomplete_interval
        self.attempts = attempts
        self.mount_from = list(mount_from)
        self.sent = SentBytes()

    # ------------------------------------------------------------ state file

    def _load_state(self, repository: str, digest: str) -> str | None:
        location = self._read_state(repository, digest).get("location")
        return location if isinstance(location, str) else None

    def _save_state(self, repository: str, digest: str, location: str, upload_id: str) -> None:
        state = {"location": location, "upload_id": upload_id}
        _write_state(self._state_path(repository, digest), state)

    # ------------------------------------------------------------ upload

    def upload(self, repository: str, blob: Blob, scope: str, progress: Progress) -> str:
        location = self._load_state(repository, blob.digest)
        status: dict[str, Any] | None = None
        if location is not None:
            answer = self.client.request("GET", location, scope, ok=(200, 404))
            status = _body(answer) if answer.status_code == 200 else None
            state = status.get("status") if status else None
            if state == "committed":
                self._drop_state(repository, blob.digest)
                progress(blob.size)
                return "uploaded"
            if state == "verifying":
                progress(blob.size)
                return self._wait(repository, blob, location, scope)
            if state != "uploading" or not _same_blob(status, blob):
                self._drop_state(repository, blob.digest)
                status = None
        urls: dict[int, str] = {}
        if status is None:
            start = self.client.url(f"/v2/{repository}/_portside/direct-uploads")
            request: dict[str, Any] = {"digest": blob.digest, "size": blob.size}
            if self.mount_from:
                request["mount_from"] = self.mount_from
            answer = self.client.request(
                "POST",
                start,
                scope,
                ok=(201, 202),
                body=json.dumps(request).encode(),
                headers={"Content-Type": "application/json"},
            )
            status = _body(answer)
            if answer.status_code == 201:
                return "mounted" if status.get("status") == "mounted" else "exists"
            location = urljoin(answer.url, answer.headers.get("Location") or "")
            if not answer.headers.get("Location"):
                location = f"{start}/{status['upload_id']}"
            self._save_state(repository, blob.digest, location, str(status["upload_id"]))
            urls = {int(p["number"]): str(p["url"]) for p in status.get("parts") or []}
        assert location is not None
        problem = _part_layout_problem(blob.size, status.get("part_size"), status.get("part_count"))
        if problem is not None:
            self._cancel(repository, blob, location, scope)
            raise RegistryError(
                f"refusing the direct upload of {blob.digest} ({blob.size} bytes): {problem}; "
                "the upload session was cancelled"
            )
        session = _Session(self, repository, scope, location, blob, status, urls)
        session.send_parts(progress)
        return self._complete(repository, blob, location, scope, session.etags())

    def _cancel(self, repository: str, blob: Blob, location: str, scope: str) -> None:
        """DELETE the upload session (best effort: nothing is left open on purpose)."""
        self._drop_state(repository, blob.digest)
        with contextlib.suppress(RegistryError):
            self.client.request("DELETE", location, scope, ok=(200, 202, 204, 404))

    def _complete(
        self,
        repository: str,
        blob: Blob,
        location: str,
        scope: str,
        parts: list[dict[str, Any]] | None,
        wait: bool = True,
    ) -> str:
        """Ask the registry to complete; "uploaded" once the blob exists. ``parts`` None:
        let the registry take what S3 holds. ``wait`` False: "" while it verifies."""
        answer = self.client.request(
            "POST",
            f"{location}/complete",
            scope,
            ok=(201, 202, 400),
            body=json.dumps({} if parts is None else {"parts": parts}).encode(),
            headers={"Content-Type": "application/json"},
            idempotent=True,
        )
        if answer.status_code == 400:
            self._drop_state(repository, blob.digest)
            raise RegistryError(_failure(blob, _body(answer)), 400)
        if answer.status_code == 201:
            self._drop_state(repository, blob.digest)
            return "uploaded"
        return self._wait(repository, blob, location, scope) if wait else ""

    def _wait(self, repository: str, blob: Blob, location: str, scope: str) -> str:
        deadline = time.monotonic() + self.verify_timeout
        asked = time.monotonic()
        while time.monotonic() < deadline:
            answer = self.client.request("GET", location, scope, ok=(200, 404))
            if answer.status_code == 404:
                self._drop_state(repository, blob.digest)
                raise RegistryError(f"direct upload of {blob.digest} vanished while verifying")
            status = _body(answer)
            if status.get("status") == "committed":
                self._drop_state(repository, blob.digest)
                return "uploaded"
            if status.get("status") == "failed":
                self._drop_state(repository, blob.digest)
                raise RegistryError(_failure(blob, status))
            if time.monotonic() - asked >= self.recomplete_interval:
                # The background verification is one asynchronous invocation: should it be
                # lost or die half-way, nothing else would start it again. A repeated
                # completion does (the registry ignores it while a verification holds the
                # upload, and a duplicate verification finds the upload claimed).
                asked = time.monotonic()
                if self._complete(repository, blob, location, scope, None, wait=False):
                    return "uploaded"
            time.sleep(self.poll_interval)
        raise RegistryError(f"the registry did not verify {blob.digest} in time")


class _Session:
    """The parts of one direct upload: which remain, their URLs, their ETags."""

    def __init__(
        self,
        uploader: DirectUploader,
        repository: str,
        scope: str,
        location: str,
        blob: Blob,
        status: dict[str, Any],
        urls: dict[int, str],
    ) -> None:
        self.uploader = uploader
        self.client = uploader.client
        self.scope = scope
        self.location = location
        self.blob = blob
        self.part_size = int(status["part_size"])
        self.part_count = int(status["part_count"])
        self.urls = urls
        self.lock = threading.Lock()
        self.done: dict[int, str] = {}
        for part in status.get("uploaded") or []:
            number = int(part.get("number", 0))
            if 1 <= number <= self.part_count and int(part.get("size", -1)) == self.length(number):
                self.done[number] = str(part.get("etag") or "")
        self.todo = [n for n in range(1, self.part_count + 1) if n not in self.done]

    def length(self, number: int) -> int:
        offset = (number - 1) * self.part_size
        return max(0, min(self.part_size, self.blob.size - offset))

    def etags(self) -> list[dict[str, Any]]:
        return [{"number": n, "etag": self.done[n]} for n in sorted(self.done)]

    def url(self, number: int, refresh: bool = False) -> str:
        with self.lock:
            if refresh:
                self.urls.pop(number, None)
            if number not in self.urls:
                pending = [n for n in self.todo if n >= number and n not in self.urls]
                numbers = [number, *[n for n in pending if n != number]][:100]
                answer = self.client.request(
                    "POST",
                    f"{self.location}/parts",
                    self.scope,
                    body=json.dumps({"numbers": numbers}).encode(),
                    headers={"Content-Type": "application/json"},
                    idempotent=True,
                )
                for part in _body(answer).get("parts") or []:
                    self.urls[int(part["number"])] = str(part["url"])
            if number not in self.urls:
                raise RegistryError(f"the registry gave no URL for part {number}")
            return self.urls[number]

    def send_parts(self, progress: Progress) -> None:
        progress(sum(self.length(n) for n in self.done))
        if not self.todo:
            return
        workers = max(1, min(self.uploader.part_workers, len(self.todo)))
        with ThreadPoolExecutor(workers, thread_name_prefix="part") as pool:
            for number, etag in zip(
                self.todo, pool.map(lambda n: self.send(n, progress), self.todo), strict=True
            ):
                self.done[number] = etag

    def send(self, number: int, progress: Progress) -> str:
        length = self.length(number)
        refresh = False
        last = ""
        for _ in range(max(1, self.uploader.attempts)):
            url = self.url(number, refresh)
            sent = [0]
            counted = _counting(sent, self.uploader.sent.metered(progress))

            try:
                with self.blob.open_at((number - 1) * self.part_size) as stream:
                    reader = ProgressReader(stream, length, counted)
                    # The foreign session: presigned URLs carry their own signature, never the
                    # registry's Authorization header.
                    answer = self.client.foreign.put(
                        url, data=reader, timeout=TIMEOUT, headers={"Content-Length": str(length)}
                    )
            except requests.RequestException as exc:
                progress(-sent[0])
                last = f"part {number} of {self.blob.digest}: {exc}"
                continue
            if answer.status_code in (200, 201, 204):
                etag = answer.headers.get("ETag", "")
                return etag
            progress(-sent[0])
            last = f"part {number} of {self.blob.digest}: S3 answered HTTP {answer.status_code}"
            refresh = answer.status_code in (400, 403)  # expired or refused signature
        raise RegistryError(f"direct upload failed: {last} (run the push again to resume)")


def _counting(sent: list[int], progress: Progress) -> Progress:
    def counted(count: int) -> None:
        sent[0] += count
        progress(count)

    return counted


def select_uploader(
    client: RegistryClient,
    strategy: str = "auto",
    *,
    state_dir: Path | None = None,
    chunk_size: int | None = 64 << 20,
    mount_from: Sequence[str] = (),
    standard_state_dir: Path | None = None,
) -> BlobUploader:
    """``auto``: direct uploads when ``GET /v2/`` advertises them, else the standard protocol.
    ``state_dir`` keeps the direct uploads' state, ``standard_state_dir`` the standard
    chunked uploads' (None: no resume)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown upload strategy {strategy!r}")
    direct = strategy == "direct" or (
        strategy == "auto" and DIRECT_EXTENSION in client.extensions()
    )
    if direct:
        return DirectUploader(client, state_dir, mount_from=mount_from)
    return StandardUploader(client, chunk_size, mount_from, standard_state_dir)


def _state_file_path(
    state_dir: Path | None, client: RegistryClient, repository: str, digest: str
) -> Path | None:
    """Where an upload's state is kept: one file per registry URL, repository and digest."""
    if state_dir is None:
        return None
    key = hashlib.sha256(f"{client.base_url}\n{repository}\n{digest}".encode()).hexdigest()
    return state_dir / f"{key}.json"


def _write_state(path: Path | None, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a private directory, then a rename)."""
    if path is None:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(state), "utf-8")
    os.replace(tmp, path)


def _part_layout_problem(size: int, part_size: Any, part_count: Any) -> str | None:
    """Why the registry's ``part_size``/``part_count`` cannot be sent to S3 for a blob of
    ``size`` bytes (S3 multipart limits: parts of 5 MiB to 5 GiB, the last one smaller, at most
    10,000 parts), or None when they can."""
    given = f"part_size={part_size!r}, part_count={part_count!r}"
    if not _is_int(part_size) or not _is_int(part_count):
        return f"the registry answered {given}, not two integers"
    if part_size < 1 or part_count < 1:
        return f"the registry answered {given}; both must be at least 1"
    if part_size > S3_MAX_PART_SIZE:
        return f"the registry answered {given}: parts over S3's 5 GiB ({S3_MAX_PART_SIZE} bytes)"
    if part_count > S3_MAX_PARTS:
        return f"the registry answered {given}: more than S3's {S3_MAX_PARTS:,} parts"
    if part_size < S3_MIN_PART_SIZE and part_count != 1:
        return (
            f"the registry answered {given}: S3 parts under 5 MiB ({S3_MIN_PART_SIZE} bytes) "
            "are allowed only for a single part"
        )
    needed = max(1, -(-size // part_size))
    if part_count != needed:
        return (
            f"the registry answered {given}: {size} bytes in parts of {part_size} bytes "
            f"are {needed} part{'s' if needed != 1 else ''}, not {part_count}"
        )
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same_blob(status: dict[str, Any] | None, blob: Blob) -> bool:
    if not status:
        return False
    return status.get("digest") == blob.digest and int(status.get("size", -1)) == blob.size


def _failure(blob: Blob, body: dict[str, Any]) -> str:
    error = body.get("error") if isinstance(body.get("error"), dict) else None
    if error is None and isinstance(body.get("errors"), list) and body["errors"]:
        error = body["errors"][0]
    if isinstance(error, dict):
        return f"the registry refused {blob.digest}: {error.get('code')}: {error.get('message')}"
    return f"the registry refused {blob.digest}"


def _body(answer: requests.Response) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
