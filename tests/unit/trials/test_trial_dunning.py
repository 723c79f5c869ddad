"""Dunning: payment-failed mails, reminders, suspension when exhausted, recovery."""

from __future__ import annotations

import pytest
from trial_helpers import DAY, T0, BillingFactory, billing_factory

from agents.trials import DunningPolicy, DunningStatus, TrialBook
from schemas.trials import CommandSource, TenantAction

#   day:  0        3          5          7
#         fail     reminder   reminder   exhausted → suspend
#         mail#1   mail#2     mail#3


@pytest.fixture
def billing() -> BillingFactory:
    return billing_factory()


def _book(billing: BillingFactory, **policy: object) -> TrialBook:
    book = TrialBook(dunning_policy=DunningPolicy(**policy))  # type: ignore[arg-type]
    book.apply(billing("trial_started", "acme", T0 - 20 * DAY, trial_days=7, contact_name="Ann"))
    book.apply(billing("trial_converted", "acme", T0 - 15 * DAY))
    book.advance(T0 - 15 * DAY)
    return book


def test_failure_mails_reminds_then_suspends(billing: BillingFactory) -> None:
    """A failed charge left unpaid: three mails (day 0, 3, 5) then a suspension at day 7."""
    book = _book(billing)
    first = book.apply(billing("charge_failed", "acme", T0))
    assert [(n.kind, n.recipient, n.variables["attempt"]) for n in first.notifications] == [
        ("payment_failed", "owner@acme.example", 1)
    ]
    assert first.notifications[0].variables["amount"] == "49.00 EUR"
    later = book.advance(T0 + 6 * DAY)
    assert [n.variables["attempt"] for n in later.notifications] == [2, 3]
    assert [n.ts.timestamp() for n in later.notifications] == [T0 + 3 * DAY, T0 + 5 * DAY]
    assert not later.commands
    end = book.advance(T0 + 7 * DAY)
    assert [(c.action, c.source) for c in end.commands] == [(TenantAction.SUSPEND, CommandSource.DUNNING)]
    assert book.cases["acme"].status is DunningStatus.EXHAUSTED
    assert not book.advance(T0 + 30 * DAY)


def test_payment_ends_dunning_and_unsuspends(billing: BillingFactory) -> None:
    """charge_succeeded before the end stops reminders; after suspension it un-suspends."""
    book = _book(billing)
    book.apply(billing("charge_failed", "acme", T0))
    paid = book.apply(billing("charge_succeeded", "acme", T0 + 4 * DAY))
    assert [n.variables["attempt"] for n in paid.notifications] == [2]  # day-3 reminder was due first
    assert not paid.commands
    assert not book.advance(T0 + 30 * DAY)

    book = _book(billing)
    book.apply(billing("charge_failed", "acme", T0))
    book.advance(T0 + 8 * DAY)
    back = book.apply(billing("charge_succeeded", "acme", T0 + 9 * DAY))
    assert [c.action for c in back.commands] == [TenantAction.UNSUSPEND]
    assert book.cases["acme"].status is DunningStatus.RECOVERED


def test_repeated_failures_count_and_max_failures_exhausts(billing: BillingFactory) -> None:
    """Further failures during a case send no extra mail; `max_failures` suspends early."""
    book = _book(billing, max_failures=3)
    mails = []
    for day in (0, 1, 2):
        mails += book.apply(billing("charge_failed", "acme", T0 + day * DAY)).notifications
        book.advance(T0 + day * DAY)
    assert len(mails) == 1
    assert book.cases["acme"].failures == 3
    assert book.cases["acme"].status is DunningStatus.EXHAUSTED


def test_redelivered_failure_is_ignored_and_new_case_after_recovery(billing: BillingFactory) -> None:
    """The same event id twice counts once; a failure after recovery opens a new case."""
    book = _book(billing)
    ev = billing("charge_failed", "acme", T0)
    book.apply(ev)
    dup = book.apply(ev)
    assert dup.ignored
    assert not dup.notifications
    assert book.cases["acme"].failures == 1
    first_case = book.cases["acme"].case_id
    book.apply(billing("charge_succeeded", "acme", T0 + DAY))
    again = book.apply(billing("charge_failed", "acme", T0 + 20 * DAY))
    assert len(again.notifications) == 1
    assert book.cases["acme"].case_id != first_case
    assert book.cases["acme"].status is DunningStatus.OPEN


def test_failure_without_any_contact_still_suspends(billing: BillingFactory) -> None:
    """No address known: no mail (with a reason), but the case still runs to its end."""
    book = TrialBook()
    eff = book.apply(billing("charge_failed", "solo", T0))
    assert not eff.notifications
    assert eff.ignored
    assert [c.action for c in book.advance(T0 + 7 * DAY).commands] == [TenantAction.SUSPEND]
