"""A generated cohort over 30 simulated days: exactly the expected mails and commands.

The oracle below restates the product rules independently of the engine:
welcome at the start; the 7-day and 1-day reminders at end−7d / end−1d when they fall at least a
day after the start, held to 09:00–20:00 local time; at the end, unless converted or canceled
first, the expired mail and a suspension (a late conversion un-suspends); a cancel suspends at
once. Converted tenants may hit dunning: mail at the failure, reminders at +3d and +5d, suspension
at +7d unless a charge succeeded first (which then un-suspends).
"""

from __future__ import annotations

import json
import math
import pickle
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trial_helpers import DAY, HOUR, T0, billing_factory

from agents.notify.templates import TemplateRenderer
from agents.trials import ConversionStats, DunningCase, SchedulePolicy, SendWindow, Trial, TrialBook, cohort_week
from agents.trials.machine import Effects
from schemas.events import BillingEvent

HORIZON = T0 + 30 * DAY
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Mars/Olympus_Mons"]
POLICY = SchedulePolicy(window=SendWindow(time(9), time(20)))


@dataclass
class Plan:
    tenant: str
    tz: str
    plan: str
    start: float
    days: int
    name: str
    outcome: str  # convert | cancel | expire | late_convert
    at: float | None  # when the outcome event happens
    failed: float | None = None
    recovered: float | None = None
    events: list[BillingEvent] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.start + self.days * DAY

    @property
    def email(self) -> str:
        return f"owner@{self.tenant}.example"


def generate(seed: int = 7, n: int = 60) -> list[Plan]:
    rng, make = random.Random(seed), billing_factory()
    plans = []
    for i in range(n):
        days = rng.choice([1, 3, 7, 8, 14])
        start = T0 + round(rng.uniform(0, 10 * DAY))
        outcome = rng.choice(["convert", "cancel", "expire", "late_convert"])
        at = {
            "convert": start + round(rng.uniform(0.05, 0.95) * days * DAY),
            "cancel": start + round(rng.uniform(0.05, 0.95) * days * DAY),
            "late_convert": start + days * DAY + round(rng.uniform(0.1, 3) * DAY),
            "expire": None,
        }[outcome]
        name = rng.choice(["Ann", "Bob <b>bold</b>", "<script>alert(1)</script>", ""])
        p = Plan(f"t{i:02d}", rng.choice(ZONES), rng.choice(["basic", "pro"]), start, days, name, outcome, at)
        start_ev = make(
            "trial_started", p.tenant, start, plan=p.plan, trial_days=days, timezone=p.tz, contact_name=name
        )
        p.events.append(start_ev)
        if rng.random() < 0.3:  # redelivered, and a second start while trialing: both ignored
            p.events.append(start_ev.model_copy(update={"ts": start_ev.ts + timedelta(hours=1)}))
            p.events.append(make("trial_started", p.tenant, start + 2 * HOUR, plan="pro", trial_days=30))
        if at is not None:
            kind = "trial_canceled" if outcome == "cancel" else "trial_converted"
            p.events.append(make(kind, p.tenant, at))
            if kind == "trial_converted" and rng.random() < 0.3:
                p.events.append(make(kind, p.tenant, at + 60))  # duplicate conversion
            if kind == "trial_converted" and rng.random() < 0.5:
                p.failed = at + round(rng.uniform(1, 5) * DAY)
                p.events.append(make("charge_failed", p.tenant, p.failed))
                if rng.random() < 0.5:
                    p.recovered = p.failed + round(rng.uniform(0.5, 9) * DAY)
                    p.events.append(make("charge_succeeded", p.tenant, p.recovered))
        plans.append(p)
    return plans


def local(ts: float, tz: str) -> datetime:
    zone = ZoneInfo(tz) if tz != "Mars/Olympus_Mons" else UTC
    return datetime.fromtimestamp(ts, zone)


def in_window(ts: float, tz: str) -> float:
    t = local(ts, tz)
    if t.hour < 9:
        return t.replace(hour=9, minute=0, second=0).timestamp()
    if t.hour >= 20:
        return (t.replace(hour=9, minute=0, second=0) + timedelta(days=1)).timestamp()
    return ts


