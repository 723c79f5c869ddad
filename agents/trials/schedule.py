"""Trial timers in event time: which mail or transition is due when, and the due-timer index.

For a trial of `n` days started at `s` and ending at `e = s + n·day`:

    s            e−7d           e−1d            e        e+grace
    │ welcome    │ 7-day        │ 1-day          │ expired │ suspended
    │            │ (if e−7d ≥ s+min_gap)          │ + mail  │ + suspend command

Reminders can be held back to a send window in the tenant's local time (e.g. not before
09:00); the welcome follows the sign-up at once, and expiry is on time because suspension is.
If the watermark jumps past several mail steps at once (a late start, a long idle gap),
only the newest mail is sent: "7 days left" next to "your trial has ended" helps nobody.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import IntFlag
from functools import lru_cache
from math import ceil
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.trials.machine import DAY, Effects, Transition, Trial, as_dt, expire, suspend
from schemas.notify import Notification, Severity
from schemas.results import stable_id
from schemas.trials import TrialStatus

__all__ = [
    "DueIndex",
    "SchedulePolicy",
    "SendWindow",
    "Step",
    "fire_due",
    "local_text",
    "next_due",
    "step_due",
    "zone",
]


class Step(IntFlag):
    WELCOME = 1
    REMIND_7D = 2
    REMIND_1D = 4
    EXPIRE = 8
    SUSPEND = 16


# Step name (part of the notification id) and template of each mail step.
STEP_NAMES = {Step.WELCOME: "welcome", Step.REMIND_7D: "7day", Step.REMIND_1D: "1day", Step.EXPIRE: "expired"}
TEMPLATES = {
    Step.WELCOME: "welcome",
    Step.REMIND_7D: "trial_7day",
    Step.REMIND_1D: "trial_1day",
    Step.EXPIRE: "trial_expired",
}
_ORDER = (Step.WELCOME, Step.REMIND_7D, Step.REMIND_1D, Step.EXPIRE, Step.SUSPEND)
_REMINDERS = (Step.WELCOME, Step.REMIND_7D, Step.REMIND_1D)


@lru_cache(maxsize=1024)
def zone(name: str) -> tzinfo:
    """The zone for an IANA name; UTC when the name is unknown (shape is checked by the schema)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_text(ts: float, tz: str) -> str:
    """A human date-time in the tenant's zone, e.g. '2026-03-05 14:00 CET'."""
    return datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Local hours in which reminders may go out, `[start, end)` in the tenant's time zone."""

    start: time = time(9)
    end: time = time(20)

    def adjust(self, due: float, tz: str) -> float:
        """`due`, or the next opening of the window after it."""
        zi = zone(tz)
        local = datetime.fromtimestamp(due, zi)
        if self.start <= local.time() < self.end:
            return due
        day = local.date() if local.time() < self.start else local.date() + timedelta(days=1)
        return datetime.combine(day, self.start, zi).timestamp()


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    first_reminder: float = 7 * DAY  # before the end
    last_reminder: float = 1 * DAY
    min_gap: float = 1 * DAY  # a reminder only if it falls at least this long after the start
    suspend_grace: float = 0.0  # between expired and suspended
    window: SendWindow | None = None


def step_due(trial: Trial, step: Step, policy: SchedulePolicy) -> float | None:
    """When `step` is due for this trial in its current status; None if it is not planned."""
    if step is Step.SUSPEND:
        return trial.ends_at + policy.suspend_grace if trial.status is TrialStatus.EXPIRED else None
    if trial.status is not TrialStatus.TRIALING:
        return None
    if step is Step.WELCOME:
        return trial.started_at
    if step is Step.EXPIRE:
        return trial.ends_at
    due = trial.ends_at - (policy.first_reminder if step is Step.REMIND_7D else policy.last_reminder)
    if due < trial.started_at + policy.min_gap:
        return None
    if policy.window is not None:
        due = policy.window.adjust(due, trial.timezone)
    return due if due < trial.ends_at else None


