"""Hostile records on the real broker: no record stops a worker or the writer, each is dead-lettered
with its reason, and the valid events around it are stored."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

TS = datetime(2026, 5, 4, 12, 0, tzinfo=UTC).isoformat()


def request(tenant: str, i: int, **over: Any) -> dict[str, Any]:
    return {"kind": "request", "event_id": f"{tenant}-r{i}", "ts": TS, "tenant_id": tenant, "ip": "203.0.113.7",
            "method": "GET", "path": "/api", "status": 200, "latency_ms": 12.5} | over


def usage(tenant: str, i: int, **over: Any) -> dict[str, Any]:
    return {"kind": "usage", "event_id": f"{tenant}-u{i}", "ts": TS, "tenant_id": tenant, "storage_bytes": 10,
            "active_users": 3} | over


def count(client: Any, sql: str, **params: Any) -> int:
    return int(client.query(sql, parameters=params).result_rows[0][0])


def send_raw(broker: str, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker, max_request_size=16 << 20)
    for value in values:
        producer.send(topic, value=value, partition=0)
    producer.flush()
    producer.close()


def surrogate_batch(tenant: str) -> bytes:
    """The reported record: a small request batch whose path is a JSON-escaped lone surrogate."""
    text = json.dumps([request(tenant, 0, path="/\\ud800", ts="2026-05-04T12:00:00Z")], separators=(",", ":"))
    return text.replace("\\\\ud800", "\\ud800").encode()


def test_a_lone_surrogate_and_a_nesting_bomb_stop_neither_the_writer_nor_the_worker(
    settings_factory, worker_factory, writer_factory, chdb_client
):
    """The ~185-byte surrogate batch and 100,000 nested arrays or objects are dead-lettered; the writer
    keeps storing."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"poison-{uuid.uuid4().hex[:6]}"
    topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
    poison = surrogate_batch(tenant)
    assert b'"/\\ud800"' in poison
    assert len(poison) < 200
    worker = worker_factory(settings, capabilities="")
    with writer_factory(settings) as wt:
        send_raw(settings.broker, topic, [poison, b"[" * 100_000, b'{"a":' * 100_000])
        with Publisher(settings.broker, prefix=settings.topic_prefix) as pub:
            pub.publish_many(request(tenant, i) for i in range(1, 51))
        wait_for(lambda: count(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}",
                               t=tenant) == 50, what="the 50 valid requests sent after the poison")
        wait_for(lambda: count(chdb_client, "SELECT count() FROM dead_letters FINAL WHERE source_topic={t:String}",
                               t=topic) == 3, timeout=90, what=lambda: f"3 dead letters (worker log: {worker.log})")
        assert wt.thread.is_alive(), "the writer thread is still running"
        assert wt.writer.stats.records_skipped >= 3
    errors = sorted(r[0] for r in chdb_client.query(
        "SELECT error FROM dead_letters FINAL WHERE source_topic={t:String}", parameters={"t": topic}).result_rows)
    assert any("hex escape" in e for e in errors), errors  # jiter's words for a lone surrogate
    assert any("nested too deep" in e for e in errors), errors
    assert any("recursion limit" in e for e in errors), errors
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker kept running"


# Each coerced in the past: stored although the README's contract refuses it.
LOOSE_TYPES = [
    ("requests", "status", request, {"status": "200"}),
    ("requests", "latency_ms", request, {"latency_ms": "12.5"}),
    ("requests", "bytes", request, {"bytes": True}),
    ("requests", "status", request, {"status": 200.0}),
    ("requests", "ts", request, {"ts": 1777896000}),
    ("requests", "ts", request, {"ts": "1777896000"}),
    ("usage", "active_users", usage, {"active_users": "10"}),
]


def test_loosely_typed_events_are_dead_lettered_not_stored(settings_factory, worker_factory, writer_factory,
                                                           chdb_client):
    """Strings for numbers, booleans and 200.0 for integers, epoch timestamps: dead letters, never rows."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"loose-{uuid.uuid4().hex[:6]}"
    by_topic: dict[str, list[bytes]] = {"requests": [], "usage": []}
    for i, (table, _field, make, over) in enumerate(LOOSE_TYPES):
        by_topic[table].append(json.dumps(make(tenant, i, **over)).encode())
    # one batch record too: its loose events are refused one by one, its valid one stored
    by_topic["requests"].append(json.dumps([request(tenant, 100), request(tenant, 101, status="201"),
                                            request(tenant, 102, ts=1777896000.0)]).encode())
    by_topic["usage"].append(json.dumps(usage(tenant, 100)).encode())
    worker = worker_factory(settings, capabilities="")
    with writer_factory(settings):
        for table, values in by_topic.items():
            send_raw(settings.broker, topic_name(settings.topic_prefix, Topic(table)), values)
        wait_for(lambda: count(chdb_client, "SELECT count() FROM usage FINAL WHERE tenant_id={t:String}",
                               t=tenant) == 1, what="the valid usage event")
        wait_for(lambda: count(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}",
                               t=tenant) >= 1, what="the valid request of the batch")
        dead = f"{settings.topic_prefix}.%"
        wait_for(lambda: count(chdb_client, "SELECT count() FROM dead_letters FINAL WHERE source_topic LIKE {p:String}",
                               p=dead) == len(LOOSE_TYPES) + 2, timeout=90,
                 what=lambda: f"{len(LOOSE_TYPES) + 2} dead letters (worker log: {worker.log})")
    stored = {r[0] for r in chdb_client.query("SELECT event_id FROM requests FINAL WHERE tenant_id={t:String}",
                                              parameters={"t": tenant}).result_rows}
    assert stored == {f"{tenant}-r100"}, "only the valid request is stored"
    errors = [r[0] for r in chdb_client.query(
        "SELECT error FROM dead_letters FINAL WHERE source_topic LIKE {p:String}", parameters={"p": dead}).result_rows]
    for _table, field, _make, over in LOOSE_TYPES:
        assert any(e.startswith(f"{field}: ") or f"{field}: " in e for e in errors), (over, errors)


def test_dead_letters_of_a_record_larger_than_a_kafka_message_are_all_stored(
    settings_factory, worker_factory, writer_factory, chdb_client
):
    """A 7.95 MB record of 9,000 invalid events gives 9,000 dead letters, split over several records."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"big-{uuid.uuid4().hex[:6]}"
    topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
    # status 999 is out of range under any contract; the long path makes each event ~880 bytes
    events = [request(tenant, i, status=999, path="/" + "x" * 700) for i in range(9000)]
    value = json.dumps(events).encode()
    assert 7_900_000 < len(value) < 8 << 20
    worker = worker_factory(settings, capabilities="")
    send_raw(settings.broker, topic, [value])
    with writer_factory(settings):
        wait_for(lambda: count(chdb_client, "SELECT count() FROM dead_letters FINAL WHERE source_topic={t:String}",
                               t=topic) == 9000, timeout=120,
                 what=lambda: f"9,000 dead letters (worker log: {worker.log})")
    assert count(chdb_client, "SELECT uniqExact(batch_index) FROM dead_letters FINAL WHERE source_topic={t:String}",
                 t=topic) == 9000
    assert "MessageSizeTooLarge" not in worker.output()
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker kept running"