def expected(plans: list[Plan]) -> tuple[list[tuple[float, str, str]], list[tuple[float, str, str]]]:
    """(ts, recipient, template) of every mail and (ts, tenant, action) of every command."""
    mails, cmds = [], []
    for p in plans:
        stop = p.at if p.outcome in ("convert", "cancel") else None
        mails.append((p.start, p.email, "welcome"))
        for before, template in ((7 * DAY, "trial_7day"), (DAY, "trial_1day")):
            due = p.end - before
            if due < p.start + DAY:
                continue
            due = in_window(due, p.tz)
            if due < p.end and (stop is None or due < stop):
                mails.append((due, p.email, template))
        if p.outcome == "cancel":
            assert p.at is not None
            cmds.append((p.at, p.tenant, "suspend"))
        if stop is None:
            mails.append((p.end, p.email, "trial_expired"))
            cmds.append((p.end, p.tenant, "suspend"))
            if p.outcome == "late_convert":
                assert p.at is not None
                cmds.append((p.at, p.tenant, "unsuspend"))
        if p.failed is not None:
            r = p.recovered
            mails.append((p.failed, p.email, "payment_failed"))
            for after in (3 * DAY, 5 * DAY):
                if r is None or r > p.failed + after:
                    mails.append((p.failed + after, p.email, "payment_failed"))
            if r is None or r > p.failed + 7 * DAY:
                cmds.append((p.failed + 7 * DAY, p.tenant, "suspend"))
                if r is not None:
                    cmds.append((r, p.tenant, "unsuspend"))
    return (
        sorted(m for m in mails if m[0] <= HORIZON),
        sorted(c for c in cmds if c[0] <= HORIZON),
    )


def run(plans: list[Plan], book: TrialBook, *, reload_at: float | None = None) -> tuple[Effects, TrialBook]:
    """Feed events in time order with hourly watermark ticks (lateness 0), as the agent would."""
    events = sorted((e for p in plans for e in p.events if e.ts.timestamp() <= HORIZON), key=lambda e: e.ts)
    out, i = Effects(), 0
    tick = T0
    while tick <= HORIZON:
        while i < len(events) and events[i].ts.timestamp() <= tick:
            out.extend(book.apply(events[i]))
            out.extend(book.advance(events[i].ts.timestamp()))
            i += 1
        out.extend(book.advance(tick))
        if reload_at is not None and tick == reload_at:
            book = pickle.loads(pickle.dumps(book))  # noqa: S301 - our own bytes: a restart mid-run
        tick += HOUR
    return out, book


@pytest.fixture(scope="module")
def cohort() -> tuple[list[Plan], Effects]:
    plans = generate()
    effects, _ = run(plans, TrialBook(POLICY))
    return plans, effects


def test_cohort_mails_are_exactly_the_expected_ones(cohort: tuple[list[Plan], Effects]) -> None:
    """Count, times, recipients and templates of all mails match the oracle over 30 days."""
    plans, effects = cohort
    want_mails, _ = expected(plans)
    got = sorted((n.ts.timestamp(), n.recipient, n.kind) for n in effects.notifications)
    assert len(got) == len(want_mails)
    assert got == want_mails
    assert len({n.id for n in effects.notifications}) == len(effects.notifications)  # ids unique


def test_cohort_mails_reach_each_recipient_in_time_order(cohort: tuple[list[Plan], Effects]) -> None:
    """Per recipient, mails are emitted in the order they were due."""
    _, effects = cohort
    by_recipient: dict[str, list[float]] = {}
    for n in effects.notifications:
        by_recipient.setdefault(n.recipient, []).append(n.ts.timestamp())
    assert all(ts == sorted(ts) for ts in by_recipient.values())


def test_cohort_commands_are_exactly_the_expected_ones(cohort: tuple[list[Plan], Effects]) -> None:
    """Suspensions and un-suspensions (trial and dunning) match the oracle."""
    plans, effects = cohort
    _, want = expected(plans)
    got = sorted((c.ts.timestamp(), c.tenant_id, c.action.value) for c in effects.commands)
    assert got == want
    assert len({c.id for c in effects.commands}) == len(effects.commands)


def test_cohort_subjects_render_and_stay_safe(cohort: tuple[list[Plan], Effects]) -> None:
    """Every mail renders; subjects match their template; tenant-supplied names are escaped in HTML."""
    plans, effects = cohort
    by_tenant = {p.tenant: p for p in plans}
    renderer = TemplateRenderer()
    subjects: dict[str, Any] = {
        "welcome": lambda p, v: f"Welcome! Your {p.plan} trial runs until {v['trial_end']}",
        "trial_7day": lambda p, v: f"{v['days_left']} days left in your {p.plan} trial",
        "trial_1day": lambda p, v: f"Last chance: your {p.plan} trial ends {v['trial_end']}",
        "trial_expired": lambda p, v: f"Your {p.plan} trial has ended",
        "payment_failed": lambda p, v: f"Payment of 49.00 EUR failed (notice {v['attempt']})",
    }
    for n in effects.notifications:
        p = by_tenant[n.tenant_id]
        mail = renderer.render(n.kind, n.variables)
        assert mail.subject == subjects[n.kind](p, n.variables)
        assert "<script>" not in mail.html
        assert "<b>bold</b>" not in mail.html
    days_left = {n.variables["days_left"] for n in effects.notifications if n.kind == "trial_7day"}
    assert days_left <= {7, 8}  # held back to the window by hours at most


