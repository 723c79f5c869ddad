"""A worker whose consumer skips records notices, reads them again, and commits nothing past them.

Faust drops fetched records in several places around a rebalance and counts on a seek back to
repair it; the chaos suite once saw a worker skip the first records of partitions it took over,
and commit past them. Here the consumer of a real worker loses chosen records the first time
it fetches them (a `sitecustomize` wraps Faust's `Consumer.getmany`), and the worker must still
process each published event exactly once (`pipeline.runtime.offsets`).
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from pipeline.adapters.kafka_admin import caught_up, ensure_topics
from pipeline.runtime.topics import Topic, topic_name
from tests.conftest import events_processed, wait_for, worker_statuses
from tests.integration.test_foundation import requests

pytestmark = pytest.mark.integration

LOSE_ONCE = textwrap.dedent('''
    import os

    _spec = os.environ.get("TW_TEST_LOSE_ONCE")
    if _spec:
        from faust.transport import consumer as _consumer

        _lose = set()
        for _item in _spec.split(";"):
            _topic, _p, _offsets = _item.split(":")
            _lose.update((_topic, int(_p), int(o)) for o in _offsets.split(","))
        _getmany = _consumer.Consumer.getmany

        async def getmany(self, timeout):
            async for tp, message in _getmany(self, timeout):
                key = (tp.topic, tp.partition, message.offset)
                if key in _lose:  # fetched, position moved past it, never handed over
                    _lose.discard(key)
                    print("test: lost", key, flush=True)
                    continue
                yield tp, message

        _consumer.Consumer.getmany = getmany
''')


def test_records_the_consumer_skipped_are_read_again_and_counted_once(settings_factory: Any, worker_factory: Any,
                                                                      tmp_path: Path, monkeypatch: Any) -> None:
    settings = settings_factory()
    ensure_topics(settings)
    topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
    tenant = f"skip-{uuid.uuid4().hex[:6]}"
    events = requests(tenant, 90)
    producer = KafkaProducer(bootstrap_servers=settings.broker)
    for i, event in enumerate(events):  # 30 records a partition (0-2), offsets 0-29
        producer.send(topic, value=json.dumps(event).encode(), partition=i % 3)
    producer.flush()
    producer.close()

    (tmp_path / "sitecustomize.py").write_text(LOSE_ONCE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    # The head of a never-committed partition (the chaos case), records in the middle of one, and
    # the last records of one (no later record shows the gap).
    monkeypatch.setenv("TW_TEST_LOSE_ONCE", f"{topic}:0:0,1;{topic}:1:10,11,12;{topic}:2:28,29")
    worker = worker_factory(settings, capabilities="")

    wait_for(lambda: caught_up(settings.broker, settings.app_id, [topic]), timeout=120,
             what=lambda: f"the worker committing every record of {topic} (log: {worker.log})")
    assert worker.output().count("test: lost") == 7, "the consumer lost the chosen records"
    wait_for(lambda: events_processed(settings) == len(events), timeout=30,
             what=lambda: f"{len(events)} requests processed, have {events_processed(settings)}")
    offsets = worker_statuses(settings)[0]["extra"]["offsets"]
    assert offsets["skips_refetched"] == 2, offsets
    assert offsets["gaps_without_records"] == 0, offsets
    assert offsets["tail_seeks"] == 1, offsets
    assert "were skipped by the consumer; reading them again" in worker.output()
    assert "records 28-29 were fetched but never processed; reading them again" in worker.output()
    assert worker.proc is not None
    assert worker.proc.poll() is None
