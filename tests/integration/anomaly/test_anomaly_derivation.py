"""End to end from generated traffic: rollups, billing, usage and errors → metric points → anomalies.

The rate limiter that publishes rollups is wired separately; here its pure rollup core
(`MinuteRollups`) turns the generated requests into the rollups it would publish.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from agents.ratelimit.rollup import MinuteRollups
from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.devstack.generator import (
    ErrorSpike,
    GeneratorConfig,
    RevenueDrop,
    Scenarios,
    UsageSpike,
    ground_truth,
    iter_events,
)
from pipeline.runtime.topics import Topic
from pipeline.sdk import Publisher
from schemas.commands import Action
from schemas.events import BillingEvent, BillingType, RequestEvent
from tests.conftest import wait_for
from tests.integration.anomaly.anomaly_helpers import anomalies, produce, rows

pytestmark = pytest.mark.integration

DAYS = 6
CONFIG = GeneratorConfig(
    seed=11, days=DAYS, n_tenants=4, peak_rpm=10.0, charges_per_day=40,
    scenarios=Scenarios(
        revenue_drops=(RevenueDrop(tenant_rank=0, start_hour=DAYS * 24 - 30, factor=0.2),),
        error_spikes=(ErrorSpike(tenant_rank=1, start_hour=DAYS * 24 - 20, duration_hours=4),),
        usage_spikes=(UsageSpike(tenant_rank=2, start_hour=DAYS * 24 - 16, duration_hours=6),),
    ),
)
# Event time from the injection to the detecting point's window *start* (+ its width to close it).
BOUND_H = {"revenue_drop": 12.0, "error_spike": 2.0, "usage_spike": 2.0}
METRICS = {"revenue_drop": {"revenue"}, "error_spike": {"error_rate", "error_events"},
           "usage_spike": {"storage_bytes", "active_users"}}


def hour_of(ts: Any) -> Any:
    return ts.replace(minute=0, second=0, microsecond=0)


def test_generated_traffic_is_derived_exactly_and_injected_scenarios_are_detected(
    settings_factory, worker_factory, writer_factory, chdb_client
):
    """Derived points match an oracle; revenue drop, error and usage spikes are detected in bounded time."""
    settings = settings_factory()
    ensure_topics(settings)
    truth = {s["kind"]: s for s in ground_truth(CONFIG)["scenarios"]}
    tenants = [t["tenant_id"] for t in ground_truth(CONFIG)["tenants"]]
    worker = worker_factory(settings, capabilities="anomaly")
    # Revenue points are 6-hourly: six days hold 24 of them, fewer than the default 48-point warm-up.
    cmd = build_command(settings, action=Action.RULE_SET, tenant=truth["revenue_drop"]["tenant_id"],
                        params={"metric": "revenue", "warmup": 8}, actor="test")
    audit = send_command(settings, cmd, wait_s=150)
    assert audit is not None, f"the worker answered (log: {worker.log})"
    assert audit.outcome == "accepted", audit.reason

    rollups = MinuteRollups()
    others, volume, revenue = [], Counter(), Counter()
    for e in iter_events(CONFIG):
        if isinstance(e, RequestEvent):
            rollups.add(e.tenant_id, e.ip, e.ts.timestamp(), status=e.status, latency_ms=e.latency_ms)
            volume[(e.tenant_id, hour_of(e.ts))] += 1
            continue
        others.append(e)
        if isinstance(e, BillingEvent) and e.amount_minor is not None:
            sign = {BillingType.CHARGE_SUCCEEDED: 1, BillingType.REFUND: -1}.get(e.type, 0)
            window = e.ts.replace(hour=e.ts.hour - e.ts.hour % 6, minute=0, second=0, microsecond=0)
            revenue[(e.tenant_id, window)] += sign * e.amount_minor
    closed = rollups.close(CONFIG.end.timestamp() + 60)
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix) as pub:
        produce(settings, Topic.ROLLUPS, ((r.tenant_id, r) for r in closed), slice_of=lambda r: hour_of(r.minute))
        pub.publish_many(others)
        pub.flush()
        found: dict[str, dict[str, Any]] = {}

        def detected() -> bool:
            for kind, s in truth.items():
                for a in anomalies(chdb_client, s["tenant_id"]):
                    if a["metric"] in METRICS[kind] and a["start_ts"] >= hour_of(_iso(s["start"])) - timedelta(hours=1):
                        found.setdefault(kind, a)
            return len(found) == len(truth)

        wait_for(detected, timeout=180, what=lambda: f"all three scenarios detected, have {sorted(found)}"
                 f" (worker log: {worker.log})")
        quiet = tenants[3]
        points = wait_for(lambda: rows(chdb_client, "SELECT ts, value FROM metric_points FINAL WHERE tenant ="
                                       " {t:String} AND metric = 'request_volume' ORDER BY ts", t=quiet)
                          if len(rows(chdb_client, "SELECT 1 FROM metric_points FINAL WHERE tenant = {t:String}"
                                      " AND metric = 'request_volume'", t=quiet)) >= DAYS * 24 - 2 else None,
                          timeout=120, what="the quiet tenant's hourly request volume")
    for ts, value in points:
        assert value == volume.get((quiet, ts), 0), f"request volume of {ts}"
    drop = truth["revenue_drop"]["tenant_id"]
    for ts, value in rows(chdb_client, "SELECT ts, value FROM metric_points FINAL WHERE tenant = {t:String}"
                          " AND metric = 'revenue'", t=drop):
        assert value == revenue.get((drop, ts), 0), f"revenue of the 6 h window at {ts}"
    for kind, a in found.items():
        late = (a["detected_ts"] - _iso(truth[kind]["start"])).total_seconds() / 3600
        assert late <= BOUND_H[kind], f"{kind} detected {late:.1f} h after it began: {a}"
    # False alarms: anomalies on tenants or at times no scenario explains.
    explained = {(s["tenant_id"]) : (_iso(s["start"]) - timedelta(hours=1), _iso(s["end"]) + timedelta(hours=6))
                 for s in truth.values()}
    scored = rows(chdb_client, "SELECT count() FROM baselines FINAL WHERE tenant IN {ts:Array(String)}",
                  ts=tenants)[0][0]
    stray = [a for t in tenants for a in anomalies(chdb_client, t)
             if not (t in explained and explained[t][0] <= a["start_ts"] <= explained[t][1])]
    assert len(stray) <= 0.005 * scored, f"false-alarm budget 0.5 % of {scored} scored points: {stray}"


def _iso(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
