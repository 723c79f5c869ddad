"""Ban notices and webhook twins of critical alerts: who gets what, on which channel, under which id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.anomaly.alerts import alert_for
from agents.notify.config import WebhookTarget
from agents.notify.message import build_message
from agents.notify.outbound import alert_notifications, ban_notifications
from agents.notify.templates import TEMPLATE_VARIABLES, TemplateRenderer
from agents.notify.webhook import slack_payload
from pipeline.settings import Settings
from schemas.anomaly import Anomaly, AnomalyStatus, Direction, MetricName, Severity, Verdict, anomaly_id
from schemas.notify import Channel, ChartPoint, ChartSeries
from schemas.notify import Severity as NoticeSeverity
from schemas.ratelimit import Ban

OWNER = "owner@acme.example"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ban(action: str = "started", reason: str = "auto", *, shadow: bool = False, level: int = 1,
        start: datetime = T0, seconds: float = 1800, ip: str = "203.0.113.9") -> Ban:
    return Ban.create(tenant_id="acme", ip=ip, action=action, reason=reason, level=level, start=start,
                      end=start + timedelta(seconds=seconds), shadow=shadow, ts=start)


def anomaly(severity: Severity) -> Anomaly:
    return Anomaly(id=anomaly_id("acme", "revenue", T0.timestamp()), tenant="acme", metric=MetricName.REVENUE,
                   start_ts=T0, detected_ts=T0, last_ts=T0, value=120.0, expected=5000.0, sigma=250.0,
                   deviation_sigma=-19.5, deviation_pct=-97.6, peak_sigma=19.5, direction=Direction.DOWN,
                   severity=severity, status=AnomalyStatus.ACTIVE, points=2, hst_score=None,
                   verdict=Verdict.RULE_ONLY, threshold_sigma=3.0)


def chart() -> ChartSeries:
    points = tuple(ChartPoint(ts=T0 + timedelta(hours=i), value=1.0, expected=1.0, low=0.5, high=1.5)
                   for i in range(2))
    return ChartSeries(title="revenue of acme", marker=T0, points=points)


def test_a_started_ban_is_one_mail_that_renders_with_every_template_variable():
    """The ban_notice mail carries what its strict template needs; subject, text and HTML render."""
    (mail,) = ban_notifications(ban(), OWNER, webhook=False)
    assert (mail.kind, mail.channel, mail.recipient, mail.tenant_id) == ("ban_notice", Channel.EMAIL, OWNER, "acme")
    assert (mail.severity, mail.ts) == (NoticeSeverity.WARNING, T0)
    assert set(TEMPLATE_VARIABLES["ban_notice"]) <= set(mail.variables)
    rendered = TemplateRenderer().render(mail.kind, mail.variables)
    assert rendered.subject == "IP 203.0.113.9 banned on acme"
    assert "Until:   2026-03-02 09:30:00 UTC" in rendered.text
    assert "repeated rate-limit violations (automatic ban for 30 min, escalation level 1)" in rendered.text
    assert "<code>203.0.113.9</code>" in rendered.html
    msg = build_message(mail, rendered, "tenantwatch <alerts@tenantwatch.local>")
    assert msg["To"] == OWNER
    assert msg["X-Tenantwatch-Kind"] == "ban_notice"


def test_webhooks_add_a_twin_with_its_own_deterministic_id():
    """With webhooks on: the mail and a webhook notice, ids distinct per channel and equal on redelivery."""
    b = ban()
    mail, hook = ban_notifications(b, OWNER, webhook=True)
    assert (mail.channel, hook.channel) == (Channel.EMAIL, Channel.WEBHOOK)
    assert mail.id != hook.id
    assert [n.id for n in ban_notifications(b, OWNER, webhook=True)] == [mail.id, hook.id]
    assert ban_notifications(b, OWNER, webhook=False)[0].id == mail.id, "the mail's id does not depend on webhooks"
    assert hook.model_dump(exclude={"id", "channel"}) == mail.model_dump(exclude={"id", "channel"})
    assert slack_payload(hook)["text"] == (
        ":warning: IP 203.0.113.9 banned on acme: "
        "repeated rate-limit violations (automatic ban for 30 min, escalation level 1)")
    other = ban_notifications(ban(start=T0 + timedelta(hours=5)), OWNER, webhook=True)
    assert not {n.id for n in other} & {mail.id, hook.id}, "another ban of the same IP is another notice"


@pytest.mark.parametrize(("reason", "seconds", "says"), [
    ("manual", 86400, "banned by an administrator (manual ban for 24 h)"),
    ("auto", 3 * 86400 + 7200, "automatic ban for 3 d 2 h"),
    ("auto", 5400, "automatic ban for 1 h 30 min"),
])
def test_reason_says_who_banned_and_for_how_long(reason, seconds, says):
    """Manual and automatic bans both notify; the reason names which, with the duration."""
    (mail,) = ban_notifications(ban(reason=reason, seconds=seconds), OWNER, webhook=False)
    assert says in str(mail.variables["reason"])


@pytest.mark.parametrize("b", [ban(action="ended"), ban(shadow=True), ban(action="ended", reason="manual")],
                         ids=["ended", "shadow", "manual-ended"])
def test_ended_and_shadow_bans_notify_no_one(b):
    """An ended ban says nothing new; a shadow ban enforces nothing: neither mails nor webhooks."""
    assert ban_notifications(b, OWNER, webhook=True) == []


def test_critical_alerts_get_a_webhook_twin_without_the_chart():
    """A critical alert: the mail (unchanged, with its chart) and a webhook notice with an id of its own."""
    mail = alert_for(anomaly(Severity.CRITICAL), OWNER, chart())
    out = alert_notifications(mail, webhook=True)
    assert out[0] is mail
    hook = out[1]
    assert (hook.channel, hook.kind, hook.severity, hook.chart) == (Channel.WEBHOOK, "anomaly_alert",
                                                                    NoticeSeverity.CRITICAL, None)
    assert hook.id != mail.id
    assert hook.variables == mail.variables
    assert [n.id for n in alert_notifications(alert_for(anomaly(Severity.CRITICAL), OWNER), webhook=True)] == [
        mail.id, hook.id], "deterministic, chart or not"
    assert slack_payload(hook)["text"] == ":rotating_light: CRITICAL revenue anomaly on acme"


def test_high_alerts_and_disabled_webhooks_stay_mail_only():
    """High alerts never go to the webhook; without a webhook URL critical ones do not either."""
    high = alert_for(anomaly(Severity.HIGH), OWNER)
    critical = alert_for(anomaly(Severity.CRITICAL), OWNER)
    assert alert_notifications(high, webhook=True) == [high]
    assert alert_notifications(critical, webhook=False) == [critical]


def test_the_owner_address_and_the_webhook_switch_come_from_the_environment(monkeypatch):
    """TW_OWNER_EMAIL (or its old name TW_ANOMALY_ALERT_TO) and a bare TW_NOTIFY_WEBHOOK_URL (no secret)."""
    for name in ("TW_OWNER_EMAIL", "TW_ANOMALY_ALERT_TO", "TW_NOTIFY_WEBHOOK_URL", "TW_NOTIFY_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().owner_email == "owner@tenantwatch.local"
    assert not WebhookTarget().enabled
    monkeypatch.setenv("TW_ANOMALY_ALERT_TO", "old@acme.example")
    assert Settings().owner_email == "old@acme.example"
    monkeypatch.setenv("TW_OWNER_EMAIL", "new@acme.example")
    assert Settings().owner_email == "new@acme.example"
    assert Settings(owner_email="kw@acme.example").owner_email == "kw@acme.example"
    monkeypatch.setenv("TW_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    assert WebhookTarget().enabled, "producers need the URL only; the secret stays with the notifier"
