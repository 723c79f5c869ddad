"""The trial state machine: transitions, duplicates and late events."""

from __future__ import annotations

import pickle

import pytest
from trial_helpers import DAY, T0, BillingFactory, billing_factory

from agents.trials.machine import Trial, apply_event, expire, suspend
from schemas.trials import TenantAction, TrialStatus


@pytest.fixture
def billing() -> BillingFactory:
    return billing_factory()


def _started(billing: BillingFactory, **kw: object) -> Trial:
    tr = apply_event(None, billing("trial_started", "acme", T0, **kw))
    assert tr.trial is not None
    return tr.trial


def test_start_creates_a_trialing_trial_with_its_end(billing: BillingFactory) -> None:
    """trial_started opens a trial ending trial_days later and emits its first state."""
    tr = apply_event(None, billing("trial_started", "acme", T0, trial_days=10, contact_name="Ann"))
    assert tr.changed
    assert tr.trial is not None
    assert tr.trial.status is TrialStatus.TRIALING
    assert tr.trial.ends_at == T0 + 10 * DAY
    assert [s.status for s in tr.effects.states] == [TrialStatus.TRIALING]
    assert tr.effects.states[0].previous is None


def test_duplicate_start_does_not_restart(billing: BillingFactory) -> None:
    """The same start redelivered, or another start while trialing, leaves the trial alone."""
    ev = billing("trial_started", "acme", T0)
    trial = apply_event(None, ev).trial
    assert trial is not None
    again = apply_event(trial, ev)
    other = apply_event(trial, billing("trial_started", "acme", T0 + 3 * DAY, trial_days=30))
    for tr in (again, other):
        assert not tr.changed
        assert tr.trial is trial
        assert tr.trial.ends_at == T0 + 14 * DAY
        assert not tr.effects
        assert tr.effects.ignored


def test_conversion_ends_trial(billing: BillingFactory) -> None:
    """trial_converted moves trialing → converted and records when."""
    trial = _started(billing)
    tr = apply_event(trial, billing("trial_converted", "acme", T0 + 5 * DAY))
    assert tr.trial is not None
    assert tr.trial.status is TrialStatus.CONVERTED
    assert tr.trial.converted_at == T0 + 5 * DAY
    assert not tr.effects.commands
    dup = apply_event(tr.trial, billing("trial_converted", "acme", T0 + 6 * DAY))
    assert not dup.changed


def test_expiry_then_suspension_then_late_conversion_unsuspends(billing: BillingFactory) -> None:
    """A conversion after the trial was suspended wins and un-suspends the tenant."""
    trial = _started(billing)
    expired = expire(trial, trial.ends_at).trial
    assert expired is not None
    assert expired.status is TrialStatus.EXPIRED
    sus = suspend(expired, trial.ends_at)
    assert sus.trial is not None
    assert sus.trial.status is TrialStatus.SUSPENDED
    assert [c.action for c in sus.effects.commands] == [TenantAction.SUSPEND]
    late = apply_event(sus.trial, billing("trial_converted", "acme", trial.ends_at - 3600))
    assert late.trial is not None
    assert late.trial.status is TrialStatus.CONVERTED
    assert [c.action for c in late.effects.commands] == [TenantAction.UNSUSPEND]
    assert late.effects.states[0].previous is TrialStatus.SUSPENDED
    assert "late" in late.effects.states[0].reason


def test_cancel_suspends_and_a_later_conversion_unsuspends(billing: BillingFactory) -> None:
    """Canceling suspends at once; paying after all brings the tenant back."""
    trial = _started(billing)
    c = apply_event(trial, billing("trial_canceled", "acme", T0 + DAY))
    assert c.trial is not None
    assert c.trial.status is TrialStatus.CANCELED
    assert [x.action for x in c.effects.commands] == [TenantAction.SUSPEND]
    v = apply_event(c.trial, billing("trial_converted", "acme", T0 + 2 * DAY))
    assert [x.action for x in v.effects.commands] == [TenantAction.UNSUSPEND]


def test_new_trial_after_rest_only_if_newer(billing: BillingFactory) -> None:
    """After a trial came to rest, an old start stays ignored and a newer one opens a new trial."""
    first = billing("trial_started", "acme", T0)
    trial = apply_event(None, first).trial
    assert trial is not None
    canceled = apply_event(trial, billing("trial_canceled", "acme", T0 + DAY)).trial
    assert canceled is not None
    assert not apply_event(canceled, billing("trial_started", "acme", T0 + DAY / 2)).changed
    fresh = apply_event(canceled, billing("trial_started", "acme", T0 + 40 * DAY))
    assert fresh.trial is not None
    assert fresh.trial.trial_id != trial.trial_id
    assert fresh.trial.status is TrialStatus.TRIALING


def test_events_without_a_trial_are_ignored(billing: BillingFactory) -> None:
    """Conversion or cancel for an unknown tenant changes nothing and says why."""
    for kind in ("trial_converted", "trial_canceled", "refund"):
        tr = apply_event(None, billing(kind, "ghost", T0))
        assert tr.trial is None
        assert not tr.changed
        assert tr.effects.ignored


def test_command_and_state_ids_are_deterministic(billing: BillingFactory) -> None:
    """Replaying the same inputs gives the same record ids (sinks deduplicate on them)."""
    runs = []
    for _ in range(2):
        trial = apply_event(None, billing("trial_started", "acme", T0, event_id="s1")).trial
        assert trial is not None
        tr = apply_event(trial, billing("trial_canceled", "acme", T0 + DAY, event_id="c1"))
        runs.append(([s.id for s in tr.effects.states], [c.id for c in tr.effects.commands]))
    assert runs[0] == runs[1]


def test_trial_pickles(billing: BillingFactory) -> None:
    """Trial state round-trips through pickle (its table holds `to_dict` JSON, not pickle)."""
    trial = _started(billing)
    assert pickle.loads(pickle.dumps(trial)) == trial  # noqa: S301 - our own bytes
