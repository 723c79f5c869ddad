"""Baselines against a numpy oracle, σ = 0 guards, robustness and seasonality."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.anomaly.baseline import Estimate, RollingStats, SeasonalBaseline, SlotProfile
from schemas.anomaly import Season

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=120), window=st.integers(1, 40))
def test_rolling_stats_match_numpy(values: list[float], window: int) -> None:
    """Rolling mean and sample std equal numpy over the last `window` values."""
    roll = RollingStats(window)
    for i, x in enumerate(values):
        roll.update(x)
        tail = np.array(values[max(0, i + 1 - window) : i + 1])
        assert roll.n == len(tail)
        assert roll.mean == pytest.approx(float(tail.mean()), rel=1e-9, abs=1e-6)
        if len(tail) < 2:
            assert roll.std is None
        else:
            # Reverting a value from a running variance cancels digits: the variance keeps an
            # absolute error of order ε·(largest value ever seen)², which this tolerance allows.
            # (Would fail if the window were reverted wrongly: errors would then be O(values).)
            seen = float(np.abs(values[: i + 1]).max())
            var = float(tail.var(ddof=1))
            assert roll.std is not None
            assert roll.std**2 == pytest.approx(var, rel=1e-6, abs=1e-12 * seen**2 * len(tail) + 1e-12)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(finite, min_size=2, max_size=80), window=st.integers(1, 30))
def test_level_is_rolling_mean_of_bucket_means(values: list[float], window: int) -> None:
    """With one point per bucket (and no estimate yet, so no clipping) the level is numpy's rolling mean."""
    base = SeasonalBaseline(bucket_s=60, level_buckets=window, min_points=10**9)
    for i, x in enumerate(values):
        assert base.estimate(i * 60.0) is None
        base.update(i * 60.0, x)
    base.estimate(len(values) * 60.0)  # time moves on: the last bucket closes
    tail = np.array(values[-window:])
    assert base.level.mean == pytest.approx(float(tail.mean()), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(finite, min_size=2, max_size=60), per=st.integers(1, 6))
def test_bucket_means_aggregate_points(values: list[float], per: int) -> None:
    """Several points per bucket are averaged into one bucket mean before the level sees them."""
    base = SeasonalBaseline(bucket_s=60, level_buckets=1000, min_points=10**9)
    for i, x in enumerate(values):
        base.update(i * 60.0 / per, x)
    base.estimate(10**6)
    buckets = [values[j : j + per] for j in range(0, len(values), per)]
    oracle = np.mean([np.mean(b) for b in buckets])
    assert base.level.mean == pytest.approx(float(oracle), rel=1e-9, abs=1e-6)


def test_sigma_zero_is_guarded() -> None:
    """A constant series (even at 0) is a valid baseline: equal values score 0, any change is extreme."""
    base = SeasonalBaseline(bucket_s=60, min_points=5)
    for i in range(50):
        base.update(i * 60.0, 0.0)
    est = base.estimate(50 * 60.0)
    assert est is not None  # mean 0 is a baseline, not "no baseline"
    assert est.expected == 0.0
    assert est.sigma > 0  # floored
    assert est.deviation(0.0) == 0.0
    assert est.deviation(1.0) > 1e3
    assert Estimate(5.0, 0.0, Season.NONE).deviation(4.0) == -1e6


def test_outliers_do_not_drag_the_baseline() -> None:
    """A burst of huge values moves the expected value by far less than the burst."""
    rng = np.random.default_rng(1)
    base = SeasonalBaseline(bucket_s=300, level_buckets=24, season=Season.NONE)
    t = 0.0
    for x in rng.normal(100, 5, 2000):
        base.update(t, float(x))
        t += 300
    before = base.estimate(t)
    for _ in range(6):
        base.update(t, 10_000.0)
        t += 300
    after = base.estimate(t)
    assert before is not None
    assert after is not None
    assert abs(after.expected - before.expected) < 3 * before.sigma


def _daily(t: float) -> float:
    return 100 + 60 * math.sin(2 * math.pi * t / 86_400)


def test_auto_season_learns_the_daily_profile() -> None:
    """On a strong daily cycle AUTO picks the daily model and expects the night's low."""
    rng = np.random.default_rng(2)
    base = SeasonalBaseline(bucket_s=3600)
    step = 900.0
    for i in range(14 * 96):
        t = i * step
        base.update(t, _daily(t) + float(rng.normal(0, 2)))
    t = 14 * 86_400 + 0.75 * 86_400  # 18:00, the trough of the sine
    est = base.estimate(t)
    assert est is not None
    assert est.season is Season.DAILY
    assert est.expected == pytest.approx(_daily(t), abs=15)
    assert abs(est.deviation(_daily(t))) < 3


