"""BlobStore on S3."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.registry.records import PendingMultipart, StoredObject, UploadPart

STREAM_CHUNK = 1024 * 1024


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    # SigV4 must be explicit: boto3 otherwise presigns S3 URLs with SigV2. Path-style
    # addressing keeps presigned URLs valid against an endpoint on an IP (the local moto).
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3BlobStore:
    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client

    def presign_get(self, key: str, expires_in: int) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def presign_upload_part(self, key: str, multipart_id: str, number: int, expires_in: int) -> str:
        # SigV4 (s3_client's config): the client sends the part with no headers of its own,
        # so none is signed but Host; no checksum either (FACTS: a presigned ChecksumSHA256
        # becomes a header the uploader must send). The registry hashes the object itself.
        url: str = self.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": multipart_id,
                "PartNumber": number,
            },
            ExpiresIn=expires_in,
        )
        return url

    def list_parts(self, key: str, multipart_id: str) -> list[UploadPart]:
        parts: list[UploadPart] = []
        marker = 0
        while True:
            try:
                answer = self.client.list_parts(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=multipart_id,
                    MaxParts=1000,
                    PartNumberMarker=marker,
                )
            except self.client.exceptions.NoSuchUpload:
                raise KeyError(multipart_id) from None  # the port's "completed or aborted"
            for part in answer.get("Parts", []):
                parts.append(UploadPart(int(part["PartNumber"]), part["ETag"], int(part["Size"])))
            if not answer.get("IsTruncated"):
                return parts
            marker = int(answer["NextPartNumberMarker"])

    def put_object(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get_object(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None  # the port's "no such object"
        body: bytes = response["Body"].read()
        return body

    def iter_object(self, key: str) -> Iterator[bytes]:
        stream = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from stream.iter_chunks(STREAM_CHUNK)
        finally:
            stream.close()

    def delete_object(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def create_multipart(self, key: str) -> str:
        upload_id: str = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)[
            "UploadId"
        ]
        return upload_id

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        try:
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=multipart_id, PartNumber=number, Body=data
            )
        except self.client.exceptions.NoSuchUpload:
            raise KeyError(multipart_id) from None  # the port's "completed or aborted"
        etag: str = answer["ETag"]
        return etag

    def complete_multipart(
        self, key: str, multipart_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=multipart_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        except self.client.exceptions.NoSuchUpload:
            raise KeyError(multipart_id) from None  # the port's "completed or aborted"
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise ValueError(code) from exc  # the port's "parts do not match"
            raise

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        # Already completed or aborted (by the lifecycle rule): nothing is left to free.
        with contextlib.suppress(self.client.exceptions.NoSuchUpload):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart_id)

    def delete_prefix(self, prefix: str, budget: int) -> bool:
        deleted = 0
        while deleted < budget:
            listing = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, MaxKeys=min(1000, budget - deleted)
            )
            keys = [{"Key": o["Key"]} for o in listing.get("Contents", [])]
            if not keys:
                return True
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return not listing.get("Contents")

    def list_objects(self, prefix: str, start_after: str | None, limit: int) -> list[StoredObject]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if start_after is not None:
            kwargs["StartAfter"] = start_after
        response = self.client.list_objects_v2(**kwargs)
        return [
            StoredObject(o["Key"], int(o["Size"]), o["LastModified"])
            for o in response.get("Contents", [])
        ]

    def list_multipart_uploads(self, prefix: str, limit: int) -> list[PendingMultipart]:
        response = self.client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=prefix, MaxUploads=limit
        )
        return [
            PendingMultipart(u["Key"], u["UploadId"], u["Initiated"])
            for u in response.get("Uploads", [])
        ]

    def create_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError:
            self.client.create_bucket(Bucket=self.bucket)
