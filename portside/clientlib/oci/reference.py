"""Image references: ``HOST[:PORT]/NAME[:TAG][@DIGEST]``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import ClientError

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}$")
_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


@dataclass(frozen=True)
class Reference:
    host: str
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.host}/{self.name}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """``HOST/NAME[:TAG][@DIGEST]``; the first path component is always the registry host.
    No tag and no digest means ``latest``."""
    raw = text.strip()
    for scheme in ("https://", "http://"):
        raw = raw.removeprefix(scheme)
    host, slash, rest = raw.partition("/")
    if not slash or not host or not rest:
        raise ClientError(f"invalid image reference {text!r}: expected HOST/NAME[:TAG][@DIGEST]")
    digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise ClientError(f"invalid digest {digest!r} in {text!r}")
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise ClientError(f"invalid tag {tag!r} in {text!r}")
    if not _NAME.match(rest):
        raise ClientError(f"invalid repository name {rest!r} in {text!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(host=host, name=rest, tag=tag, digest=digest)


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without a port: reached over plain HTTP."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
