"""Which entries of the delivery log are old enough to forget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.notify.retention import stale_deliveries
from schemas.notify import Delivery, DeliveryStatus

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = 86_400.0
MAX_AGE = 30 * DAY


def entry(key: str, status: DeliveryStatus, days_ago: float) -> tuple[str, dict[str, object]]:
    """(notification id, the Delivery's JSON form) as the deliveries table stores it under "v"."""
    d = Delivery(id=f"d-{key}", notification_id=key, status=status, attempts=1,
                 ts=NOW - timedelta(days=days_ago))
    return key, d.model_dump(mode="json")


def test_finished_deliveries_older_than_the_max_age_are_stale():
    """Sent, bounced and failed entries past 30 days go; younger ones and queued ones stay."""
    entries = [
        entry("sent-old", DeliveryStatus.SENT, 31),
        entry("bounced-old", DeliveryStatus.BOUNCED, 45),
        entry("failed-old", DeliveryStatus.FAILED, 30.01),
        entry("queued-old", DeliveryStatus.QUEUED, 90),
        entry("sent-young", DeliveryStatus.SENT, 29.99),
        entry("sent-now", DeliveryStatus.SENT, 0),
    ]
    stale = stale_deliveries(entries, now=NOW.timestamp(), max_age_s=MAX_AGE)
    assert stale == ["sent-old", "bounced-old", "failed-old"]


def test_the_outbox_and_unreadable_entries_are_kept():
    """Ids still in the outbox and values that do not parse are never pruned."""
    entries = [
        entry("in-outbox", DeliveryStatus.FAILED, 40),
        ("no-ts", {"status": "sent"}),
        ("bad-ts", {"status": "sent", "ts": "last tuesday"}),
        ("not-a-dict", None),  # type: ignore[list-item]
        entry("gone", DeliveryStatus.SENT, 40),
    ]
    assert stale_deliveries(entries, now=NOW.timestamp(), max_age_s=MAX_AGE, keep={"in-outbox"}) == ["gone"]


def test_the_age_is_measured_against_the_given_clock():
    """The same entry is kept today and stale once `now` moves past its age (no clock read inside)."""
    entries = [entry("n", DeliveryStatus.SENT, 10)]
    assert stale_deliveries(entries, now=NOW.timestamp(), max_age_s=MAX_AGE) == []
    later = (NOW + timedelta(days=20, seconds=1)).timestamp()
    assert stale_deliveries(entries, now=later, max_age_s=MAX_AGE) == ["n"]
