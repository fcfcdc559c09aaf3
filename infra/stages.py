"""Every deployment setting of Portside, per stage, in one place.

A stage is one CloudFormation stack (`Portside-<name>`). Pick one with `make deploy
STAGE=<name>` (`cdk deploy -c stage=<name>`); `make synth` synthesises all of them. Add your own
stage by copying `dev` or `prod` below. Settings that the application reads become the
Lambdas' and the upload host's environment variables (see chalicelib/config.py).

The subscription plans are not a setting: they are data in chalicelib/registry/plans.py and
ship inside the Lambda package.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Domain:
    """A custom domain: the registry at `https://<name>/v2/`, the upload host at
    `https://<upload_name>`. One regional ACM certificate must cover both names: give its
    ARN, or give the Route 53 hosted zone and the stack creates it (DNS-validated) together
    with the alias records. Without a hosted zone, create the two DNS records the stack
    outputs yourself."""

    name: str
    upload_name: str | None = None  # default: uploads.<name>
    certificate_arn: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None

    @property
    def uploads(self) -> str:
        return self.upload_name or f"uploads.{self.name}"


@dataclass(frozen=True)
class UploadHost:
    """The streaming upload host on ECS Fargate behind an ALB (docs/deploy.md says why)."""

    enabled: bool = True
    cpu: int = 512  # Fargate CPU units (512 = 0.5 vCPU)
    memory_mib: int = 1024
    min_tasks: int = 1
    max_tasks: int = 4
    threads: int = 16  # concurrent uploads per task; memory is about threads x part size
    # x86_64 by default: the image is built on the deployer's machine, usually an x86 one.
    arm64: bool = False


@dataclass(frozen=True)
class Alarms:
    email: str | None = None  # subscribed to the stack's alarm topic when given
    server_error_rate: float = 0.05  # ServerErrors / Requests over 5 minutes
    latency_p99_ms: float = 5000.0  # /v2/ handling time, p99 over 5 minutes
    lambda_errors: int = 1  # per function, per 5 minutes
    upload_host_5xx: int = 5  # ALB target + ELB 5xx per 5 minutes


@dataclass(frozen=True)
class Stage:
    name: str
    account: str | None = None  # None: the account of the deploying credentials
    region: str | None = None  # None: the deploying credentials' region
    table_name: str | None = None  # default portside-<name>
    # Production data survives `cdk destroy` and accidents: DynamoDB deletion protection,
    # RETAIN on the table, the buckets and the signing secret. Dev stages delete everything.
    retain_data: bool = False
    api_gateway_stage: str = "api"
    lambda_memory_mib: int = 1024
    lambda_timeout_seconds: int = 30
    schedule_timeout_seconds: int = 300
    # None: no reservation (new accounts have only 10 concurrent executions in all).
    schedule_reserved_concurrency: int | None = None
    lambda_arm64: bool = True
    log_retention_days: int = 30
    # Application settings (chalicelib/config.py)
    token_service: str = "portside"
    token_ttl_seconds: int = 300
    upload_ttl_seconds: int = 3600
    presign_ttl_seconds: int = 300
    part_size_bytes: int = 8 * 1024 * 1024
    log_level: str = "INFO"
    # Buckets
    access_log_retention_days: int = 400  # metering reads these; keep them past a month
    exports_noncurrent_days: int = 90
    domain: Domain | None = None
    upload_host: UploadHost = field(default_factory=UploadHost)
    alarms: Alarms = field(default_factory=Alarms)

    @property
    def stack_name(self) -> str:
        return f"Portside-{self.name}"

    @property
    def table(self) -> str:
        return self.table_name or f"portside-{self.name}"


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        # A cheap stage to try Portside: everything is deleted by `make destroy`; the
        # registry is reached through CloudFront (no domain needed).
        Stage(
            name="dev",
            log_retention_days=14,
            access_log_retention_days=45,
            log_level="DEBUG",
            upload_host=UploadHost(enabled=True, min_tasks=1, max_tasks=2),
        ),
        # Production: retained data, a custom domain, alarms mailed. Replace the example
        # domain, zone and e-mail with yours before deploying.
        Stage(
            name="prod",
            retain_data=True,
            schedule_reserved_concurrency=1,
            log_retention_days=90,
            domain=Domain(
                name="registry.example.com",
                hosted_zone_id="Z0000000EXAMPLE",
                hosted_zone_name="example.com",
            ),
            upload_host=UploadHost(
                enabled=True, cpu=1024, memory_mib=2048, min_tasks=2, max_tasks=10, threads=32
            ),
            alarms=Alarms(email="ops@example.com"),
        ),
        # Small images only: no upload host (no idle cost); every layer must fit API
        # Gateway's 10 MB request limit.
        Stage(name="lite", upload_host=UploadHost(enabled=False)),
    )
}
