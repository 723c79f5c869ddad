"""Rollups combined across four requests partitions: one row per tenant-minute, metrics exact."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.kafka_admin import ensure_topics
from pipeline.processes import status_dir
from pipeline.sdk import Publisher
from schemas.events import RequestEvent
from tests.conftest import wait_for
from tests.integration.ratelimit.conftest import T0, rows

pytestmark = pytest.mark.integration

HOURS, TENANTS, IPS, N = 5, 12, 16, 4000


def epoch(ts: datetime) -> float:
    """Seconds of a stored time (chDB may give it naive, meaning UTC)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def rollup_status(settings: Any) -> dict[str, int]:
    """The workers' rollup figures (status files), summed."""
    total: Counter[str] = Counter()
    for path in status_dir(settings).glob("worker-*.json"):
        total.update(json.loads(path.read_text()).get("extra", {}).get("rollups", {}))
    return dict(total)


def test_closed_tenant_hours_count_every_request_once(settings_factory, worker_factory, writer_factory,
                                                       chdb_client, monkeypatch) -> None:
    """Across 4 partitions, each tenant-minute is one rollup and each closed hour's volume is the request count."""
    settings = settings_factory()
    ensure_topics(settings)
    monkeypatch.setenv("TW_SOURCE_IDLE_S", "1")  # the partitions go idle (and flush) a second after the end
    worker = worker_factory(settings, capabilities="ratelimit,anomaly")
    rng = random.Random(5)
    tenants = [f"{settings.topic_prefix}-t{i}" for i in range(TENANTS)]
    events = sorted((RequestEvent(event_id=f"e{n}", ts=T0 + timedelta(seconds=rng.uniform(0, HOURS * 3600)),
                                  tenant_id=rng.choice(tenants), ip=f"203.0.113.{rng.randrange(IPS)}", method="GET",
                                  path="/x", status=rng.choice([200, 200, 200, 404, 503]),
                                  latency_ms=rng.uniform(1, 300)) for n in range(N)), key=lambda e: e.ts)
    hour = lambda e: e.ts.replace(minute=0, second=0, microsecond=0)  # noqa: E731
    minutes = Counter((e.tenant_id, e.ts.replace(second=0, microsecond=0)) for e in events)
    volume = Counter((e.tenant_id, hour(e)) for e in events)
    errors = Counter((e.tenant_id, hour(e)) for e in events if e.status >= 500)
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix) as pub:
        pub.publish_many(events)
        pub.flush()
        stored = wait_for(lambda: rows(chdb_client, "SELECT tenant_id, minute, requests, parts FROM rl_rollups FINAL"
                                       " WHERE tenant_id IN {t:Array(String)} AND NOT late", t=tenants)
                          if rows(chdb_client, "SELECT count() FROM rl_rollups FINAL WHERE tenant_id IN"
                                  " {t:Array(String)}", t=tenants)[0][0] >= len(minutes) else None,
                          timeout=180, what=lambda: f"a rollup for each of {len(minutes)} tenant-minutes, status "
                          f"{rollup_status(settings)} (worker log: {worker.log})")
        # Hours close per tenant partition once a later minute arrives there: all but the last.
        closed = [(t, T0 + timedelta(hours=h)) for t in tenants for h in range(HOURS - 1)]
        points = wait_for(lambda: got if len(got := rows(
            chdb_client, "SELECT tenant, ts, metric, value FROM metric_points FINAL WHERE tenant IN {t:Array(String)}"
            " AND metric IN ('request_volume', 'error_rate')", t=tenants)) >= 2 * len(closed) else None,
            timeout=120, what="the request volume and error rate of every closed tenant-hour")
    assert sorted((t, epoch(m), n) for t, m, n, _ in stored) == \
        sorted((t, m.timestamp(), n) for (t, m), n in minutes.items()), \
        "one complete rollup per tenant-minute, with every request of it"
    assert max(p for *_, p in stored) > 1, "the minutes did combine parts of several partitions"
    counted = {(t, epoch(h)): n for t, h, n in rows(
        chdb_client, "SELECT tenant_id, toStartOfHour(ts), count() FROM requests FINAL"
        " WHERE tenant_id IN {t:Array(String)} GROUP BY tenant_id, toStartOfHour(ts)", t=tenants)}
    assert counted == {(t, h.timestamp()): n for (t, h), n in volume.items()}, "the stored requests"
    by_metric = {(m, t, epoch(ts)): v for t, ts, m, v in points}
    for t, h in closed:
        key = (t, h.timestamp())
        assert by_metric[("request_volume", *key)] == counted[key], f"request volume of {t} at {h}"
        assert by_metric[("error_rate", *key)] == pytest.approx(errors[(t, h)] / volume[(t, h)]), \
            f"error rate of {t} at {h}"
    status = rollup_status(settings)
    assert status["combine_late_parts"] == 0, status
    assert status["late_events"] == 0, status
