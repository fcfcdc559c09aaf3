"""Every deployment setting of Portside, per stage, in one place.

A stage is one CloudFormation stack (`Portside-<name>`). Pick one with `make deploy
STAGE=<name>` (`cdk deploy -c stage=<name>`); `make synth` synthesises all of them. Add your own
stage by copying `dev` or `prod` below, and give it an entry under `stages` in
.chalice/config.json: that file holds every Lambda setting (memory, timeouts, reserved
concurrency, log retention, and the application's environment variables, which the upload
host gets too); this one keeps only what Chalice has no key for.

The subscription plans are not a setting: they are data in chalicelib/registry/plans.py and
ship inside the Lambda package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The example values of the `prod` stage below (RFC 2606 names, a made-up zone id): they
# synthesise, so that `make synth` and the tests cover a stage with a domain, but a deploy
# of a stage that still carries one is refused before anything is created.
PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
PLACEHOLDER_ZONE_MARK = "EXAMPLE"


class StageSettingError(ValueError):
    """A stage setting that cannot work, named in the message."""


@dataclass(frozen=True)
class Domain:
    """A custom domain: the registry at `https://<name>/v2/`, the upload host at
    `https://<upload_name>`. Both names are aliases of the stage's CloudFront distributions
    (so the edge function and the no-error-caching settings apply to them too), so one ACM
    certificate **in us-east-1** (CloudFront only takes certificates from there) must cover
    both: give its ARN, or give the Route 53 hosted zone and the stack requests it
    (DNS-validated) together with the alias records. Without a hosted zone, create the DNS
    records the stack outputs yourself (CNAMEs to `ApiDomainTarget` and
    `UploadDomainTarget`)."""

    name: str
    upload_name: str | None = None  # default: uploads.<name>
    certificate_arn: str | None = None  # arn:aws:acm:us-east-1:<account>:certificate/<id>
    # CloudFront reaches the upload host's load balancer over TLS, which presents a
    # certificate for `uploads` from the stage's own region: in us-east-1 the one above
    # serves; elsewhere the stack requests one in the hosted zone, or give its ARN here.
    origin_certificate_arn: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None

    def __post_init__(self) -> None:
        if bool(self.hosted_zone_id) != bool(self.hosted_zone_name):
            raise StageSettingError(
                f"domain {self.name!r}: set both hosted_zone_id and hosted_zone_name, or neither"
            )
        if not (self.certificate_arn or self.hosted_zone_id):
            raise StageSettingError(
                f"domain {self.name!r}: give certificate_arn (us-east-1) or a hosted zone "
                "(hosted_zone_id, hosted_zone_name) in which the stack validates one"
            )
        if self.certificate_arn and ":acm:us-east-1:" not in self.certificate_arn:
            raise StageSettingError(
                f"domain.certificate_arn {self.certificate_arn!r}: CloudFront only uses ACM "
                "certificates of us-east-1 (arn:aws:acm:us-east-1:...)"
            )
        if self.hosted_zone_name:
            zone = self.hosted_zone_name.rstrip(".")
            for host in (self.name, self.uploads):
                if host != zone and not host.endswith(f".{zone}"):
                    raise StageSettingError(
                        f"domain: {host!r} is not inside hosted_zone_name {zone!r}"
                    )

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
    # Lambda settings (memory, timeouts, reserved concurrency, log retention, architecture,
    # the application's environment variables) live in .chalice/config.json under
    # stages.<name>. Chalice has no key for this one: what
    # `aws lambda get-account-settings --query AccountLimit.UnreservedConcurrentExecutions`
    # says for the target account and region before the first deploy. Required as soon as
    # the stage reserves concurrency; synth fails unless 100 stay unreserved.
    account_unreserved_concurrency: int | None = None
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
            access_log_retention_days=45,
            upload_host=UploadHost(enabled=True, min_tasks=1, max_tasks=2),
        ),
        # Production: retained data, a custom domain, alarms mailed. Replace the example
        # domain, zone and e-mail with yours: `make deploy STAGE=prod` refuses them
        # (check_deployable), while `make synth` keeps them for the offline checks.
        Stage(
            name="prod",
            retain_data=True,
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


def _is_placeholder_host(host: str) -> bool:
    host = host.rstrip(".").lower()
    return any(host == d or host.endswith(f".{d}") for d in PLACEHOLDER_DOMAINS)


def placeholder_settings(stage: Stage) -> list[str]:
    """The settings of `stage` that still hold an example value, as `setting = value`."""
    found = []
    domain = stage.domain
    if domain is not None:
        if _is_placeholder_host(domain.name):
            found.append(f"domain.name = {domain.name!r}")
        if domain.upload_name and _is_placeholder_host(domain.upload_name):
            found.append(f"domain.upload_name = {domain.upload_name!r}")
        if domain.hosted_zone_id and PLACEHOLDER_ZONE_MARK in domain.hosted_zone_id.upper():
            found.append(f"domain.hosted_zone_id = {domain.hosted_zone_id!r}")
        if domain.hosted_zone_name and _is_placeholder_host(domain.hosted_zone_name):
            found.append(f"domain.hosted_zone_name = {domain.hosted_zone_name!r}")
    email = stage.alarms.email
    if email and _is_placeholder_host(email.rpartition("@")[2]):
        found.append(f"alarms.email = {email!r}")
    return found


def check_deployable(stage: Stage) -> None:
    """Refuse, before anything is synthesised or created, a stage that still carries the
    examples: a deploy would otherwise create a certificate that never validates (and wait
    for it for hours) and records in a zone that does not exist."""
    found = placeholder_settings(stage)
    if found:
        raise StageSettingError(
            f"stage {stage.name!r} still has example settings in infra/stages.py: "
            + "; ".join(found)
            + ". Replace them with your domain, Route 53 zone and e-mail (or remove them) "
            "before deploying."
        )
