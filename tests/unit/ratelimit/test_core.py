# ruff: noqa: S301  # pickle only round-trips bytes these tests just produced
"""RateLimiter: precedence, state-change decisions, violations, escalating bans, expiry, pickling, orders."""

from __future__ import annotations

import gc
import pickle
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.ratelimit import (
    ALLOWED,
    BANNED,
    BLOCKED,
    HOUR,
    THROTTLED,
    Batch,
    KeyState,
    RateLimiter,
    RunLog,
    SlidingWindows,
    apply_action,
)
from schemas.ratelimit import TenantPolicy

T0 = 1_780_000_000.0


def limiter(**kw: object) -> RateLimiter:
    base: dict[str, object] = {"tenant_id": "acme", "per_minute": 3, "per_hour": None, "per_day": None}
    return RateLimiter([TenantPolicy.model_validate({**base, **kw})])


def hits(lim: RateLimiter, ip: str, times: list[float]) -> tuple[list[int], Batch]:
    out = lim.decide_batch([("acme", ip, T0 + t) for t in times])
    return out.verdicts, out


# Precedence: blacklist > whitelist > ban > limits.  Rows: (lists, banned?, expected)
PRECEDENCE = [
    ({"blacklist": ("10.0.0.0/8",), "whitelist": ("10.0.0.1",)}, True, BLOCKED),
    ({"whitelist": ("10.0.0.0/24",)}, True, ALLOWED),
    ({}, True, BANNED),
    ({}, False, THROTTLED),  # the 4th request in a minute with per_minute=3
]


@pytest.mark.parametrize(("lists", "banned", "expected"), PRECEDENCE)
def test_precedence(lists: dict[str, tuple[str, ...]], banned: bool, expected: int) -> None:
    """Blacklist beats whitelist beats an active ban beats the limits."""
    lim = limiter(**lists)
    if banned:
        lim.ban("acme", "10.0.0.1", T0 - 1, duration_s=3600)
    verdicts, _ = hits(lim, "10.0.0.1", [0, 1, 2, 3])
    assert verdicts[-1] == expected


def test_only_state_changes_are_emitted() -> None:
    """allowed → quota used up → throttled → allowed: one decision per change, none for steady states.

    per_minute=3, every request counts (also throttled ones):
      0 1 2 (the 3rd uses the quota up) | 3 4 (throttled) | ....... 62.5: (2.5, 62.5] holds 3, 4, 62.5
      → allowed, and the quota used up again; 63 would be throttled
    """
    lim = limiter()
    verdicts, out = hits(lim, "10.0.0.1", [0, 1, 2, 3, 4, 62.5])
    assert verdicts == [ALLOWED] * 3 + [THROTTLED] * 2 + [ALLOWED]
    assert [(d.state, d.reason) for d in out.decisions] == [
        ("allowed", "exhausted:minute"), ("throttled", "limit:minute"), ("allowed", "exhausted:minute")]
    exhausted = out.decisions[0]
    assert (exhausted.limit, exhausted.remaining, exhausted.ts.timestamp()) == (3, 0, T0 + 2)
    assert exhausted.reset_ts is not None
    assert exhausted.reset_ts.timestamp() == T0 + 60, "room for one more once t=0 has left"
    assert exhausted.retry_after_s == pytest.approx(58.0)
    throttled = out.decisions[1]
    assert (throttled.limit, throttled.remaining) == (3, 0)
    # Reset, as of t=3: room for one more once t=1 has left, at 61; Retry-After from t=3
    assert throttled.reset_ts is not None
    assert throttled.reset_ts.timestamp() == T0 + 61
    assert throttled.retry_after_s == pytest.approx(58.0)
    assert [v.limit_name for v in out.violations] == ["minute"]


def test_throttle_lifts_in_event_time() -> None:
    """A throttled IP that goes quiet gets an "allowed" decision from expire() at its reset time."""
    lim = limiter()
    hits(lim, "10.0.0.1", [0, 1, 2, 3])
    assert lim.expire(T0 + 60.5).decisions == []  # t=1, t=2 and t=3 still inside
    lifted = lim.expire(T0 + 63)
    assert [(d.state, d.reason) for d in lifted.decisions] == [("allowed", "reset")]
    assert lim.expire(T0 + 1000).decisions == []


