"""How long the delivery log remembers a notification (pure): which entries are old enough to drop.

The notification agent keeps, per notification id, its last `Delivery`, so that a notification
seen again is not sent again. Ids are deterministic and each producer emits a notification
once, so the only way an id comes back is a redelivery from the notifications topic, and no
record outlives the topic's retention (7 days on the local stack, Kafka's default). A delivery
that finished (sent, bounced or failed) longer ago than `max_age_s` (default 30 days; keep it
above the retention) cannot be repeated, and its entry is dead weight. Ages are wall clock:
`Delivery.ts` is when the delivery happened, not the notification's event time.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from datetime import datetime
from typing import Any

from schemas.notify import DeliveryStatus

__all__ = ["FINISHED", "stale_deliveries"]

FINISHED = frozenset({DeliveryStatus.SENT.value, DeliveryStatus.BOUNCED.value, DeliveryStatus.FAILED.value})


def stale_deliveries(
    entries: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    now: float,
    max_age_s: float,
    keep: Container[str] = frozenset(),
) -> list[str]:
    """Keys of entries whose delivery finished more than `max_age_s` before `now` (epoch seconds).

    `entries` are (notification id, the delivery's JSON form, as the table holds it); it is
    read raw because the agent scans the whole log. Queued deliveries, ids in `keep` (the
    outbox: still being retried) and values that do not parse are kept.
    """
    cutoff = now - max_age_s
    out = []
    for key, d in entries:
        if key in keep:
            continue
        try:
            status, finished = d["status"], datetime.fromisoformat(d["ts"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        if status in FINISHED and finished < cutoff:
            out.append(key)
    return out
