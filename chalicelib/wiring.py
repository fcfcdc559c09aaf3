"""Builds the object graph once per process (per warm Lambda container)."""

from __future__ import annotations

import os
from functools import lru_cache
from urllib.parse import urlsplit

from .adapters.dynamo import DynamoMetadataStore
from .adapters.dynamo_accounts import DynamoAccountStore
from .adapters.dynamo_models import bind_table
from .adapters.dynamo_usage import DynamoUsageStore
from .adapters.events import EventBridgePublisher, events_client
from .adapters.s3 import S3BlobStore, s3_client
from .adapters.stepfunctions import StepFunctionsEngine, stepfunctions_client
from .adapters.verification import (
    LambdaVerificationQueue,
    ThreadVerificationQueue,
    lambda_client,
)
from .api.routes import ManagementApi
from .config import Settings, settings
from .http.v2 import V2Api
from .registry.accounts import AccountService
from .registry.alerts import QuotaWatch
from .registry.auth import Authenticator, RegistryTokens, UploadCapability, utcnow
from .registry.billing import BillingExport, StorageSnapshots, UsageCalculator
from .registry.direct_uploads import DirectUploads, VerificationQueue
from .registry.gc import CollectionSettings, GarbageCollector, retention_tags
from .registry.management import ManagementService
from .registry.metering import Metering
from .registry.policies import ScheduledCollections
from .registry.quotas import StorageReconciler
from .registry.service import RegistryService, ServiceSettings


@lru_cache(maxsize=1)
def _stores() -> tuple[DynamoMetadataStore, S3BlobStore]:
    config = settings()
    bind_table(config.table_name, config.region)
    return (
        DynamoMetadataStore(),
        S3BlobStore(config.bucket, s3_client(config.aws_endpoint_url, config.region)),
    )


def build_v2_api(config: Settings) -> V2Api:
    store, blobs = _stores()
    service = RegistryService(
        store,
        blobs,
        ServiceSettings(
            part_size=config.part_size,
            upload_ttl=config.upload_ttl,
            presign_ttl=config.presign_ttl,
        ),
    )
    return V2Api(
        service,
        Authenticator(store, registry_ttl=config.registry_cache_ttl),
        UploadCapability(config.signing_key, config.upload_ttl),
        RegistryTokens(config.signing_key, config.token_service, config.token_ttl),
        public_url=config.public_url,
        upload_url=config.upload_url,
        direct=DirectUploads(
            service,
            # In a Lambda without the verify function configured, a thread would be frozen
            # with the invocation: verify every size within the request instead.
            _DeferredQueue()
            if config.verify_function or not os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
            else None,
            inline_limit=config.direct_inline_verify_bytes,
        ),
    )


# ------------------------------------------------------------------ direct uploads
# Where large direct uploads are verified (registry.direct_uploads): the verify-direct-upload
# function on AWS, whatever the local runtime installs locally, else a thread.
_verification_override: VerificationQueue | None = None


def use_verification_queue(queue: VerificationQueue | None) -> None:
    """Replace where verifications run (the local runtime: its Lambda stand-in)."""
    global _verification_override
    _verification_override = queue
    verification_queue.cache_clear()


@lru_cache(maxsize=1)
def verification_queue() -> VerificationQueue:
    if _verification_override is not None:
        return _verification_override
    config = settings()
    if config.verify_function:
        return LambdaVerificationQueue(
            lambda_client(config.aws_endpoint_url, config.region), config.verify_function
        )
    return ThreadVerificationQueue(lambda upload_id: direct_uploads().verify(upload_id))


class _DeferredQueue:
    """Looks the queue up when a verification is submitted, so that one installed after
    the API was built (the local runtime's) is the one used."""

    def submit(self, upload_id: str) -> None:
        verification_queue().submit(upload_id)


def direct_uploads() -> DirectUploads:
    """The direct uploads of the /v2/ API (the verify-direct-upload function's work)."""
    return v2_api().direct


@lru_cache(maxsize=1)
def v2_api() -> V2Api:
    return build_v2_api(settings())


@lru_cache(maxsize=1)
def management_api() -> ManagementApi:
    config = settings()
    registry = v2_api().service
    # One Authenticator: what the management API changes, it forgets from the cache.
    service = ManagementService(registry.store, registry.blobs, registry, v2_api().auth)
    host = urlsplit(config.public_url).netloc if config.public_url else None
    accounts = AccountService(DynamoAccountStore(), registry.store, v2_api().auth)
    return ManagementApi(
        service,
        registry_host=host,
        accounts=accounts,
        collector=garbage_collector(),
        billing=billing_export(),
    )


@lru_cache(maxsize=1)
def garbage_collector() -> GarbageCollector:
    config = settings()
    store, blobs = _stores()
    engine = StepFunctionsEngine(
        config.gc_state_machine_arn or "",
        stepfunctions_client(config.aws_endpoint_url, config.region),
    )
    return GarbageCollector(
        store,
        blobs,
        engine,
        CollectionSettings(
            wait=config.registry_cache_ttl,
            online_grace=config.gc_online_grace,
            clock_margin=config.gc_clock_margin,
            orphan_grace=config.gc_orphan_grace,
        ),
        retention=retention_tags,
    )


@lru_cache(maxsize=1)
def usage_store() -> DynamoUsageStore:
    """Traffic counters and storage snapshots (registry.metering, registry.billing)."""
    _stores()  # binds the table's models to the configured table
    return DynamoUsageStore()


@lru_cache(maxsize=1)
def storage_reconciler() -> StorageReconciler:
    """Recounts registries' storage and repositories (the reconcile-storage schedule)."""
    store, _ = _stores()
    return StorageReconciler(store, DynamoAccountStore(), utcnow)


@lru_cache(maxsize=1)
def log_reader() -> S3BlobStore:
    """The log bucket: S3 server access logs and CloudFront logs to meter."""
    config = settings()
    return S3BlobStore(config.log_bucket, s3_client(config.aws_endpoint_url, config.region))


@lru_cache(maxsize=1)
def metering() -> Metering:
    """Meters log objects into usage counters (meter-access-logs, meter-api-logs)."""
    store, _ = _stores()
    return Metering(usage_store(), store, event_publisher())


@lru_cache(maxsize=1)
def scheduled_collections() -> ScheduledCollections:
    """Starts the registries' scheduled garbage collections (EventBridge, every 15 min)."""
    store, _ = _stores()
    return ScheduledCollections(store, garbage_collector())


@lru_cache(maxsize=1)
def event_publisher() -> EventBridgePublisher:
    """Domain events (quota thresholds crossed) on the configured EventBridge bus."""
    config = settings()
    return EventBridgePublisher(
        events_client(config.aws_endpoint_url, config.region), config.event_bus
    )


@lru_cache(maxsize=1)
def quota_watch() -> QuotaWatch:
    """Publishes threshold crossings of registry records (the quota-watch stream Lambda)."""
    return QuotaWatch(event_publisher())


@lru_cache(maxsize=1)
def billing_export() -> BillingExport:
    """Usage figures and billing exports (registry.billing) into the export bucket."""
    config = settings()
    store, blobs = _stores()
    calculator = UsageCalculator(store, usage_store(), config.billing_log_delay)
    exports = S3BlobStore(config.export_bucket or config.bucket, blobs.client)
    return BillingExport(calculator, exports)


@lru_cache(maxsize=1)
def storage_snapshots() -> StorageSnapshots:
    """Today's storage snapshot of every live registry (the snapshot-storage schedule)."""
    store, _ = _stores()
    return StorageSnapshots(DynamoAccountStore(), store, usage_store())
