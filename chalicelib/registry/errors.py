"""Registry errors as data.

Every failure the registry reports is a ``RegistryError`` carrying an OCI error code. The
single table ``STATUS_BY_CODE`` maps each code to its HTTP status; ``http/errors.py`` is the
only place that turns these into responses.
"""

from __future__ import annotations

from typing import Any, ClassVar

# code -> (HTTP status, default message). Codes and messages follow the distribution spec.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    # the distribution spec's codes
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    # codes the reference implementation (distribution) adds, which clients know
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNKNOWN": (500, "unknown error"),
    "UNAVAILABLE": (503, "service unavailable"),
    "NOT_FOUND": (404, "not found"),
    # the management API's own conditions
    "BAD_REQUEST": (400, "malformed request"),
    "CONFLICT": (409, "conflict"),
    "UNPROCESSABLE": (422, "invalid values"),
}

# The spec answers an oversized manifest with 413 Payload Too Large but has no code of its
# own for it: it keeps MANIFEST_INVALID and overrides the status. Other oversized bodies
# (the token endpoint's form) do the same with BAD_REQUEST.
STATUS_OVERRIDES: dict[str, int] = {"ManifestTooBigError": 413, "RequestTooLargeError": 413}


class RegistryError(Exception):
    """A failure reported to the client with an OCI error code."""

    code: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or ERROR_TABLE[self.code][1]
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.message}")

    @property
    def status(self) -> int:
        return STATUS_OVERRIDES.get(type(self).__name__, ERROR_TABLE[self.code][0])


class BlobUnknownError(RegistryError):
    code = "BLOB_UNKNOWN"


class BlobUploadInvalidError(RegistryError):
    code = "BLOB_UPLOAD_INVALID"


class BlobUploadUnknownError(RegistryError):
    code = "BLOB_UPLOAD_UNKNOWN"


class DigestInvalidError(RegistryError):
    code = "DIGEST_INVALID"


class ManifestBlobUnknownError(RegistryError):
    code = "MANIFEST_BLOB_UNKNOWN"


class ManifestInvalidError(RegistryError):
    code = "MANIFEST_INVALID"


class ManifestUnknownError(RegistryError):
    code = "MANIFEST_UNKNOWN"


class ManifestTooBigError(RegistryError):
    code = "MANIFEST_INVALID"


class NameInvalidError(RegistryError):
    code = "NAME_INVALID"


class NameUnknownError(RegistryError):
    code = "NAME_UNKNOWN"


class SizeInvalidError(RegistryError):
    code = "SIZE_INVALID"


class TagInvalidError(RegistryError):
    """A malformed tag in a manifest PUT. The spec has no tag code; MANIFEST_INVALID is the
    closest of its codes (distribution's TAG_INVALID means a schema1 tag mismatch)."""

    code = "MANIFEST_INVALID"


class UnauthorizedError(RegistryError):
    code = "UNAUTHORIZED"


class DeniedError(RegistryError):
    code = "DENIED"


class UnsupportedError(RegistryError):
    code = "UNSUPPORTED"


class RangeInvalidError(RegistryError):
    code = "RANGE_INVALID"


class PaginationNumberInvalidError(RegistryError):
    code = "PAGINATION_NUMBER_INVALID"


class RouteNotFoundError(RegistryError):
    code = "NOT_FOUND"


class MethodNotAllowedError(RegistryError):
    code = "UNSUPPORTED"


class BadRequestError(RegistryError):
    code = "BAD_REQUEST"


class RequestTooLargeError(RegistryError):
    """A request body (other than a manifest) over its limit: 413."""

    code = "BAD_REQUEST"


class NotFoundError(RegistryError):
    code = "NOT_FOUND"


class ConflictError(RegistryError):
    code = "CONFLICT"


class UnprocessableError(RegistryError):
    code = "UNPROCESSABLE"


class UnavailableError(RegistryError):
    """Something the request needs (another AWS service) could not be reached: 503."""

    code = "UNAVAILABLE"


class ConcurrentWriteError(RegistryError):
    """A conditional write lost a race; the client may retry."""

    code = "TOOMANYREQUESTS"


class TransferCapError(RegistryError):
    """Blob downloads from a registry whose plan caps outbound transfer, once the month's
    metered transfer is over the cap (registry.auth.transfer_cap_refusal): 429 until the
    next month or an upgrade."""

    code = "TOOMANYREQUESTS"

    def __init__(self, registry: str, plan: str, cap: str, month: str, resumes: str) -> None:
        # What a registry JWT carries to refuse downloads without a read (registry.auth).
        self.fields = {"plan": plan, "cap": cap, "month": month, "resumes": resumes}
        super().__init__(
            f"registry {registry!r} has used its {cap} of outbound transfer for {month} on "
            f"the {plan} plan; pulls resume on {resumes} or after an upgrade",
            detail={"registry": registry, "month": month, "plan": plan},
        )


class QuotaExceededError(DeniedError):
    """A push that would take a registry beyond its plan's hard storage or repository
    limit; the message names the limit, the plan and the amounts (registry.quotas builds
    it). Docker prints it."""


class AccountSuspendedError(DeniedError):
    """The account a token or registry belongs to is suspended by the operator."""

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"account {account_id!r} is suspended: contact the operator of this registry",
            detail={"account": account_id},
        )


class GarbageCollectionRunningError(DeniedError):
    """A write into a registry while a read-only garbage collection runs on it."""

    def __init__(self, registry: str, gc_uuid: str | None = None) -> None:
        super().__init__(
            f"registry {registry!r} is read-only: a garbage collection is running; "
            "try again when it ends",
            detail={"registry": registry, "garbage_collection": gc_uuid},
        )


class CollectionBusyError(DeniedError):
    """A manifest too big to fence in one transaction, pushed during an online collection."""

    def __init__(self, registry: str, references: int) -> None:
        super().__init__(
            f"a manifest referencing {references} blobs and manifests cannot be pushed to "
            f"{registry!r} while a garbage collection runs on it; try again when it ends",
            detail={"registry": registry, "references": references},
        )


class TagImmutableError(DeniedError):
    """Moving or deleting a tag that a registry's immutability rule protects (the message
    names the rule: registry.policies.immutable_message)."""


class SettingsChangedError(ConcurrentWriteError):
    """A write conditional on the registry's ``settings_version`` found another version:
    the rules it relied on (a cached copy) changed. Re-read the registry and retry once."""