def test_a_used_up_quota_lifts_in_event_time_even_if_the_ip_goes_quiet() -> None:
    """The "exhausted" announcement is undone by expire() once the window has room, restored keys too.

    per_minute=3: 0 1 2 (quota used up; room again at 60) | quiet → "reset" at 60 with 1 remaining
    """
    lim = limiter()
    _, out = hits(lim, "10.0.0.1", [0, 1, 2])
    assert [(d.state, d.reason, d.remaining) for d in out.decisions] == [("allowed", "exhausted:minute", 0)]
    fresh = limiter()  # a worker that restored the key from its table re-arms the same timer
    fresh.adopt("acme:10.0.0.1", pickle.loads(pickle.dumps(lim.store["acme:10.0.0.1"])))
    for lim_ in (lim, fresh):
        assert lim_.expire(T0 + 59.9).decisions == []
        lifted = lim_.expire(T0 + 60)
        assert [(d.state, d.reason, d.limit, d.remaining) for d in lifted.decisions] == [("allowed", "reset", 3, 1)]
        assert lim_.expire(T0 + 1000).decisions == []


def test_the_quota_of_the_window_ending_last_is_announced() -> None:
    """Two windows used up by the same request: the announcement names the one with room latest."""
    lim = limiter(per_minute=2, per_hour=2)
    _, out = hits(lim, "10.0.0.1", [0, 30])
    (d,) = out.decisions
    assert (d.reason, d.limit, d.remaining) == ("exhausted:hour", 2, 0)
    assert d.reset_ts is not None
    assert d.reset_ts.timestamp() == T0 + 3600


def test_bans_escalate_and_end_in_event_time() -> None:
    """Threshold violations → ban; each later ban doubles up to the cap; expire() ends them.

    per_minute=1, threshold 2 in an hour: violation = a minute going over (a burst of 2).
      ban 1: 60 s   ban 2: 120 s   ban 3: 150 s (cap)
    """
    lim = limiter(per_minute=1, violation_threshold=2, ban_base_s=60, ban_max_s=150)
    durations = []
    t = 0.0
    for _ in range(3):
        _, out = hits(lim, "10.0.0.2", [t, t + 0.1, t + 61, t + 61.1])  # two bursts → two violations
        started = [b for b in out.bans if b.action == "started"]
        assert len(started) == 1
        assert started[0].reason == "auto"
        durations.append((started[0].end - started[0].start).total_seconds())
        end = started[0].end.timestamp()
        assert lim.expire(end - 0.001).bans == []
        ended = lim.expire(end)
        assert [b.action for b in ended.bans] == ["ended"]
        assert [d.state for d in ended.decisions] == ["allowed"]
        t = end - T0 + 120  # let the minute window drain
    assert durations == [60.0, 120.0, 150.0]


def test_banned_ip_is_banned_until_end_then_judged_by_limits() -> None:
    """During a manual ban every request is banned; after it, limits apply again."""
    lim = limiter()
    out = lim.ban("acme", "10.0.0.3", T0, duration_s=100)
    assert [d.state for d in out.decisions] == ["banned"]
    verdicts, out = hits(lim, "10.0.0.3", [1, 50, 99.9, 100])
    assert verdicts == [BANNED, BANNED, BANNED, ALLOWED]
    assert [b.action for b in out.bans] == ["ended"]  # ended lazily by the request at 100


def test_unban_ends_ban_now() -> None:
    """A manual unban emits the ended ban and an allowed decision; its timer then does nothing."""
    lim = limiter()
    lim.ban("acme", "10.0.0.4", T0, duration_s=100)
    out = lim.unban("acme", "10.0.0.4", T0 + 10)
    assert [(b.action, b.end.timestamp()) for b in out.bans] == [("ended", T0 + 10)]
    assert [d.state for d in out.decisions] == ["allowed"]
    assert lim.expire(T0 + 200).bans == []
    assert lim.unban("acme", "10.0.0.4", T0 + 300).bans == []


