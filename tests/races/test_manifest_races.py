"""A manifest deleted by digest while the same bytes are pushed under a new tag."""

from __future__ import annotations

import os
from functools import partial

from tests.api.helpers import OCI_MANIFEST, V2

from .invariants import Registry, race, sha256_of, spec_answer, stagger_of

ROUNDS = 25
CREATED = {201: None}
DELETED = {202: None, 404: frozenset({"MANIFEST_UNKNOWN"})}


def test_deleting_a_manifest_while_it_is_pushed_under_a_new_tag_leaves_no_dangling_tag(
    registry: Registry, v2: V2
) -> None:
    name = registry.repo("app")
    blobs = [
        (v2.push_blob(name, data), len(data)) for data in (b'{"os":"linux"}', os.urandom(2048))
    ]
    outcomes = set()
    for round_ in range(ROUNDS):
        manifest = registry.manifest_for(blobs, nonce=str(round_))
        digest = sha256_of(manifest)
        pushed = v2.request(
            "PUT",
            f"/v2/{name}/manifests/v{round_}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert pushed.status_code == 201, pushed.text
        deleter, pusher = registry.v2(), registry.v2()
        deleted, retagged = race(
            partial(deleter.request, "DELETE", f"/v2/{name}/manifests/{digest}"),
            partial(
                pusher.request,
                "PUT",
                f"/v2/{name}/manifests/new-{round_}",
                data=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            ),
            stagger=stagger_of(round_),
        )
        outcome = (spec_answer(deleted, DELETED), spec_answer(retagged, CREATED))
        outcomes.add(outcome)
        # Either order is serial: the new tag exists with its manifest (push last), or
        # neither does (delete last). Never a tag whose manifest is gone.
        by_tag = v2.manifest_status(name, f"new-{round_}")
        by_digest = v2.manifest_status(name, digest)
        assert by_tag == by_digest, (round_, outcome, by_tag, by_digest)
        assert v2.manifest_status(name, f"v{round_}") in (by_digest, 404)
    registry.check()
