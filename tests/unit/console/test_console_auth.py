"""The console's pure authentication decisions: TOTP, passwords, sessions, CSRF, throttling, redirects."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.console import totp
from pipeline.console.auth import LoginThrottle, SessionStore, hash_password, safe_next, tokens_match, verify_password

# RFC 6238 appendix B: the SHA-1 seed "12345678901234567890", 8-digit codes.
_RFC_SEED = base64.b32encode(b"12345678901234567890").decode()
_RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"),
                (2000000000, "69279037"), (20000000000, "65353130")]


@pytest.mark.parametrize(("now", "code"), _RFC_VECTORS)
def test_totp_matches_rfc_6238_vectors(now: int, code: str) -> None:
    """Our TOTP gives the RFC's SHA-1 test vector codes."""
    assert totp.totp(_RFC_SEED, now, digits=8) == code


def test_hotp_matches_rfc_4226_vectors() -> None:
    """HOTP of counters 0..3 under the RFC 4226 seed."""
    key = b"12345678901234567890"
    assert [totp.hotp(key, c) for c in range(4)] == ["755224", "287082", "359152", "969429"]


def test_verify_allows_one_step_of_drift_and_never_a_used_step() -> None:
    """A code from the previous or next step is accepted once; replays and older codes are refused."""
    secret, now = totp.new_secret(), 1_700_000_000.0
    previous = totp.totp(secret, now - totp.STEP_S)
    step = totp.verify(secret, previous, now)
    assert step == int(now // totp.STEP_S) - 1
    assert totp.verify(secret, previous, now, after_step=step) is None, "a used code cannot be replayed"
    assert totp.verify(secret, totp.totp(secret, now - 3 * totp.STEP_S), now) is None, "too old"
    assert totp.verify(secret, "12345", now) is None
    assert totp.verify(secret, "abcdef", now) is None


@given(st.integers(min_value=0, max_value=2**40))
def test_current_code_always_verifies(now: int) -> None:
    """Whatever the time, the code of that time verifies at that time."""
    secret = _RFC_SEED
    assert totp.verify(secret, totp.totp(secret, now), now) == now // totp.STEP_S


def test_provisioning_uri_names_issuer_and_secret() -> None:
    """The otpauth URI carries the secret and the issuer."""
    uri = totp.provisioning_uri("ABC", "alice@example.com")
    assert uri.startswith("otpauth://totp/tenantwatch%3Aalice%40example.com?")
    assert "secret=ABC" in uri
    assert "issuer=tenantwatch" in uri


def test_passwords_hash_with_salt_and_verify() -> None:
    """The same password hashes differently each time; only it verifies; junk hashes never do."""
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b
    assert a.startswith("scrypt$")
    assert verify_password("correct horse", a)
    assert not verify_password("correct horsE", a)
    assert not verify_password("correct horse", "scrypt$junk")
    assert not verify_password("correct horse", "md5$1$2$3$4$5")


def test_sessions_expire_when_idle_and_at_their_maximum() -> None:
    """Use extends a session up to its maximum age; idleness ends it; a dropped one is gone."""
    store = SessionStore(idle_s=100, max_s=250)
    s = store.create("alice", now=1000)
    assert store.get(s.token, 1099) is s
    assert store.get(s.token, 1198) is s, "used at 1099: alive until 1199"
    assert store.get(s.token, 1249) is s
    assert store.get(s.token, 1250) is None, "250 s after sign-in it ends whatever the use"
    t = store.create("bob", now=2000)
    assert store.get(t.token, 2100) is None, "100 s idle"
    u = store.create("carol", now=3000)
    store.drop(u.token)
    assert store.get(u.token, 3001) is None
    assert store.get(None, 3001) is None
    assert store.get("", 3001) is None


def test_sessions_are_bounded() -> None:
    """The oldest sign-in goes first when the store is full."""
    store = SessionStore(max_sessions=2)
    first = store.create("a", 0)
    store.create("b", 1)
    store.create("c", 2)
    assert len(store) == 2
    assert store.get(first.token, 3) is None


def test_csrf_tokens_match_only_exactly() -> None:
    """Missing, empty and different tokens never match."""
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("abc", None)
    assert not tokens_match("abc", "")
    assert not tokens_match(None, None)
    assert not tokens_match("", "")


def test_login_throttle_blocks_after_max_failures_until_the_window_passes() -> None:
    """Five failures in the window block the key until the oldest leaves; success clears it."""
    throttle = LoginThrottle(max_failures=5, window_s=300)
    for i in range(4):
        throttle.failed("addr:1", 100 + i)
    assert throttle.retry_after("addr:1", 104) == 0
    throttle.failed("addr:1", 104)
    assert throttle.retry_after("addr:1", 105) == pytest.approx(295)
    assert throttle.retry_after("addr:2", 105) == 0, "other keys are not affected"
    assert throttle.retry_after("addr:1", 400) == 0, "the first failure has left the window"
    throttle.failed("addr:3", 0)
    throttle.succeeded("addr:3")
    assert throttle.retry_after("addr:3", 1) == 0


@pytest.mark.parametrize(("target", "expected"), [
    ("/offenders?tenant=a", "/offenders?tenant=a"), ("//evil.example/", "/"), ("/\\evil.example", "/"),
    ("https://evil.example/", "/"), ("", "/"), (None, "/"), ("/a\r\nSet-Cookie: x", "/"), ("javascript:x", "/"),
])
def test_safe_next_refuses_open_redirects(target: str | None, expected: str) -> None:
    """Only a path of this site is a redirect target."""
    assert safe_next(target) == expected
