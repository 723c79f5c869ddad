"""`TrialBook`: trials, dunning cases and their timers for one partition, fed events and time.

The Faust wiring owns one book per partition (or one per worker; keys are tenants):

    effects = book.apply(event)          # a BillingEvent, in arrival order
    effects.extend(book.advance(watermark))   # after each event and on idle ticks

`trials` and `cases` are any `MutableMapping` keyed by tenant id: plain dicts in tests, Faust
tables in the agent. Values are small slotted dataclasses: they pickle, and `to_dict` /
`from_dict` suit a json-codec table (safer than pickle on a changelog topic). The book always
writes a changed value back (`table[key] = value`), which is what a Faust changelog needs.
Each timer fires at its due time whatever `advance` jumped over; only a trial whose start
arrives after the book's time passed a later step skips its stale reminders (`apply`).
The due-timer index is derived from those values: after a rebalance or restart call
`rebuild_index()` once (a scan of the partition's trials) and the book is whole again.
With one book per partition sharing one table, pass `belongs` to keep each book's keys;
with one book per worker, advance it with the slowest partition's watermark instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping

from agents.trials import dunning
from agents.trials.dunning import Contact, DunningCase, DunningPolicy
from agents.trials.machine import Effects, Trial, apply_event
from agents.trials.schedule import STEP_NAMES, DueIndex, SchedulePolicy, fire_due, next_due, trial_mail
from schemas.events import BillingEvent, BillingType
from schemas.results import stable_id

__all__ = ["TrialBook"]

_TRIAL_TYPES = {BillingType.TRIAL_STARTED, BillingType.TRIAL_CONVERTED, BillingType.TRIAL_CANCELED}
_CHARGE_TYPES = {BillingType.CHARGE_FAILED, BillingType.CHARGE_SUCCEEDED}
TRIAL, CASE = "t", "d"  # kinds of due-index entries


class TrialBook:
    """Feeds billing events and event time through the trial and dunning cores."""

    def __init__(
        self,
        schedule: SchedulePolicy | None = None,
        dunning_policy: DunningPolicy | None = None,
        trials: MutableMapping[str, Trial] | None = None,
        cases: MutableMapping[str, DunningCase] | None = None,
        index: DueIndex | None = None,
    ) -> None:
        self.schedule = schedule or SchedulePolicy()
        self.dunning = dunning_policy or DunningPolicy()
        self.trials: MutableMapping[str, Trial] = {} if trials is None else trials
        self.cases: MutableMapping[str, DunningCase] = {} if cases is None else cases
        self.index = DueIndex() if index is None else index
        self.time = -math.inf  # the newest time the book was advanced to (event time)

    def apply(self, event: BillingEvent) -> Effects:
        """Apply one billing event. Timers it creates fire on the next `advance`.

        The tenant's own timers due before the event are fired first, whatever the
        watermark: a conversion at 10:20 must not hide the reminder that was due at 10:10.
        """
        key, before = event.tenant_id, math.nextafter(event.ts.timestamp(), -math.inf)
        out = Effects()
        if event.type in _TRIAL_TYPES:
            trial = self.trials.get(key)
            if trial is not None:
                tr = fire_due(trial, before, self.schedule)
                if tr.changed and tr.trial is not None:
                    self._put_trial(tr.trial)
                out.extend(tr.effects)
                trial = tr.trial
            tr = apply_event(trial, event)
            if tr.changed and tr.trial is not None:
                self._put_trial(tr.trial)
            out.extend(tr.effects)
            started = tr.trial if event.type is BillingType.TRIAL_STARTED and tr.changed else None
            if started is not None and started.started_at <= self.time:
                # It arrives after its partition's time passed its start: a start that arrives once
                # the trial has ended gets the expiry mail, not a welcome and reminders with it.
                st = fire_due(started, self.time, self.schedule, skip_stale=True)
                if st.changed and st.trial is not None:
                    self._put_trial(st.trial)
                out.extend(st.effects)
            return out
        if event.type in _CHARGE_TYPES:
            case = self.cases.get(key)
            if case is not None:
                dt = dunning.fire_due(case, before, self.dunning)
                if dt.changed and dt.case is not None:
                    self._put_case(dt.case)
                out.extend(dt.effects)
                case = dt.case
            dt = dunning.apply_billing(case, event, self.dunning, self._contact(event))
            if dt.changed and dt.case is not None:
                self._put_case(dt.case)
            return out.extend(dt.effects)
        return Effects(ignored=[f"{event.type.value}: nothing to do for trials"])

    def advance(self, now: float, *, skip_stale: bool = False) -> Effects:
        """Fire every timer due at or before `now` (event time); cost grows with what is due.

        Each step fires at its due time, whatever `now` jumped over: the outcome is the same
        whether time moved in one step or in many. `skip_stale=True` is for jumps made by hand
        or by the wall clock (`trials.run_expiry`, idle ticks): a reminder a later mail has
        overtaken is skipped, with a reason, rather than sent alongside it.
        """
        self.time = max(self.time, now)
        out = Effects()
        for _, kind, key, version in self.index.pop_due(now):
            if kind == TRIAL:
                trial = self.trials.get(key)
                if trial is not None and trial.version == version:
                    tr = fire_due(trial, now, self.schedule, skip_stale=skip_stale)
                    if tr.changed and tr.trial is not None:
                        self._put_trial(tr.trial)
                    out.extend(tr.effects)
            else:
                case = self.cases.get(key)
                if case is not None and case.version == version:
                    dt = dunning.fire_due(case, now, self.dunning)
                    if dt.changed and dt.case is not None:
                        self._put_case(dt.case)
                    out.extend(dt.effects)
        return out

    def resend(self, tenant_id: str, step: str, nonce: str, now: float) -> Effects:
        """An admin `trials.resend`: the step's mail again, with an id of its own (per command)."""
        trial = self.trials.get(tenant_id)
        match = [s for s, name in STEP_NAMES.items() if name == step]
        if trial is None or not match:
            return Effects(ignored=[f"resend {step!r} for {tenant_id}: no such trial or step"])
        mail = trial_mail(trial, match[0], now)
        return Effects(notifications=[mail.model_copy(update={"id": stable_id(mail.id, "resend", nonce)})])

    def rebuild_index(self, belongs: Callable[[str], bool] | None = None) -> None:
        """Recreate the due-timer index from the stored trials and cases (after recovery).

        `belongs(tenant_id)` keeps only this book's keys when several books (one per
        partition) share one table; None takes them all.
        """
        self.index = DueIndex()
        for key, trial in self.trials.items():
            if belongs is None or belongs(key):
                self._push_trial(trial)
        for key, case in self.cases.items():
            if belongs is None or belongs(key):
                self._push_case(case)

    def _contact(self, event: BillingEvent) -> Contact:
        trial = self.trials.get(event.tenant_id)
        if event.contact_email is not None or trial is None:
            return Contact(event.contact_email, event.contact_name or "", event.timezone or "UTC")
        return Contact(trial.contact_email, trial.contact_name, trial.timezone)

    def _put_trial(self, trial: Trial) -> None:
        self.trials[trial.tenant_id] = trial
        self._push_trial(trial)

    def _push_trial(self, trial: Trial) -> None:
        due = next_due(trial, self.schedule)
        if due is not None:
            self.index.push(due, TRIAL, trial.tenant_id, trial.version)

    def _put_case(self, case: DunningCase) -> None:
        self.cases[case.tenant_id] = case
        self._push_case(case)

    def _push_case(self, case: DunningCase) -> None:
        due = dunning.next_due(case, self.dunning)
        if due is not None:
            self.index.push(due, CASE, case.tenant_id, case.version)