def _pending(trial: Trial, policy: SchedulePolicy) -> Iterator[tuple[float, Step]]:
    for step in _ORDER:
        if not trial.fired & step:
            due = step_due(trial, step, policy)
            if due is not None:
                yield due, step


def next_due(trial: Trial, policy: SchedulePolicy) -> float | None:
    """The time of the trial's next timer, or None when nothing is left to do."""
    return min((due for due, _ in _pending(trial, policy)), default=None)


def trial_mail(trial: Trial, step: Step, ts: float) -> Notification:
    """The mail for a step; its id is stable_id(trial_id, step name), so redelivery is harmless."""
    return Notification(
        id=stable_id(trial.trial_id, STEP_NAMES[step]),
        kind=TEMPLATES[step],
        recipient=trial.contact_email,
        tenant_id=trial.tenant_id,
        variables={
            "tenant_id": trial.tenant_id,
            "contact_name": trial.contact_name,
            "plan": trial.plan,
            "trial_days": trial.trial_days,
            "trial_end": local_text(trial.ends_at, trial.timezone),
            "days_left": max(0, ceil((trial.ends_at - ts) / DAY)),
        },
        severity=Severity.WARNING if step is Step.EXPIRE else Severity.INFO,
        ts=as_dt(ts),
    )


def fire_due(trial: Trial, now: float, policy: SchedulePolicy, *, skip_stale: bool = False) -> Transition:
    """Run every timer of this trial due at or before `now`, oldest first, each at its own due time.

    `skip_stale`: a reminder (welcome, 7-day, 1-day) is skipped, with a reason, when a later mail
    is due by `now` as well. Only for a trial that *arrives* stale (its start came after its
    partition's time had passed later steps, `TrialBook.apply`): the steps a timer fires must not
    depend on how far time moved in one step, which is a matter of which tenants share a
    partition and where a replay was interrupted, never of the trial itself.
    """
    effects = Effects()
    t, changed = trial, False
    while True:
        due = sorted(_pending(t, policy))
        if not due or due[0][0] > now:
            break
        at, step = due[0]
        t = replace(t, fired=t.fired | step, version=t.version + 1)
        changed = True
        later_mail = skip_stale and any(s in TEMPLATES and d <= now for d, s in due[1:])
        if step in _REMINDERS and later_mail:
            effects.ignored.append(f"{STEP_NAMES[step]} skipped for {t.trial_id}: a newer mail is due")
            continue
        if step is Step.SUSPEND:
            tr = suspend(t, at)
        elif step is Step.EXPIRE:
            tr = expire(t, at)
            tr.effects.notifications.append(trial_mail(t, step, at))
        else:
            tr = Transition(t, Effects(notifications=[trial_mail(t, step, at)]), changed=True)
        effects.extend(tr.effects)
        assert tr.trial is not None
        t = tr.trial
    return Transition(t, effects, changed)


Entry = tuple[float, str, str, int]  # (due, kind, key, version)


class DueIndex:
    """A min-heap of timers: finding what is due costs O(due · log n), never a scan of all trials.

    Entries are never removed early: each carries the version of the state it was made for,
    and an entry whose state has moved on is stale and dropped when it surfaces. Holders
    re-push after every change. Picklable; `rebuild` makes a fresh one from the states.
    """

    __slots__ = ("_heap",)

    def __init__(self, entries: list[Entry] | None = None) -> None:
        self._heap: list[Entry] = list(entries or [])
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def __getstate__(self) -> list[Entry]:
        return self._heap

    def __setstate__(self, state: list[Entry]) -> None:
        self._heap = state

    def push(self, due: float, kind: str, key: str, version: int) -> None:
        heapq.heappush(self._heap, (due, kind, key, version))

    def peek(self) -> float | None:
        """When the earliest timer (maybe stale) is due."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Entry]:
        """Remove and return every entry due at or before `now`, oldest first."""
        out: list[Entry] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap))
        return out
