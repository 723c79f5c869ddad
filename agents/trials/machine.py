"""The trial state machine: one trial per tenant, driven by billing events in event time.

    trialing ──converted──▶ converted
        │  ╲──canceled───▶ canceled  (+ suspend)
        └─at end─▶ expired ─after grace─▶ suspended (+ suspend)
    expired | suspended | canceled ──converted (late)──▶ converted (+ unsuspend if suspended)

Late and duplicate events are expected (at-least-once delivery, upstream retries):
- the same `trial_started` again, or any start while a trial runs, does not restart it;
- a start for a tenant whose trial has come to rest opens a new trial only if it is newer
  than that trial's last change (so a redelivered old start stays ignored);
- a conversion after expiry or suspension wins and un-suspends.

Everything here is pure: `now` is event time in float epoch seconds, passed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from schemas.events import BillingEvent, BillingType
from schemas.notify import Notification
from schemas.results import stable_id
from schemas.trials import CommandSource, TenantAction, TenantCommand, TrialState, TrialStatus

__all__ = [
    "DAY",
    "Effects",
    "Transition",
    "Trial",
    "apply_event",
    "as_dt",
    "expire",
    "suspend",
    "suspend_command",
]

DAY = 86_400.0
_AT_REST = (TrialStatus.CONVERTED, TrialStatus.CANCELED, TrialStatus.EXPIRED, TrialStatus.SUSPENDED)


def as_dt(ts: float) -> datetime:
    """Event-time seconds → aware UTC datetime, for records."""
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True)
class Trial:
    """The state of one tenant's trial; small and picklable (it lives in a Faust table)."""

    trial_id: str
    tenant_id: str
    plan: str
    contact_email: str
    contact_name: str
    timezone: str
    started_at: float
    ends_at: float
    start_event_id: str
    status: TrialStatus = TrialStatus.TRIALING
    changed_at: float = 0.0  # event time of the last status change
    converted_at: float | None = None
    fired: int = 0  # bit mask of schedule steps done (sent or skipped), see schedule.Step
    version: int = 0  # bumped on every change; the due-timer index uses it to spot stale entries

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: for a Faust table with the json codec (pickle codecs trust the topic)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(**{**data, "status": TrialStatus(data["status"])})

    @property
    def trial_days(self) -> int:
        return round((self.ends_at - self.started_at) / DAY)

    def snapshot(self, previous: TrialStatus | None, ts: float, reason: str = "") -> TrialState:
        return TrialState(
            id=stable_id(self.trial_id, self.version),
            trial_id=self.trial_id,
            tenant_id=self.tenant_id,
            plan=self.plan,
            status=self.status,
            previous=previous,
            version=self.version,
            started_at=as_dt(self.started_at),
            ends_at=as_dt(self.ends_at),
            converted_at=None if self.converted_at is None else as_dt(self.converted_at),
            ts=as_dt(ts),
            reason=reason,
        )


@dataclass(slots=True)
class Effects:
    """What a step of the core asks the world to do. Lists, in the order they happened."""

    notifications: list[Notification] = field(default_factory=list)
    commands: list[TenantCommand] = field(default_factory=list)
    states: list[TrialState] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # why an input changed nothing, for logs

    def extend(self, other: Effects) -> Effects:
        self.notifications += other.notifications
        self.commands += other.commands
        self.states += other.states
        self.ignored += other.ignored
        return self

    def __bool__(self) -> bool:
        return bool(self.notifications or self.commands or self.states)


@dataclass(slots=True)
class Transition:
    """The trial after an input (None: still no trial) and the effects of the change."""

    trial: Trial | None
    effects: Effects
    changed: bool


def suspend_command(
    tenant_id: str,
    action: TenantAction,
    *,
    source: CommandSource,
    case_id: str,
    version: int,
    ts: float,
    reason: str,
) -> TenantCommand:
    return TenantCommand(
        id=stable_id(source.value, case_id, action.value, version),
        tenant_id=tenant_id,
        action=action,
        source=source,
        reason=reason,
        ts=as_dt(ts),
        trial_id=case_id if source is CommandSource.TRIAL else None,
    )


def _move(trial: Trial, status: TrialStatus, ts: float, reason: str, converted_at: float | None = None) -> Transition:
    new = replace(trial, status=status, changed_at=ts, version=trial.version + 1)
    if converted_at is not None:
        new.converted_at = converted_at
    effects = Effects(states=[new.snapshot(trial.status, ts, reason)])
    return Transition(new, effects, changed=True)