def test_shadow_mode_decides_but_flags() -> None:
    """Shadow tenants get the same decisions and violations, all marked shadow."""
    lim = limiter(shadow=True)
    verdicts, out = hits(lim, "10.0.0.5", [0, 1, 2, 3])
    assert verdicts[-1] == THROTTLED
    assert out.decisions
    assert all(d.shadow for d in out.decisions)
    assert out.violations
    assert all(v.shadow for v in out.violations)


def test_disabled_tenant_counts_nothing_and_lifts() -> None:
    """Disabling a tenant allows everything, keeps no new state, and lifts a throttle on the next request."""
    lim = limiter()
    hits(lim, "10.0.0.6", [0, 1, 2, 3])
    apply_action(lim, "acme", "tenant.disable", {}, T0 + 4)
    verdicts, out = hits(lim, "10.0.0.6", [5, 6])
    assert verdicts == [ALLOWED, ALLOWED]
    assert [(d.state, d.reason) for d in out.decisions] == [("allowed", "disabled")]
    assert hits(lim, "10.0.0.99", [7])[1].changed == set()


def test_unknown_tenant_without_default_is_not_limited() -> None:
    """No policy and no default: allowed, no state kept; with a default template the tenant is limited."""
    lim = RateLimiter()
    assert lim.decide_batch([("other", "10.0.0.1", T0)] * 5).verdicts == [ALLOWED] * 5
    assert len(lim.store) == 0
    lim = RateLimiter(default=TenantPolicy(tenant_id="default", per_minute=1, per_hour=None, per_day=None))
    assert lim.decide_batch([("other", "10.0.0.1", T0)] * 2).verdicts == [ALLOWED, THROTTLED]


def test_batch_reports_changed_keys_once() -> None:
    """decide_batch lists each touched key once, for one table write per key per batch."""
    lim = limiter()
    out = lim.decide_batch([("acme", ip, T0 + i) for i, ip in enumerate(["10.0.0.1", "10.0.0.2", "10.0.0.1"])])
    assert out.changed == {"acme:10.0.0.1", "acme:10.0.0.2"}


def test_state_round_trips_through_pickle_per_key_and_whole() -> None:
    """Each KeyState and the whole limiter pickle; a restored limiter decides like the original."""
    lim = limiter(violation_threshold=1, ban_base_s=30)
    hits(lim, "10.0.0.7", [0, 1, 2, 3])  # → violation → ban
    st = lim.store["acme:10.0.0.7"]
    assert pickle.loads(pickle.dumps(st)) == st
    clone = pickle.loads(pickle.dumps(lim))
    fresh = limiter(violation_threshold=1, ban_base_s=30)
    fresh.adopt("acme:10.0.0.7", pickle.loads(pickle.dumps(st)))  # per-key restore from a table
    times = [10.0, 40.0, 200.0]
    expected = hits(lim, "10.0.0.7", times)[0]
    assert hits(clone, "10.0.0.7", times)[0] == expected
    assert hits(fresh, "10.0.0.7", times)[0] == expected
    assert [b.action for b in fresh.expire(T0 + 10_000).bans] == []  # ban ended on the request at 40


def test_idle_keys_are_evicted_after_a_day() -> None:
    """expire() evicts keys idle for a day (and nothing else) from hour buckets, not a full scan."""
    lim = limiter()
    hits(lim, "10.0.0.8", [0])
    hits(lim, "10.0.0.9", [0, 80_000])
    assert lim.expire(T0 + 3600).evicted == []
    out = lim.expire(T0 + 86_400 + 7200)
    assert out.evicted == ["acme:10.0.0.8"]
    assert set(lim.store) == {"acme:10.0.0.9"}
    assert isinstance(lim.store["acme:10.0.0.9"], KeyState)


def test_replayed_ban_order_changes_nothing() -> None:
    """A ban order applied again (a replay after a crash, at a later time) leaves the ban as it was.

    order A at 0 → ban 0..100; A again at 50 → nothing (not a ban 50..150); order B at 60 → ban 60..160
    """
    lim = limiter()
    first = lim.ban("acme", "10.0.0.10", T0, duration_s=100, order_id="A")
    assert [b.action for b in first.bans] == ["started"]
    again = lim.ban("acme", "10.0.0.10", T0 + 50, duration_s=100, order_id="A")
    assert again == Batch()
    assert [b.action for b in lim.expire(T0 + 100).bans] == ["ended"]  # still ends at 100
    assert lim.ban("acme", "10.0.0.10", T0 + 120, duration_s=100, order_id="A") == Batch()  # after its end too
    other = lim.ban("acme", "10.0.0.10", T0 + 130, duration_s=100, order_id="B")
    assert [(b.action, b.end.timestamp()) for b in other.bans] == [("started", T0 + 230)]


