"""Anomaly workflow: legal and illegal transitions, commands through the detector."""

from __future__ import annotations

import numpy as np
import pytest

from agents.anomaly.detector import StreamDetector
from agents.anomaly.workflow import ALLOWED, Rejected, Transition, apply_action, transition
from schemas.anomaly import (
    Anomaly,
    AnomalyStatus,
    Direction,
    MetricName,
    Rule,
    Season,
    Severity,
    Verdict,
    anomaly_id,
    to_datetime,
)
from schemas.commands import Action

T0 = 1_767_571_200.0
S = AnomalyStatus


def _anomaly(status: AnomalyStatus = S.ACTIVE) -> Anomaly:
    return Anomaly(
        id=anomaly_id("acme", "revenue", T0),
        tenant="acme",
        metric=MetricName.REVENUE,
        start_ts=to_datetime(T0),
        detected_ts=to_datetime(T0),
        last_ts=to_datetime(T0),
        value=10.0,
        expected=100.0,
        sigma=5.0,
        deviation_sigma=-18.0,
        deviation_pct=-90.0,
        peak_sigma=18.0,
        direction=Direction.DOWN,
        severity=Severity.CRITICAL,
        status=status,
        points=1,
        hst_score=None,
        verdict=Verdict.RULE_ONLY,
        threshold_sigma=2.5,
    )


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        (S.ACTIVE, Action.ANOMALY_ACK, S.ACKNOWLEDGED),
        (S.ACTIVE, Action.ANOMALY_RESOLVE, S.RESOLVED),
        (S.ACTIVE, Action.ANOMALY_FALSE_POSITIVE, S.FALSE_POSITIVE),
        (S.ACKNOWLEDGED, Action.ANOMALY_RESOLVE, S.RESOLVED),
        (S.ACKNOWLEDGED, Action.ANOMALY_FALSE_POSITIVE, S.FALSE_POSITIVE),
    ],
)
def test_legal_transitions(start: AnomalyStatus, action: Action, end: AnomalyStatus) -> None:
    """Each allowed action moves the status and records who, when and from what."""
    result = apply_action(_anomaly(start), action, ts=T0 + 60, actor="alice", reason="seen")
    assert isinstance(result, Transition)
    assert result.anomaly.status is end
    assert result.anomaly.id == _anomaly().id
    assert (result.change.from_status, result.change.to_status) == (start, end)
    assert result.change.actor == "alice"
    assert result.change.ts == to_datetime(T0 + 60)


@pytest.mark.parametrize(
    ("start", "action"),
    [
        (S.ACKNOWLEDGED, Action.ANOMALY_ACK),
        (S.RESOLVED, Action.ANOMALY_ACK),
        (S.RESOLVED, Action.ANOMALY_RESOLVE),
        (S.RESOLVED, Action.ANOMALY_FALSE_POSITIVE),
        (S.FALSE_POSITIVE, Action.ANOMALY_ACK),
        (S.FALSE_POSITIVE, Action.ANOMALY_RESOLVE),
    ],
)
def test_illegal_transitions_are_rejected_with_a_reason(start: AnomalyStatus, action: Action) -> None:
    """Terminal states stay terminal and an acknowledged anomaly cannot be acknowledged again."""
    result = apply_action(_anomaly(start), action, ts=T0, actor="alice")
    assert isinstance(result, Rejected)
    assert "illegal transition" in result.reason


def test_non_anomaly_actions_and_system_actor_are_rejected() -> None:
    """Only the three anomaly actions apply, and humans cannot pose as the system."""
    assert isinstance(apply_action(_anomaly(), Action.IP_BAN, ts=T0, actor="alice"), Rejected)
    assert isinstance(apply_action(_anomaly(), Action.ANOMALY_ACK, ts=T0, actor="system"), Rejected)


def test_machine_has_no_self_loops_and_terminals_are_final() -> None:
    """No status moves to itself; resolved and false_positive have no exits."""
    assert all(status not in targets for status, targets in ALLOWED.items())
    assert not ALLOWED[S.RESOLVED]
    assert not ALLOWED[S.FALSE_POSITIVE]
    assert isinstance(transition(_anomaly(), S.ACTIVE, ts=T0, actor="x"), Rejected)


RULE = Rule(
    metric=MetricName.REQUEST_VOLUME,
    direction=Direction.UP,
    threshold_sigma=4.0,
    warmup=10,
    cooldown=5,
    resolve_after=3,
    season=Season.NONE,
)


def _opened(det: StreamDetector) -> tuple[Anomaly, float]:
    rng = np.random.default_rng(0)
    t = T0
    for _ in range(300):
        det.observe(t, 100 + float(rng.normal()), RULE)
        t += 60
    step = det.observe(t, 500.0, RULE)
    assert step.anomaly is not None
    return step.anomaly, t + 60


def test_ack_then_auto_resolve_through_the_detector() -> None:
    """An acknowledged anomaly still auto-resolves once the metric is back in band."""
    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    anomaly, t = _opened(det)
    ack = det.command(Action.ANOMALY_ACK, anomaly.id, ts=t, actor="alice")
    assert isinstance(ack, Transition)
    steps = [det.observe(t + i * 60, 100.0, RULE) for i in range(3)]
    final = steps[-1]
    assert final.anomaly is not None
    assert final.anomaly.status is S.RESOLVED
    assert final.changes[0].from_status is S.ACKNOWLEDGED


def test_false_positive_stays_silent_until_back_in_band() -> None:
    """After a false positive the same excursion raises nothing more, even past the cooldown."""
    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    anomaly, t = _opened(det)
    assert isinstance(det.command(Action.ANOMALY_FALSE_POSITIVE, anomaly.id, ts=t, actor="bob"), Transition)
    steps = [det.observe(t + i * 60, 500.0, RULE) for i in range(1, 20)]
    assert not any(s.opened or s.anomaly for s in steps)
    assert isinstance(det.command(Action.ANOMALY_RESOLVE, anomaly.id, ts=t, actor="bob"), Rejected)


def test_command_for_unknown_anomaly_is_rejected() -> None:
    """A command naming another (or no longer open) anomaly is refused, not applied."""
    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    result = det.command(Action.ANOMALY_ACK, "nope", ts=T0, actor="alice")
    assert isinstance(result, Rejected)
    assert "not open" in result.reason
