"""Webhooks on the real stack: notifications topic → worker (notify) → a local HTTP receiver.

The receiver checks the signature exactly as `agents/notify/webhook.py` documents it (its own
HMAC code, not ours), answers 500 to the first attempt of every notification and 200 after,
and counts what it accepted: each payload is accepted exactly once, after one retry, and a
redelivered notification is not posted again.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.anomaly.alerts import alert_for
from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.runtime.topics import Topic
from schemas.anomaly import Anomaly, AnomalyStatus, Direction, MetricName, Severity, Verdict, anomaly_id
from schemas.notify import Channel, Delivery, DeliveryStatus, Notification
from schemas.notify import Severity as NoticeSeverity
from tests.conftest import wait_for
from tests.integration.anomaly.anomaly_helpers import produce, read_topic
from tests.integration.notify._http import QuietHandler, serving, signature_ok

pytestmark = pytest.mark.integration

SECRET = "whsec-integration-test"  # noqa: S105 - a test key
HOOK = "ops-slack"  # webhook notifications are keyed by this "recipient": one partition, in order
TS = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """What the local webhook endpoint saw; guarded by `lock` (the server answers in threads)."""

    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: Counter[str] = field(default_factory=Counter)  # notification id → requests received
    accepted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # id → bodies answered 200
    refused: list[str] = field(default_factory=list)  # requests whose signature did not verify

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self.lock:
            return dict(self.attempts), {k: len(v) for k, v in self.accepted.items()}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not signature_ok(self.headers, body, SECRET):
                with rec.lock:
                    rec.refused.append(self.headers.get("X-Tenantwatch-Notification", "?"))
                self.answer(401)
                return
            payload = json.loads(body)
            nid = payload["tenantwatch"]["id"]
            with rec.lock:
                rec.attempts[nid] += 1
                first = rec.attempts[nid] == 1
                if not first:
                    rec.accepted.setdefault(nid, []).append(payload)
            self.answer(500 if first else 200)

    with serving(Handler) as base:
        rec.url = f"{base}/hook"
        yield rec


def critical_anomaly(tenant: str) -> Notification:
    """The anomaly agent's own alert for a critical revenue drop, routed to the webhook."""
    start = TS.timestamp()
    a = Anomaly(id=anomaly_id(tenant, "revenue", start), tenant=tenant, metric=MetricName.REVENUE, start_ts=TS,
                detected_ts=TS, last_ts=TS, value=120.0, expected=5000.0, sigma=250.0, deviation_sigma=-19.5,
                deviation_pct=-97.6, peak_sigma=19.5, direction=Direction.DOWN, severity=Severity.CRITICAL,
                status=AnomalyStatus.ACTIVE, points=2, hst_score=None, verdict=Verdict.RULE_ONLY, threshold_sigma=3.0)
    mail = alert_for(a, "owner@tenantwatch.local")
    return Notification.model_validate({**mail.model_dump(), "id": f"{mail.id}-hook", "channel": Channel.WEBHOOK,
                                        "recipient": HOOK})


def ban(tenant: str, ip: str) -> Notification:
    return Notification(id=f"ban-{tenant}-{ip.replace('.', '-')}", kind="ban_notice", channel=Channel.WEBHOOK,
                        recipient=HOOK, tenant_id=tenant, severity=NoticeSeverity.WARNING, ts=TS,
                        variables={"tenant_id": tenant, "ip": ip, "reason": "1000 requests/min", "until": "13:00 UTC"})


def sent(settings: Any, ids: set[str]) -> dict[str, Delivery]:
    return {d.notification_id: d for d in read_topic(settings, Topic.DELIVERIES, Delivery)
            if d.notification_id in ids and d.status is DeliveryStatus.SENT}


def test_webhooks_are_signed_retried_and_accepted_exactly_once(
    settings_factory, worker_factory, receiver, monkeypatch
):
    """A critical anomaly and a ban reach Slack-shaped, signed; a 500 is retried; nothing is posted twice."""
    monkeypatch.setenv("TW_NOTIFY_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("TW_NOTIFY_WEBHOOK_SECRET", SECRET)
    settings = settings_factory()
    ensure_topics(settings)
    worker = worker_factory(settings, capabilities="notify")
    tenant = f"hook-{uuid.uuid4().hex[:6]}"
    alert, banned = critical_anomaly(tenant), ban(tenant, "203.0.113.9")
    produce(settings, Topic.NOTIFICATIONS, [(HOOK, alert), (HOOK, banned)])

    ids = {alert.id, banned.id}
    delivered = wait_for(lambda: len(found := sent(settings, ids)) == 2 and found, timeout=120,
                         what=lambda: f"sent deliveries of both webhooks (receiver saw {receiver.snapshot()},"
                                      f" worker log {worker.log})")
    assert {d.attempts for d in delivered.values()} == {2}, "accepted on the retry after the 500"
    assert {d.code for d in delivered.values()} == {200}
    attempts, accepted = receiver.snapshot()
    assert attempts == {alert.id: 2, banned.id: 2}
    assert accepted == {alert.id: 1, banned.id: 1}
    assert receiver.refused == [], "every request carried a valid signature"

    body = receiver.accepted[alert.id][0]
    assert body["text"] == f":rotating_light: CRITICAL revenue anomaly on {tenant}"
    assert body["blocks"][0]["type"] == "section"
    assert body["tenantwatch"] == {"id": alert.id, "kind": "anomaly_alert", "tenant_id": tenant,
                                   "severity": "critical", "ts": TS.isoformat()}
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for blk in body["blocks"][1:] for f in blk["fields"]}
    assert fields["*value*"] == alert.variables["value"]
    assert fields["*band*"] == alert.variables["band"]
    ban_body = receiver.accepted[banned.id][0]
    assert ban_body["text"] == f":warning: IP 203.0.113.9 banned on {tenant}: 1000 requests/min"
    assert ban_body["tenantwatch"]["kind"] == "ban_notice"

    # Redelivered notifications (same ids) are not posted again. The sentinel follows them on the
    # same partition, so once it is accepted the worker has already passed over both duplicates.
    sentinel = ban(tenant, "198.51.100.7")
    produce(settings, Topic.NOTIFICATIONS, [(HOOK, alert), (HOOK, banned), (HOOK, sentinel)])
    wait_for(lambda: receiver.snapshot()[1].get(sentinel.id) == 1, timeout=120,
             what=lambda: f"the sentinel webhook (receiver saw {receiver.snapshot()})")
    attempts, accepted = receiver.snapshot()
    assert attempts == {alert.id: 2, banned.id: 2, sentinel.id: 2}
    assert accepted == {alert.id: 1, banned.id: 1, sentinel.id: 1}