def test_replayed_unban_order_changes_nothing() -> None:
    """An unban order applied again does not end a ban that a newer order started."""
    lim = limiter()
    lim.ban("acme", "10.0.0.11", T0, duration_s=1000, order_id="A")
    assert [b.action for b in lim.unban("acme", "10.0.0.11", T0 + 10, order_id="B").bans] == ["ended"]
    assert lim.unban("acme", "10.0.0.11", T0 + 20, order_id="B") == Batch()
    verdicts, _ = hits(lim, "10.0.0.11", [21])
    assert verdicts == [ALLOWED]
    lim.ban("acme", "10.0.0.11", T0 + 30, duration_s=1000)  # a ban without an order id keeps B as the last order
    assert lim.unban("acme", "10.0.0.11", T0 + 40, order_id="B") == Batch()
    assert hits(lim, "10.0.0.11", [41])[0] == [BANNED]


def test_ban_order_is_remembered_through_pickle_and_adopt() -> None:
    """The last order id lives in the key state: a limiter rebuilt from the state still skips the replay."""
    lim = limiter()
    lim.ban("acme", "10.0.0.12", T0, duration_s=100, order_id="nonce-1")
    fresh = limiter()
    fresh.adopt("acme:10.0.0.12", pickle.loads(pickle.dumps(lim.store["acme:10.0.0.12"])))
    assert fresh.ban("acme", "10.0.0.12", T0 + 40, duration_s=100, order_id="nonce-1") == Batch()
    assert [b.end.timestamp() for b in fresh.expire(T0 + 100).bans] == [T0 + 100]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 0.6), st.floats(0, 2 * HOUR)), min_size=1, max_size=120))
def test_decide_counts_like_the_sliding_windows(gaps: list[float]) -> None:
    """decide() inlines SlidingWindows.hit: its key state stays word for word the run log hit() builds.

    Would fail if the inlined copy drifted from window.py (which the oracle tests check).
    """
    lim = RateLimiter([TenantPolicy(tenant_id="acme", per_minute=None, per_hour=None, per_day=None)])
    w, log = SlidingWindows(), RunLog()
    t = T0
    for gap in gaps:
        t += gap
        lim.decide_batch([("acme", "10.0.0.13", t)])
        w.hit(log, t)
    assert list(lim.store["acme:10.0.0.13"]) == list(log)


def test_a_quiet_key_is_one_small_object() -> None:
    """A key seen once is one array of 10 words, nothing else (the memory goal: ≤ 200 B per key).

    Would fail if KeyState grew a header word, an attribute or a per-key object.
    """
    lim = limiter()
    hits(lim, "10.0.0.14", [0])
    state = lim.store["acme:10.0.0.14"]
    assert type(state) is KeyState
    assert len(state) == 10
    assert gc.get_referents(state) == [KeyState]  # no other object hangs off it
    assert sys.getsizeof(state) <= 160
    assert state.off is None


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0.5, 30.0), min_size=3, max_size=40),
       cuts=st.lists(st.floats(0.0, 1.0), max_size=4))
def test_lifts_do_not_depend_on_how_event_time_is_cut(gaps: list[float], cuts: list[float]) -> None:
    """Expiring to T in one call or in several steps gives the same decisions: a lift that re-arms
    itself for a time already passed fires in the same call (a restart cuts event time elsewhere)."""
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    end = times[-1] + 7200
    got = []
    for steps in ([], sorted(times[-1] + c * 7200 for c in cuts)):
        lim = limiter(per_minute=3, per_hour=10)
        _, out = hits(lim, "10.0.0.1", times)
        decisions = [(d.state, d.reason, d.ts) for d in out.decisions]
        for t in [*steps, end]:
            decisions += [(d.state, d.reason, d.ts) for d in lim.expire_timers(T0 + t).decisions]
        got.append(decisions)
    assert got[0] == got[1]
