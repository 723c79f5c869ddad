"""Headers, statuses and client addresses of the edge middleware (pure parts)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas._base import canonical_ip as pipeline_canonical_ip
from tenantwatch_edge.client_ip import ClientIp, canonical_ip
from tenantwatch_edge.decisions import ALLOWED, BANNED, BLOCKED, THROTTLED, Verdict
from tenantwatch_edge.headers import headers, status

POLICY = '"minute";q=10;w=60'


@pytest.mark.parametrize(("verdict", "code", "expected"), [
    (Verdict(policy=POLICY), 0, [("ratelimit-policy", POLICY)]),
    (Verdict(), 0, []),
    (Verdict(THROTTLED, "limit:minute", 10, "minute", 36.2, policy=POLICY), 429,
     [("ratelimit-policy", POLICY), ("retry-after", "37"), ("ratelimit", '"minute";r=0;t=37')]),
    (Verdict(BANNED, "ban", None, "ban", 0.2), 429, [("retry-after", "1"), ("ratelimit", '"ban";r=0;t=1')]),
    (Verdict(BANNED, "ban", None, "ban", None), 429, [("ratelimit", '"ban";r=0')]),
    (Verdict(BLOCKED, "blacklist", policy=POLICY), 403, [("ratelimit-policy", POLICY)]),
    (Verdict(THROTTLED, "limit:minute", 10, "minute", 5.0, shadow=True, policy=POLICY), 0,
     [("ratelimit-policy", POLICY), ("ratelimit", '"minute";r=0;t=5')]),
])
def test_status_and_headers(verdict: Verdict, code: int, expected: list[tuple[str, str]]) -> None:
    """429 with Retry-After for throttles and bans, 403 for the blacklist; shadow: served, would-be RateLimit."""
    assert status(verdict) == code
    assert headers(verdict) == expected
    assert verdict.state != ALLOWED or not verdict.refused


@pytest.mark.parametrize(("peer", "xff", "trusted", "client"), [
    ("192.0.2.1", None, [], "192.0.2.1"),
    ("192.0.2.1", "198.51.100.9", [], "192.0.2.1"),  # no proxy trusted: the header is the client's word
    ("10.0.0.5", "198.51.100.9", ["10.0.0.0/8"], "198.51.100.9"),
    ("10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.7", ["10.0.0.0/8"], "198.51.100.9"),  # spoofed left part ignored
    ("192.0.2.1", "198.51.100.9", ["10.0.0.0/8"], "192.0.2.1"),  # untrusted peer: its header is not believed
    ("10.0.0.5", "10.0.0.6, 10.0.0.7", ["10.0.0.0/8"], "10.0.0.6"),  # all proxies: the left-most seen
    ("10.0.0.5", "garbage, 198.51.100.9", ["10.0.0.0/8"], "198.51.100.9"),
    ("10.0.0.5", "198.51.100.9, garbage", ["10.0.0.0/8"], "10.0.0.5"),
    ("::ffff:192.0.2.1", None, [], "192.0.2.1"),
    ("2001:DB8::1", None, [], "2001:db8::1"),
    ("unix-socket", None, [], None),
])
def test_client_ip_behind_trusted_proxies(peer: str, xff: str | None, trusted: list[str], client: str | None) -> None:
    """The client is the right-most X-Forwarded-For hop that is not a trusted proxy."""
    assert ClientIp(trusted).resolve(peer, xff) == client


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.ip_addresses().map(str) | st.text(max_size=50))
def test_canonical_ip_agrees_with_the_pipeline(text: str) -> None:
    """The edge keys IPs exactly as the pipeline does (its decisions must be found)."""
    try:
        expected: str | None = pipeline_canonical_ip(text)
    except ValueError:
        expected = None
    if text != text.strip():  # the edge strips header whitespace; the pipeline is given clean text
        return
    assert canonical_ip(text) == expected
