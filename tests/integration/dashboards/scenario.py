"""A small generated world for the boards: the generator's "tiny" preset plus hand-made
capability records derived from it (decisions, bans, anomalies, trials, mails).

Tenant and event ids get a `dash-` prefix so these rows never mix with other tests' rows in
the session's shared chDB.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import fmean, pstdev
from typing import Any

from pydantic import BaseModel

from pipeline.adapters.clickhouse.sinks import ClickHouseSink, load_capability_sinks
from pipeline.devstack.generator import iter_events, preset
from schemas.anomaly import (
    Anomaly,
    AnomalyStatus,
    AnomalyStatusChange,
    BaselineBand,
    Direction,
    MetricName,
    MetricPoint,
    RuleChange,
    Severity,
    Verdict,
    anomaly_id,
    band_id,
    status_change_id,
)
from schemas.events import BillingEvent, BillingType, RequestEvent
from schemas.notify import Delivery, DeliveryStatus, Notification
from schemas.ratelimit import Ban, Decision, LimitConfig, TenantPolicy, Violation
from schemas.results import DeadLetter, stable_id
from schemas.trials import TrialState, TrialStatus

__all__ = ["CAPPED_SIGMA", "PREFIX", "Scenario", "build_scenario", "insert_scenario"]

PREFIX = "dash-"
CAPPED_SIGMA = 1_000_000.0  # the detector's cap on a σ score (a flat baseline gives an unbounded one)


@dataclass
class Scenario:
    start: datetime
    end: datetime
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))  # when the scenario "ran"
    records: dict[str, list[BaseModel]] = field(default_factory=lambda: defaultdict(list))

    def add(self, table: str, *rows: BaseModel) -> None:
        self.records[table].extend(rows)


def _events(sc: Scenario) -> list[RequestEvent]:
    tables = {"request": "requests", "billing": "billing", "error": "errors", "usage": "usage"}
    requests = []
    for e in iter_events(preset("tiny")):
        e2 = e.model_copy(update={"tenant_id": PREFIX + e.tenant_id, "event_id": PREFIX + e.event_id})
        sc.add(tables[e.kind], e2)
        if isinstance(e2, RequestEvent):
            requests.append(e2)
    for n in range(3):
        sc.add("dead_letters", DeadLetter(
            id=f"{PREFIX}dl-{n}", ts=sc.start + timedelta(hours=6 * n + 1), stage="decode",
            source_topic=f"{PREFIX}tw.requests", partition=0, offset=n, error="not JSON", payload_b64="e30=",
            payload_size=2, truncated=False))
    return requests


def _ratelimit(sc: Scenario, requests: list[RequestEvent]) -> None:
    by_pair = Counter((r.tenant_id, r.ip) for r in requests)
    first_seen: dict[tuple[str, str], datetime] = {}
    for r in requests:
        first_seen.setdefault((r.tenant_id, r.ip), r.ts)
    for tenant in sorted({t for t, _ in by_pair})[:2]:
        sc.add("rl_limits", LimitConfig.of(TenantPolicy(tenant_id=tenant, per_hour=50, per_day=400), sc.start, "set",
                                           actor="ops"))
    for rank, ((tenant, ip), count) in enumerate(by_pair.most_common(30)):
        ts = first_seen[tenant, ip]
        sc.add("rl_decisions", Decision.create(tenant_id=tenant, ip=ip, state="allowed", reason="ok", ts=ts))
        if rank >= 6:
            continue
        # the first three early on (bans), the others within the last day of the range
        hit = ts + timedelta(minutes=30) if rank < 3 else sc.end - timedelta(hours=rank)
        sc.add("rl_violations", *[
            Violation.create(tenant_id=tenant, ip=ip, limit_name=name, limit=50, count=count, window_s=window,
                             ts=hit + timedelta(hours=k))
            for k, (name, window) in enumerate([("hour", 3600.0), ("day", 86400.0)][: 1 + rank % 2])
        ])
        state = "banned" if rank < 3 else "throttled"
        sc.add("rl_decisions", Decision.create(tenant_id=tenant, ip=ip, state=state, reason="limit:hour", limit=50,
                                               remaining=0, retry_after_s=60.0, ts=hit))
        if rank < 3:  # two bans still in force at the end, one that ended
            end = sc.end + timedelta(hours=2) if rank < 2 else hit + timedelta(minutes=15)
            started = Ban.create(tenant_id=tenant, ip=ip, action="started", reason="auto", level=rank, start=hit,
                                 end=end, ts=hit)
            sc.add("rl_bans", started)
            if rank == 2:
                sc.add("rl_bans", Ban.create(tenant_id=tenant, ip=ip, action="ended", reason="auto", level=rank,
                                             start=hit, end=end, ts=end))


def _anomalies(sc: Scenario, requests: list[RequestEvent]) -> None:
    hourly: dict[tuple[str, datetime], int] = Counter(
        (r.tenant_id, r.ts.replace(minute=0, second=0, microsecond=0)) for r in requests)
    tenants = sorted({t for t, _ in hourly})[:3]
    severities = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM]
    statuses = [AnomalyStatus.ACTIVE, AnomalyStatus.ACKNOWLEDGED, AnomalyStatus.RESOLVED]
    for i, tenant in enumerate(tenants):
        series = sorted((h, n) for (t, h), n in hourly.items() if t == tenant)
        values = [float(n) for _, n in series]
        mu, sigma = fmean(values), pstdev(values) or 1.0
        for h, n in series:
            sc.add("metric_points", MetricPoint(tenant=tenant, metric=MetricName.REQUEST_VOLUME, ts=h, value=n))
            sc.add("baselines", BaselineBand(
                id=band_id(tenant, "request_volume", h.timestamp()), tenant=tenant, metric=MetricName.REQUEST_VOLUME,
                ts=h, expected=mu, lower=mu - 3 * sigma, upper=mu + 3 * sigma, seasonal=False))
        peak_h, peak_n = max(series, key=lambda p: p[1])
        aid = anomaly_id(tenant, "request_volume", peak_h.timestamp())
        # The first one as the detector reports a flat baseline: σ score at its cap.
        dev = CAPPED_SIGMA if i == 0 else (peak_n - mu) / sigma
        sc.add("anomalies", Anomaly(
            id=aid, tenant=tenant, metric=MetricName.REQUEST_VOLUME, start_ts=peak_h, detected_ts=peak_h,
            last_ts=peak_h, value=peak_n, expected=mu, sigma=sigma, deviation_sigma=dev,
            deviation_pct=100 * (peak_n - mu) / mu, peak_sigma=abs(dev), direction=Direction.UP,
            severity=severities[i], status=AnomalyStatus.ACTIVE, points=1, hst_score=None,
            verdict=Verdict.RULE_ONLY, threshold_sigma=3.0))
        if statuses[i] is not AnomalyStatus.ACTIVE:
            ts = peak_h + timedelta(hours=1)
            sc.add("anomaly_status", AnomalyStatusChange(
                id=status_change_id(aid, statuses[i].value, ts.timestamp()), anomaly_id=aid, tenant=tenant,
                metric=MetricName.REQUEST_VOLUME, ts=ts, from_status=AnomalyStatus.ACTIVE, to_status=statuses[i],
                actor="ops@example.com"))
        sc.add("anomaly_rules", RuleChange(
            id=stable_id("rule", tenant), tenant=tenant, metric=MetricName.REQUEST_VOLUME, ts=sc.start,
            actor="ops@example.com", is_default=False, direction=Direction.BOTH, threshold_sigma=3.0, warmup=12,
            enabled=True, rule_json="{}"))


def _trials(sc: Scenario, billing: Sequence[Any]) -> None:
    outcome = {e.tenant_id: e for e in billing if e.type in {BillingType.TRIAL_CONVERTED, BillingType.TRIAL_CANCELED}}
    for n, e in enumerate(b for b in billing if b.type is BillingType.TRIAL_STARTED):
        trial = f"{e.tenant_id}-trial"
        ends = e.ts + timedelta(days=e.trial_days)
        first = TrialState(id=stable_id(trial, 0), trial_id=trial, tenant_id=e.tenant_id, plan=e.plan,
                           status=TrialStatus.TRIALING, previous=None, version=0, started_at=e.ts, ends_at=ends,
                           ts=e.ts)
        sc.add("trial_states", first)
        done = outcome.get(e.tenant_id)
        if done is not None:
            status = TrialStatus.CONVERTED if done.type is BillingType.TRIAL_CONVERTED else TrialStatus.CANCELED
            sc.add("trial_states", first.model_copy(update={
                "id": stable_id(trial, 1), "status": status, "previous": TrialStatus.TRIALING, "version": 1,
                "ts": done.ts, "converted_at": done.ts if status is TrialStatus.CONVERTED else None}))
        elif ends <= sc.end:
            sc.add("trial_states", first.model_copy(update={
                "id": stable_id(trial, 1), "status": TrialStatus.EXPIRED, "previous": TrialStatus.TRIALING,
                "version": 1, "ts": ends}))
        note = Notification(id=stable_id(trial, "welcome"), kind="trial_welcome", recipient=e.contact_email,
                            tenant_id=e.tenant_id, variables={"plan": e.plan}, ts=e.ts)
        sc.add("notifications", note)
        attempts = [DeliveryStatus.SENT] if n % 4 else [DeliveryStatus.FAILED, DeliveryStatus.SENT]
        if n == 1:
            attempts = [DeliveryStatus.FAILED] * 3
        # Stamped as the notifier stamps them: the wall-clock time of the attempt, which is far
        # from the (generated) event time the mail became due.
        for k, status in enumerate(attempts, start=1):
            sc.add("deliveries", Delivery(id=stable_id(note.id, status, k), notification_id=note.id, status=status,
                                          attempts=k, error="" if status is DeliveryStatus.SENT else "421 try later",
                                          ts=sc.wall + timedelta(seconds=k)))


def build_scenario() -> Scenario:
    """Every record of the scenario, by table."""
    config = preset("tiny")
    sc = Scenario(start=config.start, end=config.end)
    requests = _events(sc)
    _ratelimit(sc, requests)
    _anomalies(sc, requests)
    billing = [e for e in sc.records["billing"] if isinstance(e, BillingEvent)]
    _trials(sc, billing)
    return sc


def insert_scenario(client: Any, sc: Scenario) -> dict[str, int]:
    """Insert into the tables that exist; returns rows inserted per table."""
    specs = {s.table: s for s in load_capability_sinks().values()}
    existing = {row[0] for row in client.query("SHOW TABLES").result_rows}
    sink = ClickHouseSink(client)
    done = {}
    for table, rows in sc.records.items():
        if table in existing and rows:
            sink.insert(table, specs[table].columns, rows)
            done[table] = len(rows)
    return done
