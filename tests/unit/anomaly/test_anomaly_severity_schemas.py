"""Severity table and the anomaly records' validation."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from agents.anomaly.severity import assess, confidence_level, impact_level, worst
from schemas.anomaly import Direction, MetricName, MetricPoint, Rule, Severity, anomaly_id

_M = MetricName


@pytest.mark.parametrize(
    ("metric", "sigma", "value", "expected", "den", "severity"),
    [
        (_M.ERROR_RATE, 15.0, 0.25, 0.01, 400.0, Severity.CRITICAL),  # a quarter failing, 100 requests
        (_M.ERROR_RATE, 15.0, 0.25, 0.01, 40.0, Severity.HIGH),  # 10 failing requests never page
        (_M.ERROR_RATE, 4.5, 0.25, 0.01, 400.0, Severity.HIGH),  # impact, but only 4.5σ sure
        (_M.ERROR_RATE, 3.5, 0.03, 0.005, 400.0, Severity.MEDIUM),
        (_M.ERROR_RATE, 2.5, 0.5, 0.005, 400.0, Severity.LOW),  # not sure at all
        (_M.REVENUE, -25.0, 0.0, 1000.0, None, Severity.CRITICAL),  # all revenue gone
        (_M.REVENUE, -8.0, 300.0, 1000.0, None, Severity.HIGH),  # 70 % gone
        (_M.REVENUE, -8.0, 900.0, 1000.0, None, Severity.LOW),  # 10 % gone: not worth a look
        (_M.REQUEST_VOLUME, 400.0, 9000.0, 50.0, None, Severity.HIGH),  # a usage spike never pages
        (_M.LATENCY_P95, 30.0, 2000.0, 100.0, None, Severity.CRITICAL),  # 20× slower
        (_M.LATENCY_P95, -30.0, 10.0, 100.0, None, Severity.LOW),  # faster hurts nobody
        (_M.ACTIVE_USERS, -9.0, 40.0, 100.0, None, Severity.HIGH),  # 60 % of users gone
        (_M.ERROR_EVENTS, 50.0, 3.0, 0.0, None, Severity.HIGH),  # from none: large ratio, never critical
    ],
)
def test_severity_table(metric: MetricName, sigma: float, value: float, expected: float,  # noqa: PLR0917  # a table row
                        den: float | None, severity: Severity) -> None:
    """Severity is the lower of the documented impact and confidence levels."""
    assert assess(metric, sigma, value, expected, den) is severity


def test_confidence_caps_every_impact() -> None:
    """Below 3σ nothing is above low, whatever is lost."""
    assert confidence_level(2.9) == 0
    assert impact_level(_M.REVENUE, 0.0, 1.0) == 3
    assert assess(_M.REVENUE, -2.9, 0.0, 1.0) is Severity.LOW


def test_worst_keeps_the_higher_severity() -> None:
    """An episode's severity never goes down."""
    assert worst(Severity.HIGH, Severity.LOW) is Severity.HIGH
    assert worst(Severity.LOW, Severity.CRITICAL) is Severity.CRITICAL


def test_metric_point_validates_and_keys() -> None:
    """A metric point needs a finite value and an aware in-range timestamp; its key is tenant|metric."""
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    point = MetricPoint(tenant="acme", metric=MetricName.REVENUE, ts=ts, value=12.5)
    assert point.key == "acme|revenue"
    assert point.epoch == ts.timestamp()
    with pytest.raises(ValidationError):
        MetricPoint(tenant="acme", metric=MetricName.REVENUE, ts=ts, value=math.nan)
    with pytest.raises(ValidationError):
        MetricPoint(tenant="acme", metric=MetricName.REVENUE, ts=datetime(2026, 1, 1), value=1.0)  # naive on purpose


def test_rule_rejects_impossible_confirmation() -> None:
    """N of M with N > M could never confirm: refused at construction."""
    with pytest.raises(ValidationError):
        Rule(metric=MetricName.REVENUE, direction=Direction.DOWN, threshold_sigma=2.5, confirm_n=3, confirm_m=2)


def test_anomaly_id_is_deterministic() -> None:
    """The same episode start gives the same id (idempotent sinks); another start another id."""
    assert anomaly_id("a", "revenue", 1.0) == anomaly_id("a", "revenue", 1.0)
    assert anomaly_id("a", "revenue", 1.0) != anomaly_id("a", "revenue", 2.0)
