"""Helpers of the anomaly integration tests: a module-scoped worker + writer, producing, reading."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.runtime.codec import Codec, encode_batch
from pipeline.runtime.topics import Topic, topic_name
from pipeline.settings import Settings
from schemas.anomaly import MetricName, MetricPoint
from tests.conftest import WorkerProcess, wait_for

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)


def make_settings(kafka: str, session_dir: Path) -> Settings:
    prefix = f"a{uuid.uuid4().hex[:8]}"
    return Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=session_dir / prefix,
                    clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4)


def produce(settings: Settings, topic: Topic, records: Iterable[tuple[str, BaseModel]], chunk: int = 500,
            slice_of: Callable[[BaseModel], Any] | None = None) -> int:
    """Send (key, record) pairs as JSON-array Kafka records, in order per key.

    With `slice_of` (e.g. the record's hour), records are grouped by (slice, key) in order of
    first appearance, so a partition shared by several keys still advances in event time, as a
    live producer's would (the agent's watermark is per partition, not per key).
    """
    from kafka import KafkaProducer

    groups: dict[tuple[Any, str], list[BaseModel]] = {}
    for key, record in records:
        groups.setdefault((slice_of(record) if slice_of else None, key), []).append(record)
    producer = KafkaProducer(bootstrap_servers=settings.broker, linger_ms=20, max_request_size=8 << 20, acks="all")
    name = topic_name(settings.topic_prefix, topic)
    sent = 0
    for (_, key), recs in groups.items():
        for i in range(0, len(recs), chunk):
            producer.send(name, key=key.encode(), value=encode_batch(recs[i:i + chunk]))
            sent += len(recs[i:i + chunk])
    producer.flush()
    producer.close()
    return sent


def series(tenant: str, metric: MetricName, hours: int, level: float, *, seed: int, noise: float = 0.05,
           start: datetime = T0, effect: dict[int, float] | None = None) -> list[MetricPoint]:
    """Hourly points with a daily cycle and multiplicative noise; `effect[hour]` multiplies a point."""
    rng = random.Random(seed)
    out = []
    for h in range(hours):
        daily = 1 + 0.3 * math.sin(2 * math.pi * (h % 24) / 24)
        value = level * daily * rng.gauss(1, noise) * (effect or {}).get(h, 1.0)
        out.append(MetricPoint(tenant=tenant, metric=metric, ts=start + h * HOUR, value=max(value, 0.0)))
    return out


def _aware(value: Any) -> Any:
    """chDB hands DateTime64(3, 'UTC') back naive: make it an aware UTC datetime."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def rows(client: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(_aware(v) for v in r) for r in client.query(sql, parameters=params).result_rows]


def anomalies(client: Any, tenant: str) -> list[dict[str, Any]]:
    """The latest version of each anomaly of `tenant`."""
    result = client.query("SELECT * FROM anomalies FINAL WHERE tenant = {t:String} ORDER BY start_ts",
                          parameters={"t": tenant})
    return [{k: _aware(v) for k, v in zip(result.column_names, r, strict=True)} for r in result.result_rows]


def wait_for_anomaly(client: Any, tenant: str, metric: MetricName, timeout: float = 150.0,
                     **match: Any) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for a in anomalies(client, tenant):
            if a["metric"] == metric.value and all(a[k] == v for k, v in match.items()):
                return a
        return None

    return wait_for(found, timeout=timeout, what=lambda: f"a {metric.value} anomaly of {tenant} {match or ''}"
                    f" (have {[(a['metric'], a['status']) for a in anomalies(client, tenant)]})")


def read_topic(settings: Settings, topic: Topic, model: type[BaseModel], timeout_s: float = 5.0) -> Iterator[Any]:
    """Everything on `topic` so far (from the beginning), decoded."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    name = topic_name(settings.topic_prefix, topic)
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    try:
        parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        codec: Codec[Any] = Codec(model)
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for messages in consumer.poll(timeout_ms=int(timeout_s * 1000)).values():
                for msg in messages:
                    yield from codec.decode(msg.value)[0]
    finally:
        consumer.close()


def start_worker(settings: Settings) -> WorkerProcess:
    return WorkerProcess(settings, capabilities="anomaly").start()


def hours_between(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds() / 3600


def metric_names(points: Sequence[MetricPoint]) -> set[str]:
    return {p.metric.value for p in points}