def _command(tr: Transition, action: TenantAction, ts: float, reason: str) -> Transition:
    assert tr.trial is not None
    t = tr.trial
    tr.effects.commands.append(
        suspend_command(
            t.tenant_id,
            action,
            source=CommandSource.TRIAL,
            case_id=t.trial_id,
            version=t.version,
            ts=ts,
            reason=reason,
        )
    )
    return tr


def _ignore(trial: Trial | None, why: str) -> Transition:
    return Transition(trial, Effects(ignored=[why]), changed=False)


def _start(trial: Trial | None, ev: BillingEvent) -> Transition:
    ts = ev.ts.timestamp()
    if trial is not None:
        if ev.event_id == trial.start_event_id:
            return _ignore(trial, "duplicate trial_started")
        if trial.status not in _AT_REST or ts <= trial.changed_at:
            return _ignore(trial, f"trial_started while trial {trial.trial_id} is {trial.status.value}")
    # The schema guarantees these for trial_started.
    assert ev.plan is not None
    assert ev.trial_days is not None
    assert ev.contact_email is not None
    new = Trial(
        trial_id=stable_id("trial", ev.tenant_id, ev.event_id),
        tenant_id=ev.tenant_id,
        plan=ev.plan,
        contact_email=ev.contact_email,
        contact_name=ev.contact_name or "",
        timezone=ev.timezone or "UTC",
        started_at=ts,
        ends_at=ts + ev.trial_days * DAY,
        start_event_id=ev.event_id,
        changed_at=ts,
    )
    tr = Transition(new, Effects(states=[new.snapshot(None, ts, "trial started")]), changed=True)
    if trial is not None and trial.status is TrialStatus.SUSPENDED:
        # The billing system granted a new trial: the tenant may use the product again.
        _command(tr, TenantAction.UNSUSPEND, ts, "new trial started")
    return tr


def _convert(trial: Trial | None, ev: BillingEvent) -> Transition:
    ts = ev.ts.timestamp()
    if trial is None:
        return _ignore(None, "trial_converted without a trial")
    if trial.status is TrialStatus.CONVERTED:
        return _ignore(trial, "duplicate trial_converted")
    if ts < trial.started_at:
        return _ignore(trial, "trial_converted older than the current trial")
    was = trial.status
    late = " (late)" if was is not TrialStatus.TRIALING else ""
    tr = _move(trial, TrialStatus.CONVERTED, ts, f"converted{late}", converted_at=ts)
    if was in (TrialStatus.SUSPENDED, TrialStatus.CANCELED):
        _command(tr, TenantAction.UNSUSPEND, ts, f"trial converted after {was.value}")
    return tr


def _cancel(trial: Trial | None, ev: BillingEvent) -> Transition:
    ts = ev.ts.timestamp()
    if trial is None:
        return _ignore(None, "trial_canceled without a trial")
    if trial.status not in (TrialStatus.TRIALING, TrialStatus.EXPIRED) or ts < trial.started_at:
        return _ignore(trial, f"trial_canceled while trial is {trial.status.value}")
    return _command(_move(trial, TrialStatus.CANCELED, ts, "canceled"), TenantAction.SUSPEND, ts, "trial canceled")


def apply_event(trial: Trial | None, event: BillingEvent) -> Transition:
    """The trial after a trial lifecycle event; other billing types change nothing here."""
    if event.type is BillingType.TRIAL_STARTED:
        return _start(trial, event)
    if event.type is BillingType.TRIAL_CONVERTED:
        return _convert(trial, event)
    if event.type is BillingType.TRIAL_CANCELED:
        return _cancel(trial, event)
    return _ignore(trial, f"{event.type.value} is not a trial event")


def expire(trial: Trial, now: float) -> Transition:
    """The trial reached its end without converting (timer, at `ends_at`)."""
    if trial.status is not TrialStatus.TRIALING:
        return _ignore(trial, f"expire while {trial.status.value}")
    return _move(trial, TrialStatus.EXPIRED, now, "trial ended")


def suspend(trial: Trial, now: float) -> Transition:
    """Grace after expiry is over: suspend the tenant (timer, at `ends_at + grace`)."""
    if trial.status is not TrialStatus.EXPIRED:
        return _ignore(trial, f"suspend while {trial.status.value}")
    return _command(
        _move(trial, TrialStatus.SUSPENDED, now, "expired trial suspended"),
        TenantAction.SUSPEND,
        now,
        "trial expired",
    )
