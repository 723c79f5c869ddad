"""Ban notices on the real stack: requests → worker (ratelimit + notify) → aiosmtpd and a webhook.

An abusive IP is banned automatically; the owner gets exactly one `ban_notice` mail and one
signed webhook POST per ban that starts. The ban ending (the watermark passes its end) adds
nothing; abusing again afterwards is a new ban, with a notice of its own.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.devstack.smtp_sink import SmtpSink
from pipeline.runtime.topics import Topic
from pipeline.settings import Settings
from schemas.commands import Action
from schemas.notify import Channel, Delivery, DeliveryStatus, Notification
from schemas.ratelimit import Ban
from tests.conftest import WorkerProcess, wait_for
from tests.integration.anomaly.anomaly_helpers import read_topic
from tests.integration.notify._http import QuietHandler, serving, signature_ok
from tests.integration.ratelimit.conftest import T0, admin, publish, requests, ticks

pytestmark = pytest.mark.integration

SECRET = "whsec-ban-notice-test"  # noqa: S105 - a test key
OWNER = "secops@acme.example"
ABUSER = "192.0.2.66"
STRICT = {"per_minute": 10, "per_hour": 1000, "per_day": 10000, "violation_threshold": 2, "ban_base_s": 600}


@dataclass
class Hooks:
    """Bodies the local webhook endpoint accepted (signature checked its own way); thread-safe."""

    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def of(self, tenant: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if b["tenantwatch"]["tenant_id"] == tenant]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    rec = Hooks()

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = signature_ok(self.headers, body, SECRET)
            with rec.lock:
                if ok:
                    rec.bodies.append(json.loads(body))
                else:
                    rec.refused += 1
            self.answer(200 if ok else 401)

    with serving(Handler) as base:
        rec.url = f"{base}/hook"
        yield rec


def ban_mails(sink: SmtpSink, tenant: str) -> list[EmailMessage]:
    return [m for m in sink.messages()
            if m["X-Tenantwatch-Tenant"] == tenant and m["X-Tenantwatch-Kind"] == "ban_notice"]


def plain(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_an_automatic_ban_mails_the_owner_once_and_posts_one_signed_webhook(
    kafka: str, session_dir: Path, tmp_path: Path, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each started ban: one ban_notice .eml to the owner, one verified webhook; the ended ban: nothing."""
    monkeypatch.setenv("TW_OWNER_EMAIL", OWNER)
    monkeypatch.setenv("TW_NOTIFY_WEBHOOK_URL", hooks.url)
    monkeypatch.setenv("TW_NOTIFY_WEBHOOK_SECRET", SECRET)
    prefix = f"nb{uuid.uuid4().hex[:8]}"
    tenant = f"ban-{uuid.uuid4().hex[:6]}"
    with SmtpSink(tmp_path / "mail") as sink:
        settings = Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=session_dir / prefix,
                            clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4, smtp_port=sink.port)
        ensure_topics(settings)
        worker = WorkerProcess(settings, capabilities="ratelimit,notify").start()
        try:
            assert admin(settings, Action.LIMITS_SET, tenant, **STRICT).outcome == "accepted"
            publish(settings, requests(tenant, ABUSER, 60))
            first = wait_for(lambda: ban_mails(sink, tenant), timeout=180,
                             what=lambda: f"the first ban notice (worker log: {worker.log})")
            wait_for(lambda: hooks.of(tenant), timeout=60, what="the first ban webhook")

            # The first ban (600 s) ends once every partition's watermark passes it; then the IP
            # abuses again and is banned anew (the escalation doubles it).
            back = T0 + timedelta(seconds=1000)
            publish(settings, [*ticks(tenant, back), *requests(tenant, ABUSER, 60, start=back)])
            wait_for(lambda: len(ban_mails(sink, tenant)) >= 2, timeout=180,
                     what=lambda: f"the second ban notice (worker log: {worker.log})")
            wait_for(lambda: len(hooks.of(tenant)) >= 2, timeout=60, what="the second ban webhook")
            bans = [b for b in read_topic(settings, Topic.BANS, Ban) if b.tenant_id == tenant]
            notes = [n for n in read_topic(settings, Topic.NOTIFICATIONS, Notification) if n.tenant_id == tenant]
            ids = {n.id for n in notes}

            def sent() -> set[str]:
                return {d.notification_id for d in read_topic(settings, Topic.DELIVERIES, Delivery)
                        if d.notification_id in ids and d.status is DeliveryStatus.SENT}

            # Once every notification's delivery is logged, nothing more is on its way.
            wait_for(lambda: sent() == ids, timeout=60, what="sent deliveries of every ban notification")
        finally:
            worker.stop()
        mails, posts = ban_mails(sink, tenant), hooks.of(tenant)

        assert [(b.action, b.reason, b.level) for b in bans] == [("started", "auto", 0), ("ended", "auto", 0),
                                                                  ("started", "auto", 1)]
        started = [b for b in bans if b.action == "started"]
        assert len(notes) == 4, "a mail and a webhook per started ban, nothing for the ended one"
        by_channel = {c: [n for n in notes if n.channel is c] for c in Channel}
        for channel in Channel:
            assert [n.variables["ban_id"] for n in by_channel[channel]] == [b.id for b in started]
        assert len(ids) == 4, "mail and webhook ids are distinct"

        assert len(first) == 1
        assert len(mails) == 2, "exactly one mail per ban"
        assert sink.duplicates == {}, "no mail was sent twice"
        mail_ids = {str(m["Message-ID"]).strip("<>").split("@")[0] for m in mails}
        assert mail_ids == {n.id for n in by_channel[Channel.EMAIL]}
        assert {str(m["To"]) for m in mails} == {OWNER}
        assert {str(m["Subject"]) for m in mails} == {f"IP {ABUSER} banned on {tenant}"}
        texts = sorted((plain(m) for m in mails), key=lambda t: "escalation level 1" in t)
        assert [("escalation level 0" in t, "escalation level 1" in t) for t in texts] == [(True, False),
                                                                                           (False, True)]
        assert f"Until:   {started[1].end:%Y-%m-%d %H:%M:%S} UTC" in texts[1]

        assert hooks.refused == 0, "every webhook carried a valid signature"
        assert len(posts) == 2, "exactly one webhook per ban"
        assert {p["tenantwatch"]["id"] for p in posts} == {n.id for n in by_channel[Channel.WEBHOOK]}
        assert {p["tenantwatch"]["kind"] for p in posts} == {"ban_notice"}
        assert all(p["text"].startswith(f":warning: IP {ABUSER} banned on {tenant}: repeated rate-limit violations")
                   for p in posts)
