"""Chaos: a rate-limit worker killed with SIGKILL mid-stream, twice, ends exactly where a run without
faults ends: the same decisions, violations and bans, and rollups equal to an independent count."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.runtime.topics import Topic
from pipeline.sdk import Publisher
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import WorkerProcess, requests_processed, wait_for, wait_processed_and_stored
from tests.integration.ratelimit.conftest import T0, admin, make_settings, rows, start_writer, ticks
from tests.integration.ratelimit.test_multiworker import group_members

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

TENANTS, IPS, EVENTS = 3, 60, 45_000


def traffic(tenants: list[str], seed: int = 11) -> list[dict[str, Any]]:
    """Two hours of requests: a few heavy IPs per tenant cross their limits and get banned."""
    rng = random.Random(seed)
    out = []
    for i in range(EVENTS):
        t = i % len(tenants)
        ip = f"198.51.{t}.{int(IPS * rng.random() ** 3)}"  # skewed: low addresses are busy
        ts = T0 + timedelta(seconds=i * 7200 / EVENTS)
        out.append({"kind": "request", "event_id": f"c{t}-{i}", "ts": ts.isoformat(), "tenant_id": tenants[t],
                    "ip": ip, "method": "GET", "path": "/api", "status": 500 if i % 17 == 0 else 200,
                    "latency_ms": 5.0 + i % 40})
    return out


Outage = Callable[[threading.Lock], None]


def run(settings: Settings, chdb: Any, tenants: list[str], kills: tuple[float, ...],
        log: Callable[[str], None], *, partner: bool = False,
        outage: tuple[float, Outage] | None = None) -> int:
    """Publish the traffic at a steady pace while one worker processes it; SIGKILL it (and restart
    it at once) when it has processed each fraction in `kills`. With `partner`, a second worker
    shares the partitions and is the one killed, for good: the first takes its partitions over.
    `outage` = (fraction, fault): past that fraction `fault(publishing)` runs (e.g. stops the
    broker for a while); it holds `publishing` while upstream must wait, since the upstream
    producer is not what is under test. Returns the number of kills done."""
    ensure_topics(settings)
    events = traffic(tenants)
    done = threading.Event()
    publishing = threading.Lock()

    def publish() -> None:  # ~15k events/s, so kills land while input keeps arriving
        with Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=250) as pub:
            for i in range(0, len(events), 1500):
                with publishing:
                    pub.publish_many(events[i:i + 1500])
                    pub.flush()
                time.sleep(0.1)
            with publishing:
                pub.publish_many(ticks(tenants[0], T0 + timedelta(hours=3)))
        done.set()

    worker = WorkerProcess(settings, "ratelimit").start()
    victim = WorkerProcess(settings, "ratelimit").start() if partner else worker
    killed = 0
    writer = start_writer(settings, chdb)
    try:
        for tenant in tenants:
            assert admin(settings, Action.LIMITS_SET, tenant, per_minute=12, per_hour=300, per_day=None,
                         violation_threshold=3, ban_base_s=600).outcome == "accepted"
        if partner:
            wait_for(lambda: group_members(settings) == 2, timeout=120, what="a stable group of two workers")
        threading.Thread(target=publish, daemon=True).start()
        for fraction in kills:
            wait_for(lambda f=fraction: requests_processed(settings) >= f * EVENTS, timeout=240,
                     what=f"the workers past {fraction:.0%} of the input", interval=0.02)
            victim.stop(kill=True)
            killed += 1
            log(f"killed at ~{fraction:.0%}")
            if not partner:
                victim.start()
        if outage is not None:
            at, fault = outage
            wait_for(lambda: requests_processed(settings) >= at * EVENTS, timeout=240,
                     what=f"the worker past {at:.0%} of the input", interval=0.02)
            fault(publishing)
            log(f"outage at ~{at:.0%}")
        wait_for(done.is_set, timeout=240, what="publishing done")
        wait_processed_and_stored(settings, Topic.REQUESTS,
                                  (Topic.REQUESTS, Topic.DECISIONS, Topic.VIOLATIONS, Topic.BANS, Topic.ROLLUPS))
    finally:
        writer.__exit__(None, None, None)
        worker.stop()
        victim.stop()
    return killed


def outcome(chdb: Any, tenants: list[str]) -> dict[str, Any]:
    """What owners see, with tenant ids replaced by their index (runs use different tenant names)."""
    index = {t: str(i) for i, t in enumerate(tenants)}
    q = {
        "decisions": "SELECT tenant_id, ip, state, reason, ts FROM rl_decisions FINAL "
                     "WHERE tenant_id IN {ts:Array(String)}",
        "violations": "SELECT tenant_id, ip, limit_name, count, ts FROM rl_violations FINAL "
                      "WHERE tenant_id IN {ts:Array(String)}",
        "bans": "SELECT tenant_id, ip, level, start, end FROM rl_bans FINAL WHERE tenant_id IN {ts:Array(String)}",
        # The closing ticks' minute closes only when a partition has been idle long enough
        # (TW_SOURCE_IDLE_S): whether it is stored yet depends on timing, so it is left out.
        "rollups": "SELECT tenant_id, minute, requests, errors, blocked FROM rl_rollups_tenant "
                   "WHERE tenant_id IN {ts:Array(String)} AND minute < {closing:DateTime64(3, 'UTC')}",
    }
    closing = T0 + timedelta(hours=3)
    params: dict[str, Any] = {"ts": tenants}
    return {name: Counter((index[r[0]], *r[1:]) for r in
                          rows(chdb, sql, **params, **({"closing": closing} if "{closing" in sql else {})))
            for name, sql in q.items()}


def published_per_minute(tenants: list[str]) -> Counter[tuple[str, datetime]]:
    out: Counter[tuple[str, datetime]] = Counter()
    for e in traffic(tenants):
        ts = datetime.fromisoformat(e["ts"]).replace(second=0, microsecond=0, tzinfo=None)
        out[(str(tenants.index(e["tenant_id"])), ts)] += 1
    return out


def test_a_worker_killed_twice_mid_stream_ends_like_one_never_killed(kafka: str, session_dir: Path, chdb_client: Any):
    """SIGKILL at ~30% and ~65% of the input, restart at once: decisions, violations, bans equal a
    no-fault run's; every tenant-minute's rollup equals the published count; requests stored once."""
    lines: list[str] = []
    base = [f"chaos{i}" for i in range(TENANTS)]
    tag = uuid.uuid4().hex[:6]
    calm_tenants = [f"{t}-calm-{tag}" for t in base]
    chaos_tenants = [f"{t}-kill-{tag}" for t in base]
    assert run(make_settings(kafka, session_dir), chdb_client, calm_tenants, (), lines.append) == 0
    assert run(make_settings(kafka, session_dir), chdb_client, chaos_tenants, (0.3, 0.65), lines.append) == 2
    calm, chaos = outcome(chdb_client, calm_tenants), outcome(chdb_client, chaos_tenants)
    expected = published_per_minute(chaos_tenants)
    stored = Counter({(t, m): n for (t, m, n, _e, _b) in chaos["rollups"]})
    assert sum(expected.values()) == EVENTS
    assert stored == expected, f"rollups differ from the published count in {len(set(stored) ^ set(expected))} cells"
    assert calm["bans"], "the traffic must make bans, or the comparison proves little"
    for name in ("decisions", "violations", "bans", "rollups"):
        assert chaos[name] == calm[name], f"{name} differ after the kills: {lines}"
    (n,) = rows(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id IN {ts:Array(String)}",
                ts=chaos_tenants)[0]
    assert n == EVENTS + len(ticks(chaos_tenants[0], T0))  # the published traffic and the closing ticks, once each


def test_of_two_workers_one_killed_mid_stream_the_other_ends_like_no_fault(kafka: str, session_dir: Path,
                                                                           chdb_client: Any):
    """Two workers share the partitions; one is SIGKILLed at ~40% and never comes back: the other
    takes its partitions over from their checkpoints, and owners see what a run without faults gives."""
    lines: list[str] = []
    tag = uuid.uuid4().hex[:6]
    calm_tenants = [f"duo{i}-calm-{tag}" for i in range(TENANTS)]
    duo_tenants = [f"duo{i}-kill-{tag}" for i in range(TENANTS)]
    assert run(make_settings(kafka, session_dir), chdb_client, calm_tenants, (), lines.append) == 0
    assert run(make_settings(kafka, session_dir), chdb_client, duo_tenants, (0.4,), lines.append, partner=True) == 1
    calm, duo = outcome(chdb_client, calm_tenants), outcome(chdb_client, duo_tenants)
    stored = Counter({(t, m): n for (t, m, n, _e, _b) in duo["rollups"]})
    assert stored == published_per_minute(duo_tenants)
    for name in ("decisions", "violations", "bans", "rollups"):
        assert duo[name] == calm[name], f"{name} differ after the kill: {lines}"
