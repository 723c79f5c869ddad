"""The notifier with the in-memory mailer: idempotent by notification id, storm-aware, honest failures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from notify_helpers import SAMPLES, TS, notification

from agents.notify import Notifier, StormGuard, StormPolicy
from pipeline.adapters.smtp import MailSender, MemoryMailer
from schemas.notify import DeliveryStatus, Severity

FROM = "tenantwatch <alerts@tenantwatch.local>"


def test_memory_mailer_is_a_mail_sender() -> None:
    """The test double satisfies the MailSender protocol."""
    assert isinstance(MemoryMailer(), MailSender)


def test_redelivered_notification_is_sent_once() -> None:
    """The same notification twice: one mail, the second call returns the recorded delivery."""
    mailer = MemoryMailer()
    notifier = Notifier(mailer, FROM)
    n = notification()
    first = asyncio.run(notifier.deliver(n))
    second = asyncio.run(notifier.deliver(n))
    assert first.status is DeliveryStatus.SENT
    assert second == first
    assert len(mailer.messages) == 1
    assert mailer.messages[0]["Message-ID"] == "<n-welcome@tenantwatch.local>"


def test_failed_delivery_may_be_retried_bounced_may_not() -> None:
    """failed → a later call sends again; bounced → final."""
    mailer = MemoryMailer(script=[DeliveryStatus.FAILED, DeliveryStatus.SENT, DeliveryStatus.BOUNCED])
    notifier = Notifier(mailer, FROM)
    a, b = notification(), notification("trial_7day")
    assert asyncio.run(notifier.deliver(a)).status is DeliveryStatus.FAILED
    assert asyncio.run(notifier.deliver(a)).status is DeliveryStatus.SENT
    assert asyncio.run(notifier.deliver(b)).status is DeliveryStatus.BOUNCED
    assert asyncio.run(notifier.deliver(b)).status is DeliveryStatus.BOUNCED
    assert len(mailer.messages) == 3


def test_render_problems_become_failed_deliveries_with_a_reason() -> None:
    """A missing variable is recorded as failed (0 attempts) with the reason; nothing is sent."""
    mailer = MemoryMailer()
    n = notification(variables={k: v for k, v in SAMPLES["welcome"].items() if k != "plan"})
    d = asyncio.run(Notifier(mailer, FROM).deliver(n))
    assert d.status is DeliveryStatus.FAILED
    assert d.attempts == 0
    assert "plan" in d.error
    assert not mailer.messages


def test_storm_then_digest_through_the_notifier() -> None:
    """Ten warnings: two mails now, one digest on tick; the chart rides along inline."""
    mailer = MemoryMailer()
    notifier = Notifier(
        mailer, FROM, storm=StormGuard(StormPolicy(limit=2, window=600)), charts=lambda n: b"\x89PNG\r\n\x1a\nfake"
    )

    async def scenario() -> None:
        for i in range(10):
            n = notification("anomaly_alert", id=f"a{i}", severity=Severity.WARNING, ts=TS + timedelta(seconds=i))
            await notifier.submit(n)
        await notifier.tick(TS.timestamp() + 600)

    asyncio.run(scenario())
    subjects = [m["Subject"] for m in mailer.messages]
    assert len(subjects) == 3
    assert subjects[-1].startswith("8 more alerts for acme")
    assert any(p.get_content_type() == "image/png" for p in mailer.messages[0].walk())
