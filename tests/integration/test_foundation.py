"""End to end on the real stack: SDK → Kafka → worker / writer → ClickHouse, and the DLQ."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.adapters.clickhouse.sinks import ClickHouseSink, FlakySink
from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import InvalidEventError, Publisher
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def requests(tenant: str, n: int, start: datetime = T0) -> list[dict[str, Any]]:
    return [
        {"kind": "request", "event_id": f"{tenant}-r{i}", "ts": (start + timedelta(seconds=i)).isoformat(),
         "tenant_id": tenant, "ip": f"10.1.{i % 7}.{i % 200}", "method": "GET", "path": "/api/items",
         "status": 200 if i % 10 else 503, "latency_ms": 10.0 + i % 50, "bytes": 512}
        for i in range(n)
    ]


def scalar(client: Any, sql: str, **params: Any) -> Any:
    return client.query(sql, parameters=params).result_rows[0][0]


def test_sdk_events_reach_clickhouse(settings_factory, writer_factory, chdb_client):
    """Events of all four kinds published through the SDK land in their ClickHouse tables."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    billing = {"kind": "billing", "event_id": f"{tenant}-b1", "ts": T0.isoformat(), "tenant_id": tenant,
               "type": "charge_succeeded", "amount_minor": 4900, "currency": "EUR"}
    error = {"kind": "error", "event_id": f"{tenant}-e1", "ts": T0.isoformat(), "tenant_id": tenant,
             "service": "api", "error_type": "Timeout", "message": "upstream timed out"}
    usage = {"kind": "usage", "event_id": f"{tenant}-u1", "ts": T0.isoformat(), "tenant_id": tenant,
             "storage_bytes": 10**9, "active_users": 42}
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=50) as pub:
        pub.publish_many([*requests(tenant, 500), billing, error, usage])
        pub.flush()
        wait_for(lambda: scalar(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}",
                                t=tenant) == 500, what="500 requests in ClickHouse")
        for table in ("billing", "errors", "usage"):
            wait_for(lambda table=table: scalar(
                chdb_client, f"SELECT count() FROM {table} FINAL WHERE tenant_id={{t:String}}",  # noqa: S608 - fixed names
                t=tenant) == 1,
                what=f"a row in {table}")
    assert scalar(chdb_client, "SELECT countIf(status = 503) FROM requests FINAL WHERE tenant_id={t:String}",
                  t=tenant) == 50
    assert scalar(chdb_client, "SELECT amount_minor FROM billing FINAL WHERE tenant_id={t:String}", t=tenant) == 4900


def test_invalid_event_is_refused_by_the_sdk_and_not_sent(settings_factory):
    """The SDK raises a clear error for an invalid event and sends nothing for it."""
    settings = settings_factory()
    ensure_topics(settings)
    bad = requests("acme", 1)[0] | {"status": 999, "ip": "300.1.1.1"}
    with Publisher(settings.broker, prefix=settings.topic_prefix) as pub:
        with pytest.raises(InvalidEventError, match=r"ip: .*does not appear to be an IPv4 or IPv6.*status"):
            pub.publish(bad)
        assert pub.sent_events == 0


HOSTILE: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00garbage", "not a JSON object or array"),
    (b"[\xff\xfe]", "invalid JSON"),
    (b'{"kind": "request", "event_id": "x"}', "Field required"),
    (b'{"kind": "request", "event_id": "x", "ts": 5, "tenant_id": "a", "ip": "1.1.1.1", "method": "GET",'
     b' "path": "/", "status": "two hundred", "latency_ms": 1}', "status"),
    (b'{"kind": "billing", "event_id": "b", "ts": "2026-01-01T00:00:00Z", "tenant_id": "a", "type": "refund"}',
     "kind"),
    (b'{"__proto__": {"admin": true}, "kind": "request"}', "Extra inputs are not permitted"),
    (b"[" + b",".join([b"1"] * 20_001) + b"]", "exceeds"),
    (b"x" * (9 << 20), "exceeds"),
    (b"", "empty message"),
]


def test_malformed_messages_go_to_dlq_while_valid_ones_flow(settings_factory, worker_factory, writer_factory,
                                                             chdb_client):
    """Hostile payloads land in the DLQ with their reasons; valid events keep flowing."""
    from kafka import KafkaProducer

    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"dlq-{uuid.uuid4().hex[:6]}"
    worker = worker_factory(settings, capabilities="")
    topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
    producer = KafkaProducer(bootstrap_servers=settings.broker, max_request_size=16 << 20)
    good = requests(tenant, 20)
    mixed_batch = json.dumps([good[0], {"nope": 1}, good[1]]).encode()
    for value, _ in HOSTILE:
        producer.send(topic, value=value, partition=0)
    producer.send(topic, value=mixed_batch, partition=1)
    for event in good[2:]:
        producer.send(topic, value=json.dumps(event).encode(), key=f"{tenant}:{event['ip']}".encode())
    producer.flush()
    producer.close()
    with writer_factory(settings):
        expected_dead = len(HOSTILE) + 1
        dead_count = lambda: scalar(  # noqa: E731
            chdb_client, "SELECT count() FROM dead_letters FINAL WHERE source_topic={t:String}", t=topic)
        wait_for(lambda: dead_count() == expected_dead, timeout=90,
                 what=lambda: f"{expected_dead} dead letters, have {dead_count()} (worker log: {worker.log})")
        wait_for(lambda: scalar(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}",
                                t=tenant) == 20, what="the 20 valid requests")
    rows = chdb_client.query(
        "SELECT error, batch_index, payload_size, truncated FROM dead_letters FINAL WHERE source_topic={t:String}",
        parameters={"t": topic}).result_rows
    errors = [r[0] for r in rows]
    for _, reason in HOSTILE:
        assert any(reason in e for e in errors), f"no dead letter says {reason!r}: {errors}"
    assert any(r[1] == 1 and "nope" in r[0] for r in rows), "the bad item of the mixed batch, with its index"
    assert any(r[2] == 9 << 20 and r[3] for r in rows), "the oversized record, kept truncated"
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker kept running"


def test_writer_survives_failing_inserts_without_loss_or_duplicates(settings_factory, writer_factory, chdb_client):
    """During an insert outage the writer retries and pauses; afterwards every event is there exactly once."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"outage-{uuid.uuid4().hex[:6]}"
    sink = FlakySink(ClickHouseSink(chdb_client))
    sink.failing.set()
    n = 3000
    with writer_factory(settings, sink=sink, batch_rows=500, buffer_max_rows=1000, retry_max_s=0.5) as wt:
        with Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=100) as pub:
            pub.publish_many(requests(tenant, n))
        wait_for(lambda: wt.writer.stats.paused, what="the writer pausing on a full buffer")
        assert sink.failures > 0
        assert scalar(chdb_client, "SELECT count() FROM requests WHERE tenant_id={t:String}", t=tenant) == 0
        sink.failing.clear()
        wait_for(lambda: scalar(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}",
                                t=tenant) == n, what="all events after the outage")
    raw, distinct = chdb_client.query(
        "SELECT count(), uniqExact(event_id) FROM requests WHERE tenant_id={t:String}", parameters={"t": tenant}
    ).result_rows[0]
    assert distinct == n
    assert raw == n, "no event inserted twice (even before merges)"
