"""A repository deleted through the management API while a push (a blob, then the
manifest) goes into it."""

from __future__ import annotations

import os
import time
from functools import partial

import requests

from tests.api.helpers import OCI_MANIFEST, V2, Api

from .invariants import Registry, race, repository_path, sha256_of, spec_answer

ROUNDS = 40
# What each step of the push may answer when the repository is deleted under it: success,
# or the spec's error for a repository that went away (or a blob link that went with it).
BLOB_CREATED = {201: None, 404: frozenset({"NAME_UNKNOWN"})}
MANIFEST_CREATED = {
    201: None,
    400: frozenset({"MANIFEST_BLOB_UNKNOWN"}),
    404: frozenset({"NAME_UNKNOWN"}),
}
REPOSITORY_DELETED = {204: None}


def _push(client: V2, name: str, tag: str, config: tuple[str, int]) -> list[requests.Response]:
    """Push an image: a new layer (one monolithic upload), then a manifest over it and the
    repository's existing ``config`` blob; stops at the first refusal, returns every answer."""
    layer = os.urandom(4096)
    digest = sha256_of(layer)
    blob = client.request(
        "POST",
        f"/v2/{name}/blobs/uploads/",
        params={"digest": digest},
        data=layer,
        headers={"Content-Type": "application/octet-stream"},
    )
    if spec_answer(blob, BLOB_CREATED) != 201:
        return [blob]
    manifest = Registry.manifest_for([config, (digest, len(layer))], nonce=tag)
    put = client.request(
        "PUT", f"/v2/{name}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    spec_answer(put, MANIFEST_CREATED)
    return [blob, put]


def _delete(api: Api, registry: str, repository: str, delay: float) -> requests.Response:
    time.sleep(delay)
    return api.delete(repository_path(registry, repository))


class DeleteTiming:
    """When to start the deletion, relative to the push, round after round.

    The conflict that matters is the deletion meeting the push's manifest request: the
    manifest's references are read, the deletion removes them with the repository, and
    the manifest is written. Where that instant lies depends on the machine's speed and
    load, so it is tracked: ``boundary`` is the earliest start seen for which the deletion
    came after the whole push (the push answered 201 and the deletion removed its tag). The
    deletion starts 4 ms later each round until that first happens; from then on rounds
    probe the 10 ms before the boundary, 1 ms apart, moving it as outcomes show it moved.
    """

    OFFSETS = [-0.010 + 0.001 * i for i in range(13)]

    def __init__(self) -> None:
        self.boundary: float | None = None
        self.round = 0

    def next_delay(self) -> float:
        self.round += 1
        if self.boundary is None:
            return (self.round - 1) * 0.004
        return max(0.0, self.boundary + self.OFFSETS[self.round % len(self.OFFSETS)])

    def saw(self, delay: float, deleted_after_push: bool) -> None:
        if self.boundary is None:
            self.boundary = delay if deleted_after_push else None
        elif deleted_after_push == (delay < self.boundary):
            # Later than the boundary, yet before the push ended (or the reverse): it moved.
            self.boundary = delay


def test_deleting_a_repository_while_a_push_goes_into_it_leaves_nothing_unreachable(
    registry: Registry, v2: V2
) -> None:
    timing = DeleteTiming()
    for round_ in range(ROUNDS):
        repository = f"svc-{round_}"
        name = registry.repo(repository)
        base = v2.push_image(name, "base")
        pusher, deleter = registry.v2(), registry.api()
        delay = timing.next_delay()
        answers, deleted = race(
            partial(_push, pusher, name, "v1", (base.config_digest, base.config_size)),
            partial(_delete, deleter, registry.name, repository, delay),
        )
        spec_answer(deleted, REPOSITORY_DELETED)
        statuses = [a.status_code for a in answers]
        pushed = statuses == [201, 201]
        # Serial orders: the push wholly before the deletion (nothing left), or after it
        # (the new repository then lacks the config blob: MANIFEST_BLOB_UNKNOWN). A push
        # that was refused leaves no tag.
        tag_status = v2.manifest_status(name, "v1")
        assert tag_status in ((200, 404) if pushed else (404,)), (round_, statuses, tag_status)
        assert v2.manifest_status(name, "base") == 404, "the deleted repository's tag is served"
        if tag_status == 200:
            try:
                registry.check_pullable(v2, name, "v1")
            except AssertionError as exc:
                raise AssertionError(
                    f"round {round_} (deletion {delay * 1000:.0f} ms after the push began), "
                    f"push answers {statuses}: {exc}"
                ) from exc
        timing.saw(delay, deleted_after_push=pushed and tag_status == 404)
    registry.check()
