# ruff: noqa: S301  # pickle only round-trips bytes these tests just produced
"""The run-log counter against an exact sliding log: scenario tables, properties, error rate."""

from __future__ import annotations

import pickle
import random
from array import array
from bisect import bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.ratelimit.window import DAY, HOUR, MINUTE, WINDOWS, RunLog, SlidingWindows

T0 = 1_780_000_000.0  # timelines below are offsets from here, in seconds


class Oracle:
    """Exact sliding log per key: every request time, counted over (t - W, t]."""

    def __init__(self) -> None:
        self.log: dict[object, list[float]] = {}

    def hit(self, key: object, t: float) -> list[int]:
        q = self.log.setdefault(key, [])
        t = max(t, q[-1]) if q else t  # same clamp as the counter: time never goes back per key
        q.append(t)
        return [len(q) - bisect_right(q, t - w) for w in WINDOWS]


def wrong_decisions(events: list[tuple[object, float]], limits: tuple[int, int, int]) -> tuple[int, int]:
    """(wrong, total) over-limit decisions, per window per event, counter vs oracle."""
    w, oracle, logs = SlidingWindows(), Oracle(), {}
    wrong = total = 0
    for key, t in events:
        log = logs.setdefault(key, RunLog())
        used = w.hit(log, t)
        exact = oracle.hit(key, t)
        for k, limit in enumerate(limits):
            est_over = w.upper(log, k) > limit and round(w.count(log, k, used)) > limit
            wrong += est_over != (exact[k] > limit)
            total += 1
    return wrong, total


def poisson(rng: random.Random, rate: float, start: float, end: float) -> list[float]:
    out, t = [], start
    while (t := t + rng.expovariate(rate)) < end:
        out.append(t)
    return out


def adversarial(seed: int) -> list[tuple[object, float]]:
    """Many IPs; bursts that straddle window edges; long idle gaps; keys hovering at the limit."""
    rng = random.Random(seed)
    ev: list[tuple[object, float]] = []
    for ip in range(300):  # background: light IPs with long idle gaps (hours to days)
        t = T0 + rng.uniform(0, DAY)
        for _ in range(rng.randint(1, 30)):
            t += rng.choice((rng.uniform(0, 5), rng.uniform(HOUR, 2 * DAY)))
            ev.append((("bg", ip), t))
    for ip in range(20):  # burst of 20 (the minute limit) then probes right around a minute later
        a = T0 + rng.uniform(0, 3 * DAY)
        for _ in range(6):
            ev += [(("edge", ip), a + rng.uniform(0, 0.05)) for _ in range(20)]
            ev += [(("edge", ip), a + MINUTE + rng.uniform(-0.5, 0.5)) for _ in range(4)]
            a += rng.choice((MINUTE * 2.5, HOUR, DAY)) + rng.uniform(0, 1)
    for ip in range(5):  # 300 at once, probed an hour later: the fixed-window killer
        a = T0 + rng.uniform(0, DAY)
        ev += [(("hour", ip), a + rng.uniform(0, 1)) for _ in range(300)]
        ev += [(("hour", ip), a + HOUR + rng.uniform(-2, 2)) for _ in range(30)]
    for ip in range(3):  # sustained, close to the minute limit: near-threshold all the time
        ev += [(("steady", ip), t) for t in poisson(rng, 0.8 * 20 / MINUTE, T0, T0 + 6 * HOUR)]
    ev.sort(key=lambda e: e[1])
    return ev


LIMITS = (20, 300, 2000)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wrong_decisions_below_one_in_ten_thousand(seed: int) -> None:
    """Over a mixed adversarial stream the counter's over/under-limit calls match the exact log in ≥ 99.99 %."""
    wrong, total = wrong_decisions(adversarial(seed), LIMITS)
    assert total > 75_000
    assert wrong / total <= 1e-4, f"{wrong}/{total}"


def test_fixed_window_killer_is_exact() -> None:
    """A burst probed exactly one window later is counted exactly (bursts are tight runs).

    minute window, limit 3:
        t=0.0 ▮▮▮ (burst)          t=60.0 ▮ probe: burst gone (it is ≤ t-60) → 1, under
        |--------- 60 s ---------|
        t=59.99 ▮ probe: burst still in (t-60 < 0) → 4, over
    """
    w = SlidingWindows()
    for probe, expected in [(59.99, 4), (60.0, 1), (60.5, 1)]:
        log = RunLog()
        for _ in range(3):
            w.hit(log, T0)
        used = w.hit(log, T0 + probe)
        assert w.count(log, 0, used) == expected


# Scenario table: (request offsets from T0, window, expected count at the last request)
#   window edges are open on the left: a request exactly W ago has left.
SCENARIOS = [
    # t: 0 ........ 30 ........ 60 ▮      → the one at 0 has left: (0, 60] holds 30, 60
    ([0, 30, 60], 0, 2),
    # t: 0 ▮ 1 ▮ ... 59 ▮ 59.5 ▮           → all inside
    ([0, 1, 59, 59.5], 0, 4),
    # long idle gap: day-old request gone from every window
    ([0, DAY + 1], 2, 1),
    ([0, DAY - 1], 2, 2),
    ([0, HOUR], 1, 1),
    # late event (t=10 after t=20) counts at 20; at 81 both 20 and the late one have left
    ([20, 10, 81], 0, 1),
    # a tight run (0, 0.1 .. 0.4) straddling the edge at 60.25: 0.3, 0.4 still inside, plus the probe
    ([i / 10 for i in range(5)] + [60.25], 0, 2 + 1),
    # 0.5 s apart: separate runs, exact: at 60.2 the ones at 0.5 and 1.0 remain
    ([0, 0.5, 1.0, 60.2], 0, 3),
]


