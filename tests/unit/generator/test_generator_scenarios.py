"""Injected scenarios are really in the data, exactly where the ground truth says."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from pipeline.devstack.generator import GeneratorConfig, iter_records

HOUR = timedelta(hours=1)


def _scenario(truth: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(s for s in truth["scenarios"] if s["kind"] == kind)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _max_hourly_per_ip(records: list[dict[str, Any]]) -> dict[str, int]:
    """Largest count of requests per IP in any sliding one-hour window (an exact sliding log)."""
    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["kind"] == "request":
            times[r["ip"]].append(_ts(r["ts"]).timestamp())
    out = {}
    for ip, ts in times.items():
        t = np.asarray(ts)  # already sorted: the stream is in event time
        out[ip] = int((np.searchsorted(t, t + 3600.0, side="left") - np.arange(len(t))).max())
    return out


def test_abusive_ips_exceed_the_limit_in_their_window(
    tiny_records: list[dict[str, Any]], tiny_truth: dict[str, Any]
) -> None:
    """Each abusive IP sends more than limit_per_hour inside one hour, all within the window."""
    abuse = _scenario(tiny_truth, "abusive_ips")
    limit = abuse["expected"]["limit_per_hour"]
    start, end = _ts(abuse["start"]), _ts(abuse["end"])
    abusive = [r for r in tiny_records if r.get("ip") in set(abuse["ips"])]
    assert {r["tenant_id"] for r in abusive} == {abuse["tenant_id"]}
    assert all(start <= _ts(r["ts"]) < end for r in abusive)
    peaks = _max_hourly_per_ip(abusive)
    assert set(peaks) == set(abuse["ips"])
    assert min(peaks.values()) > limit
    assert min(peaks.values()) > 0.85 * abuse["expected"]["requests_per_ip"]


def test_ordinary_ips_stay_far_below_the_limit_even_at_high_rates() -> None:
    """At 100 requests/min per tenant, no ordinary IP passes 10% of a 1000/h limit in any hour."""
    config = GeneratorConfig(seed=3, days=1, n_tenants=4, peak_rpm=100.0)
    peaks = _max_hourly_per_ip(list(iter_records(config)))
    assert len(peaks) > 100
    assert max(peaks.values()) < 100


def test_night_is_quieter_than_afternoon() -> None:
    """In each tenant's local time, 01–05h carries far fewer requests than 12–16h."""
    from zoneinfo import ZoneInfo

    from pipeline.devstack.generator.engine import ground_truth

    config = GeneratorConfig(seed=5, days=3, n_tenants=4, peak_rpm=3.0)
    zones = {t["tenant_id"]: ZoneInfo(t["timezone"]) for t in ground_truth(config)["tenants"]}
    night: Counter[str] = Counter()
    day: Counter[str] = Counter()
    for r in iter_records(config):
        if r["kind"] == "request":
            hour = _ts(r["ts"]).astimezone(zones[r["tenant_id"]]).hour
            night[r["tenant_id"]] += 1 <= hour < 5
            day[r["tenant_id"]] += 12 <= hour < 16
    for tenant in zones:
        assert night[tenant] < day[tenant] / 3, tenant


def test_weekends_are_quieter_than_weekdays() -> None:
    """Over a week starting Monday, a weekend day averages fewer requests than a weekday."""
    config = GeneratorConfig(seed=5, days=7, n_tenants=3, peak_rpm=2.0)
    per_day = Counter(_ts(r["ts"]).weekday() for r in iter_records(config) if r["kind"] == "request")
    weekday = sum(per_day[d] for d in range(1, 5)) / 4  # Monday is partly Sunday in America
    weekend = per_day[6]
    assert weekend < 0.8 * weekday


def test_revenue_drops_from_the_given_time(tiny_records: list[dict[str, Any]], tiny_truth: dict[str, Any]) -> None:
    """The tenant's successful-charge revenue per hour falls near the factor after the start."""
    drop = _scenario(tiny_truth, "revenue_drop")
    start, end = _ts(tiny_truth["start"]), _ts(tiny_truth["end"])
    at = _ts(drop["start"])
    before = after = 0
    for r in tiny_records:
        if r["tenant_id"] == drop["tenant_id"] and r.get("type") == "charge_succeeded":
            assert r["currency"] == drop["expected"]["currency"]
            if _ts(r["ts"]) < at:
                before += r["amount_minor"]
            else:
                after += r["amount_minor"]
    rate_before = before / ((at - start) / HOUR)
    rate_after = after / ((end - at) / HOUR)
    assert rate_after < 0.5 * rate_before
    expected_hourly = drop["expected"]["daily_revenue_minor_before"] / 24
    assert 0.6 * expected_hourly < rate_before < 1.5 * expected_hourly


