"""Seeding a new anomaly stream from the metric history in ClickHouse (real chDB): no warm-up to wait out."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from agents.anomaly.agent import history_source
from agents.anomaly.detector import StreamDetector
from agents.anomaly.rules import default_rule
from pipeline.adapters.clickhouse.metric_history import MetricHistory
from pipeline.settings import Settings
from schemas.anomaly import MetricName, to_datetime

pytestmark = pytest.mark.integration

H = 3600.0
T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC


def _insert_history(client: Any, tenant: str, hours: int) -> None:
    rng = np.random.default_rng(7)
    rows = [(tenant, "request_volume", to_datetime(T0 + i * H),
             float(rng.poisson(300 + 200 * np.sin(2 * np.pi * (i % 24) / 24)))) for i in range(hours)]
    rows.append((f"{tenant}x", "request_volume", to_datetime(T0), 1e9))  # another tenant's: never read
    client.insert("metric_points", rows, column_names=["tenant", "metric", "ts", "value"])


def test_a_new_stream_seeded_from_history_judges_its_first_live_point(chdb_client: Any) -> None:
    """14 days of hourly volume in ClickHouse: the seeded detector flags a spike at once; an unseeded one cannot."""
    tenant = f"seed-{uuid.uuid4().hex[:6]}"
    _insert_history(chdb_client, tenant, 24 * 20)
    history = MetricHistory(chdb_client, days=14)
    now = T0 + 20 * 24 * H
    past = history.points(tenant, MetricName.REQUEST_VOLUME, now)
    assert len(past) == 14 * 24  # only the last 14 days, only this tenant's
    assert past[0][0] == now - 14 * 24 * H
    assert past == sorted(past)
    rule = default_rule(MetricName.REQUEST_VOLUME)
    seeded = StreamDetector(tenant, MetricName.REQUEST_VOLUME, rule)
    assert seeded.seed(past) == 14 * 24
    cold = StreamDetector(tenant, MetricName.REQUEST_VOLUME, rule)
    normal = 300 + 200 * np.sin(0.0)
    assert not seeded.observe(now, normal, rule).out_of_band  # an ordinary hour stays in band
    spike = seeded.observe(now + H, 20 * normal, rule)
    assert spike.opened  # a usage spike on the first live hours, no warm-up
    assert not cold.observe(now, 20 * normal, rule).out_of_band  # unseeded: still warming up


def test_workers_seed_only_from_a_clickhouse_server(tmp_path: Any) -> None:
    """chDB belongs to the writer: no history source there, nor when seeding is off."""
    assert history_source(Settings(data_dir=tmp_path)) is None
    assert history_source(Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path}")) is None
    assert history_source(Settings(data_dir=tmp_path, clickhouse_dsn="http://127.0.0.1:9",
                                   anomaly_seed_days=0)) is None
    server = history_source(Settings(data_dir=tmp_path, clickhouse_dsn="http://127.0.0.1:9"))
    assert server is not None  # connects lazily: nothing listens on port 9, and nothing failed yet
    with pytest.raises(Exception):  # noqa: B017, PT011  # the agent turns this into a live warm-up
        server("acme", MetricName.REVENUE, T0)
