"""Names in the distribution spec's grammar: registries (tenants), repositories, tags."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import NameInvalidError, TagInvalidError

REGISTRY_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def is_valid_registry_name(name: str) -> bool:
    return bool(REGISTRY_NAME.match(name))


def validate_tag(tag: str) -> str:
    if not TAG.match(tag):
        raise TagInvalidError(f"invalid tag {tag!r}", detail={"tag": tag})
    return tag


def is_tag(reference: str) -> bool:
    return bool(TAG.match(reference))


@dataclass(frozen=True, order=True)
class RepositoryName:
    """``<registry>/<repository>``: the first path segment names the tenant registry.

    A registry name is only an alias: once a registry is deleted its name can be taken
    again, by anyone. What a repository's items and objects belong to is the registry's
    immutable id, which ``registry_id`` carries once authorization resolved the name (from
    the registry record, or from the id a JWT or an upload capability was issued for). The
    stores key everything by it and refuse an unbound name, so nothing issued for one
    incarnation of a registry can reach another.
    """

    registry: str
    repository: str
    registry_id: str = field(default="", repr=False)

    @classmethod
    def parse(cls, name: str) -> RepositoryName:
        if len(name) > MAX_NAME_LENGTH or not REPOSITORY_PATH.match(name):
            raise NameInvalidError(f"invalid repository name {name!r}", detail={"name": name})
        registry, sep, repository = name.partition("/")
        if not sep or not is_valid_registry_name(registry):
            raise NameInvalidError(
                "repository names have the form <registry>/<repository>", detail={"name": name}
            )
        return cls(registry, repository)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"

    def bound(self, registry_id: str) -> RepositoryName:
        """The same name, resolved to the registry incarnation ``registry_id``."""
        return RepositoryName(self.registry, self.repository, registry_id)

    @property
    def rid(self) -> str:
        """The registry id; an unbound name here is a bug, never a fallback to the name."""
        if not self.registry_id:
            raise ValueError(f"repository {self} is not bound to a registry id")
        return self.registry_id


# Every number a request carries (a page size, a byte offset or length) fits in 18 digits
# (10**18 bytes is an exabyte); ``int`` refuses more than 4300 digits with a ValueError.
MAX_DECIMAL_DIGITS = 18


def is_decimal(text: str) -> bool:
    """A non-negative decimal ``int`` accepts and a request may sensibly carry: ASCII digits
    only (``str.isdigit`` also accepts "²", which ``int`` refuses), at most 18 of them."""
    return len(text) <= MAX_DECIMAL_DIGITS and text.isascii() and text.isdigit()
