"""`tenantwatch eval scenarios`: the generator's incidents through the anomaly detector core.

Each run generates a population with incidents on some tenants (revenue drops, error spikes,
usage spikes, abusive IPs) and none on the others, derives the metric streams exactly as the
agent does (`TenantMetrics`, fed the rate limiter's minute rollups of the requests), seeds every stream from its
first `--history-days` (as a new worker seeds from the owner's metric history), feeds the
rest through `StreamDetector` with the default rules, and scores the anomalies against the
generator's ground truth (`agents.anomaly.incidents`); each run lists its incidents with the
metric that caught each and how long after onset. Runs vary the seed, tenant sizes (peak requests
per minute) and tenant time zones (so daily seasonality falls at different hours).

No Kafka, no ClickHouse: the same pure cores the worker runs, so the figures are those of
the detector, not of the plumbing. `--quick` runs the reduced set the tests use.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import chain

from agents.anomaly.detector import StreamDetector
from agents.anomaly.incidents import Incident, IncidentReport, score_incidents
from agents.anomaly.metrics import TenantMetrics
from agents.anomaly.multivariate import TenantHST
from agents.anomaly.rules import default_rule
from agents.ratelimit.rollup import MinuteRollups
from pipeline.devstack.generator.config import (
    AbuseBurst,
    ErrorSpike,
    GeneratorConfig,
    RevenueDrop,
    Scenarios,
    UsageSpike,
    history_of,
)
from pipeline.devstack.generator.engine import ground_truth, iter_records
from schemas.anomaly import Anomaly, MetricPoint
from schemas.events import EVENT_ADAPTER

__all__ = ["BACKFILL_DAYS", "SCENARIO_RUNS", "main", "metric_points", "run_config", "run_suite", "suite"]

HISTORY_DAYS = 14  # metric history each stream is seeded from before it is scored (as a new worker is)
DEMO_SEED = 7  # the seed `tenantwatch demo` plays its preset with by default
BACKFILL_DAYS = 14  # the owner's history `tenantwatch demo` loads before a preset (two weeks: weekends seen twice)


def scenario_config(seed: int, peak_rpm: float, *, history_days: int = HISTORY_DAYS, days: int = 10,
                    n_tenants: int = 12) -> GeneratorConfig:
    """`history_days` of normal traffic, then `days` with incidents on the first six tenants, none on the rest.

    Two revenue drops (to 30 % and to nothing), two error spikes (4 h and 2 h), a usage spike
    and a burst of abusive IPs; tenants 6 and up stay clean. Needs `days` ≥ 6.
    """
    h, t0 = 24.0, history_days * 24.0
    return GeneratorConfig(
        seed=seed, days=history_days + days, n_tenants=n_tenants, peak_rpm=peak_rpm, charges_per_day=30.0,
        scenarios=Scenarios(
            revenue_drops=(RevenueDrop(tenant_rank=0, start_hour=t0 + 2 * h + 6, factor=0.3),
                           RevenueDrop(tenant_rank=5, start_hour=t0 + 3 * h, factor=0.0)),
            error_spikes=(ErrorSpike(tenant_rank=2, start_hour=t0 + 1 * h + 14, duration_hours=4.0),
                          ErrorSpike(tenant_rank=4, start_hour=t0 + 4 * h + 3, duration_hours=2.0)),
            usage_spikes=(UsageSpike(tenant_rank=3, start_hour=t0 + 2 * h + 9, duration_hours=8.0),),
            abuse=(AbuseBurst(tenant_rank=1, start_hour=t0 + 15, duration_minutes=45, n_ips=3),),
        ),
    )


# (seed, peak requests per minute): small, medium and busy populations.
SCENARIO_RUNS: tuple[tuple[int, float], ...] = ((11, 1.5), (12, 5.0), (13, 20.0))
QUICK_RUNS: tuple[tuple[int, float], ...] = ((21, 5.0),)


def suite(quick: bool = False, history_days: int = HISTORY_DAYS) -> list[GeneratorConfig]:
    if quick:
        return [scenario_config(seed, rpm, history_days=history_days, days=6, n_tenants=10)
                for seed, rpm in QUICK_RUNS]
    return [scenario_config(seed, rpm, history_days=history_days) for seed, rpm in SCENARIO_RUNS]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def metric_points(config: GeneratorConfig) -> Iterator[MetricPoint]:
    """Every metric point the agent would derive from the generated events, per hour in time order.

    Requests go through the rate limiter's own minute rollups (one part: complete rollups).
    """
    tenants: dict[str, TenantMetrics] = {}
    minutes = MinuteRollups()
    current_hour = ""

    def tm(tenant: str) -> TenantMetrics:
        if tenant not in tenants:
            tenants[tenant] = TenantMetrics(tenant)
        return tenants[tenant]

    def close(mark: float) -> Iterator[MetricPoint]:
        for rollup in minutes.close(mark):
            tm(rollup.tenant_id).add_rollup(rollup)
        for t in sorted(tenants):
            yield from tenants[t].close(mark)

    for rec in iter_records(config):
        ts = rec["ts"]
        hour = ts[:13]
        if hour != current_hour:
            if current_hour:
                yield from close(_epoch(hour + ":00:00Z"))
            current_hour = hour
        if rec["kind"] == "request":
            minutes.add(rec["tenant_id"], rec["ip"], _epoch(ts), status=rec["status"], latency_ms=rec["latency_ms"])
        else:
            tm(rec["tenant_id"]).add([EVENT_ADAPTER.validate_python(rec)])
    yield from close(config.end.timestamp())


def detect(points: Iterator[MetricPoint], scored_from: float = -math.inf) -> list[Anomaly]:
    """Every anomaly record the detector core emits over the points (with the default rules).

    Points before `scored_from` are history: learnt (`StreamDetector.learn`), never scored.
    """
    dets: dict[str, StreamDetector] = {}
    hsts: dict[str, TenantHST] = defaultdict(TenantHST)
    out = []
    for p in points:
        rule = default_rule(p.metric)
        det = dets.get(p.key)
        if det is None:
            det = dets[p.key] = StreamDetector.for_point(p, rule)
        hst = hsts[p.tenant].score_and_learn(p.metric.value, p.value)
        if p.epoch < scored_from:
            det.learn(p.epoch, p.value, p.denominator)
            continue
        step = det.observe_point(p, rule, hst)
        if step.anomaly is not None:
            out.append(step.anomaly)
    return out


def run_config(config: GeneratorConfig, history_days: int = HISTORY_DAYS, backfill_days: int = 0) -> IncidentReport:
    """Score one run; its first `history_days` are learnt, not scored. With `backfill_days`, the
    streams first learn that many days *before* the run (`history_of`: what `tenantwatch demo`
    loads as the owner's history) and the whole run is scored."""
    truth = ground_truth(config)
    incidents = [Incident(s["id"], s["kind"], s["tenant_id"], _epoch(s["start"]), _epoch(s["end"]))
                 for s in truth["scenarios"] if s["kind"] != "trial_cohort"]
    dirty = {i.tenant for i in incidents}
    clean = sum(1 for t in truth["tenants"] if t["tenant_id"] not in dirty)
    scored_from = config.start.timestamp() + history_days * 86_400.0
    points = metric_points(config)
    if backfill_days:
        points = chain(metric_points(history_of(config, backfill_days)), points)
    anomalies = detect(points, scored_from)
    return score_incidents(anomalies, incidents, clean * (config.days - history_days))


def run_suite(configs: Sequence[GeneratorConfig], history_days: int = HISTORY_DAYS,
              verbose: bool = False) -> IncidentReport:
    total = IncidentReport()
    for config in configs:
        report = run_config(config, history_days)
        if verbose:
            print(f"-- seed {config.seed}, {config.n_tenants} tenants, peak {config.peak_rpm:g} rpm:"
                  f" {history_days} days of history, then {config.days - history_days} days scored")
            print(report.format())
            print(report.format_catches())
        total.merge(report)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenantwatch eval scenarios", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced set the tests run (one small run)")
    parser.add_argument("--history-days", type=int, default=None,
                        help=f"days of metric history each stream learns before it is scored (default {HISTORY_DAYS};"
                             " with --preset 0: the preset is scored whole, after its backfill)")
    parser.add_argument("--preset", default=None,
                        help="score a generator preset's own incidents instead (e.g. demo: what `make demo` plays)")
    parser.add_argument("--backfill-days", type=int, default=None,
                        help=f"with --preset: days of the owner's history before the preset that the"
                             f" streams learn first, as `tenantwatch demo` seeds them (default {BACKFILL_DAYS};"
                             " 0: warm up live)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED,
                        help=f"with --preset: the generator's seed (default {DEMO_SEED}, as `tenantwatch demo`)")
    args = parser.parse_args(argv)
    if args.preset is not None:
        from pipeline.devstack.generator import preset

        history = args.history_days or 0
        backfill = BACKFILL_DAYS if args.backfill_days is None else args.backfill_days
        print(f"-- preset {args.preset}, seed {args.seed}: {backfill} days of backfilled history,"
              f" the first {history} days learnt")
        report = run_config(preset(args.preset).model_copy(update={"seed": args.seed}), history, backfill)
        print(report.format())
        print(report.format_catches())
        return 0
    history = HISTORY_DAYS if args.history_days is None else args.history_days
    total = run_suite(suite(args.quick, history), history, verbose=True)
    print("== all runs")
    print(total.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
