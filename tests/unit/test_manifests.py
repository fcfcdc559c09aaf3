"""parse_manifest: media types, validation and what a manifest references."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.registry.errors import ManifestInvalidError, ManifestTooBigError
from chalicelib.registry.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_ARTIFACT,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)

from .builders import (
    OCI_CONFIG,
    OCI_LAYER,
    descriptor,
    encode,
    image_manifest,
    index_manifest,
    sha256,
)

CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER_A = b"layer a"
LAYER_B = b"layer b"
EMPTY = b"{}"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"


def oci_image_doc(**extra: Any) -> dict[str, Any]:
    return json.loads(image_manifest(CONFIG, [LAYER_A, LAYER_B], **extra))


def test_oci_image_manifest_lists_config_and_layers_as_required_blobs() -> None:
    body = image_manifest(CONFIG, [LAYER_A, LAYER_B])
    parsed = parse_manifest(body, OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.digest == sha256(body)
    assert parsed.size == len(body)
    assert parsed.required_blob_digests == sorted(
        {sha256(CONFIG), sha256(LAYER_A), sha256(LAYER_B)}
    )
    assert parsed.child_manifest_digests == []
    assert parsed.subject is None
    assert parsed.artifact_type == OCI_CONFIG  # typed by its config (distribution-spec 1.1)


def test_docker_schema2_manifest_is_an_image_with_docker_media_type() -> None:
    body = image_manifest(CONFIG, [LAYER_A], media_type=DOCKER_MANIFEST)
    parsed = parse_manifest(body, DOCKER_MANIFEST)
    assert parsed.media_type == DOCKER_MANIFEST
    assert parsed.required_blob_digests == sorted({sha256(CONFIG), sha256(LAYER_A)})
    assert parsed.blobs[0].media_type == "application/vnd.docker.container.image.v1+json"


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_index_and_docker_list_reference_child_manifests_not_blobs(media_type: str) -> None:
    child_a = image_manifest(CONFIG, [LAYER_A])
    child_b = image_manifest(CONFIG, [LAYER_B])
    body = index_manifest([child_a, child_b], media_type=media_type)
    parsed = parse_manifest(body, media_type)
    assert parsed.media_type == media_type
    assert parsed.child_manifest_digests == sorted({sha256(child_a), sha256(child_b)})
    assert parsed.required_blob_digests == []


def test_image_manifest_with_artifact_type_and_empty_config_is_an_artifact() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": descriptor(OCI_EMPTY, EMPTY),
        "layers": [descriptor("application/octet-stream", LAYER_A)],
    }
    parsed = parse_manifest(encode(doc), OCI_MANIFEST)
    assert parsed.artifact_type == SIGNATURE_TYPE
    assert parsed.required_blob_digests == sorted({sha256(EMPTY), sha256(LAYER_A)})


def test_artifact_type_falls_back_to_the_config_media_type() -> None:
    doc = oci_image_doc()
    doc["config"] = descriptor("application/vnd.example.config.v1+json", CONFIG)
    parsed = parse_manifest(encode(doc), OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.example.config.v1+json"


def test_oci_artifact_manifest_lists_its_blobs_and_subject() -> None:
    subject = image_manifest(CONFIG, [LAYER_A])
    doc = {
        "mediaType": OCI_ARTIFACT,
        "artifactType": SIGNATURE_TYPE,
        "blobs": [descriptor("application/octet-stream", LAYER_B)],
        "subject": descriptor(OCI_MANIFEST, subject),
    }
    parsed = parse_manifest(encode(doc), OCI_ARTIFACT)
    assert parsed.media_type == OCI_ARTIFACT
    assert parsed.required_blob_digests == [sha256(LAYER_B)]
    assert parsed.subject is not None
    assert parsed.subject.digest == sha256(subject)
    assert parsed.artifact_type == SIGNATURE_TYPE


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
def test_media_type_is_taken_from_the_body_when_no_content_type_is_sent(
    media_type: str,
) -> None:
    if media_type in (OCI_INDEX, DOCKER_LIST):
        body = index_manifest([image_manifest(CONFIG, [])], media_type=media_type)
    else:
        body = image_manifest(CONFIG, [LAYER_A], media_type=media_type)
    assert parse_manifest(body, None).media_type == media_type
    assert parse_manifest(body, "").media_type == media_type


def test_media_type_is_inferred_from_shape_when_neither_header_nor_body_names_it() -> None:
    image = oci_image_doc()
    del image["mediaType"]
    index = json.loads(index_manifest([image_manifest(CONFIG, [])]))
    del index["mediaType"]
    assert parse_manifest(encode(image), None).media_type == OCI_MANIFEST
    assert parse_manifest(encode(index), None).media_type == OCI_INDEX


def test_content_type_parameters_and_case_are_ignored() -> None:
    body = image_manifest(CONFIG, [LAYER_A])
    parsed = parse_manifest(body, OCI_MANIFEST.upper() + "; charset=utf-8")
    assert parsed.media_type == OCI_MANIFEST


def test_content_type_that_contradicts_the_body_media_type_is_rejected() -> None:
    body = image_manifest(CONFIG, [LAYER_A], media_type=OCI_MANIFEST)
    with pytest.raises(ManifestInvalidError, match="does not match"):
        parse_manifest(body, DOCKER_MANIFEST)


def test_unknown_media_type_is_rejected_with_the_type_in_detail() -> None:
    doc = oci_image_doc(mediaType="application/vnd.example.unknown+json")
    with pytest.raises(ManifestInvalidError) as caught:
        parse_manifest(encode(doc), None)
    assert caught.value.detail == {"mediaType": "application/vnd.example.unknown+json"}


@pytest.mark.parametrize(
    ("content_type", "doc"),
    [
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            {"schemaVersion": 1, "name": "acme/app", "tag": "v1", "fsLayers": []},
        ),
        (None, {"schemaVersion": 1, "name": "acme/app", "tag": "v1", "fsLayers": []}),
        (
            "application/vnd.docker.distribution.manifest.v1+json",
            {"schemaVersion": 2, "config": {}, "layers": []},
        ),
    ],
)
def test_docker_schema1_manifests_are_rejected(
    content_type: str | None, doc: dict[str, Any]
) -> None:
    with pytest.raises(ManifestInvalidError, match="schema1"):
        parse_manifest(encode(doc), content_type)


def test_schema_version_other_than_2_is_rejected() -> None:
    with pytest.raises(ManifestInvalidError, match="schemaVersion"):
        parse_manifest(encode(oci_image_doc(schemaVersion=3)), OCI_MANIFEST)


@pytest.mark.parametrize(
    "body", [b"", b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe{}", b'{"a": "\xc3"}']
)
def test_bodies_that_are_not_a_utf8_json_object_are_rejected(body: bytes) -> None:
    with pytest.raises(ManifestInvalidError):
        parse_manifest(body, OCI_MANIFEST)


def test_manifest_larger_than_4_mib_is_too_big() -> None:
    padding = "x" * (MAX_MANIFEST_BYTES + 1)
    body = encode(oci_image_doc(annotations={"pad": padding}))
    with pytest.raises(ManifestTooBigError) as caught:
        parse_manifest(body, OCI_MANIFEST)
    assert caught.value.status == 413
    assert caught.value.detail == {"size": len(body), "limit": MAX_MANIFEST_BYTES}


def test_manifest_of_exactly_4_mib_is_parsed() -> None:
    doc = oci_image_doc(annotations={"pad": ""})
    filler = MAX_MANIFEST_BYTES - len(encode(doc))
    doc["annotations"]["pad"] = "x" * filler
    body = encode(doc)
    assert len(body) == MAX_MANIFEST_BYTES
    assert parse_manifest(body, OCI_MANIFEST).size == MAX_MANIFEST_BYTES


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["layers"][0].update(size=-1), r"layers\[0\].size"),
        (lambda d: d["layers"][0].update(size="12"), r"layers\[0\].size"),
        (lambda d: d["layers"][0].update(size=True), r"layers\[0\].size"),
        (lambda d: d["layers"][1].update(digest="sha256:abc"), r"layers\[1\].digest"),
        (lambda d: d["layers"][0].update(digest="md5:" + "a" * 32), r"layers\[0\].digest"),
        (lambda d: d["layers"][0].pop("digest"), r"layers\[0\].digest is missing"),
        (lambda d: d["layers"][0].pop("mediaType"), r"layers\[0\].mediaType is missing"),
        (lambda d: d["layers"][0].pop("size"), r"layers\[0\].size"),
        (lambda d: d["config"].update(digest=None), r"config.digest is missing"),
        (lambda d: d.pop("config"), r"config is not a descriptor"),
        (lambda d: d.update(layers={}), r"layers must be a list"),
        (lambda d: d["layers"].append("sha256:" + "a" * 64), r"layers\[2\] is not a descriptor"),
        (lambda d: d["layers"][0].update(urls="http://x"), r"urls must be a list"),
        (lambda d: d["layers"][0].update(annotations={"a": 1}), r"annotations must map"),
        (lambda d: d.update(annotations=["a"]), r"annotations must map"),
        (lambda d: d.update(artifactType=7), r"artifactType must be a string"),
        (lambda d: d.update(subject={"mediaType": OCI_MANIFEST}), r"subject.digest is missing"),
    ],
)
def test_malformed_descriptors_and_fields_are_rejected_naming_the_field(
    mutate: Any, message: str
) -> None:
    doc = oci_image_doc()
    mutate(doc)
    with pytest.raises(ManifestInvalidError, match=message):
        parse_manifest(encode(doc), OCI_MANIFEST)


def test_index_with_a_malformed_child_descriptor_is_rejected() -> None:
    doc = json.loads(index_manifest([image_manifest(CONFIG, [])]))
    doc["manifests"][0]["size"] = -5
    with pytest.raises(ManifestInvalidError, match=r"manifests\[0\].size"):
        parse_manifest(encode(doc), OCI_INDEX)


def test_foreign_layers_with_urls_are_not_required_blobs() -> None:
    doc = oci_image_doc()
    foreign = descriptor(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        b"windows base layer",
        urls=["https://mcr.example.com/layer"],
    )
    doc["layers"].append(foreign)
    parsed = parse_manifest(encode(doc), OCI_MANIFEST)
    assert foreign["digest"] not in parsed.required_blob_digests
    assert sha256(LAYER_A) in parsed.required_blob_digests
    assert parsed.blobs[-1].urls == ("https://mcr.example.com/layer",)


def test_subject_and_annotations_are_parsed() -> None:
    subject_body = image_manifest(CONFIG, [LAYER_A])
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": descriptor(OCI_EMPTY, EMPTY),
        "layers": [descriptor(OCI_LAYER, LAYER_B)],
        "subject": descriptor(OCI_MANIFEST, subject_body),
        "annotations": {"org.opencontainers.image.created": "2026-03-01T00:00:00Z"},
    }
    parsed = parse_manifest(encode(doc), OCI_MANIFEST)
    assert parsed.subject is not None
    assert parsed.subject.digest == sha256(subject_body)
    assert parsed.subject.size == len(subject_body)
    assert parsed.subject.media_type == OCI_MANIFEST
    referrer = parsed.referrer_descriptor()
    assert referrer.digest == parsed.digest
    assert referrer.artifact_type == SIGNATURE_TYPE
    assert referrer.to_json()["annotations"] == doc["annotations"]


def test_descriptor_json_omits_empty_optional_fields() -> None:
    parsed = parse_manifest(image_manifest(CONFIG, [LAYER_A]), OCI_MANIFEST)
    assert parsed.blobs[0].to_json() == {
        "mediaType": OCI_CONFIG,
        "digest": sha256(CONFIG),
        "size": len(CONFIG),
    }
