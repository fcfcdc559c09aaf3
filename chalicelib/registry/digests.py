"""Content digests. Only sha256 is accepted: every blob is verified against it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import DigestInvalidError

_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_ANY_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not _SHA256.match(value):
            if _ANY_DIGEST.match(value):
                raise DigestInvalidError(
                    f"unsupported digest algorithm in {value!r}; use sha256",
                    detail={"digest": value},
                )
            raise DigestInvalidError(f"invalid digest {value!r}", detail={"digest": value})
        algorithm, _, hex_ = value.partition(":")
        return cls(algorithm, hex_)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest(reference: str) -> bool:
    return ":" in reference
