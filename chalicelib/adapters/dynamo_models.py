"""PynamoDB models of Portside's single DynamoDB table.

Key design (pk / sk), chosen so every query the registry, GC, quotas and metering need is
a Query on one partition, never a Scan. A registry's name is only an alias (it can be
deleted and taken again): the record under the name holds the immutable id of the
incarnation it names, and everything in the registry is keyed by that id, so nothing
issued for one incarnation can reach another's items. Every write into a registry is
conditional on ``REG#<name>`` still naming that id, live.

  REG#<name>                #META                        registry record, its id, counters
  RID#<registry id>         BLOB#<digest>                a blob the registry stores (size, key)
  RID#<registry id>         REPO#<repository>            a repository (created by first push)
  REPO#<registry id>/<repo> LINK#<digest>                blob linked into a repository
  REPO#<registry id>/<repo> MANIFEST#<digest>            manifest (body inline if small)
  REPO#<registry id>/<repo> TAG#<tag>                    tag -> digest (lexical order = sk order)
  REPO#<registry id>/<repo> REFERRER#<subject>#<digest>  referrer descriptor, by subject
  RID#<registry id>         KEY#<s3 key>                 the blob (or manifest) naming that key (GC)
  RID#<registry id>         GC#<uuid>                    a garbage collection (uuids sort by age)
  GCMARK#<collection uuid>  B#<digest>                   a blob a kept manifest references (TTL)
  RID#<registry id>         SCHEDULE#GC                  its GC schedule's next run
  RID#<registry id>         IDENTITY                     the name it was created under
  USAGE#<registry id>       MONTH# / DAY# / SRC#...      usage, outliving the registry (below)
  UPLOAD#<id>               #META                        upload session (TTL)
  TOKEN#<sha256 of secret>  #META                        API token

GSI1 (gsi1pk / gsi1sk) gives the cross-partition views:
  ACCOUNT#<account>   REG#<registry>           registries of an account
  DELETING            <registry>               registries whose content is being purged
  MANIFESTS#<reg id>  <repo>@<digest>          all manifests of a registry (GC)
  TAGS#<reg id>       <repo>:<tag>             all tags of a registry (GC)
  UPLOADS             <expires_at>#<id>        upload sessions by expiry (cleanup)
  TOKENS#<account>    <token_id>               tokens of an account
  GCSCHEDULES         <next run>#<registry id> scheduled collections by next run
  USAGEMONTH#<month>  <registry id>            registries with usage in a month (billing)
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

META = "#META"
IDENTITY = "IDENTITY"


class Gsi1(GlobalSecondaryIndex["Item"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class Item(Model):
    """Keys shared by every item kind; queries that only test presence use this class."""

    class Meta:
        table_name = os.environ.get("PORTSIDE_TABLE", "portside")
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi1 = Gsi1()


class RegistryItem(Item):
    registry_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    plan = UnicodeAttribute(default="professional")
    storage_bytes = NumberAttribute(default=0)
    repository_count = NumberAttribute(default=0)
    # Bumped with every counter change (records.RegistryRecord.usage_version); absent on
    # records older than it: 0.
    usage_version = NumberAttribute(null=True)
    read_only = BooleanAttribute(default=False)
    deleting = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute(null=True)
    storage_updated_at = UTCDateTimeAttribute(null=True)
    subscription_created_at = UTCDateTimeAttribute(null=True)
    subscription_updated_at = UTCDateTimeAttribute(null=True)
    # Its account is suspended (dynamo_accounts): every write's condition refuses it.
    suspended = BooleanAttribute(null=True)
    # The garbage collection running on it, if any (one at a time: begin_collection).
    gc_active = UnicodeAttribute(null=True)
    # Retention, immutability, GC schedule (registry.rules), and their version: pushes that
    # relied on a cached copy are conditional on it (absent on records older than it: 0).
    settings = JSONAttribute(null=True)
    settings_version = NumberAttribute(default=0)
    # The month the metering found it over its plan's transfer cap (registry.metering).
    egress_capped_month = UnicodeAttribute(null=True)


class GcScheduleItem(Item):
    """RID#<registry id> / SCHEDULE#GC: the registry's scheduled collection, indexed by its
    next run (gsi1: GCSCHEDULES / <next run>#<registry id>), so that the scheduler finds
    what is due with one query. Written with the settings; purged with the registry."""

    registry_name = UnicodeAttribute()
    next_run_at = UTCDateTimeAttribute()


class RegistryBlobItem(Item):
    size = NumberAttribute()
    created_at = UTCDateTimeAttribute(null=True)
    # Where the bytes are (absent: the content address, service.blob_key).
    key = UnicodeAttribute(null=True)
    # Last push that referenced it after it was created (registry.gc, online mode).
    touched_at = UTCDateTimeAttribute(null=True)


class BlobKeyItem(Item):
    """The record naming an S3 key, written with it: how the orphan sweep tells an object
    someone owns from one nobody does, by key, with a consistent read. For a blob, the
    blob record (``digest``); for a large manifest's body, the manifest of ``repository``
    whose revision is the key's last segment."""

    digest = UnicodeAttribute()
    repository = UnicodeAttribute(null=True)


class CollectionItem(Item):
    uuid = UnicodeAttribute()
    registry_name = UnicodeAttribute()
    registry_id = UnicodeAttribute()
    status = UnicodeAttribute()
    type = UnicodeAttribute()
    mode = UnicodeAttribute()
    trigger = UnicodeAttribute(default="api")
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    blobs_deleted = NumberAttribute(default=0)
    manifests_deleted = NumberAttribute(default=0)
    freed_bytes = NumberAttribute(default=0)
    objects_deleted = NumberAttribute(default=0)
    repositories_scanned = NumberAttribute(default=0)
    manifests_scanned = NumberAttribute(default=0)
    blobs_scanned = NumberAttribute(default=0)
    objects_scanned = NumberAttribute(default=0)
    error = UnicodeAttribute(null=True)
    phase = UnicodeAttribute(default="begin")
    cursor = UnicodeAttribute(null=True)
    marks_from = UTCDateTimeAttribute(null=True)
    wait_until = UTCDateTimeAttribute(null=True)
    cancel_requested = BooleanAttribute(default=False)
    version = NumberAttribute(default=0)


class MarkItem(Item):
    """A blob a collection found referenced; gone by TTL some days after it ends."""

    ttl = TTLAttribute(null=True)


class RepositoryItem(Item):
    created_at = UTCDateTimeAttribute(null=True)
    # Set while the repository's items are being deleted: pushes into it are refused, so
    # nothing written during the deletion can outlive it unlisted.
    deleting = BooleanAttribute(null=True)


class BlobLinkItem(Item):
    size = NumberAttribute()
    created_at = UTCDateTimeAttribute(null=True)
    # A copy of the registry blob's key, so that a pull presigns after this one read.
    key = UnicodeAttribute(null=True)


class ManifestItem(Item):
    # New on every push of the manifest: a delete is conditional on the revision it read,
    # so a push in between (which may add a tag) makes it read the tags again.
    revision = UnicodeAttribute(null=True)
    media_type = UnicodeAttribute()
    size = NumberAttribute()
    body = BinaryAttribute(null=True, legacy_encoding=False)
    blobs = ListAttribute(of=UnicodeAttribute, null=True)
    manifests = ListAttribute(of=UnicodeAttribute, null=True)
    references_in_body = BooleanAttribute(default=False)
    blobs_size = NumberAttribute(default=0)
    subject = UnicodeAttribute(null=True)
    artifact_type = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    # Last push of an index naming it as a child (registry.gc, online mode).
    touched_at = UTCDateTimeAttribute(null=True)


class ReferenceProbe(Item):
    """What a manifest push reads of each referenced item in its one BatchGetItem."""

    blobs_size = NumberAttribute(null=True)


class TagItem(Item):
    digest = UnicodeAttribute()
    updated_at = UTCDateTimeAttribute(null=True)
    # A copy of what a pull by tag needs from the manifest, written in the same transaction
    # as the manifest, so that resolving a tag is one read (manifests never change; a tag
    # moving rewrites the copy).
    media_type = UnicodeAttribute(null=True)
    size = NumberAttribute(null=True)
    body = BinaryAttribute(null=True, legacy_encoding=False)
    blobs_size = NumberAttribute(null=True)


class ReferrerItem(Item):
    digest = UnicodeAttribute()
    media_type = UnicodeAttribute()
    size = NumberAttribute()
    artifact_type = UnicodeAttribute(null=True)
    annotations = JSONAttribute(null=True)


class UploadItem(Item):
    registry = UnicodeAttribute()
    registry_id = UnicodeAttribute()
    repository = UnicodeAttribute()
    data_key = UnicodeAttribute()
    multipart_id = UnicodeAttribute(null=True)
    parts = JSONAttribute(null=True)
    offset = NumberAttribute(default=0)
    tail_key = UnicodeAttribute(null=True)
    tail_size = NumberAttribute(default=0)
    sha256 = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True)
    expires_at = UTCDateTimeAttribute(null=True)
    # A request holding the session (records.UploadSession.claim_id): others may not save
    # or end it until ``claimed_until``.
    claim_id = UnicodeAttribute(null=True)
    claimed_until = UTCDateTimeAttribute(null=True)
    # A direct upload's announced blob, part layout and status (records.DirectUpload).
    direct = JSONAttribute(null=True)
    # DynamoDB deletes the item some time after this; the cleanup job aborts the multipart
    # upload first (it queries GSI1 by expiry), so TTL is only the backstop.
    ttl = TTLAttribute(null=True)


