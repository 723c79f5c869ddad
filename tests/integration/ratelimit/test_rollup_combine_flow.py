"""Rollups combined across four requests partitions: one row per tenant-minute, metrics exact."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import caught_up, ensure_topics
from pipeline.ops.processes import status_dir
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher
from schemas.events import RequestEvent
from tests.conftest import wait_for
from tests.integration.ratelimit.conftest import T0, rows

pytestmark = pytest.mark.integration

HOURS, TENANTS, IPS, N = 5, 12, 16, 4000


def epoch(ts: datetime) -> float:
    """Seconds of a stored time (chDB may give it naive, meaning UTC)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def rollup_status(settings: Any, capability: str = "rollups") -> dict[str, int]:
    """The workers' rollup figures (status files), summed."""
    total: Counter[str] = Counter()
    for path in status_dir(settings).glob("worker-*.json"):
        total.update(json.loads(path.read_text()).get("extra", {}).get(capability, {}))
    return dict(total)


def anomaly_status(settings: Any) -> dict[str, int]:
    return rollup_status(settings, "anomaly")


class Traffic:
    """Requests of many tenants and IPs over several hours, in time order, with their own counts."""

    def __init__(self, prefix: str, seed: int) -> None:
        rng = random.Random(seed)
        self.tenants = [f"{prefix}-t{i}" for i in range(TENANTS)]
        self.events = sorted((RequestEvent(
            event_id=f"e{n}", ts=T0 + timedelta(seconds=rng.uniform(0, HOURS * 3600)),
            tenant_id=rng.choice(self.tenants), ip=f"203.0.113.{rng.randrange(IPS)}", method="GET", path="/x",
            status=rng.choice([200, 200, 200, 404, 503]), latency_ms=rng.uniform(1, 300)) for n in range(N)),
            key=lambda e: e.ts)
        hour = lambda e: e.ts.replace(minute=0, second=0, microsecond=0)  # noqa: E731
        self.minutes = Counter((e.tenant_id, e.ts.replace(second=0, microsecond=0)) for e in self.events)
        self.volume = Counter((e.tenant_id, hour(e)) for e in self.events)
        self.errors = Counter((e.tenant_id, hour(e)) for e in self.events if e.status >= 500)
        # Hours close per tenant partition once a later minute arrives there: all but the last.
        self.closed = [(t, T0 + timedelta(hours=h)) for t in self.tenants for h in range(HOURS - 1)]

    def stored_points(self, client: Any) -> list[tuple[str, str, str]]:
        return sorted((m, t, str(ts)) for t, ts, m in rows(
            client, "SELECT tenant, ts, metric FROM metric_points FINAL WHERE tenant IN {t:Array(String)}",
            t=self.tenants))

    def wait_and_check(self, settings: Any, client: Any, worker: Any) -> None:
        """Wait for every tenant-minute and closed hour, then compare them with the counts."""
        names = self.tenants
        stored = wait_for(lambda: got if len(got := rows(
            client, "SELECT tenant_id, minute, requests, parts FROM rl_rollups FINAL WHERE tenant_id IN"
            " {t:Array(String)} AND NOT late", t=names)) >= len(self.minutes) else None,
            timeout=180, what=lambda: f"a rollup for each of {len(self.minutes)} tenant-minutes, status "
            f"{rollup_status(settings)} (worker log: {worker.log})")
        points = wait_for(lambda: got if len(got := rows(
            client, "SELECT tenant, ts, metric, value FROM metric_points FINAL WHERE tenant IN {t:Array(String)}"
            " AND metric IN ('request_volume', 'error_rate')", t=names)) >= 2 * len(self.closed) else None,
            timeout=120, what=lambda: f"the volume and error rate of every closed tenant-hour; stored: "
            f"{self.stored_points(client)}, status {rollup_status(settings)}, anomaly {anomaly_status(settings)}"
            f" (worker log: {worker.log})")
        assert sorted((t, epoch(m), n) for t, m, n, _ in stored) == \
            sorted((t, m.timestamp(), n) for (t, m), n in self.minutes.items()), \
            "one complete rollup per tenant-minute, with every request of it"
        assert max(p for *_, p in stored) > 1, "the minutes did combine parts of several partitions"
        counted = {(t, epoch(h)): n for t, h, n in rows(
            client, "SELECT tenant_id, toStartOfHour(ts), count() FROM requests FINAL"
            " WHERE tenant_id IN {t:Array(String)} GROUP BY tenant_id, toStartOfHour(ts)", t=names)}
        assert counted == {(t, h.timestamp()): n for (t, h), n in self.volume.items()}, "the stored requests"
        by_metric = {(m, t, epoch(ts)): v for t, ts, m, v in points}
        for t, h in self.closed:
            key = (t, h.timestamp())
            assert by_metric[("request_volume", *key)] == counted[key], f"request volume of {t} at {h}"
            assert by_metric[("error_rate", *key)] == pytest.approx(self.errors[(t, h)] / self.volume[(t, h)]), \
                f"error rate of {t} at {h}"
        assert rows(client, "SELECT count() FROM rl_rollups FINAL WHERE tenant_id IN {t:Array(String)} AND late",
                    t=names) == [(0,)], "no part came late"
        status = rollup_status(settings)
        assert status["combine_late_parts"] == 0, status
        assert status["late_events"] == 0, status


def test_closed_tenant_hours_count_every_request_once(settings_factory, worker_factory, writer_factory,
                                                       chdb_client, monkeypatch) -> None:
    """Across 4 partitions, each tenant-minute is one rollup and each closed hour's volume is the request count."""
    settings = settings_factory()
    ensure_topics(settings)
    monkeypatch.setenv("TW_SOURCE_IDLE_S", "1")  # the partitions go idle (and flush) a second after the end
    worker = worker_factory(settings, capabilities="ratelimit,anomaly")
    traffic = Traffic(settings.topic_prefix, seed=5)
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix) as pub:
        pub.publish_many(traffic.events)
        pub.flush()
        traffic.wait_and_check(settings, chdb_client, worker)


def test_a_killed_worker_resumes_both_stages_from_their_tables(settings_factory, worker_factory, writer_factory,
                                                               chdb_client, monkeypatch) -> None:
    """Killed (-9) with minutes open in both stages, restarted on the rest: rollups and hourly volumes still exact."""
    settings = settings_factory()
    ensure_topics(settings)
    # Long enough that no partition goes idle (and closes its last minute) before the kill.
    monkeypatch.setenv("TW_SOURCE_IDLE_S", "30")
    worker = worker_factory(settings, capabilities="ratelimit,anomaly")
    traffic = Traffic(settings.topic_prefix, seed=9)
    half = len(traffic.events) // 2
    inputs = [topic_name(settings.topic_prefix, t) for t in (Topic.REQUESTS, Topic.ROLLUP_PARTS, Topic.ROLLUPS)]
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix) as pub:
        pub.publish_many(traffic.events[:half])
        pub.flush()
        # Killed once the first half is committed (a kill between a checkpoint's writes and its
        # offset commit re-reads a batch whose counts are already in the rate limiter's table).
        wait_for(lambda: rollup_status(settings).get("combine_closed", 0) > 0
                 and caught_up(settings.broker, settings.app_id, inputs), timeout=120,
                 what=lambda: f"the first complete rollups, committed (worker log: {worker.log})")
        assert rollup_status(settings)["idle_announced"] == 0, "minutes still open at the kill"
        worker.stop(kill=True)
        pub.publish_many(traffic.events[half:])
        pub.flush()
        worker.start()
        traffic.wait_and_check(settings, chdb_client, worker)
