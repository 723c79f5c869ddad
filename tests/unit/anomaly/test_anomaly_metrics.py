"""Metric derivation: windows close on the watermark, counts, ratios, snapshots, late events, alerts."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from agents.anomaly.alerts import alert_for, should_alert
from agents.anomaly.metrics import DECLINE_WINDOW, MAX_CATCH_UP, TenantMetrics
from schemas.anomaly import Anomaly, AnomalyStatus, Direction, MetricName, MetricPoint, Severity, Verdict
from schemas.events import BillingEvent, ErrorEvent, UsageEvent
from schemas.ratelimit import Rollup

T0 = datetime(2026, 1, 5, tzinfo=UTC)
H = 3600.0
M = MetricName


def rollup(minute: int, requests: int = 10, errors: int = 1, client_errors: int = 2, p95: float = 100.0) -> Rollup:
    return Rollup.create(tenant_id="acme", minute=T0 + timedelta(minutes=minute), requests=requests, errors=errors,
                         client_errors=client_errors, blocked=0, distinct_ips=3, latency_sum_ms=1.0,
                         latency_count=requests, latency_max_ms=p95, latency_p50_ms=p95 / 2, latency_p95_ms=p95)


def billing(i: int, hours: float, type_: str, amount: int | None = None) -> BillingEvent:
    money = {"amount_minor": amount, "currency": "EUR"} if amount is not None else {}
    return BillingEvent(event_id=f"b{i}", ts=T0 + timedelta(hours=hours), tenant_id="acme", type=type_, **money)


def values(points: list, metric: MetricName) -> list[float]:
    return [p.value for p in points if p.metric is metric]


def test_rollup_windows_close_only_when_the_watermark_passes_their_end():
    """An hour's rollups give no point before the watermark reaches the hour's end, then one per metric."""
    tm = TenantMetrics("acme")
    tm.add([rollup(0, p95=100.0), rollup(1, requests=30, errors=3, client_errors=0, p95=300.0), rollup(61)])
    assert tm.close(T0.timestamp() + H - 1) == []
    points = tm.close(T0.timestamp() + H)
    assert values(points, M.REQUEST_VOLUME) == [40]
    assert values(points, M.ERROR_RATE) == [pytest.approx(4 / 40)]
    assert values(points, M.CLIENT_ERROR_RATIO) == [pytest.approx(2 / 40)]
    assert values(points, M.LATENCY_P95) == [300.0], "request-weighted median of minute p95s"
    assert values(points, M.TOP_IP_SHARE) == [], "rollups carry no top-IP counts yet"
    assert all(p.ts == T0 for p in points)


def test_a_rollup_sent_again_is_added_once_but_a_late_part_of_its_minute_is_added():
    """A redelivered complete rollup does not inflate its hour; a late row of the same minute counts."""
    tm = TenantMetrics("acme")
    again = rollup(5, requests=7)
    late = Rollup.create(**rollup(5, requests=2).model_dump(exclude={"id", "part", "late"}), part=3, late=True)
    tm.add([rollup(5, requests=7), again, late, again, rollup(61)])
    assert values(tm.close(T0.timestamp() + H), M.REQUEST_VOLUME) == [9]
    assert tm.duplicates == 2
    assert tm.rollups_seen == {((T0 + timedelta(minutes=61)).timestamp(), rollup(61).id)}, "closed hours forgotten"
    tm.add([again])
    assert tm.late == 4, "after its hour closed, a copy is late (once per rollup metric)"


def test_empty_windows_are_zero_for_counts_and_absent_for_ratios():
    """A silent hour after the first rollup is 0 requests, but has no error rate or latency."""
    tm = TenantMetrics("acme")
    tm.add([rollup(0)])
    points = tm.close(T0.timestamp() + 3 * H)
    assert values(points, M.REQUEST_VOLUME) == [10, 0, 0]
    assert len(values(points, M.ERROR_RATE)) == 1
    assert len(values(points, M.LATENCY_P95)) == 1


def test_revenue_is_charges_minus_refunds_per_six_hours_and_cancellations_per_day():
    """Charges add, refunds subtract, failed charges do not count; cancellations count per day."""
    tm = TenantMetrics("acme")
    tm.add([billing(1, 0.5, "charge_succeeded", 5000), billing(2, 1.0, "refund", 1000),
            billing(3, 2.0, "charge_failed", 9999), billing(4, 7.0, "charge_succeeded", 300),
            billing(5, 8.0, "subscription_canceled"), billing(6, 9.0, "trial_canceled")])
    points = tm.close(T0.timestamp() + 24 * H)
    assert values(points, M.REVENUE) == [4000, 300, 0, 0]
    assert [p.denominator for p in points if p.metric is M.REVENUE] == [1, 1, 0, 0]  # successful charges
    assert values(points, M.CANCELLATIONS) == [2]


def test_usage_takes_the_latest_snapshot_and_derives_the_active_user_decline():
    """Storage and users are the window's latest snapshot; no decline before a week of points."""
    tm = TenantMetrics("acme")
    events = [UsageEvent(event_id=f"u{i}", ts=T0 + timedelta(hours=i, minutes=m), tenant_id="acme",
                         storage_bytes=1000 * i + m, active_users=users)
              for i, users in enumerate([100, 100, 50]) for m in (10, 5)]
    tm.add(events)
    points = tm.close(T0.timestamp() + 3 * H)
    assert values(points, M.STORAGE_BYTES) == [10, 1010, 2010]
    assert values(points, M.ACTIVE_USERS) == [100, 100, 50]
    assert values(points, M.ACTIVE_USER_DECLINE) == []


