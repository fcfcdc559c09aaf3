"""Grammar of registry, repository and tag names, and of digests."""

from __future__ import annotations

import pytest

from chalicelib.registry.digests import Digest, is_digest
from chalicelib.registry.errors import DigestInvalidError, NameInvalidError, TagInvalidError
from chalicelib.registry.names import (
    RepositoryName,
    is_tag,
    is_valid_registry_name,
    validate_tag,
)

HEX = "a" * 64


@pytest.mark.parametrize(
    "name",
    ["a", "acme", "a1", "0", "my-registry", "a--b", "a" * 63, "9lives"],
)
def test_registry_names_of_one_to_63_lowercase_alnum_and_hyphen_are_valid(name: str) -> None:
    assert is_valid_registry_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "-acme", "acme-", "a" * 64, "a_b", "a.b", "a b", "acmé", "a/b"],
)
def test_registry_names_outside_the_grammar_are_invalid(name: str) -> None:
    assert not is_valid_registry_name(name)


@pytest.mark.parametrize(
    ("name", "registry", "repository"),
    [
        ("acme/app", "acme", "app"),
        ("acme/team/api", "acme", "team/api"),
        ("acme/a.b_c__d-e--f", "acme", "a.b_c__d-e--f"),
        ("a1-b2/x/y/z", "a1-b2", "x/y/z"),
        ("a" * 63 + "/x", "a" * 63, "x"),
    ],
)
def test_repository_name_splits_into_registry_and_repository(
    name: str, registry: str, repository: str
) -> None:
    parsed = RepositoryName.parse(name)
    assert (parsed.registry, parsed.repository) == (registry, repository)
    assert str(parsed) == name


@pytest.mark.parametrize(
    "name",
    [
        "Acme/app",  # uppercase registry
        "acme/App",  # uppercase repository
        "-acme/app",  # leading hyphen
        "acme-/app",  # trailing hyphen
        "a" * 64 + "/app",  # registry of 64 characters
        "a//b",  # empty component
        "a/b/",  # trailing slash
        "/a/b",  # leading slash
        "acme/app.",  # trailing separator
        "acme/_app",  # leading separator
        "acme/a...b",  # separator not in the grammar
        "acme/app:tag",
        "acme/" + "x" * 251,  # longer than 255 characters
        "",
    ],
)
def test_repository_names_outside_the_grammar_raise_name_invalid(name: str) -> None:
    with pytest.raises(NameInvalidError) as caught:
        RepositoryName.parse(name)
    assert caught.value.status == 400
    assert caught.value.detail == {"name": name}


@pytest.mark.parametrize("name", ["app", "a.b/app", "a_b/app"])
def test_names_without_a_valid_registry_segment_need_registry_slash_repository(
    name: str,
) -> None:
    with pytest.raises(NameInvalidError, match="<registry>/<repository>"):
        RepositoryName.parse(name)


def test_repository_name_of_exactly_255_characters_is_accepted() -> None:
    name = "acme/" + "x" * 250
    assert len(name) == 255
    assert RepositoryName.parse(name).repository == "x" * 250


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_hidden", "A-b_c.D", "1", "x" * 128])
def test_tags_in_the_grammar_are_accepted(tag: str) -> None:
    assert validate_tag(tag) == tag
    assert is_tag(tag)


@pytest.mark.parametrize("tag", ["", ".v1", "-v1", "x" * 129, "a/b", "a:b", "a b", "ä"])
def test_tags_outside_the_grammar_raise_tag_invalid(tag: str) -> None:
    with pytest.raises(TagInvalidError) as caught:
        validate_tag(tag)
    assert caught.value.status == 400
    assert not is_tag(tag)


def test_sha256_digest_with_64_lowercase_hex_parses() -> None:
    digest = Digest.parse(f"sha256:{HEX}")
    assert (digest.algorithm, digest.hex) == ("sha256", HEX)
    assert str(digest) == f"sha256:{HEX}"


def test_digest_of_bytes_is_their_sha256() -> None:
    assert str(Digest.of(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "A" * 64,  # uppercase hex
        "sha256:" + "a" * 63,  # too short
        "sha256:" + "a" * 65,  # too long
        "sha256:" + "g" * 64,  # not hex
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha512:" + "a" * 128,
        "a" * 64,  # no algorithm
        "sha256" + "a" * 64,  # no colon
        "sha256:",
        "",
    ],
)
def test_digests_other_than_sha256_with_64_lowercase_hex_raise_digest_invalid(
    value: str,
) -> None:
    with pytest.raises(DigestInvalidError) as caught:
        Digest.parse(value)
    assert caught.value.status == 400
    assert caught.value.detail == {"digest": value}


def test_references_with_a_colon_are_digests_and_others_tags() -> None:
    assert is_digest(f"sha256:{HEX}")
    assert not is_digest("latest")
