"""The ClickHouse writer on a real broker: no group to get stuck in, outages waited out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from pipeline.adapters.kafka_admin import committed_offsets, end_offsets, ensure_topics
from pipeline.devstack.kafka import KafkaBroker
from pipeline.runtime.topics import TOPICS, topic_name
from pipeline.sdk import Publisher
from pipeline.settings import Settings
from tests.conftest import free_port, wait_for
from tests.integration.test_foundation import requests, scalar

pytestmark = pytest.mark.integration


def stored(client: Any, tenant: str) -> int:
    return int(scalar(client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}", t=tenant))


def test_manual_writer_commits_without_joining_a_group(settings_factory, writer_factory, chdb_client):
    """With chDB the writer owns every partition itself: rows stored, offsets committed, no group member."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"solo-{uuid.uuid4().hex[:6]}"
    group = f"{settings.app_id}-writer"
    topics = [topic_name(settings.topic_prefix, t) for t in TOPICS]
    with writer_factory(settings) as w, Publisher(settings.broker, prefix=settings.topic_prefix,
                                                  batch_events=20) as pub:
        pub.publish_many(requests(tenant, 400))
        pub.flush()
        wait_for(lambda: stored(chdb_client, tenant) == 400, what="400 requests in ClickHouse")
        ends = end_offsets(settings.broker, topics)
        wait_for(lambda: all(committed_offsets(settings.broker, group).get(k, 0) >= end
                             for k, end in ends.items() if end), what="every offset committed")
        assert w.writer.source.reconnects == 0
        assert w.writer.source.refused_commits == 0
        admin = KafkaAdminClient(bootstrap_servers=settings.broker)
        try:
            description = admin.describe_groups([group])[group]
        finally:
            admin.close()
        assert not description["members"]  # no membership, so no rebalance can strand it


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own, which it may stop and start again."""
    broker = KafkaBroker(cache_dir=Settings().cache_dir, work_dir=tmp_path / "kafka", version=Settings().kafka_version,
                         port=free_port(), controller_port=free_port(), partitions=2)
    yield broker
    broker.stop()


@pytest.mark.slow
def test_writer_starts_before_the_broker_and_rides_out_an_outage(own_broker, writer_factory, chdb_client, tmp_path):
    """A writer started with no broker waits for it, survives a 20 s outage, and stores every row."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = Settings(broker=own_broker.bootstrap, topic_prefix=prefix, app_id=f"tw-{prefix}",
                        data_dir=tmp_path / "data", partitions=2)
    tenant = f"outage-{uuid.uuid4().hex[:6]}"
    batch = requests(tenant, 300)
    with writer_factory(settings) as w:
        wait_for(lambda: w.writer.source.connect_failures >= 1, what="the writer trying a broker that is not there")
        own_broker.start(timeout=120)
        ensure_topics(settings)
        with Publisher(settings.broker, prefix=prefix, batch_events=25) as pub:
            pub.publish_many(batch[:150])
            pub.flush()
        wait_for(lambda: stored(chdb_client, tenant) == 150, timeout=90, what="the rows sent before the outage")

        own_broker.stop()
        outage_ends = time.monotonic() + 20  # the scenario: a 20 s outage while the writer polls on
        while time.monotonic() < outage_ends:
            assert w.thread.is_alive(), "the writer stopped during the outage"
            time.sleep(0.5)
        own_broker.start(timeout=120)

        with Publisher(settings.broker, prefix=prefix, batch_events=25) as pub:
            pub.publish_many(batch[150:])
            pub.flush()
        wait_for(lambda: stored(chdb_client, tenant) == 300, timeout=120, what="every row after the outage")
        assert w.thread.is_alive()
