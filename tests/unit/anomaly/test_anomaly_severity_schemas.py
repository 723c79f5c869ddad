"""Severity table and the anomaly records' validation."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from agents.anomaly.severity import classify, worst
from schemas.anomaly import Direction, MetricName, MetricPoint, Rule, Severity, anomaly_id


@pytest.mark.parametrize(
    ("sigma", "pct", "expected"),
    [
        (3.0, 10.0, Severity.LOW),
        (4.0, 10.0, Severity.MEDIUM),
        (3.0, -30.0, Severity.MEDIUM),  # % alone can raise it
        (6.5, 10.0, Severity.HIGH),
        (-2.5, -55.0, Severity.HIGH),
        (12.0, 10.0, Severity.CRITICAL),
        (2.0, 95.0, Severity.CRITICAL),
        (50.0, 1.0, Severity.MEDIUM),  # tiny relative change is capped at medium
        (7.0, None, Severity.HIGH),  # expected 0: σ alone
    ],
)
def test_severity_table(sigma: float, pct: float | None, expected: Severity) -> None:
    """Severity follows the documented σ / % table."""
    assert classify(sigma, pct) is expected


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
