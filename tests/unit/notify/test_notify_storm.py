"""Alert-storm control: limit per recipient per window, digest of the rest, criticals always out."""

from __future__ import annotations

import pickle
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from notify_helpers import TS, notification

from agents.notify.storm import StormGuard, StormPolicy
from schemas.notify import Notification, Severity

T = TS.timestamp()


def _alert(
    i: int, at: float, *, recipient: str = "ops@acme.example", severity: Severity = Severity.WARNING
) -> Notification:
    return notification(
        "anomaly_alert", id=f"a{i}", recipient=recipient, severity=severity, ts=TS + timedelta(seconds=at - T)
    )


#  t(s):  0 1 2 3 4 5 … 39 | 3600
#         A A A A A f … f  | digest(35)   limit 5, window 3600 s
def test_storm_folds_beyond_the_limit_into_one_digest() -> None:
    """40 alerts in a window: 5 sent, 35 folded, one digest when the window closes."""
    guard = StormGuard(StormPolicy(limit=5, window=3600, digest_lines=10))
    sent = [n for i in range(40) for n in guard.offer(_alert(i, T + i), T + i).send]
    assert [n.id for n in sent] == [f"a{i}" for i in range(5)]
    assert guard.pending() == 35
    assert guard.flush(T + 3599) == []
    (digest,) = guard.flush(T + 3600)
    assert digest.kind == "alert_digest"
    assert digest.variables["count"] == 35
    assert digest.variables["folded"] == 10
    assert len(str(digest.variables["summary"]).splitlines()) == 10
    assert digest.severity is Severity.WARNING
    assert guard.pending() == 0


def test_critical_alerts_are_never_folded() -> None:
    """Over the limit, a critical alert still goes out at once."""
    guard = StormGuard(StormPolicy(limit=1, window=600))
    guard.offer(_alert(0, T), T)
    folded = guard.offer(_alert(1, T + 1), T + 1)
    crit = guard.offer(_alert(2, T + 2, severity=Severity.CRITICAL), T + 2)
    assert folded.folded
    assert not folded.send
    assert [n.id for n in crit.send] == ["a2"]


def test_limits_are_per_recipient_and_other_kinds_pass() -> None:
    """One recipient's storm does not hold back another's mail; trial mails are not alerts."""
    guard = StormGuard(StormPolicy(limit=1, window=600))
    guard.offer(_alert(0, T), T)
    assert guard.offer(_alert(1, T, recipient="b@acme.example"), T).send
    assert guard.offer(notification("welcome"), T).send
    assert not guard.offer(_alert(2, T), T).send


def test_digest_arrives_with_the_next_offer_after_the_window() -> None:
    """Flushing is also done by offer(): a closed window's digest comes first, then the new mail."""
    guard = StormGuard(StormPolicy(limit=1, window=600))
    guard.offer(_alert(0, T), T)
    guard.offer(_alert(1, T + 1), T + 1)
    later = guard.offer(_alert(2, T + 700), T + 700)
    assert [n.kind for n in later.send] == ["alert_digest", "anomaly_alert"]
    assert later.send[0].ts.timestamp() == T + 600


def test_guard_pickles_mid_window() -> None:
    """The guard's state round-trips through pickle and keeps counting."""
    guard = StormGuard(StormPolicy(limit=2, window=600))
    for i in range(3):
        guard.offer(_alert(i, T + i), T + i)
    copy = pickle.loads(pickle.dumps(guard))  # noqa: S301 - our own bytes
    assert copy.pending() == 1
    assert [n.variables["count"] for n in copy.flush(T + 600)] == [1]


@given(st.lists(st.tuples(st.integers(0, 7200), st.sampled_from(list(Severity)), st.sampled_from("ab")), max_size=80))
def test_nothing_is_ever_lost(offers: list[tuple[int, Severity, str]]) -> None:
    """Every alert is either sent or counted in exactly one digest; criticals are always sent."""
    guard = StormGuard(StormPolicy(limit=3, window=900))
    sent, digested = [], 0
    for i, (dt, sev, who) in enumerate(sorted(offers, key=lambda o: o[0])):
        n = _alert(i, T + dt, recipient=f"{who}@acme.example", severity=sev)
        for out in guard.offer(n, T + dt).send:
            if out.kind == "alert_digest":
                digested += int(out.variables["count"] or 0)
            else:
                sent.append(out)
    digested += sum(int(d.variables["count"] or 0) for d in guard.flush(T + 10**6))
    assert len(sent) + digested == len(offers)
    assert sum(1 for o in offers if o[1] is Severity.CRITICAL) == sum(
        1 for n in sent if n.severity is Severity.CRITICAL
    )
