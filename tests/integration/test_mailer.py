"""The SMTP adapter against a real aiosmtpd server (pipeline.devstack.smtp_sink) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from agents.notify import Notifier
from agents.notify.message import build_message
from agents.notify.templates import TemplateRenderer
from agents.trials import TrialBook
from pipeline.adapters.smtp import RetryPolicy, SmtpMailer
from pipeline.devstack.smtp_sink import SmtpSink, free_port
from pipeline.settings import Settings
from schemas.events import BillingEvent
from schemas.notify import DeliveryStatus, Notification

pytestmark = pytest.mark.integration

FROM = "tenantwatch <alerts@tenantwatch.local>"
TS = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=6, base_s=0.05, cap_s=0.2)


def _mail(i: int, to: str = "owner@acme.example") -> EmailMessage:
    n = Notification(
        id=f"n{i}",
        kind="ban_notice",
        recipient=to,
        tenant_id="acme",
        ts=TS,
        variables={"tenant_id": "acme", "ip": "203.0.113.9", "reason": "abuse", "until": "13:00"},
    )
    return build_message(n, TemplateRenderer().render(n.kind, n.variables), FROM)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "mail") as s:
        yield s


def _mailer(sink: SmtpSink, **kw: object) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", sink.port, retry=FAST, timeout_s=5, **kw)  # type: ignore[arg-type]


def test_sends_many_over_one_connection(sink: SmtpSink) -> None:
    """Five mails go over a single kept-alive connection and land as five files."""
    mailer = _mailer(sink)

    async def scenario() -> list[DeliveryStatus]:
        try:
            return [(await mailer.send(_mail(i))).status for i in range(5)]
        finally:
            await mailer.close()

    assert asyncio.run(scenario()) == [DeliveryStatus.SENT] * 5
    assert len(sink.wait_for(5, timeout=10)) == 5
    assert mailer.connections == 1


def test_server_down_then_back_delivers_once_with_same_message_id(sink: SmtpSink) -> None:
    """With the server down the mailer backs off; once it returns the mail arrives exactly once."""
    sink.stop()
    mailer = _mailer(sink)
    waits: list[float] = []

    async def sleep_and_restart(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 2:  # after two refused connections, bring the server back
            await asyncio.to_thread(sink.start)

    mailer._sleep = sleep_and_restart
    msg = _mail(7)

    async def scenario() -> object:
        try:
            return await mailer.send(msg)
        finally:
            await mailer.close()

    result = asyncio.run(scenario())
    assert result.status is DeliveryStatus.SENT  # type: ignore[attr-defined]
    assert result.attempts == 3  # type: ignore[attr-defined]
    (path,) = sink.wait_for(1, timeout=10)
    got = email.message_from_bytes(path.read_bytes(), policy=default_policy)
    assert got["Message-ID"] == msg["Message-ID"] == "<n7@tenantwatch.local>"
    assert sink.received == 1
    assert not sink.duplicates


def test_reconnects_when_the_kept_connection_died(sink: SmtpSink) -> None:
    """The server restarts between two sends: the second send reconnects and succeeds, no back-off."""
    mailer = _mailer(sink)

    async def never(delay: float) -> None:
        raise AssertionError("a dead kept-alive connection should be replaced at once")

    mailer._sleep = never

    async def scenario() -> list[DeliveryStatus]:
        try:
            first = await mailer.send(_mail(1))
            await asyncio.to_thread(sink.stop)
            await asyncio.to_thread(sink.start)
            second = await mailer.send(_mail(2))
            return [first.status, second.status]
        finally:
            await mailer.close()

    assert asyncio.run(scenario()) == [DeliveryStatus.SENT, DeliveryStatus.SENT]
    assert len(sink.wait_for(2, timeout=10)) == 2
    assert mailer.connections == 2


def test_5xx_recipient_is_bounced_without_retry(sink: SmtpSink) -> None:
    """A 550 for the recipient is final: bounced after one attempt, the code and reason kept."""
    sink.bounce.add("gone@acme.example")
    mailer = _mailer(sink)

    async def scenario() -> object:
        try:
            return await mailer.send(_mail(3, to="gone@acme.example"))
        finally:
            await mailer.close()

    result = asyncio.run(scenario())
    assert result.status is DeliveryStatus.BOUNCED  # type: ignore[attr-defined]
    assert result.attempts == 1  # type: ignore[attr-defined]
    assert result.code == 550  # type: ignore[attr-defined]
    assert "mailbox unavailable" in result.error  # type: ignore[attr-defined]
    assert sink.files() == []


def test_4xx_is_retried_on_the_same_connection(sink: SmtpSink) -> None:
    """Two 451 answers, then accepted: sent on attempt 3 without reconnecting."""
    sink.defer(2)
    mailer = _mailer(sink)

    async def scenario() -> object:
        try:
            return await mailer.send(_mail(4))
        finally:
            await mailer.close()

    result = asyncio.run(scenario())
    assert result.status is DeliveryStatus.SENT  # type: ignore[attr-defined]
    assert result.attempts == 3  # type: ignore[attr-defined]
    assert mailer.connections == 1
    assert len(sink.wait_for(1, timeout=10)) == 1


def test_retries_run_out_as_failed(tmp_path: Path) -> None:
    """Nobody listening at all: failed after max_attempts, with the connection error kept."""
    port = free_port()
    mailer = SmtpMailer("127.0.0.1", port, retry=RetryPolicy(3, 0.01, 0.02), timeout_s=2)
    result = asyncio.run(mailer.send(_mail(5)))
    assert result.status is DeliveryStatus.FAILED
    assert result.attempts == 3
    assert "gave up" in result.error


def test_sink_counts_a_redelivered_mail_as_duplicate(sink: SmtpSink) -> None:
    """Sending the same Message-ID twice leaves one file and one duplicate count."""
    mailer = _mailer(sink)

    async def scenario() -> None:
        try:
            await mailer.send(_mail(6))
            await mailer.send(_mail(6))
        finally:
            await mailer.close()

    asyncio.run(scenario())
    assert len(sink.wait_for(1, timeout=10)) == 1
    assert sink.received == 2
    assert sink.duplicates["<n6@tenantwatch.local>"] == 1


def test_from_settings_uses_smtp_settings(sink: SmtpSink) -> None:
    """The adapter is built from Settings (host, port, TLS flags) and delivers."""
    mailer = SmtpMailer.from_settings(Settings(smtp_host="127.0.0.1", smtp_port=sink.port), retry=FAST)

    async def scenario() -> object:
        try:
            return await mailer.send(_mail(8))
        finally:
            await mailer.close()

    assert asyncio.run(scenario()).status is DeliveryStatus.SENT  # type: ignore[attr-defined]


def test_trial_mails_end_to_end_through_smtp(sink: SmtpSink) -> None:
    """Trial events → TrialBook → Notifier → aiosmtplib → sink: the right subjects land on disk, once."""
    book = TrialBook()
    start = TS.timestamp()
    events = [
        BillingEvent(
            event_id="s1",
            ts=TS,
            tenant_id="acme",
            type="trial_started",
            plan="pro",
            trial_days=10,
            contact_email="owner@acme.example",
            contact_name="<b>Ann</b>",
        ),
    ]
    notifications = []
    for ev in events:
        notifications += book.apply(ev).notifications
    for hour in range(11 * 24 + 1):  # hourly watermark ticks over the whole trial
        notifications += book.advance(start + hour * 3_600).notifications
    mailer = _mailer(sink)
    notifier = Notifier(mailer, FROM)

    async def scenario() -> list[DeliveryStatus]:
        try:
            out = [(await notifier.deliver(n)).status for n in notifications]
            out += [(await notifier.deliver(n)).status for n in notifications]  # redelivered input
            return out
        finally:
            await mailer.close()

    assert set(asyncio.run(scenario())) == {DeliveryStatus.SENT}
    files = sink.wait_for(4, timeout=10)
    subjects = sorted(email.message_from_bytes(p.read_bytes(), policy=default_policy)["Subject"] for p in files)
    assert len(subjects) == 4
    assert sink.received == 4
    assert any(s.startswith("Welcome! Your pro trial") for s in subjects)
    assert "Your pro trial has ended" in subjects


def test_sink_runs_as_a_module(tmp_path: Path) -> None:
    """`python -m pipeline.devstack.smtp_sink --port N --dir D` serves until terminated."""
    port, folder = free_port(), tmp_path / "mail"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.devstack.smtp_sink", "--port", str(port), "--dir", str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert "SMTP sink on" in proc.stdout.readline()  # printed once the server is listening
        mailer = SmtpMailer("127.0.0.1", port, retry=FAST, timeout_s=5)

        async def scenario() -> object:
            try:
                return await mailer.send(_mail(9))
            finally:
                await mailer.close()

        assert asyncio.run(scenario()).status is DeliveryStatus.SENT  # type: ignore[attr-defined]
        assert len(SmtpSink(folder, port=port).wait_for(1, timeout=10)) == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
