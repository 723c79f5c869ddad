"""Seeding a new anomaly stream from the metric history in ClickHouse (real chDB): no warm-up to wait out."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.anomaly.agent import AnomalyAgent, history_source
from agents.anomaly.detector import StreamDetector
from agents.anomaly.rules import default_rule
from pipeline.adapters.clickhouse.metric_history import MetricHistory
from pipeline.adapters.clickhouse.read_api import ReadApiServer, SerializedClient, announcement_path
from pipeline.console.reads import DirectReader, ReadUnavailable
from pipeline.settings import Settings
from schemas.anomaly import MetricName, MetricPoint, to_datetime

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
    history = MetricHistory(DirectReader(chdb_client), days=14)
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


def test_history_sources_per_setup(tmp_path: Path) -> None:
    """Seeding off: none; chDB with no writer serving, or a server that does not answer: the read
    fails (the agent turns that into a live warm-up), nothing is opened or connected before."""
    assert history_source(Settings(data_dir=tmp_path, anomaly_seed_days=0)) is None
    embedded = history_source(Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{tmp_path}/ch"))
    assert embedded is not None
    with pytest.raises(ReadUnavailable, match="no writer serves the metric history"):
        embedded("acme", MetricName.REVENUE, T0)
    assert not (tmp_path / "ch").exists()  # the worker never opens the writer's data path
    server = history_source(Settings(data_dir=tmp_path, clickhouse_dsn="http://127.0.0.1:9"))
    assert server is not None  # connects lazily: nothing listens on port 9, and nothing failed yet
    with pytest.raises(Exception):  # noqa: B017, PT011  # the agent turns this into a live warm-up
        server("acme", MetricName.REVENUE, T0)


def test_a_stream_first_met_on_chdb_is_seeded_through_the_writers_read_api(
        chdb_client: Any, session_dir: Path, tmp_path: Path) -> None:
    """Embedded set-up: the worker's agent meets a stream, reads its 14 days through the writer's
    read API (denominators included) and judges the first live point; with the writer gone, the
    next new stream warms up live instead."""
    tenant = f"api-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(3)
    rows = []
    for i in range(24 * 20 + 12):  # up to the live hour
        n = float(rng.poisson(200 if i % 24 >= 8 else 10))  # busy days, quiet nights
        rows.append((tenant, "error_rate", to_datetime(T0 + i * H), float(rng.binomial(int(n), 0.01)) / max(n, 1), n))
    chdb_client.insert("metric_points", rows, column_names=["tenant", "metric", "ts", "value", "denominator"])
    settings = Settings(data_dir=tmp_path, clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}")
    served = ReadApiServer(SerializedClient(chdb_client), announce=announcement_path(settings)).start()
    agent = AnomalyAgent.__new__(AnomalyAgent)  # the agent's seeding path, without a Faust worker around it
    agent.history, agent.counts = history_source(settings), Counter()
    now = T0 + 20 * 24 * H + 12 * H  # a busy hour
    rule = default_rule(MetricName.ERROR_RATE)
    point = MetricPoint(tenant=tenant, metric=MetricName.ERROR_RATE, ts=to_datetime(now), value=0.3, denominator=200)
    try:
        det = asyncio.run(agent._new_stream(point, rule))
    finally:
        served.stop()
    assert agent.counts == Counter({"points_seeded": 14 * 24, "streams_seeded": 1})
    assert det.n == 14 * 24
    assert det.observe_point(point, rule).opened  # 30 % failing where 1 % is usual: at once, no warm-up
    other = point.model_copy(update={"tenant": f"{tenant}b"})
    cold = asyncio.run(agent._new_stream(other, rule))  # no writer serves now: a live warm-up
    assert cold.n == 0
    assert agent.counts["seed_failures"] == 1