class TokenItem(Item):
    token_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    name = UnicodeAttribute()
    scopes = UnicodeSetAttribute()
    registries = UnicodeSetAttribute(null=True)
    all_registries = BooleanAttribute(default=True)
    expires_at = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    last_used_at = UTCDateTimeAttribute(null=True)
    # Its account is suspended (dynamo_accounts): authentication refuses it.
    suspended = BooleanAttribute(null=True)


class RegistryIdentityItem(Item):
    """RID#<registry id> / IDENTITY: the name an incarnation was created under, written with
    the registry record, so that what knows only the id (the metering, from an S3 key) can
    find the record: its name's record, if that still holds this id. Purged with the
    registry (it is under RID#)."""

    registry_name = UnicodeAttribute()


# Usage (registry.metering, registry.billing; dynamo_usage): under USAGE#<registry id>, not
# RID#/REG#, so that purging a deleted registry leaves what it is still billed for.
#   USAGE#<registry id>  MONTH#YYYY-MM             traffic counters (ADD), the month's names
#   USAGE#<registry id>  DAY#YYYY-MM-DD            the day's storage snapshot (last one wins)
#   USAGE#<registry id>  SRC#YYYY-MM#<source>      a log object counted for that month (TTL)
# GSI1: USAGEMONTH#YYYY-MM / <registry id>: every registry with usage in a month (billing).


