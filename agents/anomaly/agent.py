"""The anomaly agent: derive metric points, detect anomalies, run the workflow and rule commands.

Stages (all in `register`):
- *derive*: rollups, billing, usage and error events → `TenantMetrics` (table
  `<app>-anomaly-derive`, key tenant) → closed windows → MetricPoints on the metrics topic.
  Rollups come complete (one per tenant-minute, all requests partitions added up) and, per
  partition of `rollups`, in minute order (`agents.ratelimit.combine`), so an hour that closes
  on that partition's clock has all its minutes; events of closed windows are counted in the
  status (`late_<source>`);
- *detect*: metric points → `StreamDetector` per `tenant|metric` (table `<app>-anomaly-streams`)
  and `TenantHST` per tenant (table `<app>-anomaly-hst`), recovered from their changelogs on
  restart (detectors as checked JSON snapshots, `agents.anomaly.state_codec`; HSTs in the
  binary `tw-tenant-hst` form of `multivariate`; a record neither can read is refused)
  → bands, anomalies, status changes, and `anomaly_alert` notifications for high and
  critical episodes; each alert carries the stream's recent points and bands
  (a `SeriesRing` per `tenant|metric`, table `<app>-anomaly-chart`, recovered the same way)
  for the mail's inline chart; a stream with no kept history alerts without one; a critical
  alert also goes out on the webhook channel when `TW_NOTIFY_WEBHOOK_URL` is set;
- *commands*: `rule.set` edits the tenant's rule overrides (table `<app>-anomaly-rules`,
  co-partitioned like the rest) and publishes the rule history; `anomaly.ack|resolve|false_positive`
  move an open episode.

Every table is keyed by tenant (or `tenant|metric`), co-partitioned with the tenant-keyed
source topics, so the commands topic (keyed by tenant) reaches the partition holding the
tenant's detectors. Alerts go to `TW_OWNER_EMAIL` (settings `owner_email`, default
`owner@tenantwatch.local`), as the rate limiter's ban notices do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from agents.anomaly.alerts import SeriesRing, alert_for, should_alert
from agents.anomaly.detector import Step, StreamDetector
from agents.anomaly.metrics import TenantMetrics
from agents.anomaly.multivariate import TenantHST, TenantHSTValue, preload_river
from agents.anomaly.multivariate import register_codec as register_hst_codec
from agents.anomaly.rules import default_rule, edit_rule
from agents.anomaly.state_codec import DetectorValue, MetricsValue, RingValue
from agents.anomaly.state_codec import register_codecs as register_state_codecs
from agents.anomaly.workflow import Rejected
from agents.notify.config import WebhookTarget
from agents.notify.outbound import alert_notifications
from pipeline.runtime.clock import EventClock
from pipeline.runtime.commands import CommandRejected
from pipeline.runtime.core import PartitionBatch, Runtime
from pipeline.runtime.table_codecs import JsonValue, StrKey
from pipeline.runtime.topics import Topic
from pipeline.settings import DEFAULT_OWNER_EMAIL
from schemas.anomaly import (
    Anomaly,
    AnomalyStatusChange,
    BaselineBand,
    MetricName,
    MetricPoint,
    Rule,
    RuleChange,
    Severity,
    rule_change_id,
)
from schemas.commands import Action, AdminCommand
from schemas.notify import Notification
from schemas.ratelimit import Rollup

__all__ = ["DEFAULT_RECIPIENT", "AnomalyAgent", "History", "RollupIn", "history_source", "register"]

log = logging.getLogger(__name__)
DEFAULT_RECIPIENT = DEFAULT_OWNER_EMAIL
_OUT: dict[type[BaseModel], Topic] = {
    BaselineBand: Topic.BASELINES, Anomaly: Topic.ANOMALIES, AnomalyStatusChange: Topic.ANOMALY_STATUS,
}
# (tenant, metric, before) → points (epoch seconds, value, denominator), oldest first
History = Callable[[str, MetricName, float], list[tuple[float, float, float | None]]]
_ALERTS_PER_RECORD = 32  # an alert with its chart series is ~17 kB: keep Kafka records well under 1 MB
_SOURCE = {Topic.ROLLUPS: "rollups", Topic.BILLING: "billing", Topic.USAGE: "usage", Topic.ERRORS: "errors"}
WORKFLOW = (Action.ANOMALY_ACK, Action.ANOMALY_RESOLVE, Action.ANOMALY_FALSE_POSITIVE)


class RollupIn(Rollup):
    """A rollup as an input event: its event time is the end of its minute (the runtime reads `ts`)."""

    @property
    def ts(self) -> datetime:
        return self.minute + timedelta(minutes=1)


class AnomalyAgent:
    """State and handlers of the anomaly capability in one worker."""

    def __init__(self, runtime: Runtime, recipient: str = DEFAULT_RECIPIENT, history: History | None = None) -> None:
        self.runtime = runtime
        self.history = history  # seeds a stream met for the first time (None: it warms up live)
        self.recipient = recipient
        self.webhooks = WebhookTarget().enabled  # critical alerts also go to the webhook
        s = runtime.settings

        def table(name: str, value_type: Any) -> Any:
            # Fenced (docs/STATE.md): a restart applies only state a checkpoint covered.
            return runtime.table(f"{s.app_id}-anomaly-{name}", default=None, key_type=StrKey, value_type=value_type)

        # Our own codecs, never pickle: a changelog is writable by anyone on the broker. Records
        # of the earlier pickle format are refused on recovery (no deployment had them).
        register_state_codecs()
        register_hst_codec()
        self.streams = table("streams", DetectorValue)
        self.hst = table("hst", TenantHSTValue)
        self.derived = table("derive", MetricsValue)
        self.charts = table("chart", RingValue)  # SeriesRing per `tenant|metric`: the alert mails' chart data
        # Rule overrides (JSON dicts) under `tenant|metric`. Not a GlobalTable: a `rule.set` command
        # is keyed by tenant, so it lands on the partition of the tenant's metrics, and the worker
        # that scores a tenant holds that tenant's rules (faust-streaming's GlobalTable hung a
        # worker's start-up here, and misbehaves with several workers: faust-streaming #283).
        self.rules = table("rules", JsonValue)
        self._bulk = {name: runtime.bulk_writer(t) for name, t in
                      (("streams", self.streams), ("hst", self.hst), ("derive", self.derived), ("chart", self.charts))}
        self._rule_cache: dict[str, tuple[Any, Rule]] = {}
        # Each source closes its windows on its own event time (topics are consumed at their own pace).
        self.clocks = {src: EventClock(s.allowed_lateness_s) for src in _SOURCE.values()}
        self._due: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)  # (source, partition) → tenant → due
        self.counts: dict[str, int] = defaultdict(int)

    # -- rules -------------------------------------------------------------------------------
    def rule(self, tenant: str, metric: MetricName) -> Rule:
        key = f"{tenant}|{metric.value}"
        raw = self.rules.get(key)
        if raw is None:
            return default_rule(metric)
        cached = self._rule_cache.get(key)
        if cached is None or cached[0] is not raw:
            try:
                rule = Rule.model_validate(raw)
            except ValidationError as exc:  # a changelog record we did not write: the default applies
                log.warning("refused the stored rule of %s: %d invalid field(s)", key, exc.error_count())
                rule = default_rule(metric)
            cached = self._rule_cache[key] = (raw, rule if rule.metric is metric else default_rule(metric))
        return cached[1]

    # -- derive ------------------------------------------------------------------------------
    async def derive(self, batches: Sequence[PartitionBatch]) -> None:
        for b in batches:
            source = _SOURCE[b.topic]
            clock = self.clocks[source]
            by_tenant: dict[str, list[Any]] = defaultdict(list)
            for e in b.events:
                by_tenant[e.tenant_id].append(e)
            clock.observe(b.partition, max(e.ts for e in b.events).timestamp())
            mark = clock.now(b.partition)
            due = self._due[(source, b.partition)]
            points: dict[str, list[MetricPoint]] = {}
            changed: list[tuple[str, TenantMetrics]] = []
            for tenant in {*by_tenant, *(t for t, end in due.items() if mark is not None and end <= mark)}:
                tm = self.derived.get(tenant)
                if tm is None or tm.tenant != tenant:  # absent, or a record of another tenant's
                    tm = TenantMetrics(tenant)
                late = tm.late
                tm.add(by_tenant.get(tenant, ()))
                self.counts[f"late_{source}"] += tm.late - late  # events of windows already closed
                if mark is not None and (out := tm.close(mark, source)):
                    points[tenant] = out
                due[tenant] = tm.due(source)
                changed.append((tenant, tm))
            await self._bulk["derive"].write(b.partition, changed)
            for tenant, out in points.items():
                self.counts["points_derived"] += len(out)
                await self.runtime.send_batch(Topic.METRICS, out, key=tenant)

    # -- detect ------------------------------------------------------------------------------
    async def detect(self, batches: Sequence[PartitionBatch]) -> None:
        for b in batches:
            dets: dict[str, StreamDetector] = {}
            hsts: dict[str, TenantHST] = {}
            rings: dict[str, SeriesRing] = {}
            out: dict[tuple[Topic, str], list[BaseModel]] = defaultdict(list)
            for p in b.events:
                rule = self.rule(p.tenant, p.metric)
                det = dets.get(p.key) or self.streams.get(p.key)
                if det is None or (det.tenant, det.metric) != (p.tenant, p.metric):  # absent, or not this stream's
                    det = await self._new_stream(p, rule)
                if det.last_ts is not None and p.epoch <= det.last_ts:
                    self.counts["points_skipped"] += 1  # a redelivery, or out of order
                    continue
                hst = hsts.get(p.tenant) or self.hst.get(p.tenant) or TenantHST()
                before = det.episode.severity if det.episode is not None else None
                step = det.observe_point(p, rule, hst.score_and_learn(p.metric.value, p.value))
                dets[p.key], hsts[p.tenant] = det, hst
                self.counts["points"] += 1
                for record in step.records():
                    out[(_OUT[type(record)], p.tenant)].append(record)
                if step.opened:
                    self.counts["anomalies_opened"] += 1
                if (alert := self._alert(p, step, before, rings)) is not None:
                    out[(Topic.NOTIFICATIONS, self.recipient)] += alert_notifications(alert, self.webhooks)
            await self._bulk["streams"].write(b.partition, dets.items())
            await self._bulk["chart"].write(b.partition, rings.items())
            await self._bulk["hst"].write(b.partition, hsts.items())
            for (topic, key), records in out.items():
                size = _ALERTS_PER_RECORD if topic is Topic.NOTIFICATIONS else len(records)
                for i in range(0, len(records), size):
                    await self.runtime.send_batch(topic, records[i:i + size], key=key)

    async def _new_stream(self, p: MetricPoint, rule: Rule) -> StreamDetector:
        """A detector for a stream met for the first time, seeded from its history when there is one."""
        det = StreamDetector.for_point(p, rule)
        if self.history is None:
            return det
        try:
            past = await asyncio.get_running_loop().run_in_executor(None, self.history, p.tenant, p.metric, p.epoch)
        except Exception as exc:  # history is a bonus: a stream warms up live without it
            self.counts["seed_failures"] += 1
            log.warning("no history for %s: %s", p.key, str(exc).splitlines()[0][:200] if str(exc) else type(exc))
            return det
        self.counts["points_seeded"] += det.seed(past)
        self.counts["streams_seeded"] += 1
        return det

    def _alert(self, p: MetricPoint, step: Step, before: Severity | None,
               rings: dict[str, SeriesRing]) -> Notification | None:
        """Keep the scored point for charts; the alert notification if the episode crossed into alerting."""
        if step.band is not None:
            if p.key not in rings:
                rings[p.key] = self.charts.get(p.key) or SeriesRing()
            rings[p.key].add(p.epoch, p.value, step.band)
        if step.anomaly is None or not should_alert(step.anomaly, before):
            return None
        self.counts["alerts"] += 1
        chart = rings[p.key].chart(step.anomaly) if p.key in rings else None
        self.counts["alerts_without_chart"] += chart is None
        return alert_for(step.anomaly, self.recipient, chart)

    # -- commands ----------------------------------------------------------------------------
    async def workflow(self, cmd: AdminCommand) -> str:
        """Acknowledge, resolve or mark false positive the open anomaly `params.anomaly_id`."""
        target = cmd.params.get("anomaly_id")
        if not isinstance(target, str) or not target:
            raise CommandRejected("params.anomaly_id (a string) is required")
        metrics = list(MetricName)
        if "metric" in cmd.params:
            try:
                metrics = [MetricName(str(cmd.params["metric"]))]
            except ValueError:
                raise CommandRejected(f"unknown metric {cmd.params['metric']!r}") from None
        for metric in metrics:
            key = f"{cmd.tenant_id}|{metric.value}"
            det: StreamDetector | None = self.streams.get(key)
            if det is not None and det.episode is not None and det.episode.id == target:
                break
        else:
            raise CommandRejected(f"anomaly {target} is not open for tenant {cmd.tenant_id} on this worker")
        # Event time: the stream's newest point, so the change sorts with the detector's own.
        ts = det.last_ts if det.last_ts is not None else det.episode.last_ts.timestamp()
        result = det.command(cmd.action, target, ts=ts, actor=cmd.actor, reason=cmd.reason)
        if isinstance(result, Rejected):
            raise CommandRejected(result.reason)
        self.streams[key] = det  # the commands agent's current event is of the tenant's partition
        await self.runtime.send(Topic.ANOMALIES, result.anomaly, key=cmd.tenant_id)
        await self.runtime.send(Topic.ANOMALY_STATUS, result.change, key=cmd.tenant_id)
        self.counts["workflow_changes"] += 1
        before = result.change.from_status.value if result.change.from_status else "new"
        return f"{target}: {before} → {result.change.to_status.value}"

    async def set_rule(self, cmd: AdminCommand) -> str:
        """Put a tenant's rule for `params.metric` in force (other params: Rule fields; `reset`)."""
        params = dict(cmd.params)
        try:
            metric = MetricName(str(params.get("metric")))
        except ValueError:
            raise CommandRejected(f"params.metric must be one of {[m.value for m in MetricName]}") from None
        reset = params.pop("reset", False) is True
        key = f"{cmd.tenant_id}|{metric.value}"
        if reset:
            rule = default_rule(metric)
            if self.rules.get(key) is not None:
                del self.rules[key]
        else:
            edited = edit_rule(self.rule(cmd.tenant_id, metric), params)
            if isinstance(edited, str):
                raise CommandRejected(edited)
            rule = edited
            self.rules[key] = rule.model_dump(mode="json")
        change = RuleChange(
            id=rule_change_id(cmd.nonce), tenant=cmd.tenant_id, metric=metric, ts=cmd.ts, actor=cmd.actor,
            reason=cmd.reason, is_default=reset, direction=rule.direction, threshold_sigma=rule.threshold_sigma,
            warmup=rule.warmup, enabled=rule.enabled, rule_json=rule.model_dump_json(),
        )
        await self.runtime.send(Topic.ANOMALY_RULES, change, key=cmd.tenant_id)
        return f"{key}: {'default rule' if reset else rule.model_dump_json(exclude={'metric'})}"

    def status(self) -> dict[str, Any]:
        return dict(self.counts)


