"""The chart series an anomaly alert carries: a bounded ring of scored points, pickled, on the topic."""

from __future__ import annotations

import json
import math
import pickle
import random

import pytest

from agents.anomaly.alerts import SeriesRing, alert_for, should_alert
from agents.anomaly.detector import StreamDetector
from agents.anomaly.rules import default_rule
from schemas.anomaly import (
    Anomaly,
    AnomalyStatus,
    BaselineBand,
    Direction,
    MetricName,
    Severity,
    Verdict,
    band_id,
    to_datetime,
)
from schemas.notify import CHART_MAX_POINTS, Notification

T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC
H = 3600.0
M = MetricName


def band(ts: float, expected: float = 100.0, half: float = 10.0) -> BaselineBand:
    return BaselineBand(id=band_id("acme", "revenue", ts), tenant="acme", metric=M.REVENUE, ts=to_datetime(ts),
                        expected=expected, lower=expected - half, upper=expected + half, seasonal=False)


def run_stream(hours: int, spike: range, seed: int = 1) -> tuple[list[Notification], SeriesRing]:
    """What the agent's detect loop does for one stream: score, keep the banded point, alert with the chart."""
    rng = random.Random(seed)
    rule = default_rule(M.REQUEST_VOLUME)
    det, ring, alerts = StreamDetector("acme", M.REQUEST_VOLUME, rule), SeriesRing(), []
    for h in range(hours):
        value = 800 * (1 + 0.3 * math.sin(2 * math.pi * (h % 24) / 24)) * rng.gauss(1, 0.05) * (4 if h in spike else 1)
        before = det.episode.severity if det.episode is not None else None
        step = det.observe(T0 + h * H, value, rule)
        if step.band is not None:
            ring.add(T0 + h * H, value, step.band)
        if step.anomaly is not None and should_alert(step.anomaly, before):
            alerts.append(alert_for(step.anomaly, "owner@example.com", ring.chart(step.anomaly)))
    return alerts, ring


def test_ring_keeps_the_newest_points_up_to_its_size():
    """Beyond `size` points the oldest go; order and the five numbers per point are kept."""
    ring = SeriesRing(size=4)
    for i in range(10):
        ring.add(T0 + i * H, float(i), band(T0 + i * H, expected=50.0 + i, half=5.0))
    assert len(ring) == 4
    assert ring.points() == [(T0 + i * H, float(i), 50.0 + i, 45.0 + i, 55.0 + i) for i in range(6, 10)]


def test_ring_ignores_redelivered_and_older_points():
    """A point at or before the newest kept one is not drawn twice (redelivery after a crash)."""
    ring = SeriesRing()
    ring.add(T0, 1.0, band(T0)).add(T0 + H, 2.0, band(T0 + H))
    ring.add(T0 + H, 99.0, band(T0 + H)).add(T0, 98.0, band(T0))
    assert [p[1] for p in ring.points()] == [1.0, 2.0]


def test_ring_size_is_bounded_by_the_payload_limit():
    """A ring larger than a notification may carry is refused up front."""
    with pytest.raises(ValueError, match="size"):
        SeriesRing(size=CHART_MAX_POINTS + 1)


def test_ring_pickles_small_and_equal():
    """A full ring round-trips through pickle, in a few kB (its table codec: test_anomaly_state_codec)."""
    ring = SeriesRing()
    for i in range(500):
        ring.add(T0 + i * H, float(i), band(T0 + i * H))
    data = pickle.dumps(ring)
    back = pickle.loads(data)  # noqa: S301 - our own bytes
    assert back.points() == ring.points()
    assert len(back) == CHART_MAX_POINTS
    assert len(data) < 6_000


def test_alert_of_a_spike_carries_the_points_up_to_the_anomaly():
    """The alert's series ends at the alerting point, holds ≤ 120 banded points, and marks the episode start."""
    alerts, _ = run_stream(200, spike=range(150, 153))
    assert alerts, "the spike alerted"
    n = alerts[0]
    chart = n.chart
    assert chart is not None
    assert 2 <= len(chart.points) <= CHART_MAX_POINTS
    last = chart.points[-1]
    assert last.ts == n.ts  # the point that raised the alert
    assert f"{last.value:,.0f}" == n.variables["value"]
    assert all(p.low <= p.expected <= p.high for p in chart.points)
    assert [p.ts for p in chart.points] == sorted(p.ts for p in chart.points)
    assert chart.marker == to_datetime(T0 + 150 * H)  # the episode's first out-of-band point
    assert last.value > last.high, "the anomaly is outside its band"


def test_alert_numbers_are_in_the_variables():
    """Value, expected, band and deviation travel as variables, besides the chart."""
    n = run_stream(200, spike=range(150, 153))[0][0]
    v = n.variables
    assert {"value", "expected", "band", "deviation", "severity"} <= set(v)
    assert " to " in str(v["band"])
    assert str(v["deviation"]).startswith("+")
    assert "σ" in str(v["deviation"])


def test_alert_with_chart_survives_the_topic_json_and_stays_small():
    """The notification with its series round-trips through JSON equal, under 20 kB."""
    n = run_stream(200, spike=range(150, 153))[0][0]
    raw = n.model_dump_json()
    assert Notification.model_validate(json.loads(raw)) == n
    assert len(raw) < 20_000


def anomaly(start: float, detected: float) -> Anomaly:
    return Anomaly(id="a1", tenant="acme", metric=M.REVENUE, start_ts=to_datetime(start),
                   detected_ts=to_datetime(detected), last_ts=to_datetime(detected), value=10.0, expected=1.0,
                   sigma=1.0, deviation_sigma=9.0, deviation_pct=900.0, peak_sigma=9.0, direction=Direction.UP,
                   severity=Severity.CRITICAL, status=AnomalyStatus.ACTIVE, points=1, hst_score=None,
                   verdict=Verdict.RULE_ONLY, threshold_sigma=3.0)


def test_no_history_means_no_chart_but_still_an_alert():
    """A ring with fewer than two points (e.g. state lost) gives no series; the alert goes out anyway."""
    a = anomaly(T0, T0)
    ring = SeriesRing().add(T0, 10.0, band(T0))
    assert ring.chart(a) is None
    n = alert_for(a, "owner@example.com", ring.chart(a))
    assert n.chart is None
    assert n.variables["value"] == "10"


def test_marker_stays_inside_the_kept_window():
    """An episode older than the kept points is marked at the window's first point, not off the chart."""
    ring = SeriesRing(size=3)
    for i in range(10):
        ring.add(T0 + i * H, 1.0, band(T0 + i * H))
    chart = ring.chart(anomaly(T0, T0 + 9 * H))
    assert chart is not None
    assert chart.marker == to_datetime(T0 + 7 * H)
    assert chart.title == "revenue of acme"