def _users(hours: list[float]) -> list[MetricPoint]:
    tm = TenantMetrics("acme")
    out = []
    for i, users in enumerate(hours):  # hour by hour, as the agent closes windows
        tm.add([UsageEvent(event_id=f"u{i}", ts=T0 + timedelta(hours=i), tenant_id="acme", storage_bytes=1,
                           active_users=round(users))])
        out += tm.close(T0.timestamp() + i * H)
    return out + tm.close(T0.timestamp() + len(hours) * H)


def test_the_decline_compares_with_the_fewer_users_of_a_day_and_a_week_before():
    """1 − users / min(same hour a day ago, a week ago), with that count as its denominator."""
    week = [100.0] * DECLINE_WINDOW
    week[0], week[-24] = 80.0, 90.0  # a week ago 80, a day ago 90: 60 now is 25 % down on 80
    points = [p for p in _users([*week, 60.0]) if p.metric is M.ACTIVE_USER_DECLINE]
    assert [p.value for p in points] == [pytest.approx(0.25)]
    assert points[0].denominator == 80.0


def test_the_daily_and_weekly_cycles_and_the_echo_of_a_spike_are_no_decline():
    """Regression: against the trailing day's mean, every Monday morning and Saturday "declined";
    week over week alone, a usage spike came back a week later as a loss. Neither does now."""
    def users(h: int) -> float:
        day, hour = divmod(h, 24)
        weekend = 0.5 if day % 7 in (5, 6) else 1.0
        return 100.0 * weekend * (0.3 + 0.7 * math.sin(math.pi * hour / 24) ** 2)

    hours = [users(h) * (3.0 if 200 <= h < 208 else 1.0) for h in range(4 * DECLINE_WINDOW)]
    declines = [p.value for p in _users(hours) if p.metric is M.ACTIVE_USER_DECLINE]
    assert len(declines) == 3 * DECLINE_WINDOW
    assert max(declines) < 0.05  # rounding to whole users only


def test_late_events_are_counted_and_dropped():
    """An error event for a window that already closed changes nothing and is counted as late."""
    tm = TenantMetrics("acme")
    tm.add([ErrorEvent(event_id="e1", ts=T0 + timedelta(minutes=90), tenant_id="acme", service="api",
                       error_type="Timeout")])
    assert values(tm.close(T0.timestamp() + 2 * H), M.ERROR_EVENTS) == [1]
    tm.add([ErrorEvent(event_id="e2", ts=T0 + timedelta(minutes=100), tenant_id="acme", service="api",
                       error_type="Timeout")])
    assert tm.late == 1
    assert values(tm.close(T0.timestamp() + 3 * H), M.ERROR_EVENTS) == [0]


def test_a_long_silence_is_skipped_not_filled_forever_and_state_pickles():
    """After a gap longer than the catch-up bound, closing skips ahead; the state round-trips pickle."""
    tm = TenantMetrics("acme")
    tm.add([rollup(0)])
    points = tm.close(T0.timestamp() + (MAX_CATCH_UP + 50) * H)
    assert len(values(points, M.REQUEST_VOLUME)) == MAX_CATCH_UP
    assert tm.due() == T0.timestamp() + (MAX_CATCH_UP + 51) * H
    clone = pickle.loads(pickle.dumps(tm))  # noqa: S301 - our own bytes
    assert clone.next_start == tm.next_start


def _anomaly(severity: Severity) -> Anomaly:
    return Anomaly(id="a1", tenant="acme", metric=M.REVENUE, start_ts=T0, detected_ts=T0, last_ts=T0, value=10.0,
                   expected=100.0, sigma=5.0, deviation_sigma=-18.0, deviation_pct=-90.0, peak_sigma=18.0,
                   direction=Direction.DOWN, severity=severity, status=AnomalyStatus.ACTIVE, points=2,
                   hst_score=None, verdict=Verdict.RULE_ONLY, threshold_sigma=2.5)


@pytest.mark.parametrize(("severity", "before", "expected"), [
    (Severity.MEDIUM, None, False), (Severity.HIGH, None, True), (Severity.HIGH, Severity.MEDIUM, True),
    (Severity.HIGH, Severity.HIGH, False), (Severity.CRITICAL, Severity.HIGH, True),
    (Severity.CRITICAL, Severity.CRITICAL, False),
])
def test_alerts_fire_once_per_alerting_severity_reached(severity, before, expected):
    """High and critical episodes alert when they first reach that level, not on every point."""
    assert should_alert(_anomaly(severity), before) is expected


def test_alert_notification_carries_the_template_variables():
    """The anomaly_alert notification has every variable its template needs and a deterministic id."""
    from agents.notify.templates import TEMPLATE_VARIABLES

    n = alert_for(_anomaly(Severity.CRITICAL), "owner@example.com")
    assert set(TEMPLATE_VARIABLES["anomaly_alert"]) <= set(n.variables)
    assert n.id == alert_for(_anomaly(Severity.CRITICAL), "owner@example.com").id
    assert n.severity.value == "critical"


def test_latency_carries_the_requests_behind_it():
    """The latency p95's denominator is the requests of its minutes: a p95 of few requests is a noisy one."""
    tm = TenantMetrics("acme")
    for minute, (count, p95) in enumerate([(3, 50.0), (5, 80.0)]):
        tm.add_rollup(rollup(minute, requests=count, p95=p95))
    [point] = [p for p in tm.close(T0.timestamp() + H) if p.metric is M.LATENCY_P95]
    assert (point.value, point.denominator) == (80.0, 8.0)
