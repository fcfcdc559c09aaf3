"""Names in the distribution spec's grammar: registries (tenants), repositories, tags."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    """``<registry>/<repository>``: the first path segment names the tenant registry."""

    registry: str
    repository: str

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


def is_decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` then refuses."""
    return text.isascii() and text.isdigit()