@pytest.mark.parametrize(("offsets", "k", "expected"), SCENARIOS)
def test_scenarios(offsets: list[float], k: int, expected: int) -> None:
    """Each scenario's count at its last request equals the exact log's (see the timelines)."""
    w, log = SlidingWindows(), RunLog()
    used = T0
    for off in offsets:
        used = w.hit(log, T0 + off)
    assert round(w.count(log, k, used)) == expected


times = st.lists(st.floats(0, 3 * DAY, allow_nan=False), min_size=1, max_size=200).map(sorted)


@settings(max_examples=60, deadline=None)
@given(times)
def test_upper_bound_never_undercounts(offsets: list[float]) -> None:
    """``upper`` (the fast-path bound) is never below the exact count, and ``count`` never exceeds it."""
    w, log, oracle = SlidingWindows(), RunLog(), Oracle()
    for off in offsets:
        used = w.hit(log, T0 + off)
        exact = oracle.hit(0, T0 + off)
        for k in range(3):
            assert w.upper(log, k) >= exact[k]
            assert w.count(log, k, used) <= w.upper(log, k)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 2 * HOUR, allow_nan=False), min_size=1, max_size=150))
def test_sparse_streams_are_exact(gaps: list[float]) -> None:
    """Requests at least a resolution apart form one-request runs, so every count is exact."""
    w, log, oracle = SlidingWindows(), RunLog(), Oracle()
    t = T0
    for gap in gaps:
        t += gap
        used = w.hit(log, t)
        exact = oracle.hit(0, t)
        assert [round(w.count(log, k, used)) for k in range(3)] == exact


@settings(max_examples=40, deadline=None)
@given(times)
def test_run_log_pickles_and_round_trips(offsets: list[float]) -> None:
    """A RunLog survives pickle unchanged and keeps counting identically afterwards."""
    w, log = SlidingWindows(), RunLog()
    for off in offsets:
        w.hit(log, T0 + off)
    copy = pickle.loads(pickle.dumps(log))
    assert copy == log
    t = T0 + offsets[-1] + 30
    assert w.hit(copy, t) == w.hit(log, t)
    assert copy == log


def test_heavy_key_memory_is_bounded() -> None:
    """Two requests a second for two days keep at most ~60/0.5 + 3600/10 + 86400/240 runs."""
    w, log = SlidingWindows(), RunLog()
    for i in range(int(2 * DAY * 2)):
        used = w.hit(log, T0 + i * 0.5)
    assert w.runs(log) <= 120 + 360 + 360 + 3
    assert abs(w.count(log, 2, used) - 2 * DAY) <= 1  # and the day count is still right


def test_bad_resolution_is_rejected() -> None:
    """Resolutions must grow with the window and stay inside it."""
    with pytest.raises(ValueError, match="resolutions"):
        SlidingWindows((10.0, 1.0, 240.0))


boundary_gaps = st.lists(
    st.one_of(st.sampled_from([MINUTE, HOUR, DAY, 0.5, 10.0, 240.0, 1e-6]), st.floats(0, 2 * MINUTE)),
    min_size=1, max_size=150,
)


@settings(max_examples=80, deadline=None)
@given(boundary_gaps, st.floats(0, 1e10))
def test_due_never_lets_a_head_run_outstay_its_window(gaps: list[float], start: float) -> None:
    """After every hit each window's head run is still inside it: the one-compare ``due`` test misses nothing.

    Gaps of exactly a window length probe the rounding of ``last + W`` against ``t - W``.
    """
    w, log, t = SlidingWindows(), RunLog(), start
    for gap in gaps:
        t += gap
        used = w.hit(log, t)
        heads = int(log[0])
        for head, width in ((heads % 2**26, MINUTE), (heads // 2**26, HOUR), (log.base, DAY)):
            assert log[head + 1] > used - width


@settings(max_examples=40, deadline=None)
@given(times, st.lists(st.integers(0, 12), min_size=1, max_size=4))
def test_owner_words_move_the_runs_not_the_counts(offsets: list[float], sizes: list[int]) -> None:
    """Growing or shrinking the owner section (a key's offenses) shifts the runs; counts and later hits agree."""
    w, plain, owned = SlidingWindows(), RunLog(), RunLog()
    for i, off in enumerate(offsets):
        w.hit(plain, T0 + off)
        w.hit(owned, T0 + off)
        if i % 7 == 0:
            owned.set_owner_words(array("d", [float(n) for n in range(sizes[i % len(sizes)])]))
    t = T0 + offsets[-1] + 45
    w.hit(plain, t)
    w.hit(owned, t)
    assert [w.count(owned, k, t) for k in range(3)] == [w.count(plain, k, t) for k in range(3)]
    assert list(owned[owned.base :]) == list(plain[plain.base :])
