"""The edge's decisions cache: what it answers, when refusals end in event time, what it refuses to read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.ratelimit import Decision, TenantPolicy
from tenantwatch_edge.decisions import ALLOWED, BANNED, BLOCKED, THROTTLED, DecisionCache, policy_header

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def decision(tenant: str, ip: str, state: str, reason: str, at: float, reset: float | None = None,  # noqa: PLR0917
             *,
             limit: int | None = None, shadow: bool = False) -> tuple[bytes, bytes]:
    """A record of the decisions topic exactly as the rate-limit agent writes it (the pipeline's model)."""
    d = Decision.create(tenant_id=tenant, ip=ip, state=state, reason=reason, limit=limit,
                        remaining=0 if state == "throttled" else None,
                        reset_ts=None if reset is None else T0 + timedelta(seconds=reset),
                        retry_after_s=None if reset is None else reset - at, shadow=shadow,
                        ts=T0 + timedelta(seconds=at))
    return f"{tenant}:{ip}".encode(), d.model_dump_json().encode()


def test_unknown_key_is_allowed_without_headers() -> None:
    """A key the pipeline never refused is allowed, with no policy known."""
    v = DecisionCache().lookup("acme", "192.0.2.1")
    assert (v.state, v.enforced, v.policy) == (ALLOWED, False, "")


def test_throttle_holds_until_event_time_passes_its_reset() -> None:
    """A throttle answers 429 with the event-time seconds left; once newer decisions pass its reset, it is over."""
    c = DecisionCache()
    assert c.apply_decision(*decision("acme", "192.0.2.1", "throttled", "limit:minute", 10, 60, limit=10))
    v = c.lookup("acme", "192.0.2.1")
    assert (v.state, v.enforced, v.window, v.limit, v.reset_s) == (THROTTLED, True, "minute", 10, 50.0)
    c.apply_decision(*decision("acme", "192.0.2.9", "banned", "ban", 59, 659))  # another key moves time to 59
    assert c.lookup("acme", "192.0.2.1").reset_s == 1.0
    c.apply_decision(*decision("other", "192.0.2.7", "blocked", "blacklist", 60))  # time reaches 60
    assert c.lookup("acme", "192.0.2.1").state == ALLOWED, "ended in event time without waiting for 'allowed'"
    assert c.lookup("acme", "192.0.2.9").state == BANNED, "a longer ban still holds"


def test_each_partition_keeps_its_own_event_time() -> None:
    """Time moved on by decisions of another partition does not end a refusal (the pipeline's
    watermarks are per partition, and a key's decisions partition is its requests partition)."""
    c = DecisionCache()
    c.apply_decision(*decision("acme", "192.0.2.1", "throttled", "limit:minute", 10, 60), partition=0)
    c.apply_decision(*decision("acme", "192.0.2.2", "banned", "ban", 500, 1100), partition=1)
    assert c.lookup("acme", "192.0.2.1").state == THROTTLED, "partition 1's time is not partition 0's"
    assert c.now == (T0 + timedelta(seconds=500)).timestamp()
    c.apply_decision(*decision("acme", "192.0.2.3", "blocked", "blacklist", 61), partition=0)
    assert c.lookup("acme", "192.0.2.1").state == ALLOWED


def test_allowed_decision_ends_a_refusal_and_frees_the_key() -> None:
    """The pipeline's 'allowed' (ban ended, reset) ends the refusal at once and drops the key from memory."""
    c = DecisionCache()
    c.apply_decision(*decision("acme", "192.0.2.1", "banned", "ban", 10, 610))
    assert len(c) == 1
    c.apply_decision(*decision("acme", "192.0.2.1", "allowed", "ban-ended", 610))
    assert (c.lookup("acme", "192.0.2.1").state, len(c)) == (ALLOWED, 0)


def test_blocked_never_expires_and_shadow_is_not_enforced() -> None:
    """Blacklisted keys stay blocked whatever the time; a shadow tenant's refusal is reported, not enforced."""
    c = DecisionCache()
    c.apply_decision(*decision("acme", "203.0.113.5", "blocked", "blacklist", 1))
    c.apply_decision(*decision("shade", "192.0.2.1", "throttled", "limit:hour", 2, 3600, limit=5, shadow=True))
    shadow = c.lookup("shade", "192.0.2.1")
    assert (shadow.state, shadow.refused, shadow.enforced) == (THROTTLED, True, False)
    c.apply_decision(*decision("acme", "192.0.2.200", "allowed", "ok", 10**6))
    blocked = c.lookup("acme", "203.0.113.5")
    assert (blocked.state, blocked.enforced) == (BLOCKED, True)
    assert c.now == (T0 + timedelta(seconds=10**6)).timestamp()
    assert c.lookup("shade", "192.0.2.1").state == ALLOWED, "its hour passed in event time"


def test_latest_record_of_a_key_wins_as_on_a_compacted_topic() -> None:
    """Replaying a key's history (what a restarted edge reads) leaves its last decision in force."""
    c = DecisionCache()
    for rec in (decision("acme", "192.0.2.1", "throttled", "limit:minute", 1, 60),
                decision("acme", "192.0.2.1", "banned", "ban", 2, 602),
                decision("acme", "192.0.2.1", "allowed", "ban-ended", 602),
                decision("acme", "192.0.2.1", "blocked", "blacklist", 700)):
        c.apply_decision(*rec)
    assert c.lookup("acme", "192.0.2.1").state == BLOCKED
    c.apply_decision(b"acme:192.0.2.1", None)  # a tombstone
    assert c.lookup("acme", "192.0.2.1").state == ALLOWED


def test_policy_header_from_the_pipelines_policy_records() -> None:
    """A tenant's TenantPolicy record gives its RateLimit-Policy; a disabled tenant has none."""
    c = DecisionCache()
    p = TenantPolicy(tenant_id="acme", per_minute=10, per_hour=1000, per_day=None)
    assert c.apply_policy(b"acme", p.model_dump_json().encode())
    assert c.lookup("acme", "192.0.2.1").policy == '"minute";q=10;w=60, "hour";q=1000;w=3600'
    c.apply_policy(b"acme", p.model_copy(update={"enabled": False}).model_dump_json().encode())
    assert c.lookup("acme", "192.0.2.1").policy == ""
    c.apply_policy(b"acme", None)
    assert c.lookup("acme", "192.0.2.1").policy == ""
    assert policy_header(None, None, 5) == '"day";q=5;w=86400'


def test_a_hostile_reason_never_reaches_a_header() -> None:
    """A decision record's reason is not copied into headers: only known window names are."""
    c = DecisionCache()
    c.apply_decision(*decision("acme", "192.0.2.1", "throttled", "limit:x\r\nSet-Cookie: a=b", 1, 60))
    v = c.lookup("acme", "192.0.2.1")
    assert (v.state, v.window) == (THROTTLED, "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["tenant_id", "ip", "state", "reason", "ts", "reset_ts", "limit", "shadow"]),
    st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.lists(st.integers(), max_size=2))))