def test_cohort_conversion_stats_match_the_plan(cohort: tuple[list[Plan], Effects]) -> None:
    """Conversion rate and average time-to-convert per start week and plan match the oracle."""
    plans, effects = cohort
    rows = {(r.week, r.plan): r for r in ConversionStats().update_many(effects.states).rows()}
    want: dict[tuple[Any, str], list[float | None]] = {}
    for p in plans:
        key = (cohort_week(datetime.fromtimestamp(p.start, UTC).date()), p.plan)
        converted = p.outcome in ("convert", "late_convert") and p.at is not None and p.at <= HORIZON
        want.setdefault(key, []).append((p.at - p.start) / DAY if converted and p.at else None)
    assert set(rows) == set(want)
    for key, waits in want.items():
        done = [w for w in waits if w is not None]
        assert rows[key].started == len(waits)
        assert rows[key].converted == len(done)
        if done:
            assert rows[key].avg_days_to_convert == pytest.approx(sum(done) / len(done))
            assert rows[key].conversion_rate == pytest.approx(len(done) / len(waits))


def test_restart_mid_run_changes_nothing(cohort: tuple[list[Plan], Effects]) -> None:
    """Pickling the book at day 15 (a restart) and going on gives the same output, ids included."""
    plans, effects = cohort
    again, _ = run(plans, TrialBook(POLICY), reload_at=T0 + 15 * DAY)
    assert [n.id for n in again.notifications] == [n.id for n in effects.notifications]
    assert [c.id for c in again.commands] == [c.id for c in effects.commands]
    assert [s.id for s in again.states] == [s.id for s in effects.states]


def test_rebuilt_index_gives_the_same_output(cohort: tuple[list[Plan], Effects]) -> None:
    """Rebuilding the due-timer index from the stored trials (after a rebalance) loses no timer."""
    plans, effects = cohort

    class Rebuilding(TrialBook):
        def advance(self, now: float) -> Effects:
            if now == T0 + 12 * DAY:
                self.rebuild_index()
            return super().advance(now)

    again, _ = run(plans, Rebuilding(POLICY))
    assert sorted(n.id for n in again.notifications) == sorted(n.id for n in effects.notifications)
    assert sorted(c.id for c in again.commands) == sorted(c.id for c in effects.commands)


def test_stored_values_round_trip_through_json(cohort: tuple[list[Plan], Effects]) -> None:
    """Every trial and dunning case survives to_dict → JSON → from_dict unchanged (json-codec tables)."""
    plans, _ = cohort
    _, book = run(plans, TrialBook(POLICY))
    assert book.trials
    assert book.cases
    for trial in book.trials.values():
        assert Trial.from_dict(json.loads(json.dumps(trial.to_dict()))) == trial
    for case in book.cases.values():
        assert DunningCase.from_dict(json.loads(json.dumps(case.to_dict()))) == case


def run_partitioned(plans: list[Plan], home: dict[str, int], restart_after: int | None) -> Effects:
    """The agent's way on partitions: each book sees only its tenants' events, in time order, and
    is advanced after each to that event's time (lateness 0), so a quiet book's time jumps, as far
    as its tenants leave it. `restart_after`: every book is rebuilt from its stored trials and cases
    after that many events and resumes at its partition's time (a worker killed and restarted)."""
    events = sorted((e for p in plans for e in p.events if e.ts.timestamp() <= HORIZON), key=lambda e: e.ts)
    books: dict[int, TrialBook] = {}
    newest: dict[int, float] = {}
    out = Effects()
    for i, e in enumerate(events):
        if i == restart_after:
            for k, old in list(books.items()):
                books[k] = fresh = TrialBook(POLICY, trials=dict(old.trials), cases=dict(old.cases))
                fresh.rebuild_index()
                out.extend(fresh.advance(newest[k]))
        k = home[e.tenant_id]
        book = books.setdefault(k, TrialBook(POLICY))
        out.extend(book.apply(e))
        newest[k] = max(newest.get(k, -math.inf), e.ts.timestamp())
        out.extend(book.advance(newest[k]))
    for book in books.values():
        out.extend(book.advance(HORIZON))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mails_do_not_depend_on_which_tenants_share_a_partition(
        cohort: tuple[list[Plan], Effects], data: st.DataObject) -> None:
    """However tenants are spread over partitions (a lone tenant's partition jumps from one of its
    events to the next, days apart) and wherever the worker restarts, the mails and commands are
    the oracle's: every step at its due time, none skipped because time moved in one step."""
    plans, _ = cohort
    n = data.draw(st.integers(1, 8), label="partitions")
    home = {p.tenant: data.draw(st.integers(0, n - 1), label=p.tenant) for p in plans}
    restart = data.draw(st.none() | st.integers(0, sum(len(p.events) for p in plans)), label="restart after")
    effects = run_partitioned(plans, home, restart)
    want_mails, want_commands = expected(plans)
    assert sorted((m.ts.timestamp(), m.recipient, m.kind) for m in effects.notifications) == want_mails
    assert sorted((c.ts.timestamp(), c.tenant_id, c.action.value) for c in effects.commands) == want_commands
