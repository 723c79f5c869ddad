"""Prometheus metrics of a tenantwatch process, and the HTTP endpoint that serves them.

Two kinds, both in `REGISTRY` (a registry of our own, so tests and several runtimes in one
process never collide with the global default):

- figures the process already keeps (the runtime's per-topic counters and capability status,
  the writer's stats) are read at scrape time by a collector: register it once with
  `register_runtime(runtime)` / `register_writer(writer)`; nothing is added to the hot path;
- figures that need one call where they happen: `observe_writer_batch(rows, seconds)` after a
  successful flush, `record_decisions`, `record_anomaly`, `record_mail`, `set_consumer_lag`
  (or `update_kafka_lag(lags)` for the writer's partitions).

`start_metrics_server(port)` serves `/metrics` from a daemon thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "ANOMALIES",
    "CONSUMER_LAG",
    "DECISIONS",
    "MAILS",
    "REGISTRY",
    "WRITER_BATCH_ROWS",
    "WRITER_BATCH_SECONDS",
    "observe_writer_batch",
    "record_anomaly",
    "record_decisions",
    "record_mail",
    "register_runtime",
    "register_writer",
    "set_consumer_lag",
    "start_metrics_server",
    "update_kafka_lag",
]

REGISTRY = CollectorRegistry()

DECISIONS = Counter("tenantwatch_ratelimit_decisions", "Rate-limit decisions emitted, by state",
                    ["state"], registry=REGISTRY)
ANOMALIES = Counter("tenantwatch_anomalies", "Anomaly episodes opened, by metric and severity",
                    ["metric", "severity"], registry=REGISTRY)
MAILS = Counter("tenantwatch_mails", "Mail delivery outcomes, by status (sent, failed, bounced, queued)",
                ["status"], registry=REGISTRY)
CONSUMER_LAG = Gauge("tenantwatch_consumer_lag", "Records behind the end of the partition, per consumer group",
                     ["group", "topic", "partition"], registry=REGISTRY)
WRITER_BATCH_ROWS = Histogram(
    "tenantwatch_writer_batch_rows", "Rows per ClickHouse writer flush", registry=REGISTRY,
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000),
)
WRITER_BATCH_SECONDS = Histogram(
    "tenantwatch_writer_batch_seconds", "Seconds per ClickHouse writer flush (all tables)", registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

_server_lock = threading.Lock()
_servers: dict[int, Any] = {}


def record_decisions(states: Iterable[str]) -> None:
    """Count emitted decisions, one state per decision (`allowed`, `throttled`, ...)."""
    for state in states:
        DECISIONS.labels(state=state).inc()


def record_anomaly(metric: str, severity: str) -> None:
    """Count one newly opened anomaly episode."""
    ANOMALIES.labels(metric=metric, severity=severity).inc()


def record_mail(status: str) -> None:
    """Count one delivery outcome."""
    MAILS.labels(status=status).inc()


def observe_writer_batch(rows: int, seconds: float) -> None:
    """One successful writer flush: its size and how long the inserts took."""
    if rows:
        WRITER_BATCH_ROWS.observe(rows)
        WRITER_BATCH_SECONDS.observe(seconds)


def set_consumer_lag(group: str, topic: str, partition: int, lag: int) -> None:
    CONSUMER_LAG.labels(group=group, topic=topic, partition=str(partition)).set(max(0, lag))


def update_kafka_lag(lags: Mapping[Any, int] | None, group: str) -> None:
    """Set the lag of each partition in `lags` ({TopicPartition: end offset − position}, as
    `ResultSource.lag()` gives it; None when the broker could not tell, which sets nothing)."""
    for tp, behind in (lags or {}).items():
        set_consumer_lag(group, tp.topic, tp.partition, behind)


def _numbers(values: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for key, value in values.items():
        if isinstance(value, bool | int | float):  # bool is an int: flags count as 0 or 1
            yield str(key), float(value)


class RuntimeCollector(Collector):
    """Reads a worker runtime's counters (per topic) and capability status at scrape time."""

    def __init__(self, runtime: Any):
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        c = self.runtime.counters
        events = CounterMetricFamily("tenantwatch_events_processed", "Input events processed, by topic",
                                     labels=["topic"])
        records = CounterMetricFamily("tenantwatch_records_consumed", "Kafka records consumed, by topic",
                                      labels=["topic"])
        dead = CounterMetricFamily("tenantwatch_dead_letters", "Events sent to the dead-letter topic, by topic",
                                   labels=["topic"])
        ahead = CounterMetricFamily(
            "tenantwatch_events_too_far_ahead",
            "Upstream events dead-lettered as too far ahead of their partition's time, by topic", labels=["topic"])
        late = CounterMetricFamily(
            "tenantwatch_events_late", "Input events older than their partition's watermark, by topic",
            labels=["topic"])
        for family, values in ((events, c.events), (records, c.records), (dead, c.dead_letters),
                               (ahead, c.too_far_ahead), (late, c.late)):
            for topic, n in sorted(dict(values).items()):
                family.add_metric([str(topic)], float(n))
            yield family
        status = GaugeMetricFamily("tenantwatch_capability_status", "Numeric figures each capability reports",
                                   labels=["capability", "name"])
        for capability, figures in sorted(self.runtime.extra_status().items()):
            if isinstance(figures, Mapping):
                for name, value in _numbers(figures):
                    status.add_metric([capability, name], value)
        yield status


class WriterCollector(Collector):
    """Reads the ClickHouse writer's stats at scrape time: rows, buffer depth, failures."""

    def __init__(self, writer: Any):
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        s = self.writer.stats
        rows = CounterMetricFamily("tenantwatch_writer_rows", "Rows inserted into ClickHouse, by table",
                                   labels=["table"])
        for table, n in sorted(dict(s.rows_inserted).items()):
            rows.add_metric([table], float(n))
        yield rows
        yield CounterMetricFamily("tenantwatch_writer_batches", "Writer flushes that inserted rows", value=s.batches)
        yield CounterMetricFamily("tenantwatch_writer_insert_failures", "Failed inserts (retried)",
                                  value=s.insert_failures)
        yield CounterMetricFamily("tenantwatch_writer_records_skipped", "Records that did not decode",
                                  value=s.records_skipped)
        yield GaugeMetricFamily("tenantwatch_writer_buffer_rows", "Rows buffered, not yet inserted",
                                value=s.buffered_rows)
        yield GaugeMetricFamily("tenantwatch_writer_paused", "1 while consumption is paused (buffer full)",
                                value=float(s.paused))


def register_runtime(runtime: Any) -> RuntimeCollector:
    """Expose `runtime.counters` and `runtime.extra_status()`; call once per process."""
    collector = RuntimeCollector(runtime)
    REGISTRY.register(collector)
    return collector


def register_writer(writer: Any) -> WriterCollector:
    """Expose `writer.stats`; call once per process."""
    collector = WriterCollector(writer)
    REGISTRY.register(collector)
    return collector


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - scraped from other hosts
    """Serve `/metrics` of `REGISTRY` on `port` (0 picks a free one) in a daemon thread; returns the port.

    Idempotent per port: a second call for the same port returns without starting another server.
    """
    with _server_lock:
        if port and port in _servers:
            return port
        server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
        bound = int(server.server_address[1])
        _servers[bound] = server
        return bound
