"""Trial timers: when each step is due, send windows, late starts and the due-timer index."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from trial_helpers import DAY, HOUR, T0, BillingFactory, billing_factory

from agents.trials import DueIndex, SchedulePolicy, SendWindow, Step, TrialBook
from agents.trials.machine import apply_event
from agents.trials.schedule import step_due
from schemas.trials import TenantAction, TrialStatus


@pytest.fixture
def billing() -> BillingFactory:
    return billing_factory()


def _kinds(book: TrialBook, now: float) -> list[str]:
    return [n.kind for n in book.advance(now).notifications]


@pytest.mark.parametrize(
    ("days", "planned"),
    [
        (1, {Step.WELCOME, Step.EXPIRE}),
        (2, {Step.WELCOME, Step.REMIND_1D, Step.EXPIRE}),
        (7, {Step.WELCOME, Step.REMIND_1D, Step.EXPIRE}),  # e−7d is the start itself: no 7-day mail
        (8, {Step.WELCOME, Step.REMIND_7D, Step.REMIND_1D, Step.EXPIRE}),
        (30, {Step.WELCOME, Step.REMIND_7D, Step.REMIND_1D, Step.EXPIRE}),
    ],
)
def test_reminders_only_when_the_trial_is_long_enough(billing: BillingFactory, days: int, planned: set[Step]) -> None:
    """A reminder is planned only if it falls at least a day after the start."""
    trial = apply_event(None, billing("trial_started", "acme", T0, trial_days=days)).trial
    assert trial is not None
    policy = SchedulePolicy()
    got = {s for s in Step if step_due(trial, s, policy) is not None}
    assert got == planned


def test_send_window_holds_reminders_until_local_morning(billing: BillingFactory) -> None:
    """A reminder due at 03:00 in Tokyo goes out at 09:00 Tokyo time, not before."""
    start = datetime(2026, 3, 1, 18, 0, tzinfo=UTC).timestamp()  # 03:00 on Mar 2 in Tokyo
    trial = apply_event(None, billing("trial_started", "acme", start, trial_days=14, timezone="Asia/Tokyo")).trial
    assert trial is not None
    due = step_due(trial, Step.REMIND_7D, SchedulePolicy(window=SendWindow(time(9), time(20))))
    assert due == datetime(2026, 3, 9, 0, 0, tzinfo=UTC).timestamp()  # 09:00 JST


def test_send_window_across_dst_and_unknown_zone() -> None:
    """The window follows local clocks through a DST change; an unknown zone means UTC."""
    w = SendWindow(time(9), time(20))
    # 2026-03-29 is the EU spring-forward day: 05:00 UTC is 07:00 CEST, so 09:00 CEST = 07:00 UTC.
    assert (
        w.adjust(datetime(2026, 3, 29, 5, 0, tzinfo=UTC).timestamp(), "Europe/Berlin")
        == datetime(2026, 3, 29, 7, 0, tzinfo=UTC).timestamp()
    )
    late = datetime(2026, 3, 28, 21, 0, tzinfo=UTC).timestamp()  # 22:00 CET → next morning 09:00 CEST
    assert w.adjust(late, "Europe/Berlin") == datetime(2026, 3, 29, 7, 0, tzinfo=UTC).timestamp()
    inside = datetime(2026, 3, 29, 12, 0, tzinfo=UTC).timestamp()
    assert w.adjust(inside, "Mars/Olympus_Mons") == inside


def test_a_late_start_sends_only_the_newest_mail(billing: BillingFactory) -> None:
    """A start that arrives after its trial already ended: no welcome, no reminders, just expiry."""
    book = TrialBook()
    book.advance(T0 + 20 * DAY)
    effects = book.apply(billing("trial_started", "acme", T0, trial_days=14))
    effects.extend(book.advance(T0 + 20 * DAY))
    assert [n.kind for n in effects.notifications] == ["trial_expired"]
    assert [c.action for c in effects.commands] == [TenantAction.SUSPEND]
    assert len(effects.ignored) == 3  # welcome, 7-day, 1-day skipped, each with a reason


def test_a_jump_of_time_fires_every_step_at_its_due_time(billing: BillingFactory) -> None:
    """A start on time, then time jumps past the end (a quiet partition, a replay resumed after a
    kill): every mail goes out, each dated when it was due, as if time had moved in small steps."""
    jump, steps = TrialBook(), TrialBook()
    start = billing("trial_started", "acme", T0, trial_days=14)
    for book in (jump, steps):
        book.apply(start)
    one = jump.advance(T0 + 20 * DAY).notifications
    many = [n for t in range(0, 20 * 24 + 1) for n in steps.advance(T0 + t * HOUR).notifications]
    assert [n.kind for n in one] == ["welcome", "trial_7day", "trial_1day", "trial_expired"]
    assert [(n.id, n.kind, n.ts) for n in one] == [(n.id, n.kind, n.ts) for n in many]
    assert one[0].ts.timestamp() == T0


def test_conversion_does_not_hide_a_reminder_already_due(billing: BillingFactory) -> None:
    """Applying an event first fires the tenant's own timers due before it, watermark or not."""
    book = TrialBook()
    book.apply(billing("trial_started", "acme", T0, trial_days=14))
    assert _kinds(book, T0) == ["welcome"]
    # The watermark lags; the conversion comes an hour after the 7-day reminder was due.
    effects = book.apply(billing("trial_converted", "acme", T0 + 7 * DAY + HOUR))
    assert [n.kind for n in effects.notifications] == ["trial_7day"]
    assert book.trials["acme"].status is TrialStatus.CONVERTED
    assert _kinds(book, T0 + 30 * DAY) == []


