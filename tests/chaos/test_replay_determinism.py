"""Replays are deterministic: the same published events (the generator's `tiny` preset: requests,
billing, errors and usage of 6 tenants and a trial cohort over 2 days, with an abuse burst,
a revenue drop, an error spike and a usage spike) replayed into fresh state give the same
decisions, violations, bans, rollups, metric points, anomalies, notifications, tenant commands
and trial states whatever the partition count, the batch size, the number of workers, and
whether a worker is SIGKILLed twice on the way.

The workers run first, the tenants get tight limits by command (the abuse burst then ends in
bans) and anomaly rules with a short warm-up (two days are shorter than the default one), every
requests partition goes quiet and says so, and then every event is published at once, so the
workers read it as a backlog that wakes the partitions one by one. Each run
gets its own topics and its own tenant names (`<tenant>.<run>`: the runs share one ClickHouse),
and outcomes are compared with the run suffix stripped."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.clickhouse.sinks import load_capability_sinks
from pipeline.adapters.kafka_admin import caught_up, end_offsets, ensure_topics
from pipeline.devstack.generator import iter_events, preset
from pipeline.devstack.smtp_sink import SmtpSink
from pipeline.runtime.topics import INPUT_TOPICS, TOPICS, WORKER_TOPICS, Topic, topic_name
from pipeline.sdk import Publisher, partition_for
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import WorkerProcess, requests_processed, wait_for, worker_statuses
from tests.integration.ratelimit.conftest import admin, make_settings, rows, start_writer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

# What owners see, per table; `{t}` is the tenant column, compared without the run's suffix.
QUERIES = {
    "decisions": "SELECT tenant_id, ip, state, reason, ts FROM rl_decisions FINAL",
    "violations": "SELECT tenant_id, ip, limit_name, count, ts FROM rl_violations FINAL",
    "bans": "SELECT tenant_id, ip, level, start, end FROM rl_bans FINAL",
    "rollups": "SELECT tenant_id, minute, requests, errors, blocked FROM rl_rollups_tenant",
    "metric_points": "SELECT tenant, metric, ts, round(value, 9) FROM metric_points FINAL",
    "anomalies": "SELECT tenant, metric, start_ts, detected_ts, last_ts, direction, severity, status, points, "
                 "round(value, 9), round(expected, 9) FROM anomalies FINAL",
    "notifications": "SELECT tenant_id, kind, channel, recipient, ts FROM notifications FINAL",
    "tenant_commands": "SELECT tenant_id, action, source, ts FROM tenant_commands FINAL",
    "trial_states": "SELECT tenant_id, plan, status, version, ts FROM trial_states FINAL",
}


WATCHED = ("request_volume", "error_rate", "error_events", "storage_bytes")

# The runs share the session's ClickHouse with other tests: 31 weeks earlier (same weekdays), their
# rows stay out of the time ranges those tests read (the dashboards' scenario plays the same preset).
SHIFT = timedelta(weeks=31)


def events(run: str) -> list[dict[str, Any]]:
    """The tiny preset's events, as JSON, moved back by `SHIFT`, with each tenant renamed for `run`."""
    out = []
    for e in iter_events(preset("tiny")):
        d = e.model_dump(mode="json")
        d["tenant_id"] = f"{d['tenant_id']}.{run}"
        d["ts"] = (e.ts - SHIFT).isoformat()
        out.append(d)
    return out


END = "2025-06-04T02:00:00Z"  # two hours after the (shifted) preset's last event