def test_hostile_records_are_counted_never_raised(value: bytes) -> None:
    """Whatever lands on the topics, the cache counts what it cannot read and keeps answering."""
    c = DecisionCache()
    ok = c.apply_decision(b"k", value)
    assert ok or c.rejected == 1
    c.apply_policy(b"k", value)
    c.lookup("acme", "192.0.2.1")


def _fed_by_the_limiter(per_minute: int, times: list[float]) -> list[tuple[bool, int]]:
    """Per request: whether the edge refused it (fed every decision before the next request) and
    the rate limiter's verdict about it, the pipeline's own core deciding."""
    from agents.ratelimit import RateLimiter

    lim = RateLimiter([TenantPolicy(tenant_id="acme", per_minute=per_minute, per_hour=None, per_day=None,
                                    violation_threshold=1000)])
    cache, got = DecisionCache(), []
    t0 = T0.timestamp()
    for t in times:
        refused = cache.lookup("acme", "192.0.2.1").enforced
        out = lim.decide_batch([("acme", "192.0.2.1", t0 + t)])
        for d in out.decisions:
            assert cache.apply_decision(b"acme:192.0.2.1", d.model_dump_json().encode())
        got.append((refused, out.verdicts[0]))
    return got


def test_exactly_the_allowed_count_passes_a_burst() -> None:
    """5/minute, 12 requests in 6 s: the 5th announces the quota used up, so the edge serves 5 and refuses 7."""
    got = _fed_by_the_limiter(5, [i * 0.5 for i in range(12)])
    assert [refused for refused, _ in got] == [False] * 5 + [True] * 7
    assert [verdict for _, verdict in got] == [ALLOWED] * 5 + [THROTTLED] * 7


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.integers(1, 6), st.lists(st.floats(0.5, 40.0), min_size=1, max_size=40))
def test_the_edge_serves_no_request_the_limiter_throttles(per_minute: int, gaps: list[float]) -> None:
    """Whenever each decision reaches the edge before the IP's next request, no request the pipeline
    throttles was served: the one that would cross is refused already (requests ≥ 0.5 s apart: exact counts)."""
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    for refused, verdict in _fed_by_the_limiter(per_minute, times):
        assert refused or verdict == ALLOWED
