"""Records compressed by the producer, with every codec Kafka has, are read by the worker and the writer.

Kafka clients (the Java client, librdkafka, franz-go, Sarama) compress record batches on request.
Without cramjam installed, aiokafka could not unpack an lz4, snappy or zstd batch: the worker's
fetcher crashed (`UnsupportedCodecError`) and the worker with it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.adapters.kafka_config import missing_codecs
from pipeline.runtime.topics import Topic, topic_name
from tests.conftest import events_processed, wait_for

pytestmark = pytest.mark.integration

TS = datetime(2026, 5, 4, 12, 0, tzinfo=UTC).isoformat()
CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 40


def request(tenant: str, i: int) -> dict[str, Any]:
    return {"kind": "request", "event_id": f"{tenant}-r{i}", "ts": TS, "tenant_id": tenant, "ip": "198.51.100.9",
            "method": "GET", "path": "/api", "status": 200, "latency_ms": 3.5}


def test_every_codec_is_readable_by_both_kafka_clients() -> None:
    """What the worker and the writer check before they start (they refuse to start otherwise)."""
    assert missing_codecs() == []


def test_records_compressed_with_each_codec_are_processed_and_stored(
    settings_factory, worker_factory, writer_factory, chdb_client
):
    from kafka import KafkaProducer

    settings = settings_factory()
    ensure_topics(settings)
    topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
    tenants = {codec: f"zip-{codec}-{uuid.uuid4().hex[:6]}" for codec in CODECS}
    worker = worker_factory(settings, capabilities="ratelimit")
    with writer_factory(settings):
        for codec, tenant in tenants.items():
            producer = KafkaProducer(bootstrap_servers=settings.broker, compression_type=codec, linger_ms=50)
            for i in range(PER_CODEC):  # one event per record, several records per compressed batch
                value = json.dumps(request(tenant, i)).encode()
                producer.send(topic, key=f"{tenant}:198.51.100.9".encode(), value=value)
            producer.flush()
            producer.close()
        total = PER_CODEC * len(CODECS)
        wait_for(lambda: events_processed(settings) >= total, timeout=120,
                 what=lambda: f"the worker processing {total} requests (log: {worker.log})")
        for codec, tenant in tenants.items():
            wait_for(lambda t=tenant: chdb_client.query(
                "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}", parameters={"t": t}
            ).result_rows[0][0] == PER_CODEC, timeout=120, what=f"the writer storing the {codec} records")
    assert events_processed(settings) == total
