"""The pure parts of the notification agent's wiring: outbox entries and storm state round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agents.notify.agent import Queued, transient
from agents.notify.config import NotifyConfig
from agents.notify.storm import StormGuard, StormPolicy
from schemas.notify import Delivery, DeliveryStatus, Notification, Severity


def alert(i: int, severity: Severity = Severity.WARNING) -> Notification:
    return Notification(id=f"a{i}", kind="anomaly_alert", recipient="ops@acme.example", tenant_id="acme",
                        variables={"metric": "cpu", "value": i}, severity=severity,
                        ts=datetime(2026, 3, 2, 0, i, tzinfo=UTC))


def test_storm_state_survives_a_json_round_trip():
    """A guard restored from its JSON state folds and digests exactly like the original."""
    policy = StormPolicy(limit=1, window=3600)
    a, t0 = StormGuard(policy), datetime(2026, 3, 2, tzinfo=UTC).timestamp()
    for i in range(3):
        a.offer(alert(i), t0 + 60.0 * i)
    b = StormGuard.from_dict(json.loads(json.dumps(a.to_dict())), policy)
    assert b.pending() == a.pending() == 2
    assert [n.model_dump() for n in b.flush(t0 + 4000)] == [n.model_dump() for n in a.flush(t0 + 4000)]


def test_outbox_entry_round_trips_through_json():
    """A queued notification comes back equal from the table's JSON."""
    q = Queued(alert(1, Severity.CRITICAL), since=10.0, next_at=12.5, attempts=2)
    back = Queued.from_dict(json.loads(json.dumps(q.to_dict())))
    assert back == q


def test_only_exhausted_retries_count_as_transient():
    """'gave up' failures wait in the outbox; template errors and bounces do not."""
    now = datetime(2026, 3, 2, tzinfo=UTC)

    def d(status: DeliveryStatus, error: str) -> Delivery:
        return Delivery(id="x", notification_id="n", status=status, attempts=1, error=error, ts=now)

    assert transient(d(DeliveryStatus.FAILED, "gave up: ConnectionRefusedError"))
    assert not transient(d(DeliveryStatus.FAILED, "UnsafeSubject: one line"))
    assert not transient(d(DeliveryStatus.BOUNCED, "550 mailbox unavailable"))


def test_outbox_back_off_doubles_up_to_its_cap():
    """Retry delays grow 1, 2, 4 ... seconds and stop at the cap."""
    c = NotifyConfig(outbox_retry_base_s=1, outbox_retry_cap_s=5)
    assert [c.outbox_delay(k) for k in range(1, 6)] == [1, 2, 4, 5, 5]