def history_source(settings: Any) -> History | None:
    """The metric history new streams seed from (None when `anomaly_seed_days` is 0).

    A ClickHouse server is read directly (connected at the first new stream, so a server down
    at start costs nothing); chDB through the writer's read API, looked up at each new stream
    (the writer may start after the worker). Either way a failed read means a live warm-up.
    """
    days = settings.anomaly_seed_days
    if not days:
        return None
    from pipeline.adapters.clickhouse.metric_history import MetricHistory
    from pipeline.adapters.clickhouse.read_api import announcement_path, read_announcement
    from pipeline.console.reads import DirectReader, ReadApiReader, ReadUnavailable

    dsn = settings.dsn
    if dsn.startswith("chdb://"):
        announced = announcement_path(settings)

        def through_writer(tenant: str, metric: MetricName, before: float) -> list[tuple[float, float, float | None]]:
            found = read_announcement(announced)
            if found is None:
                raise ReadUnavailable(f"no writer serves the metric history yet ({announced} is missing)")
            return MetricHistory(ReadApiReader(*found), days).points(tenant, metric, before)

        return through_writer
    from pipeline.adapters.clickhouse.client import connect

    reader: list[MetricHistory] = []

    def direct(tenant: str, metric: MetricName, before: float) -> list[tuple[float, float, float | None]]:
        if not reader:
            reader.append(MetricHistory(DirectReader(connect(dsn)), days))
        return reader[0].points(tenant, metric, before)

    return direct


def register(runtime: Runtime) -> None:
    preload_river()
    agent = AnomalyAgent(runtime, runtime.settings.owner_email, history_source(runtime.settings))
    runtime.add_input(Topic.ROLLUPS, RollupIn)
    runtime.add_input(Topic.METRICS, MetricPoint)
    for topic in _SOURCE:
        runtime.on(topic, agent.derive)
    runtime.on(Topic.METRICS, agent.detect)
    runtime.commands.on([Action.RULE_SET], agent.set_rule)
    runtime.commands.on(WORKFLOW, agent.workflow)
    runtime.add_status("anomaly", agent.status)
