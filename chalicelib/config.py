"""Settings, read once from the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    table_name: str = "portside"
    bucket: str = "portside-blobs"
    region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    # Absolute base URL clients use for this registry (e.g. https://registry.example.com);
    # derived from each request's Host header when unset.
    public_url: str | None = None
    # Base URL of the streaming upload host; defaults to the public URL.
    upload_url: str | None = None
    # HMAC key for upload capabilities (and, later, registry JWTs). Must be shared by every
    # Lambda and the upload host; the local runtime generates one.
    signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    part_size: int = 8 * 1024 * 1024
    upload_ttl: timedelta = timedelta(hours=1)
    presign_ttl: timedelta = timedelta(minutes=5)
    # The Docker token-auth service name (the JWT audience) and the JWTs' lifetime.
    token_service: str = "portside"
    token_ttl: timedelta = timedelta(minutes=5)
    # How long a warm process may reuse a registry record on the request path.
    registry_cache_ttl: timedelta = timedelta(seconds=30)
    # The state machine that drives garbage collections (set by the stack; the local
    # runtime creates one in moto and interprets it).
    gc_state_machine_arn: str | None = None
    # Garbage collection's windows (registry.gc.CollectionSettings): online mode keeps
    # blobs younger than the grace and whatever a push touched since it began, less the
    # clock margin; objects no record names are deleted once older than the orphan grace.
    gc_online_grace: timedelta = timedelta(hours=1)
    gc_clock_margin: timedelta = timedelta(minutes=5)
    gc_orphan_grace: timedelta = timedelta(hours=1)
    # Where the blob bucket's S3 server access logs (s3-access/) and CloudFront's standard
    # logs (cloudfront/) are delivered and metered from (registry.metering).
    log_bucket: str = "portside-blobs-logs"
    # Billing (registry.billing): where exports are written (None: the blob bucket), and
    # how late access logs may arrive; a month is final that long after it ends.
    export_bucket: str | None = None
    billing_log_delay: timedelta = timedelta(hours=48)
    # The EventBridge bus that quota threshold events go to (registry.alerts).
    event_bus: str = "default"
    # The verify-direct-upload function that large direct uploads are verified by, invoked
    # asynchronously (set by the stack). Without it, verifications run in a thread of the
    # process (the local runtime installs its own; see wiring.use_verification_queue).
    verify_function: str | None = None
    # Direct uploads up to this size are verified within the completing request
    # (registry.direct_uploads.INLINE_VERIFY_LIMIT); tests lower it.
    direct_inline_verify_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            table_name=env.get("PORTSIDE_TABLE", "portside"),
            bucket=env.get("PORTSIDE_BUCKET", "portside-blobs"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            public_url=(env.get("PORTSIDE_PUBLIC_URL") or "").rstrip("/") or None,
            upload_url=(env.get("PORTSIDE_UPLOAD_URL") or "").rstrip("/") or None,
            signing_key=_signing_key(env),
            part_size=_int("PORTSIDE_PART_SIZE", 8 * 1024 * 1024),
            upload_ttl=timedelta(seconds=_int("PORTSIDE_UPLOAD_TTL_SECONDS", 3600)),
            presign_ttl=timedelta(seconds=_int("PORTSIDE_PRESIGN_TTL_SECONDS", 300)),
            token_service=env.get("PORTSIDE_TOKEN_SERVICE") or "portside",
            token_ttl=timedelta(seconds=_int("PORTSIDE_TOKEN_TTL_SECONDS", 300)),
            registry_cache_ttl=timedelta(seconds=_int("PORTSIDE_REGISTRY_CACHE_SECONDS", 30)),
            gc_state_machine_arn=env.get("PORTSIDE_GC_STATE_MACHINE_ARN") or None,
            gc_online_grace=timedelta(seconds=_int("PORTSIDE_GC_ONLINE_GRACE_SECONDS", 3600)),
            gc_clock_margin=timedelta(seconds=_int("PORTSIDE_GC_CLOCK_MARGIN_SECONDS", 300)),
            gc_orphan_grace=timedelta(seconds=_int("PORTSIDE_GC_ORPHAN_GRACE_SECONDS", 3600)),
            log_bucket=env.get("PORTSIDE_LOG_BUCKET")
            or env.get("PORTSIDE_BUCKET", "portside-blobs") + "-logs",
            export_bucket=env.get("PORTSIDE_EXPORT_BUCKET") or None,
            billing_log_delay=timedelta(hours=_int("PORTSIDE_BILLING_LOG_DELAY_HOURS", 48)),
            event_bus=env.get("PORTSIDE_EVENT_BUS") or "default",
            verify_function=env.get("PORTSIDE_VERIFY_FUNCTION") or None,
            direct_inline_verify_bytes=_int(
                "PORTSIDE_DIRECT_INLINE_VERIFY_BYTES", 256 * 1024 * 1024
            ),
        )


def _signing_key(env: os._Environ[str] | dict[str, str]) -> str:
    """The shared signing secret: given directly (local runs, tests), read from Secrets
    Manager once per cold start (AWS: every Lambda and the upload host share it), or, for a
    single local process, made up."""
    if env.get("PORTSIDE_SIGNING_KEY"):
        return env["PORTSIDE_SIGNING_KEY"]
    arn = env.get("PORTSIDE_SIGNING_KEY_SECRET_ARN")
    if arn:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(arn, max_age=3600)
        return value if isinstance(value, str) else bytes(value).decode("utf-8")
    return secrets.token_urlsafe(32)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()