def closing_ticks(run: str, partitions: int) -> list[dict[str, Any]]:
    """A billing, an error and a usage event every 3 h up to `END` on every partition (tenants
    `clock-<p>.<run>`).

    Windows of these tenant-keyed sources close on their partition's clock, and at the end of
    a replay a partition's clock stops at its own last event: which tenants' last windows have
    closed would depend on who shares a partition. Ticks end every partition's input at the
    same event time, as live traffic does (in steps of 3 h: a jump of more than
    `TW_MAX_EVENT_LEAD_S`, 6 h, is dead-lettered); the clock tenants are left out of the comparison.
    """
    clocks = {}
    for i in range(1000):
        clocks.setdefault(partition_for(f"clock-{i}.{run}", partitions), f"clock-{i}.{run}")
        if len(clocks) == partitions:
            break
    out: list[dict[str, Any]] = []
    end = datetime.fromisoformat(END)
    for k in range(1, 17):
        ts = (end - timedelta(hours=3 * (16 - k))).isoformat()
        for tenant in clocks.values():
            out += [{"kind": "billing", "event_id": f"{tenant}-b{k}", "ts": ts, "tenant_id": tenant,
                     "type": "charge_succeeded", "amount_minor": 1, "currency": "EUR"},
                    {"kind": "error", "event_id": f"{tenant}-e{k}", "ts": ts, "tenant_id": tenant, "service": "clock",
                     "error_type": "Tick", "message": "tick", "severity": "warning"},
                    {"kind": "usage", "event_id": f"{tenant}-u{k}", "ts": ts, "tenant_id": tenant,
                     "storage_bytes": 1, "active_users": 1, "api_calls": 1}]
    return out


def outcome(chdb: Any, run: str) -> dict[str, Counter[tuple[Any, ...]]]:
    suffix = f".{run}"
    out = {}
    for name, sql in QUERIES.items():
        column = "tenant" if "FROM metric_points" in sql or "FROM anomalies" in sql else "tenant_id"
        found = rows(chdb, f"{sql} WHERE endsWith({column}, {{s:String}}) AND NOT startsWith({column}, 'clock-')",
                     s=suffix)
        out[name] = Counter((r[0].removesuffix(suffix), *r[1:]) for r in found)
    return out


def rollup_figures(settings: Settings, procs: list[WorkerProcess]) -> Counter[str]:
    """The rollup stages' figures summed over the running workers (a killed one's file is stale)."""
    total: Counter[str] = Counter()
    for status in worker_statuses(settings, [p.proc.pid for p in procs if p.proc is not None]):
        total.update({k: v for k, v in status.get("extra", {}).get("rollups", {}).items() if isinstance(v, int)})
    return total


def settled(settings: Settings, procs: list[WorkerProcess]) -> Callable[[], bool]:
    """A condition: every requests partition announced idle (so its last minutes are flushed) and no
    minute is open, the workers and the writer have committed everything, and no topic grew since
    the previous check."""
    worker_topics = [topic_name(settings.topic_prefix, t) for t in (*INPUT_TOPICS, *WORKER_TOPICS, Topic.METRICS,
                                                                     Topic.NOTIFICATIONS)]
    stored = [topic_name(settings.topic_prefix, t) for t in load_capability_sinks()]  # what the writer reads
    all_topics = [topic_name(settings.topic_prefix, t) for t in TOPICS]
    last: list[Any] = [None]

    def check() -> bool:
        figures = rollup_figures(settings, procs)
        if figures["idle_sources"] != settings.partitions or figures["combine_open"]:
            last[0] = None
            return False
        ends = end_offsets(settings.broker, all_topics)
        same, last[0] = ends == last[0], ends
        return (same and caught_up(settings.broker, settings.app_id, worker_topics)
                and caught_up(settings.broker, f"{settings.app_id}-writer", stored))

    return check


