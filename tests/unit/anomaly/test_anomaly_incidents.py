"""Scoring anomalies against incidents: belonging, the right metric, delays, clean tenant-days."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.anomaly.incidents import Incident, score_incidents
from schemas.anomaly import Anomaly, AnomalyStatus, Direction, MetricName, Severity, Verdict

H = 3600.0
T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def _anomaly(tenant: str, metric: MetricName, start_h: float, detected_h: float, *,
             severity: Severity = Severity.HIGH, points: int = 1) -> Anomaly:
    def ts(h: float) -> datetime:
        return datetime.fromtimestamp(T0 + h * H, UTC)

    return Anomaly(id=f"{tenant}-{metric.value}-{start_h}", tenant=tenant, metric=metric, start_ts=ts(start_h),
                   detected_ts=ts(detected_h), last_ts=ts(detected_h), value=1.0, expected=0.5, sigma=0.1,
                   deviation_sigma=5.0, deviation_pct=100.0, peak_sigma=5.0, direction=Direction.UP,
                   severity=severity, status=AnomalyStatus.ACTIVE, points=points, hst_score=None,
                   verdict=Verdict.RULE_ONLY, threshold_sigma=3.0)


INCIDENTS = [
    Incident("error_spike-0", "error_spike", "acme", T0 + 10 * H, T0 + 14 * H),
    Incident("revenue_drop-0", "revenue_drop", "bluth", T0 + 24 * H, T0 + 96 * H),
]


def test_precision_recall_delay_and_clean_alerts() -> None:
    """Hand-checked: one incident caught on its right metric, one only on a wrong one; one clean false alert."""
    anomalies = [
        _anomaly("acme", MetricName.ERROR_RATE, 10, 10),  # right metric, first window: delay 1 h = 1 window
        _anomaly("acme", MetricName.LATENCY_P95, 11, 12),  # a consequence: true, but not the right metric
        _anomaly("bluth", MetricName.REQUEST_VOLUME, 30, 30),  # during the drop, wrong metric: true, no recall
        _anomaly("wayne", MetricName.ERROR_RATE, 50, 51, severity=Severity.CRITICAL),  # clean tenant: false
        _anomaly("acme", MetricName.ERROR_RATE, 40, 40),  # long after the spike: false, not clean
    ]
    r = score_incidents(anomalies, INCIDENTS, clean_tenant_days=10.0)
    assert (r.anomalies, r.true_anomalies, r.incidents, r.caught) == (5, 3, 2, 1)
    assert r.missed == ["revenue_drop-0"]
    assert r.precision == 0.6
    assert r.recall == 0.5
    assert r.delays_h == {"error_spike": [1.0]}
    assert r.delays_windows == {"error_spike": [1.0]}
    assert r.clean_alerts == 1
    assert r.false_per_clean_day == 0.1
    assert r.severity["critical"] == 1
    assert "precision 0.60" in r.format()


def test_latest_version_of_an_episode_counts_once_and_reports_merge() -> None:
    """An episode re-emitted as it grows is one anomaly; merged reports add up."""
    first = _anomaly("acme", MetricName.ERROR_RATE, 10, 10)
    grown = first.model_copy(update={"points": 3})
    r = score_incidents([first, grown], INCIDENTS[:1], clean_tenant_days=5.0)
    assert r.anomalies == 1
    assert r.caught == 1
    total = r.merge(score_incidents([], INCIDENTS[1:], clean_tenant_days=5.0))
    assert (total.anomalies, total.incidents, total.caught, total.clean_tenant_days) == (1, 2, 1, 10.0)
    assert total.recall == 0.5


def test_a_window_that_ends_at_onset_has_not_seen_the_incident() -> None:
    """Regression: an anomaly confirmed by the window just before onset (it may start one window
    early) was a catch with its delay clamped to 0; it is a false alert, and the incident is caught
    only by the window that holds its first hour: 1 h = 1 window after onset."""
    early = _anomaly("acme", MetricName.ERROR_RATE, 9, 9)  # window 9–10 h; the spike starts at 10 h
    r = score_incidents([early], INCIDENTS[:1], clean_tenant_days=1.0)
    assert (r.true_anomalies, r.caught, r.missed) == (0, 0, ["error_spike-0"])
    later = _anomaly("acme", MetricName.ERROR_RATE, 9, 10)  # flagged at 9 h, confirmed by the 10–11 h point
    r = score_incidents([later], INCIDENTS[:1], clean_tenant_days=1.0)
    assert (r.true_anomalies, r.caught) == (1, 1)
    assert r.delays_windows == {"error_spike": [1.0]}


def test_each_catch_is_listed_with_its_metric_and_delay() -> None:
    """The per-incident list says which metric caught each incident and how long after onset."""
    revenue = _anomaly("bluth", MetricName.REVENUE, 30, 30)  # 6 h windows: 24 h onset, window 30–36 h
    r = score_incidents([revenue, _anomaly("acme", MetricName.ERROR_RATE, 11, 11)], INCIDENTS, 1.0)
    assert [(c.incident, c.metric, c.delay_h, c.delay_windows) for c in r.catches] == [
        ("error_spike-0", MetricName.ERROR_RATE, 2.0, 2.0), ("revenue_drop-0", MetricName.REVENUE, 12.0, 2.0)]
    assert "revenue_drop-0  bluth            revenue       after  12.0 h = 2.00 windows" in r.format_catches()
    assert r.merge(score_incidents([], INCIDENTS[:1], 1.0)).catches == r.catches
