"""One upload session driven by two requests at once: two completions with different final
chunks, a completion and a cancel, two PATCHes; for sessions still in one piece and for
sessions already in S3 multipart parts."""

from __future__ import annotations

import os
from functools import partial

import pytest
import requests

from tests.api.helpers import V2

from .invariants import (
    MIB,
    PART_SIZE,
    Registry,
    location_of,
    race,
    sha256_of,
    spec_answer,
    stagger_of,
)

ROUNDS = 20
MULTIPART_ROUNDS = 12
# A first PATCH of this size leaves the session with one S3 part and a 1 MiB tail.
MULTIPART_HEAD = PART_SIZE + MIB

LOST_UPLOAD = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
COMPLETED = {201: None, 400: LOST_UPLOAD, 404: LOST_UPLOAD}
CANCELLED = {204: None, 400: LOST_UPLOAD, 404: LOST_UPLOAD}
PATCHED = {202: None, 400: LOST_UPLOAD, 404: LOST_UPLOAD, 416: frozenset({"RANGE_INVALID"})}


def _start(v2: V2, name: str, head: bytes) -> str:
    """A session holding ``head`` (acknowledged); returns its Location."""
    started = v2.request("POST", f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = location_of(started)
    if not head:
        return location
    patched = v2.request(
        "PATCH",
        location,
        data=head,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"0-{len(head) - 1}",
        },
    )
    assert patched.status_code == 202, patched.text
    assert patched.headers["Range"] == f"0-{len(head) - 1}"
    return location_of(patched)


def _complete(client: V2, location: str, digest: str, chunk: bytes) -> requests.Response:
    return client.request(
        "PUT",
        location,
        params={"digest": digest},
        data=chunk,
        headers={"Content-Type": "application/octet-stream"},
    )


def _patch(client: V2, location: str, offset: int, chunk: bytes) -> requests.Response:
    return client.request(
        "PATCH",
        location,
        data=chunk,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
        },
    )


def _blob_status(v2: V2, name: str, digest: str) -> int:
    return v2.request("HEAD", f"/v2/{name}/blobs/{digest}").status_code


def _longest(head_size: int) -> float:
    # A multipart completion reads the tail, claims, writes parts, completes and re-reads
    # the whole blob to hash it: the second request is released up to 150 ms into it.
    return 0.15 if head_size else 0.045


def _final_chunk(round_: int, tag: bytes) -> bytes:
    # Multipart rounds alternate between a final chunk that fits in the tail and one that
    # fills another part (the completion then writes parts while it streams).
    size = 64 * 1024 if round_ % 2 == 0 else PART_SIZE
    return tag + os.urandom(size - len(tag))


HEAD_SIZES = [
    pytest.param(0, id="single-part"),
    pytest.param(MULTIPART_HEAD, id="multipart"),
]


@pytest.mark.parametrize("head_size", HEAD_SIZES)
def test_two_completions_of_one_session_commit_exactly_one_blob(
    registry: Registry, v2: V2, head_size: int
) -> None:
    name = registry.repo("uploads")
    rounds = ROUNDS if head_size == 0 else MULTIPART_ROUNDS
    for round_ in range(rounds):
        head = os.urandom(head_size)
        location = _start(v2, name, head)
        chunks = [_final_chunk(round_, b"a"), _final_chunk(round_, b"b")]
        digests = [sha256_of(head + chunk) for chunk in chunks]
        first, second = registry.v2(), registry.v2()
        answers = race(
            partial(_complete, first, location, digests[0], chunks[0]),
            partial(_complete, second, location, digests[1], chunks[1]),
            stagger=stagger_of(round_, _longest(head_size)),
        )
        statuses = [spec_answer(a, COMPLETED) for a in answers]
        assert statuses.count(201) == 1, (round_, [(a.status_code, a.text) for a in answers])
        winner = statuses.index(201)
        assert _blob_status(v2, name, digests[winner]) == 200
        assert _blob_status(v2, name, digests[1 - winner]) == 404, "the loser committed a blob"
        assert v2.request("GET", location).status_code == 404, "the session outlived its end"
    registry.check()


@pytest.mark.parametrize("head_size", HEAD_SIZES)
def test_a_completion_racing_a_cancel_either_commits_or_cancels(
    registry: Registry, v2: V2, head_size: int
) -> None:
    name = registry.repo("cancels")
    rounds = ROUNDS if head_size == 0 else MULTIPART_ROUNDS
    for round_ in range(rounds):
        head = os.urandom(head_size)
        location = _start(v2, name, head)
        chunk = _final_chunk(round_, b"c")
        digest = sha256_of(head + chunk)
        completer, canceller = registry.v2(), registry.v2()
        completed, cancelled = race(
            partial(_complete, completer, location, digest, chunk),
            partial(canceller.request, "DELETE", location),
            stagger=stagger_of(round_, _longest(head_size)),
        )
        outcome = (spec_answer(completed, COMPLETED), spec_answer(cancelled, CANCELLED))
        # Exactly one wins: a cancel that was acknowledged committed nothing.
        assert (outcome[0] == 201) != (outcome[1] == 204), (
            round_,
            completed.text,
            cancelled.text,
        )
        assert _blob_status(v2, name, digest) == (200 if outcome[0] == 201 else 404), outcome
        assert v2.request("GET", location).status_code == 404, "the session outlived its end"
    registry.check()


def test_parallel_patches_of_a_multipart_session_leave_the_acknowledged_state_completable(
    registry: Registry, v2: V2
) -> None:
    name = registry.repo("patches")
    for round_ in range(MULTIPART_ROUNDS):
        head = os.urandom(MULTIPART_HEAD)
        location = _start(v2, name, head)
        chunks = [_final_chunk(round_, b"x"), _final_chunk(round_, b"y")]
        first, second = registry.v2(), registry.v2()

        answers = race(
            partial(_patch, first, location, len(head), chunks[0]),
            partial(_patch, second, location, len(head), chunks[1]),
            stagger=stagger_of(round_, _longest(MULTIPART_HEAD)),
        )
        statuses = [spec_answer(a, PATCHED) for a in answers]
        assert statuses.count(202) == 1, (round_, [(a.status_code, a.text) for a in answers])
        winner = statuses.index(202)
        acknowledged = head + chunks[winner]
        assert answers[winner].headers["Range"] == f"0-{len(acknowledged) - 1}"
        # What was acknowledged can be completed, and serves exactly those bytes.
        digest = sha256_of(acknowledged)
        done = _complete(v2, location_of(answers[winner]), digest, b"")
        assert done.status_code == 201, (round_, done.status_code, done.text)
        assert _blob_status(v2, name, sha256_of(head + chunks[1 - winner])) == 404
    registry.check()