def test_baseline_pickles_and_continues_identically() -> None:
    """A pickled baseline gives the same estimates as the original from then on."""
    rng = np.random.default_rng(3)
    a = SeasonalBaseline(bucket_s=3600)
    for i in range(3000):
        a.update(i * 600.0, float(rng.normal(10, 1)))
    b = pickle.loads(pickle.dumps(a))  # noqa: S301  # our own state, round-tripped on purpose
    for i in range(3000, 3200):
        t, x = i * 600.0, float(rng.normal(10, 1))
        assert a.estimate(t) == b.estimate(t)
        a.update(t, x)
        b.update(t, x)


def test_rolling_stats_rejects_empty_window() -> None:
    """A window of zero values is a configuration error."""
    with pytest.raises(ValueError, match="window"):
        RollingStats(0)


def test_slot_profile_keeps_a_real_shape_and_flattens_a_shape_of_noise() -> None:
    """Empirical-Bayes shrinkage: slot means of a strong shape stay; two noisy samples a slot are pulled in."""
    rng = np.random.default_rng(5)
    shape = SlotProfile(24, 14)
    noise = SlotProfile(168, 2)
    for _day in range(14):
        for slot in range(24):
            shape.update(slot, 10.0 * math.sin(2 * math.pi * slot / 24) + float(rng.normal(0, 0.5)))
    for _week in range(2):
        for slot in range(168):
            noise.update(slot, float(rng.normal(0, 1.0)))  # no weekly shape at all
    for slot in range(24):
        mean, shrunk = shape.mean(slot), shape.shrunk(slot)
        assert mean is not None
        assert shrunk is not None
        assert shrunk == pytest.approx(mean, abs=0.02)  # τ² ≈ 50 against s²/k ≈ 0.018
    raw = np.array([noise.mean(s) for s in range(168)], dtype=float)
    pulled = np.array([noise.shrunk(s) for s in range(168)], dtype=float)
    assert raw.std() > 0.5  # two samples of σ 1: ~0.7
    assert pulled.std() < 0.25 * raw.std()


@settings(max_examples=100, deadline=None)
@given(samples=st.lists(st.tuples(st.integers(0, 7), finite), min_size=1, max_size=60))
def test_slot_profile_shrinks_each_slot_between_its_mean_and_the_centre(samples: list[tuple[int, float]]) -> None:
    """A shrunk slot lies between its own mean and the mean of all slot means (inclusive)."""
    profile = SlotProfile(8, 3)
    for slot, x in samples:
        profile.update(slot, x)
    means = [m for s in range(8) if (m := profile.mean(s)) is not None]
    centre = sum(means) / len(means)
    for slot in range(8):
        mean, shrunk = profile.mean(slot), profile.shrunk(slot)
        if mean is None:
            assert shrunk is None
            continue
        assert shrunk is not None
        lo, hi = min(mean, centre), max(mean, centre)
        tol = 1e-9 * (1 + abs(mean) + abs(centre))
        if len(means) > 1:
            assert lo - tol <= shrunk <= hi + tol
        else:
            assert shrunk == pytest.approx(mean)


def test_a_flat_rate_of_quiet_hours_is_expected_at_its_rate() -> None:
    """Regression: a 6 % share of quiet hours (5-15 requests at night, most nights none fail)
    was expected at 0.0001-0.13 hour by hour by the two-sample weekly profile: 3 of 13 requests
    failing was then a decisive anomaly. Here (seed 11) the old profile strayed 0.074 from the
    rate at its worst hour (0.074 here without `shrink_weekly`); the level alone (24 noisy
    hours) strays ~0.03."""
    rng = np.random.default_rng(11)
    base = SeasonalBaseline(bucket_s=3600, shrink_weekly=True)  # as a product metric's detector builds it
    worst = 0.0
    for hour in range(28 * 24):
        t = hour * 3600.0
        n = int(10 + 90 * max(0.0, math.sin(2 * math.pi * (hour % 24) / 24)))  # 10 at night, up to 100
        share = float(rng.binomial(n, 0.06)) / n
        est = base.estimate(t)
        if hour >= 14 * 24 and est is not None:
            worst = max(worst, abs(est.expected - 0.06))
        base.update(t, share, math.sqrt(0.06 * 0.94 / n))
    assert worst < 0.045
