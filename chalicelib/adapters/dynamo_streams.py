"""DynamoDB stream records (as Lambda delivers them) -> the plain values of registry.alerts.

A record carries its item's keys and, with NEW_AND_OLD_IMAGES, the item before and after
the write, in DynamoDB JSON. Only registry records (``REG#<name>`` / ``#META``, see
dynamo_models.RegistryItem) matter: the event source mapping filters on those keys, and this
module checks them again, so an unfiltered feed (or a changed filter) cannot make a token or
a tag look like a registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from ..registry.alerts import Change, RegistryUsage
from .dynamo_models import META

REGISTRY_PREFIX = "REG#"
# The Lambda event filter of the stack (infra) and the local poller: registry records only.
REGISTRY_FILTER: dict[str, Any] = {
    "dynamodb": {
        "Keys": {
            "pk": {"S": [{"prefix": REGISTRY_PREFIX}]},
            "sk": {"S": [META]},
        }
    }
}

_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class StreamChange:
    """One stream record of a registry record: its position and the change."""

    sequence_number: str
    old: RegistryUsage | None
    new: RegistryUsage | None

    @property
    def change(self) -> Change:
        return (self.old, self.new)


def _plain(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in image.items()}


def is_registry_record(keys: Mapping[str, Any]) -> bool:
    pk = (keys.get("pk") or {}).get("S", "")
    sk = (keys.get("sk") or {}).get("S", "")
    return isinstance(pk, str) and pk.startswith(REGISTRY_PREFIX) and sk == META


def registry_usage(image: Mapping[str, Any] | None) -> RegistryUsage | None:
    """The registry record of a stream image (DynamoDB JSON); None without one."""
    if not image:
        return None
    item = _plain(image)
    pk = str(item.get("pk", ""))
    return RegistryUsage(
        registry=pk[len(REGISTRY_PREFIX) :],
        registry_id=str(item.get("registry_id", "")),
        account_id=str(item.get("account_id", "")),
        # Records written before plans were stored: the professional plan (plans.tier).
        plan=str(item.get("plan") or "professional"),
        storage_bytes=int(item.get("storage_bytes") or 0),
        repository_count=int(item.get("repository_count") or 0),
        deleting=bool(item.get("deleting") or False),
    )


def registry_changes(records: Sequence[Mapping[str, Any]]) -> list[StreamChange]:
    """The registry record changes among ``records`` (a Lambda event's ``Records``), in
    order."""
    out = []
    for record in records:
        body = record.get("dynamodb") or {}
        if not is_registry_record(body.get("Keys") or {}):
            continue
        out.append(
            StreamChange(
                sequence_number=str(body.get("SequenceNumber", "")),
                old=registry_usage(body.get("OldImage")),
                new=registry_usage(body.get("NewImage")),
            )
        )
    return out


def matches_filter(record: Mapping[str, Any]) -> bool:
    """What the event source mapping's filter (REGISTRY_FILTER) lets through."""
    return is_registry_record((record.get("dynamodb") or {}).get("Keys") or {})