def test_grace_between_expiry_and_suspension(billing: BillingFactory) -> None:
    """With a grace period, expiry mails at the end and suspends later; paying in between avoids it."""
    book = TrialBook(SchedulePolicy(suspend_grace=2 * DAY))
    book.apply(billing("trial_started", "acme", T0, trial_days=3))
    book.apply(billing("trial_started", "beta", T0, trial_days=3))
    effects = book.advance(T0 + 3 * DAY)
    assert [n.kind for n in effects.notifications if n.kind == "trial_expired"] == ["trial_expired"] * 2
    assert not effects.commands
    book.apply(billing("trial_converted", "beta", T0 + 4 * DAY))
    effects = book.advance(T0 + 5 * DAY)
    assert [(c.tenant_id, c.action) for c in effects.commands] == [("acme", TenantAction.SUSPEND)]


def test_duplicate_redelivery_sends_nothing_twice(billing: BillingFactory) -> None:
    """Replaying every event of a trial changes no state and plans no extra mail."""
    book = TrialBook()
    events = [billing("trial_started", "acme", T0, trial_days=10), billing("trial_converted", "acme", T0 + DAY)]
    sent = []
    for ev in events + events:
        book.apply(ev)
        sent += book.advance(ev.ts.timestamp()).notifications
    sent += book.advance(T0 + 30 * DAY).notifications
    assert [n.kind for n in sent] == ["welcome"]


def test_resend_gives_a_new_id_per_command(billing: BillingFactory) -> None:
    """An admin resend produces the step's mail with an id of its own."""
    book = TrialBook()
    book.apply(billing("trial_started", "acme", T0))
    first = book.advance(T0).notifications[0]
    again = book.resend("acme", "welcome", "nonce-0123456789abcdef", T0 + HOUR).notifications[0]
    assert again.kind == "welcome"
    assert again.id != first.id
    assert book.resend("acme", "nope", "n", T0).ignored


@given(
    st.lists(st.tuples(st.floats(0, 1e6), st.sampled_from("td"), st.text("abc", max_size=3)), max_size=200),
    st.floats(0, 1e6),
)
def test_due_index_pops_exactly_what_is_due_in_order(entries: list[tuple[float, str, str]], now: float) -> None:
    """Oracle: the sorted list of entries at or before `now`; the rest stay, and the index pickles."""
    index = DueIndex()
    for i, (due, kind, key) in enumerate(entries):
        index.push(due, kind, key, i)
    index = pickle.loads(pickle.dumps(index))  # noqa: S301 - our own bytes
    want = sorted((due, kind, key, i) for i, (due, kind, key) in enumerate(entries))
    assert index.pop_due(now) == [e for e in want if e[0] <= now]
    assert index.pop_due(float("inf")) == [e for e in want if e[0] > now]


class CountingDict(dict[str, object]):
    reads = 0

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.reads += 1
        return super().get(key, default)


def test_due_index_cost_follows_due_not_open_trials(billing: BillingFactory) -> None:
    """With 5k open trials and nothing due, advancing reads no trial at all (no scan)."""
    trials = CountingDict()
    book = TrialBook(trials=trials)  # type: ignore[arg-type]
    for i in range(5_000):
        book.apply(billing("trial_started", f"t{i}", T0, trial_days=30))
    assert len(book.advance(T0).notifications) == 5_000  # the welcomes
    trials.reads = 0
    assert not book.advance(T0 + DAY)
    assert trials.reads == 0
    assert len(book.advance(T0 + 23 * DAY).notifications) == 5_000  # 7-day reminders
    assert trials.reads == 5_000


def test_rebuild_index_keeps_only_the_books_own_keys(billing: BillingFactory) -> None:
    """Two books sharing one table each rebuild only the tenants of their own partition."""
    shared: dict[str, object] = {}
    even, odd = TrialBook(trials=shared), TrialBook(trials=shared)  # type: ignore[arg-type]
    for i in range(6):
        (even if i % 2 == 0 else odd).apply(billing("trial_started", f"t{i}", T0, trial_days=3))
    for book, parity in ((even, 0), (odd, 1)):
        book.rebuild_index(belongs=lambda key, p=parity: int(key[1:]) % 2 == p)
        assert sorted(n.tenant_id for n in book.advance(T0).notifications) == [f"t{i}" for i in range(parity, 6, 2)]