class UsageMonthItem(Item):
    egress_bytes = NumberAttribute(null=True)
    pulls = NumberAttribute(null=True)
    pushes = NumberAttribute(null=True)
    downloads = NumberAttribute(null=True)
    redirects = NumberAttribute(null=True)
    registry_name = UnicodeAttribute(null=True)
    account_id = UnicodeAttribute(null=True)


class StorageSnapshotItem(Item):
    registry_name = UnicodeAttribute()
    account_id = UnicodeAttribute()
    plan = UnicodeAttribute()
    storage_bytes = NumberAttribute()
    repository_count = NumberAttribute()
    taken_at = UTCDateTimeAttribute(null=True)


class UsageSourceItem(Item):
    """Idempotency marker: gone by TTL long after its log object could be delivered again."""

    ttl = TTLAttribute(null=True)


ALL_MODELS: tuple[type[Item], ...] = (
    Item,
    RegistryItem,
    RegistryBlobItem,
    BlobKeyItem,
    CollectionItem,
    MarkItem,
    GcScheduleItem,
    RepositoryItem,
    BlobLinkItem,
    ManifestItem,
    ReferenceProbe,
    TagItem,
    ReferrerItem,
    UploadItem,
    TokenItem,
    RegistryIdentityItem,
    UsageMonthItem,
    StorageSnapshotItem,
    UsageSourceItem,
)


def bind_table(table_name: str, region: str) -> None:
    """Point every model at ``table_name`` (settings are read once, at startup)."""
    for model in ALL_MODELS:
        model.Meta.table_name = table_name
        model.Meta.region = region
        model._connection = None


def create_table(**kwargs: Any) -> None:
    """Create the table with the schema above (local runtime and tests; CDK in AWS)."""
    if not Item.exists():
        Item.create_table(billing_mode="PAY_PER_REQUEST", wait=True, **kwargs)
