"""Tag immutability in the registry service and the /v2/ API: a tag an immutability rule
covers can be created, re-pushed with the same manifest, and never moved or deleted (nor
its manifest deleted), even by a process whose cached copy of the rules is stale."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from datetime import timedelta

import pytest

from chalicelib.adapters.memory import MemoryMetadataStore
from chalicelib.http.messages import HttpRequest
from chalicelib.registry.auth import Authenticator
from chalicelib.registry.errors import ManifestUnknownError, TagImmutableError
from chalicelib.registry.manifests import OCI_MANIFEST
from chalicelib.registry.names import RepositoryName
from chalicelib.registry.records import RegistryRecord
from chalicelib.registry.rules import ImmutabilityRule, RegistrySettings
from chalicelib.registry.service import RegistryService

from .builders import START, make_token, make_v2_api, push_image, sha256
from .conftest import ACCOUNT, REGISTRY

RULES = RegistrySettings(
    immutability_rules=(
        ImmutabilityRule("tools/*", "*"),
        ImmutabilityRule("team/*", "v*"),
    )
)
MESSAGE = "tag v1 of acme/team/app is immutable (rule 2: repository 'team/*', tag 'v*')"


def set_rules(store: MemoryMetadataStore, settings: RegistrySettings = RULES) -> RegistryRecord:
    record = store.get_registry(REGISTRY)
    assert record is not None
    return store.update_registry_settings(
        REGISTRY, record.registry_id, settings, record.settings_version, START
    )


def tagged(store: MemoryMetadataStore, repo: RepositoryName, tag: str) -> str | None:
    record = store.get_tag(repo, tag)
    return record.digest if record else None


def test_moving_an_immutable_tag_is_denied_naming_the_rule(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    first = push_image(service, repo, "v1", "one")
    set_rules(store)
    with pytest.raises(TagImmutableError) as raised:
        push_image(service, repo, "v1", "two")
    assert raised.value.message == MESSAGE and raised.value.status == 403
    assert tagged(store, repo, "v1") == sha256(first)


def test_an_immutable_tag_can_be_created_and_pushed_again_with_the_same_manifest(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    set_rules(store)
    body = push_image(service, repo, "v2", "one")
    assert push_image(service, repo, "v2", "one") == body
    assert tagged(store, repo, "v2") == sha256(body)


def test_tags_no_rule_covers_still_move(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    set_rules(store)
    push_image(service, repo, "latest", "one")
    second = push_image(service, repo, "latest", "two")
    assert tagged(store, repo, "latest") == sha256(second)


def test_deleting_an_immutable_tag_is_denied(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "one")
    push_image(service, repo, "latest", "one")
    set_rules(store)
    with pytest.raises(TagImmutableError, match="rule 2"):
        service.delete_manifest(repo, "v1")
    service.delete_manifest(repo, "latest")
    assert tagged(store, repo, "v1") is not None and tagged(store, repo, "latest") is None
    with pytest.raises(ManifestUnknownError):  # no such tag: not found, not denied
        service.delete_manifest(repo, "v9")


def test_deleting_the_manifest_an_immutable_tag_names_is_denied(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    kept = push_image(service, repo, "v1", "one")
    loose = push_image(service, repo, "latest", "two")
    set_rules(store)
    with pytest.raises(TagImmutableError) as raised:
        service.delete_manifest(repo, sha256(kept))
    assert "is tagged v1" in raised.value.message and "rule 2" in raised.value.message
    service.delete_manifest(repo, sha256(loose))
    assert store.get_manifest(repo, sha256(kept)) is not None
    assert store.get_manifest(repo, sha256(loose)) is None


def test_a_push_relying_on_stale_cached_rules_is_caught_by_the_settings_version(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "one")
    stale = store.get_registry(REGISTRY)  # no rules yet, as a warm process cached it
    assert stale is not None
    set_rules(store)
    body = push_image(service, repo, "v1", "one")  # builds the blobs; same digest: fine
    other = push_image(service, repo, "other", "two")
    with pytest.raises(TagImmutableError):
        service.put_manifest(repo, "v1", other, OCI_MANIFEST, registry=stale)
    assert tagged(store, repo, "v1") == sha256(body)
    # A stale copy whose rules would still allow it: re-read, then saved.
    service.put_manifest(repo, "latest", other, OCI_MANIFEST, registry=stale)
    assert tagged(store, repo, "latest") == sha256(other)


def test_rules_removed_since_the_cache_no_longer_hold(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "one")
    set_rules(store)
    cached = store.get_registry(REGISTRY)
    set_rules(store, RegistrySettings())
    other = push_image(service, repo, "other", "two")
    service.put_manifest(repo, "v1", other, OCI_MANIFEST, registry=cached)
    assert tagged(store, repo, "v1") == sha256(other)


def test_a_cached_record_of_another_incarnation_is_not_trusted(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "one")
    set_rules(store)
    foreign = replace(RegistryRecord(REGISTRY, ACCOUNT), settings_version=1)  # other id
    other = push_image(service, repo, "other", "two")
    with pytest.raises(TagImmutableError):
        service.put_manifest(repo, "v1", other, OCI_MANIFEST, registry=foreign)


def test_docker_push_moving_an_immutable_tag_gets_denied_with_the_rule(
    service: RegistryService, store: MemoryMetadataStore, repo: RepositoryName
) -> None:
    push_image(service, repo, "v1", "one")
    other = push_image(service, repo, "other", "two")
    auth = Authenticator(store, registry_ttl=timedelta(minutes=5))
    api = make_v2_api(service, store, auth)
    secret = make_token(store, ACCOUNT, {"push", "pull"})
    basic = "Basic " + base64.b64encode(f"{secret}:{secret}".encode()).decode()

    def put(tag: str) -> tuple[int, bytes]:
        request = HttpRequest(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            {},
            {"authorization": basic, "content-type": OCI_MANIFEST},
            io.BytesIO(other),
            len(other),
            "https://registry.example.test",
        )
        response = api.handle(request)
        return response.status, response.body

    assert put("v9")[0] == 201  # warms the cache: no rules yet
    set_rules(store)  # by another process: this one's cache is stale now
    status, body = put("v1")
    assert status == 403
    assert b"DENIED" in body and b"rule 2" in body