def replay(kafka: str, session_dir: Path, chdb: Any, tmp_path: Path, run: str, *, partitions: int = 4,
           workers: int = 1, kills: tuple[float, ...] = ()) -> dict[str, Counter[tuple[Any, ...]]]:
    """Start the workers, give the tenants tight limits (so the abuse burst ends in bans), publish
    every event at once, and let the workers and the writer work through them."""
    sink = SmtpSink(tmp_path / f"mail-{run}")
    settings = make_settings(kafka, session_dir).model_copy(update={"partitions": partitions,
                                                                     "smtp_port": sink.port})
    ensure_topics(settings)
    data = events(run)
    n_requests = sum(1 for e in data if e["kind"] == "request")
    sink.start()
    procs = [WorkerProcess(settings).start() for _ in range(workers)]
    writer = start_writer(settings, chdb)
    try:
        for tenant in sorted({e["tenant_id"] for e in data if e["kind"] == "request"}):
            assert admin(settings, Action.LIMITS_SET, tenant, per_minute=12, per_hour=300, per_day=None,
                         violation_threshold=3, ban_base_s=600).outcome == "accepted"
        # Two days are shorter than a detector's default warm-up: with a short one there are anomalies to compare.
        for tenant in sorted({e["tenant_id"] for e in data if e["kind"] in ("request", "error", "usage")}):
            for metric in WATCHED:
                assert admin(settings, Action.RULE_SET, tenant, metric=metric, warmup=6,
                             warmup_s=0).outcome == "accepted"
        # Every requests partition is quiet by now and says so: the backlog then wakes them one by
        # one, and no partition read first may close the others' minutes (a bulk import into a
        # quiet deployment; before the combiners checked the partitions' ends, ~600 of ~4,800
        # tenant-minutes were cut short and the request metrics differed from run to run).
        wait_for(lambda: rollup_figures(settings, procs)["idle_sources"] == partitions, timeout=120, interval=0.5,
                 what="every requests partition announced idle before the backlog")
        with Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=200) as pub:
            pub.publish_many(data)
            pub.publish_many(closing_ticks(run, partitions))
        for fraction in kills:
            wait_for(lambda f=fraction: requests_processed(settings) >= f * n_requests, timeout=240,
                     what=f"the worker past {fraction:.0%} of the requests", interval=0.02)
            procs[0].stop(kill=True)
            procs[0].start()
        wait_for(settled(settings, procs), timeout=420, interval=3.0,
                 what=lambda: f"run {run} settled (worker log {procs[0].log})")
    finally:
        writer.__exit__(None, None, None)
        for p in procs:
            p.stop()
        sink.stop()
    return outcome(chdb, run)


def differences(a: Counter[tuple[Any, ...]], b: Counter[tuple[Any, ...]]) -> str:
    only_a, only_b = a - b, b - a
    return json.dumps({"only_first": [list(map(str, k)) for k in list(only_a)[:5]],
                       "only_second": [list(map(str, k)) for k in list(only_b)[:5]],
                       "counts": [sum(only_a.values()), sum(only_b.values())]})


def test_replays_are_identical_across_partitions_batches_workers_and_kills(
        kafka: str, session_dir: Path, chdb_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four replays of the same events: 4 partitions and one worker; 2 partitions, batches of at most 97
    records and two workers; 4 partitions with the worker SIGKILLed at ~30 % and ~65 %. Every table
    owners read is identical, and the traffic makes something in each."""
    tag = uuid.uuid4().hex[:5]
    monkeypatch.setenv("TW_SOURCE_IDLE_S", "4")  # the workers inherit it: the last minutes close sooner
    base = replay(kafka, session_dir, chdb_client, tmp_path, f"a{tag}")
    print({name: sum(found.values()) for name, found in base.items()})
    for name, found in base.items():
        assert found, f"the tiny preset made no {name}: the comparison would prove little"
    with monkeypatch.context() as m:
        m.setenv("TW_TAKE_MAX_RECORDS", "97")  # the workers inherit it
        other = replay(kafka, session_dir, chdb_client, tmp_path, f"b{tag}", partitions=2, workers=2)
    killed = replay(kafka, session_dir, chdb_client, tmp_path, f"c{tag}", kills=(0.3, 0.65))
    for name in QUERIES:
        assert other[name] == base[name], f"{name}, 2 partitions/2 workers: {differences(base[name], other[name])}"
        assert killed[name] == base[name], f"{name}, killed twice: {differences(base[name], killed[name])}"
