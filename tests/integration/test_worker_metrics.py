"""A worker serves Prometheus metrics: events processed per topic and its consumer lag."""

from __future__ import annotations

import urllib.request
import uuid

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.sdk import Publisher
from tests.conftest import free_port, wait_for
from tests.integration.test_foundation import requests

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def test_worker_exports_events_and_consumer_lag(settings_factory, worker_factory):
    """After 300 requests the worker's /metrics counts them and reports its partitions' lag."""
    port = free_port()
    settings = settings_factory(metrics_port=port)
    ensure_topics(settings)
    worker_factory(settings, capabilities="")
    with Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=50) as pub:
        pub.publish_many(requests(f"m-{uuid.uuid4().hex[:6]}", 300))
    wait_for(lambda: 'tenantwatch_events_processed_total{topic="requests"} 300.0' in scrape(port), timeout=120,
             what=lambda: f"300 requests in /metrics:\n{scrape(port)[:2000]}")

    def lag_lines() -> list[str]:
        return [line for line in scrape(port).splitlines()
                if line.startswith("tenantwatch_consumer_lag{") and f"{settings.topic_prefix}.requests" in line]

    lines = wait_for(lag_lines, timeout=30, what="a lag gauge per assigned requests partition (1 s timer)")
    assert all(float(line.rsplit(" ", 1)[1]) >= 0 for line in lines)
