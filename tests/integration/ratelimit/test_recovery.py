"""A worker killed mid-stream restarts with its counters and bans: they live in changelogged tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import caught_up, ensure_topics
from pipeline.runtime.topics import Topic, topic_name
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import WorkerProcess, wait_for
from tests.integration.ratelimit.conftest import (
    T0,
    admin,
    make_settings,
    publish,
    requests,
    rows,
    start_writer,
    tenant_name,
    ticks,
)

pytestmark = pytest.mark.integration

COUNTED, ABUSER = "192.0.2.20", "192.0.2.66"


def naive(d: datetime) -> datetime:
    """UTC without tzinfo, as chDB returns DateTime64(3, 'UTC')."""
    return d.replace(tzinfo=None)


@pytest.fixture
def crashable(kafka: str, session_dir: Path, chdb_client: Any) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A worker of our own (the test kills it) and a writer."""
    settings = make_settings(kafka, session_dir)
    ensure_topics(settings)
    worker = WorkerProcess(settings, "ratelimit").start()
    writer = start_writer(settings, chdb_client)
    try:
        yield settings, worker
    finally:
        writer.__exit__(None, None, None)
        worker.stop()


def test_kill_and_restart_keeps_counters_and_bans(crashable: tuple[Settings, WorkerProcess], chdb_client: Any) -> None:
    """After kill -9 and restart, the hour counter continues from 15 and the 1 h ban still holds, then ends."""
    settings, worker = crashable
    tenant = tenant_name("crash")
    assert admin(settings, Action.LIMITS_SET, tenant, per_minute=None, per_hour=20, per_day=None,
                 violation_threshold=2, ban_base_s=3600).outcome == "accepted"
    # the abuser's 21st request is a first violation, its 41st (T0+80) a second: banned for an hour
    publish(settings, [*requests(tenant, COUNTED, 15, step_s=10), *requests(tenant, ABUSER, 45, step_s=2)])
    source = topic_name(settings.topic_prefix, Topic.REQUESTS)
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM rl_bans FINAL WHERE tenant_id = {t:String}",
                          t=tenant)[0][0] == 1, timeout=180, what="the abuser's ban")
    wait_for(lambda: caught_up(settings.broker, settings.app_id, [source]), timeout=120,
             what="the worker committing its input (state written before offsets)")
    worker.stop(kill=True)
    worker.start()
    after = T0 + timedelta(seconds=200)
    banned_minute = T0 + timedelta(seconds=600)
    ban_over = T0 + timedelta(seconds=80 + 3600 + 100)
    publish(settings, [*requests(tenant, COUNTED, 10, start=after), *requests(tenant, ABUSER, 1, start=banned_minute),
                       *ticks(tenant, banned_minute + timedelta(seconds=70)),
                       *requests(tenant, ABUSER, 1, start=ban_over)])
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM rl_bans FINAL WHERE tenant_id = {t:String}",
                          t=tenant)[0][0] == 2, timeout=180, what=lambda: f"the ban ending (log {worker.log})")
    # The writer inserts topic by topic: wait until it has stored every decision the worker made.
    outputs = [topic_name(settings.topic_prefix, t) for t in (Topic.DECISIONS, Topic.ROLLUPS)]
    wait_for(lambda: caught_up(settings.broker, settings.app_id, [source]) and
             caught_up(settings.broker, f"{settings.app_id}-writer", outputs),
             timeout=120, what="the worker's decisions and rollups stored")
    counted = rows(chdb_client, "SELECT state, reason, limit, ts FROM rl_decisions FINAL "
                                "WHERE tenant_id = {t:String} AND ip = {ip:String} ORDER BY ts", t=tenant, ip=COUNTED)
    # The 20th request uses 20/hour up, the 21st is throttled. COUNTED's partition may also have
    # been moved an hour on by the abuser's partition once it idled (source_idle_s) before this
    # query: then the throttle has lifted, in event time, as COUNTED's first requests left the hour.
    assert [r[:3] for r in counted[:2]] == [("allowed", "exhausted:hour", 20), ("throttled", "limit:hour", 20)]
    assert counted[0][3] == naive(after + timedelta(seconds=4)), "the 20th request overall uses 20/hour up"
    assert counted[1][3] == naive(after + timedelta(seconds=5)), "the 21st request overall, the 6th after the restart"
    assert [r[:3] for r in counted[2:]] in ([], [("allowed", "reset", 20)])
    assert all(naive(T0 + timedelta(hours=1)) < r[3] <= naive(ban_over) for r in counted[2:])
    bans = rows(chdb_client, "SELECT action, start, end FROM rl_bans FINAL WHERE tenant_id = {t:String} "
                             "ORDER BY ts, action DESC", t=tenant)
    start = naive(T0 + timedelta(seconds=80))
    assert bans == [("started", start, start + timedelta(hours=1)), ("ended", start, start + timedelta(hours=1))]
    wait_for(lambda: rows(chdb_client, "SELECT requests, blocked FROM rl_rollups_tenant WHERE tenant_id = {t:String} "
                                       "AND minute = {m:DateTime64(3, 'UTC')}", t=tenant, m=banned_minute),
             timeout=120, what="the rollup of the minute with the banned request")
    assert rows(chdb_client, "SELECT requests, blocked FROM rl_rollups_tenant WHERE tenant_id = {t:String} "
                             "AND minute = {m:DateTime64(3, 'UTC')}", t=tenant, m=banned_minute) == [(1, 1)]
    # Minute 2 (T0+120..180) was still open at the kill (its requests at +120, +130, +140; the
    # watermark at +135): its counts came back from the table, nothing lost, nothing doubled.
    minutes = rows(chdb_client, "SELECT dateDiff('minute', {t0:DateTime64(3, 'UTC')}, minute), requests "
                                "FROM rl_rollups_tenant WHERE tenant_id = {t:String} "
                                "AND minute < {m:DateTime64(3, 'UTC')} ORDER BY minute",
                   t=tenant, t0=T0, m=T0 + timedelta(minutes=3))
    assert minutes == [(0, 36), (1, 21), (2, 3)]
