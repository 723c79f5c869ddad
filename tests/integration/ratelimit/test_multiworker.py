"""Two rate-limit workers share the requests partitions: every decision once, rollups exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import caught_up, ensure_topics
from pipeline.ops.processes import status_dir
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

N_IPS, PER_IP, LIMIT = 40, 12, 10


def group_members(settings: Settings) -> int:
    """Members of the worker group once it is stable (0 while it rebalances)."""
    import logging

    from kafka.admin import KafkaAdminClient

    # kafka-python cannot decode Faust's assignor metadata and logs every member's bytes
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    client = KafkaAdminClient(bootstrap_servers=settings.broker)
    try:
        group = client.describe_groups([settings.app_id]).get(settings.app_id, {})
    finally:
        client.close()
    return len(group.get("members", ())) if group.get("group_state") == "Stable" else 0


def requests_seen(settings: Settings) -> dict[str, int]:
    """Request events each running worker has processed, from their status files."""
    seen = {}
    for path in status_dir(settings).glob("worker-*.json"):
        status = json.loads(path.read_text())
        seen[path.stem] = sum(v for k, v in status["events"].items() if "request" in k.lower())
    return seen


@pytest.fixture
def two_workers(kafka: str, session_dir: Path, chdb_client: Any) -> Iterator[Settings]:
    settings = make_settings(kafka, session_dir)
    ensure_topics(settings)
    workers = [WorkerProcess(settings, "ratelimit").start()]
    writer = start_writer(settings, chdb_client)
    try:
        yield settings, workers
    finally:
        writer.__exit__(None, None, None)
        for w in workers:
            w.stop()


def test_two_workers_decide_once_and_rollup_parts_add_up(two_workers: Any, chdb_client: Any) -> None:
    settings, workers = two_workers
    tenant = tenant_name("multi")
    assert admin(settings, Action.LIMITS_SET, tenant, per_minute=LIMIT, per_hour=None, per_day=None,
                 violation_threshold=100).outcome == "accepted"
    workers.append(WorkerProcess(settings, "ratelimit").start())
    wait_for(lambda: group_members(settings) == 2, timeout=120, what="a stable group of two workers")
    ips = [f"198.51.100.{i}" for i in range(1, N_IPS + 1)]
    # every IP sends 12 requests in minute 0 (its 11th and 12th over the limit of 10 a minute)
    publish(settings, [e for ip in ips for e in requests(tenant, ip, PER_IP, step_s=4)])
    publish(settings, ticks(tenant, T0 + timedelta(seconds=70)))
    source = topic_name(settings.topic_prefix, Topic.REQUESTS)
    outputs = [topic_name(settings.topic_prefix, t) for t in (Topic.DECISIONS, Topic.ROLLUPS)]
    wait_for(lambda: caught_up(settings.broker, settings.app_id, [source]), timeout=180,
             what="the workers committing every request")
    wait_for(lambda: caught_up(settings.broker, f"{settings.app_id}-writer", outputs), timeout=120,
             what="the writer storing every decision and rollup")
    # Status files are rewritten once a second: wait until they account for every request.
    published = N_IPS * PER_IP + settings.partitions  # the requests and one tick per partition
    wait_for(lambda: sum(requests_seen(settings).values()) >= published, timeout=30,
             what="the workers' status files counting every request")
    seen = requests_seen(settings)
    assert len(seen) == 2, f"two workers running: {seen}"
    assert sum(seen.values()) == published, f"each request processed once: {seen}"
    assert all(n > 0 for n in seen.values()), f"both workers took partitions: {seen}"
    decisions = rows(chdb_client, "SELECT ip, state FROM rl_decisions FINAL WHERE tenant_id = {t:String}", t=tenant)
    # each IP's 10th request uses the quota up (announced "allowed"), its 11th is throttled
    assert sorted(decisions) == sorted((ip, state) for ip in ips for state in ("allowed", "throttled")), \
        "each IP announced and throttled once, by one worker"
    minute = rows(chdb_client, "SELECT parts, requests, blocked, distinct_ips FROM rl_rollups_tenant "
                               "WHERE tenant_id = {t:String} AND minute = {m:DateTime64(3, 'UTC')}", t=tenant, m=T0)
    assert minute == [(4, N_IPS * PER_IP, N_IPS * (PER_IP - LIMIT), N_IPS)] or (
        len(minute) == 1 and minute[0][1:] == (N_IPS * PER_IP, N_IPS * (PER_IP - LIMIT), N_IPS)
        and 1 < minute[0][0] <= 4), f"the minute's parts add up: {minute}"
