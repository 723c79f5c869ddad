"""One request dated 2099 cannot close the rollup minutes of the requests after it on its partition."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.ops.processes import status_dir
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import partition_for
from tests.conftest import wait_for
from tests.integration.ratelimit.conftest import T0, publish, requests, rows, tenant_name, ticks

pytestmark = pytest.mark.integration


def ip_on(tenant: str, partition: int, partitions: int, skip: int = 0) -> str:
    """An IP whose requests of `tenant` go to `partition` (requests are keyed `tenant:ip`)."""
    ips = (f"198.51.100.{i}" for i in range(1, 255))
    return [ip for ip in ips if partition_for(f"{tenant}:{ip}", partitions) == partition][skip]


def records_consumed(settings: Any) -> int:
    """Request records the worker has processed, from its status file."""
    total = 0
    for path in status_dir(settings).glob("worker-*.json"):
        with contextlib.suppress(OSError, ValueError):  # replaced while read
            total += json.loads(path.read_text()).get("records", {}).get("requests", 0)
    return total


def test_a_2099_request_hides_none_of_the_215_requests_after_it_from_the_rollups(
    settings_factory, worker_factory, writer_factory, chdb_client
):
    """Would fail as reported (215 of 215 later requests missing from the rollups) if one request
    dated 2099 moved its partition's time; it lands in the dead letters with its reason instead."""
    settings = settings_factory()
    ensure_topics(settings)
    victim, other, evil = tenant_name("vic"), tenant_name("oth"), tenant_name("evil")
    p, n = 2, settings.partitions
    before = [*requests(victim, ip_on(victim, p, n), 5), *requests(other, ip_on(other, p, n), 5)]
    far = requests(evil, ip_on(evil, p, n), 1, start=T0.replace(year=2099))
    later = [*requests(victim, ip_on(victim, p, n), 115, start=T0 + timedelta(seconds=30), step_s=1.0),
             *requests(victim, ip_on(victim, p, n, skip=1), 100, start=T0 + timedelta(seconds=60), step_s=1.2)]
    assert len(later) == 215
    worker_factory(settings, capabilities="ratelimit")
    with writer_factory(settings):
        publish(settings, before)
        publish(settings, far)
        # As reported: the later requests reach the worker after it has processed the 2099 one.
        wait_for(lambda: records_consumed(settings) >= 2, timeout=120, what="the first two records processed")
        publish(settings, later)
        publish(settings, ticks(other, T0 + timedelta(minutes=10), n))  # every minute above ends
        expected = 5 + len(later)

        def counted() -> int:
            return rows(chdb_client, "SELECT sum(requests) FROM rl_rollups_tenant WHERE tenant_id = {t:String}",
                        t=victim)[0][0]

        wait_for(lambda: counted() >= expected, timeout=180,
                 what=lambda: f"the victim's {expected} requests in the rollups (counted: {counted()})")
        requests_topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
        dead = wait_for(lambda: rows(chdb_client, "SELECT stage, partition, error, payload_b64 FROM dead_letters "
                                     "FINAL WHERE source_topic = {s:String}", s=requests_topic),
                        timeout=120, what="the 2099 request in the dead letters")
    total = rows(chdb_client, "SELECT sum(requests), count() FROM rl_rollups_tenant WHERE tenant_id = {t:String}",
                 t=victim)
    assert total == [(expected, 3)]  # minutes 09:00 to 09:02, each closed once
    assert rows(chdb_client, "SELECT count() FROM rl_rollups_tenant WHERE tenant_id = {t:String}", t=evil) == [(0,)]
    ((stage, partition, error, payload),) = dead
    assert (stage, partition) == ("event-time", p)
    assert error.startswith("too far ahead: event time 2099-03-02T09:00:00Z")
    assert json.loads(base64.b64decode(payload))["tenant_id"] == evil