def test_error_rate_spikes_in_its_window(tiny_records: list[dict[str, Any]], tiny_truth: dict[str, Any]) -> None:
    """Inside the window the tenant's 5xx share and ErrorEvents jump; outside they stay low."""
    spike = _scenario(tiny_truth, "error_spike")
    start, end = _ts(spike["start"]), _ts(spike["end"])
    inside, outside = Counter[str](), Counter[str]()
    for r in tiny_records:
        if r["tenant_id"] != spike["tenant_id"]:
            continue
        bucket = inside if start <= _ts(r["ts"]) < end else outside
        bucket[r["kind"]] += 1
        bucket["5xx"] += r["kind"] == "request" and r["status"] >= 500
    assert inside["5xx"] / inside["request"] > 0.6 * spike["expected"]["error_share_spike"]
    assert outside["5xx"] / outside["request"] < 0.03
    assert inside["error"] == inside["5xx"]
    assert outside["error"] == outside["5xx"]
    assert inside["error"] > 3 * outside["error"]


def test_usage_spikes_in_its_window(tiny_records: list[dict[str, Any]], tiny_truth: dict[str, Any]) -> None:
    """Usage snapshots in the window show storage and active users multiplied."""
    spike = _scenario(tiny_truth, "usage_spike")
    start, end = _ts(spike["start"]), _ts(spike["end"])
    snaps = [r for r in tiny_records if r["kind"] == "usage" and r["tenant_id"] == spike["tenant_id"]]
    inside = [r for r in snaps if start <= _ts(r["ts"]) < end]
    outside = [r for r in snaps if not start <= _ts(r["ts"]) < end]
    assert len(inside) == round((end - start) / HOUR)
    normal_storage = max(r["storage_bytes"] for r in outside)
    assert min(r["storage_bytes"] for r in inside) > 0.9 * spike["expected"]["storage_factor"] * normal_storage
    assert np.mean([r["active_users"] for r in inside]) > 2 * np.mean([r["active_users"] for r in outside])


def test_usage_api_calls_count_the_hours_requests(tiny_records: list[dict[str, Any]]) -> None:
    """Each usage snapshot's api_calls equals the tenant's requests in the hour it closes."""
    requests: Counter[tuple[str, str]] = Counter()
    for r in tiny_records:
        hour = r["ts"][:13]
        if r["kind"] == "request":
            requests[r["tenant_id"], hour] += 1
        elif r["kind"] == "usage":
            assert r["api_calls"] == requests[r["tenant_id"], hour]


def test_trial_outcomes_match_ground_truth(tiny_records: list[dict[str, Any]], tiny_truth: dict[str, Any]) -> None:
    """Each trial tenant's billing events tell exactly the outcome the ground truth states."""
    cohort = _scenario(tiny_truth, "trial_cohort")
    by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in tiny_records:
        if r["tenant_id"].startswith("trial-"):
            by_tenant[r["tenant_id"]].append(r)
    assert set(by_tenant) == {t["tenant_id"] for t in cohort["trials"]}
    expected_types = {
        "converted": ["trial_started", "trial_converted", "charge_succeeded"],
        "expired": ["trial_started"],
        "canceled": ["trial_started", "trial_canceled"],
        "payment_failed": ["trial_started", "charge_failed"],
    }
    for trial in cohort["trials"]:
        events = by_tenant[trial["tenant_id"]]
        assert [e["type"] for e in events] == expected_types[trial["outcome"]]
        started = events[0]
        assert started["ts"] == trial["started"]
        assert started["trial_days"] == trial["trial_days"]
        assert started["contact_email"].endswith(("@example.com", "@example.org"))
        if trial["outcome"] != "expired":
            assert events[1]["ts"] == trial["outcome_ts"]
        if trial["outcome"] == "payment_failed":
            assert _ts(events[1]["ts"]) > _ts(trial["trial_ends"])
    outcomes = Counter(t["outcome"] for t in cohort["trials"])
    assert outcomes == Counter({k: v for k, v in cohort["expected"].items() if v})
    assert outcomes == {"converted": 5, "expired": 4, "canceled": 1, "payment_failed": 2}
