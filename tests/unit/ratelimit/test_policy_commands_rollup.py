"""Tenant policy validation, CIDR prefix sets, admin commands, per-minute rollups."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.ratelimit import MinuteRollups, PrefixSet, RateLimiter, Rejected, apply_action
from agents.ratelimit.commands import Applied
from schemas.ratelimit import Rollup, TenantPolicy

T0 = 1_780_000_020.0  # a minute boundary


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"per_hour": -1}, "greater than or equal to 0"),
        ({"blacklist": ("10.0.0.1/8",)}, "has host bits set; did you mean 10.0.0.0/8"),
        ({"whitelist": ("not-an-ip",)}, "is not an IP address or CIDR range"),
        ({"whitelist": ("10.0.0.0/8",), "blacklist": ("10.0.0.0/8",)}, "on both whitelist and blacklist"),
        ({"ban_base_s": 100, "ban_max_s": 10}, "must be ≥ ban_base_s"),
    ],
)
def test_policy_rejects_bad_config_clearly(fields: dict[str, object], message: str) -> None:
    """Invalid limits and networks fail validation with a message that names the problem."""
    with pytest.raises(ValidationError, match=message):
        TenantPolicy.model_validate({"tenant_id": "acme", **fields})


def test_policy_canonicalises_networks() -> None:
    """IPs become /32 or /128 networks and IPv6 text is compressed."""
    p = TenantPolicy(tenant_id="acme", whitelist=("192.0.2.1", "2001:DB8:0:0::/64"))
    assert p.whitelist == ("192.0.2.1/32", "2001:db8::/64")


def _net(a: int, n: int) -> str:
    return str(ipaddress.ip_network((a, n), strict=False))


networks = st.one_of(
    st.builds(_net, st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(_net, st.integers(0, 2**128 - 1), st.integers(0, 128)),
)
addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv4Address(a))),
    st.integers(0, 2**128 - 1).map(lambda a: str(ipaddress.IPv6Address(a))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(networks, max_size=20), st.lists(addresses, min_size=1, max_size=10))
def test_prefix_set_agrees_with_linear_scan(nets: list[str], ips: list[str]) -> None:
    """Prefix-set membership equals checking every network one by one (v4 and v6)."""
    ps = PrefixSet(nets)
    parsed = [ipaddress.ip_network(n) for n in nets]
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        assert ps.contains(ip) == any(addr.version == n.version and addr in n for n in parsed)


def test_commands_change_policy_and_record_history() -> None:
    """limits.set, lists and shadow apply to the limiter and each returns a LimitConfig record."""
    lim = RateLimiter([TenantPolicy(tenant_id="acme")])
    res = apply_action(lim, "acme", "limits.set", {"per_minute": 2, "per_hour": None}, T0, actor="ops")
    assert isinstance(res, Applied)
    assert res.limits is not None
    assert (res.limits.per_minute, res.limits.per_hour, res.limits.actor) == (2, None, "ops")
    assert isinstance(apply_action(lim, "acme", "ip.blacklist", {"cidr": "2001:db8::/32"}, T0), Applied)
    assert lim.decide_batch([("acme", "2001:db8::5", T0)]).verdicts == [3]  # BLOCKED
    assert isinstance(apply_action(lim, "acme", "ip.unlist", {"cidr": "2001:db8::/32"}, T0), Applied)
    assert lim.decide_batch([("acme", "2001:db8::5", T0 + 1)]).verdicts == [0]
    res = apply_action(lim, "acme", "tenant.shadow", {"on": True}, T0)
    assert isinstance(res, Applied)
    assert res.limits is not None
    assert res.limits.shadow


@pytest.mark.parametrize(
    ("action", "params", "reason"),
    [
        ("limits.set", {"per_hour": -5}, "per_hour: Input should be greater than or equal to 0"),
        ("limits.set", {"per_week": 5}, "unknown params: per_week"),
        ("limits.set", {}, "needs at least one of"),
        ("ip.whitelist", {"cidr": "10.0.0.1/8"}, "did you mean 10.0.0.0/8"),
        ("ip.unlist", {"cidr": "10.0.0.0/8"}, "on neither list"),
        ("ip.ban", {"ip": "999.1.1.1"}, "is not an IP address"),
        ("ip.ban", {"ip": "10.0.0.1", "duration_s": -3}, "duration_s must be"),
        ("tenant.shadow", {"on": "yes"}, "on must be true or false"),
        ("anomaly.ack", {}, "is not a rate-limit action"),
        ("ip.nuke", {}, "unknown action"),
    ],
)
def test_commands_reject_with_reason(action: str, params: dict[str, object], reason: str) -> None:
    """Bad actions and params come back as Rejected with a clear reason, changing nothing."""
    lim = RateLimiter([TenantPolicy(tenant_id="acme")])
    before = lim.policy("acme")
    res = apply_action(lim, "acme", action, params, T0)  # type: ignore[arg-type]
    assert isinstance(res, Rejected)
    assert reason in res.reason
    assert lim.policy("acme") == before


def test_ban_command_bans_and_unban_lifts() -> None:
    """ip.ban / ip.unban go through the limiter and return its Ban and Decision records."""
    lim = RateLimiter([TenantPolicy(tenant_id="acme")])
    res = apply_action(lim, "acme", "ip.ban", {"ip": "10.0.0.1", "duration_s": 60}, T0)
    assert isinstance(res, Applied)
    assert [b.reason for b in res.batch.bans] == ["manual"]
    assert lim.decide_batch([("acme", "10.0.0.1", T0 + 1)]).verdicts == [2]  # BANNED
    res = apply_action(lim, "acme", "ip.unban", {"ip": "10.0.0.1"}, T0 + 2)
    assert isinstance(res, Applied)
    assert [b.action for b in res.batch.bans] == ["ended"]


def test_rollups_close_by_watermark_only() -> None:
    """A minute is emitted once the watermark passes its end, with counts, errors and latency stats.

    minute 0: ▮▮▮ (200, 404, 503)   minute 1: ▮   watermark 59.9 → nothing; 60 → minute 0
    """
    r = MinuteRollups()
    for i, (status, ms) in enumerate([(200, 10.0), (404, 20.0), (503, 400.0)]):
        r.add("acme", f"10.0.0.{i % 2}", T0 + i, status=status, latency_ms=ms, blocked=status == 404)
    r.add("acme", "10.0.0.9", T0 + 61, status=200, latency_ms=5.0)
    assert r.close(T0 + 59.9) == []
    (m0,) = r.close(T0 + 60)
    assert (m0.requests, m0.errors, m0.client_errors, m0.blocked, m0.distinct_ips) == (3, 1, 1, 1, 2)
    assert (m0.latency_sum_ms, m0.latency_max_ms) == (430.0, 400.0)
    assert 19.0 <= m0.latency_p50_ms <= 21.0
    assert m0.latency_p95_ms == 400.0
    # the id is Rollup.create's: one per (tenant, minute, part), so a re-sent part replaces itself
    assert m0.id == Rollup.create(**m0.model_dump(exclude={"id"})).id
    r.add("acme", "10.0.0.1", T0 + 5, status=200, latency_ms=1.0)  # too late for minute 0
    assert r.late == 1
    assert [x.requests for x in r.close(T0 + 120)] == [1]


_REQUESTS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 30), st.floats(0, 179, allow_nan=False),
              st.sampled_from([200, 404, 503]), st.floats(0, 5000, allow_nan=False)),
    max_size=60)


def _add(r: MinuteRollups, req: tuple[int, int, float, int, float]) -> None:
    tenant, ip, dt, status, ms = req
    r.add(f"t{tenant}", f"10.0.0.{ip}", T0 + dt, status=status, latency_ms=ms, blocked=status == 404)


@settings(max_examples=60, deadline=None)
@given(_REQUESTS, st.integers(0, 60), st.floats(0, 200))
def test_rollups_resume_from_their_table_after_a_crash(reqs: list, cut: int, mid: float) -> None:
    """Open minutes, their IP chunks and the closing mark written with each batch restore a part exactly.

    A worker that dies after `cut` requests (its table as written so far) and resumes from the
    table emits the same rollups as one that never stopped.
    """
    cut = min(cut, len(reqs))
    whole, before = MinuteRollups(part=2), MinuteRollups(part=2)
    table: dict[str, bytes] = {}

    def write_back() -> None:  # what the agent does after each batch
        for key, value in before.take_changes():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value

    for i, req in enumerate(reqs[:cut]):
        _add(whole, req)
        _add(before, req)
        if i % 4 == 3:  # batches of four requests
            write_back()
    expected = whole.close(T0 + mid)
    assert before.close(T0 + mid) == expected
    write_back()
    assert all(k.startswith(before.prefix) for k in table)
    after = MinuteRollups(part=2)
    for key, value in table.items():
        after.restore(key, value)
    for req in reqs[cut:]:
        _add(whole, req)
        _add(after, req)
    assert after.close(T0 + 400) == whole.close(T0 + 400)
    assert after.late == whole.late - before.late


def test_rollup_parts_sum_to_the_whole_minute() -> None:
    """Each partition's part carries its histogram: merged, the parts give the minute's figures."""
    whole, parts = MinuteRollups(), [MinuteRollups(part=p) for p in range(3)]
    for i in range(300):
        ip = f"10.0.{i % 7}.{i % 11}"
        for r in (whole, parts[hash(ip) % 3]):
            r.add("acme", ip, T0 + i % 60, status=503 if i % 9 == 0 else 200, latency_ms=1.0 + (i * 37) % 500)
    (w,) = whole.close(T0 + 60)
    got = [x for p in parts for x in p.close(T0 + 60)]
    assert len({x.id for x in got}) == len(got) > 1  # distinct ids: parts never replace each other
    assert sum(x.requests for x in got) == w.requests
    assert sum(x.errors for x in got) == w.errors
    assert sum(x.distinct_ips for x in got) == w.distinct_ips
    merged: dict[int, int] = {}
    for x in got:
        for b, c in x.latency_hist.items():
            merged[b] = merged.get(b, 0) + c
    assert merged == w.latency_hist
