"""Dunning: what happens between a failed charge and either a paid invoice or a suspension.

    charge_failed ─▶ open (payment-failed mail #1)
        ├─ opened + reminders_after[i] ─▶ payment-failed mail #i+2 (while still open)
        ├─ opened + grace, or max_failures failed charges ─▶ exhausted (+ suspend)
        └─ charge_succeeded ─▶ recovered (+ unsuspend if it had been suspended)

The billing system retries the charge on its own schedule; each further `charge_failed`
during a case only counts. A `charge_failed` after a case has closed opens a new case.
Pure: `now` is event time in float epoch seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from math import ceil
from typing import Any

from agents.trials.machine import DAY, Effects, as_dt, suspend_command
from agents.trials.schedule import local_text
from schemas.events import BillingEvent, BillingType
from schemas.notify import Notification, Severity
from schemas.results import stable_id
from schemas.trials import CommandSource, TenantAction

__all__ = [
    "Contact",
    "DunningCase",
    "DunningPolicy",
    "DunningStatus",
    "DunningTransition",
    "apply_billing",
    "fire_due",
    "next_due",
]

_SEEN_EVENTS = 8  # how many recent event ids a case remembers to drop redelivered ones


class DunningStatus(StrEnum):
    OPEN = "open"
    RECOVERED = "recovered"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class DunningPolicy:
    reminders_after: tuple[float, ...] = (3 * DAY, 5 * DAY)  # mail again, counted from the first failure
    grace: float = 7 * DAY  # then suspend
    max_failures: int | None = None  # or suspend as soon as this many charges failed


@dataclass(frozen=True, slots=True)
class Contact:
    email: str | None
    name: str = ""
    timezone: str = "UTC"


@dataclass(slots=True)
class DunningCase:
    case_id: str
    tenant_id: str
    contact: Contact
    opened_at: float
    amount_minor: int
    currency: str
    status: DunningStatus = DunningStatus.OPEN
    failures: int = 1
    reminders_sent: int = 0
    suspended: bool = False
    closed_at: float | None = None
    seen: tuple[str, ...] = ()
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (see `Trial.to_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DunningCase:
        return cls(
            **{
                **data,
                "contact": Contact(**data["contact"]),
                "status": DunningStatus(data["status"]),
                "seen": tuple(data["seen"]),
            }
        )


@dataclass(slots=True)
class DunningTransition:
    case: DunningCase | None
    effects: Effects = field(default_factory=Effects)
    changed: bool = False


def _mail(case: DunningCase, n: int, ts: float, policy: DunningPolicy, effects: Effects) -> None:
    if case.contact.email is None:
        effects.ignored.append(f"payment-failed mail #{n + 1} for {case.tenant_id}: no contact address")
        return
    grace_end = case.opened_at + policy.grace
    effects.notifications.append(
        Notification(
            id=stable_id(case.case_id, "payment_failed", n),
            kind="payment_failed",
            recipient=case.contact.email,
            tenant_id=case.tenant_id,
            variables={
                "tenant_id": case.tenant_id,
                "contact_name": case.contact.name,
                "amount": f"{case.amount_minor / 100:.2f} {case.currency}",
                "attempt": n + 1,
                "grace_end": local_text(grace_end, case.contact.timezone),
                "days_left": max(0, ceil((grace_end - ts) / DAY)),
            },
            severity=Severity.WARNING,
            ts=as_dt(ts),
        )
    )


def _command(case: DunningCase, action: TenantAction, ts: float, reason: str) -> Effects:
    cmd = suspend_command(
        case.tenant_id,
        action,
        source=CommandSource.DUNNING,
        case_id=case.case_id,
        version=case.version,
        ts=ts,
        reason=reason,
    )
    return Effects(commands=[cmd])


def _exhaust(case: DunningCase, ts: float, why: str) -> tuple[DunningCase, Effects]:
    new = replace(case, status=DunningStatus.EXHAUSTED, suspended=True, closed_at=ts, version=case.version + 1)
    return new, _command(new, TenantAction.SUSPEND, ts, f"payment failed: {why}")


def apply_billing(
    case: DunningCase | None, ev: BillingEvent, policy: DunningPolicy, contact: Contact
) -> DunningTransition:
    """The case after a charge event; `contact` is where mails go (event's or the trial's)."""
    ts = ev.ts.timestamp()
    if case is not None and ev.event_id in case.seen:
        return DunningTransition(case, Effects(ignored=[f"duplicate {ev.type.value}"]))
    if ev.type is BillingType.CHARGE_FAILED:
        if case is None or (
            case.status is not DunningStatus.OPEN and ts > (case.closed_at or 0.0) and not case.suspended
        ):
            assert ev.amount_minor is not None  # the schema requires both for charges
            assert ev.currency is not None
            new = DunningCase(
                case_id=stable_id("dunning", ev.tenant_id, ev.event_id),
                tenant_id=ev.tenant_id,
                contact=contact,
                opened_at=ts,
                amount_minor=ev.amount_minor,
                currency=ev.currency,
                seen=(ev.event_id,),
            )
            tr = DunningTransition(new, Effects(), True)
            _mail(new, 0, ts, policy, tr.effects)
        else:
            new = replace(
                case,
                failures=case.failures + 1,
                seen=(*case.seen, ev.event_id)[-_SEEN_EVENTS:],
                version=case.version + 1,
            )
            tr = DunningTransition(new, Effects(), True)
        if new.status is DunningStatus.OPEN and policy.max_failures and new.failures >= policy.max_failures:
            new, more = _exhaust(new, ts, f"{new.failures} failed charges")
            tr = DunningTransition(new, tr.effects.extend(more), True)
        return tr
    if ev.type is BillingType.CHARGE_SUCCEEDED:
        if case is None or case.status is DunningStatus.RECOVERED or ts < case.opened_at:
            return DunningTransition(case, Effects(ignored=["charge_succeeded outside dunning"]))
        new = replace(
            case,
            status=DunningStatus.RECOVERED,
            suspended=False,
            closed_at=ts,
            seen=(*case.seen, ev.event_id)[-_SEEN_EVENTS:],
            version=case.version + 1,
        )
        effects = _command(new, TenantAction.UNSUSPEND, ts, "payment received") if case.suspended else Effects()
        return DunningTransition(new, effects, True)
    return DunningTransition(case, Effects(ignored=[f"{ev.type.value} is not a dunning event"]))


def _timers(case: DunningCase, policy: DunningPolicy) -> list[tuple[float, bool]]:
    """(due, is_exhaustion) of what is left; reminders past the grace end are never planned."""
    if case.status is not DunningStatus.OPEN:
        return []
    out = [(case.opened_at + policy.grace, True)]
    i = case.reminders_sent
    if i < len(policy.reminders_after) and policy.reminders_after[i] < policy.grace:
        out.append((case.opened_at + policy.reminders_after[i], False))
    return sorted(out)


def next_due(case: DunningCase, policy: DunningPolicy) -> float | None:
    timers = _timers(case, policy)
    return timers[0][0] if timers else None


def fire_due(case: DunningCase, now: float, policy: DunningPolicy) -> DunningTransition:
    """Send due reminders and exhaust the case when its grace is over."""
    effects, c, changed = Effects(), case, False
    while (timers := _timers(c, policy)) and timers[0][0] <= now:
        at, exhaustion = timers[0]
        changed = True
        if exhaustion:
            c, more = _exhaust(c, at, "grace period over")
            effects.extend(more)
        else:
            c = replace(c, reminders_sent=c.reminders_sent + 1, version=c.version + 1)
            _mail(c, c.reminders_sent, at, policy, effects)
    return DunningTransition(c, effects, changed)
