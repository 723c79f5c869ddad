"""`pipeline.ops.metrics`: the /metrics endpoint, scrape-time collectors and explicit recorders."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest

from pipeline.adapters.clickhouse.writer import WriterStats
from pipeline.ops import metrics


def sample(_sample_name: str, /, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(_sample_name, labels)


def fake_runtime() -> Any:
    counters = SimpleNamespace(events=defaultdict(int, requests=10), records=defaultdict(int, requests=2),
                               dead_letters=defaultdict(int, requests=1),
                               too_far_ahead=defaultdict(int, billing=1), late=defaultdict(int, requests=4))
    return SimpleNamespace(counters=counters,
                           extra_status=lambda: {"ratelimit": {"decisions": 7, "keys": 3, "note": "x"}})


def test_runtime_figures_are_read_at_scrape_time() -> None:
    """Counters the runtime keeps show up per topic, and change without any extra call."""
    runtime = fake_runtime()
    collector = metrics.register_runtime(runtime)
    try:
        assert sample("tenantwatch_events_processed_total", topic="requests") == 10
        assert sample("tenantwatch_dead_letters_total", topic="requests") == 1
        assert sample("tenantwatch_events_too_far_ahead_total", topic="billing") == 1
        assert sample("tenantwatch_events_late_total", topic="requests") == 4
        assert sample("tenantwatch_capability_status", capability="ratelimit", name="decisions") == 7
        assert sample("tenantwatch_capability_status", capability="ratelimit", name="note") is None
        runtime.counters.events["requests"] += 5
        assert sample("tenantwatch_events_processed_total", topic="requests") == 15
    finally:
        metrics.REGISTRY.unregister(collector)


def test_writer_stats_and_batches() -> None:
    """Buffer depth and rows come from the writer's stats; flushes feed the histograms."""
    stats = WriterStats(buffered_rows=42, paused=True)
    stats.rows_inserted["requests"] = 1000
    collector = metrics.register_writer(SimpleNamespace(stats=stats))
    try:
        assert sample("tenantwatch_writer_buffer_rows") == 42
        assert sample("tenantwatch_writer_paused") == 1
        assert sample("tenantwatch_writer_rows_total", table="requests") == 1000
        before = sample("tenantwatch_writer_batch_rows_count") or 0
        metrics.observe_writer_batch(500, 0.02)
        metrics.observe_writer_batch(0, 0.0)  # an empty flush is not a batch
        assert sample("tenantwatch_writer_batch_rows_count") == before + 1
        assert (sample("tenantwatch_writer_batch_seconds_bucket", le="0.025") or 0) >= 1
    finally:
        metrics.REGISTRY.unregister(collector)


def test_recorders_count_by_label() -> None:
    """Decisions by state, anomalies by severity, mails by status and lag per partition."""
    before = sample("tenantwatch_ratelimit_decisions_total", state="throttled") or 0
    metrics.record_decisions(["throttled", "allowed", "throttled"])
    assert sample("tenantwatch_ratelimit_decisions_total", state="throttled") == before + 2
    metrics.record_anomaly("error_rate", "high")
    assert (sample("tenantwatch_anomalies_total", metric="error_rate", severity="high") or 0) >= 1
    metrics.record_mail("failed")
    assert (sample("tenantwatch_mails_total", status="failed") or 0) >= 1
    metrics.set_consumer_lag("g", "tw.requests", 3, -5)
    assert sample("tenantwatch_consumer_lag", group="g", topic="tw.requests", partition="3") == 0


def test_kafka_lag_from_partition_lags() -> None:
    """Each partition's lag is set under the writer's group; an unknown lag (None) sets nothing."""
    from kafka.structs import TopicPartition

    metrics.update_kafka_lag({TopicPartition("tw.bans", 1): 20}, "writer")
    assert sample("tenantwatch_consumer_lag", group="writer", topic="tw.bans", partition="1") == 20
    metrics.update_kafka_lag(None, "writer")
    assert sample("tenantwatch_consumer_lag", group="writer", topic="tw.bans", partition="1") == 20


def test_metrics_server_serves_the_registry() -> None:
    """`start_metrics_server(0)` binds a free port and serves the text exposition format."""
    port = metrics.start_metrics_server(0, addr="127.0.0.1")
    assert metrics.start_metrics_server(port, addr="127.0.0.1") == port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert "tenantwatch_writer_batch_seconds_bucket" in body
    assert "tenantwatch_ratelimit_decisions_total" in body
    assert generate_latest(metrics.REGISTRY).decode().count("# HELP") >= 6
