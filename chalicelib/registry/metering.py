"""Egress metering: log objects in, monthly traffic counters, the transfer cap and transfer
threshold events out (docs/metering.md).

Blob downloads go straight to S3 (presigned URLs), so the registry never sees their bytes:
S3's server access logs (and CloudFront's standard logs, where blobs are served through
it) do. Each new log object is metered once, by a Lambda beside the pull path: nothing here
is called by a /v2/ request, and the pull path gains no call.

Idempotency: a log object's lines are grouped per (registry, month), and each group is
added with the object's identity as the source (UsageStore.add_traffic: marker and counters
in one transaction). Processing an object again, or again after a crash part-way through
its registries, counts every group exactly once.

After each addition the month is read back: a registry on a plan with a transfer cap whose
month is now over it is flagged (MetadataStore.set_egress_capped; the token endpoint and
Basic-auth blob GETs refuse pulls while the flag names the current month). Thresholds of
the plan's included transfer are published when this object's addition crossed them, i.e.
only by the processing that added it. A crash between the addition and the publication
loses that event (the retry finds the group counted); the cap flag is set on the retry
whatever happened, since it is judged on the month's total.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .access_logs import ParsedLog, api_traffic, cloudfront_traffic, s3_traffic
from .alerts import DETAIL_TYPE, TRANSFER, ThresholdCrossing, crossed
from .plans import threshold_level, tier
from .ports import EventPublisher, MetadataStore, UsageStore
from .records import RegistryRecord, TrafficCounts


@dataclass(frozen=True)
class Counted:
    registry_id: str
    month: str
    counts: TrafficCounts
    added: bool  # False: this source had been counted for it before


@dataclass
class MeteringOutcome:
    source: str
    lines: int = 0
    skipped: int = 0
    unattributed_bytes: int = 0
    counted: list[Counted] = field(default_factory=list)
    # Registry names in API records that name no registry now (deleted, or never was).
    unknown_registries: list[str] = field(default_factory=list)
    capped: list[tuple[str, str]] = field(default_factory=list)  # (registry name, month)
    events: list[ThresholdCrossing] = field(default_factory=list)

    @property
    def egress_bytes_added(self) -> int:
        return sum(c.counts.egress_bytes for c in self.counted if c.added)


class Metering:
    def __init__(self, usage: UsageStore, store: MetadataStore, publisher: EventPublisher) -> None:
        self.usage = usage
        self.store = store
        self.publisher = publisher

    # ------------------------------------------------------------ one log object

    def meter_s3_log(self, source: str, text: str) -> MeteringOutcome:
        """An S3 server access log object (``source``: ``s3://<bucket>/<key>``)."""
        return self._meter_by_id(source, s3_traffic(text))

    def meter_cloudfront_log(self, source: str, data: bytes | str) -> MeteringOutcome:
        """A CloudFront standard log file, gzip or text."""
        return self._meter_by_id(source, cloudfront_traffic(data))

    def meter_api_records(self, source: str, messages: Iterable[str]) -> MeteringOutcome:
        """API Gateway access-log records (one CloudWatch Logs batch: ``source`` names its
        group, stream and first and last event ids). Records name registries by name: the
        name's current incarnation gets the pulls and pushes (a name deleted and taken
        again before its records are metered credits the new registry: docs/metering.md)."""
        parsed = api_traffic(messages)
        outcome = _outcome(source, parsed)
        registries: dict[str, RegistryRecord | None] = {}
        for (name, month), counts in sorted(parsed.traffic.items()):
            if name not in registries:
                registries[name] = self.store.get_registry(name)
            record = registries[name]
            if record is None:
                outcome.unknown_registries.append(name)
                continue
            self._add(outcome, record.registry_id, month, counts, record)
        return outcome

    def _meter_by_id(self, source: str, parsed: ParsedLog) -> MeteringOutcome:
        outcome = _outcome(source, parsed)
        registries: dict[str, RegistryRecord | None] = {}
        for (rid, month), counts in sorted(parsed.traffic.items()):
            if rid not in registries:
                registries[rid] = self.store.get_registry_by_id(rid)
            # Counted even if the registry is gone: usage is kept by id and still billed.
            self._add(outcome, rid, month, counts, registries[rid])
        return outcome

    # ------------------------------------------------------------ one (registry, month)

    def _add(
        self,
        outcome: MeteringOutcome,
        rid: str,
        month: str,
        counts: TrafficCounts,
        record: RegistryRecord | None,
    ) -> None:
        added = self.usage.add_traffic(rid, month, outcome.source, counts, record)
        outcome.counted.append(Counted(rid, month, counts, added))
        if record is None or record.deleting or not counts.egress_bytes:
            return
        plan = tier(record.plan)
        cap, included = plan.transfer_cap, plan.included_bandwidth_bytes
        if not cap and not (added and included):
            return
        usage = self.usage.get_usage_month(rid, month)
        total = usage.egress_bytes if usage is not None else counts.egress_bytes
        # Judged on every processing (not only the one that added): a retry after a crash
        # between the addition and the flag still sets it. A late log of an earlier month
        # never takes back the flag of a later one.
        if cap and total > cap and (record.egress_capped_month or "") < month:
            self.store.set_egress_capped(record.name, rid, month)
            outcome.capped.append((record.name, month))
        if added and included:
            before = total - counts.egress_bytes
            for threshold in crossed(
                threshold_level(before, included), threshold_level(total, included)
            ):
                crossing = ThresholdCrossing(
                    registry=record.name,
                    registry_id=rid,
                    account_id=record.account_id,
                    plan=plan.slug,
                    resource=TRANSFER,
                    threshold=threshold,
                    used=total,
                    limit=included,
                    month=month,
                )
                self.publisher.publish(DETAIL_TYPE, crossing.detail())
                outcome.events.append(crossing)


def _outcome(source: str, parsed: ParsedLog) -> MeteringOutcome:
    return MeteringOutcome(
        source=source,
        lines=parsed.lines,
        skipped=parsed.skipped,
        unattributed_bytes=parsed.unattributed_bytes,
    )
