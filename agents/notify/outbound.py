"""What the pipeline tells its owner about bans and critical anomalies, as notifications (pure).

- A ban that *starts* (automatic or manual) becomes one `ban_notice` mail and, when webhooks
  are on, the same notice on the `webhook` channel. Ended bans say nothing new; shadow-mode
  bans are records of what would have happened, enforce nothing, and notify no one.
- An anomaly alert mail (`agents.anomaly.alerts.alert_for`) gets a webhook twin when it is
  critical and webhooks are on; high ones stay mail only.

Ids are `stable_id(kind, channel, source)`: deterministic, so a redelivered ban or metric
point yields the same notification and the notifier's delivery log drops it; distinct per
channel, so the mail and its webhook are delivered (and logged) separately. Anomaly mails
keep the id `alert_for` gives them. On the webhook channel `recipient` is only the topic key
(the lane): the URL comes from `TW_NOTIFY_WEBHOOK_URL`; producers use the owner's address,
so an owner's mails and webhooks share a lane.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.notify import Channel, Notification, Severity
from schemas.ratelimit import Ban
from schemas.results import stable_id

__all__ = ["alert_notifications", "ban_notifications", "channel_id", "on_webhook"]


def channel_id(kind: str, channel: Channel, source: str) -> str:
    """The id of the `kind` notification about `source` (a ban or notification id) on `channel`."""
    return stable_id(kind, channel.value, source)


def on_webhook(n: Notification, source: str) -> Notification:
    """The same notification on the webhook channel, without the mail's chart series."""
    return Notification.model_validate({
        **n.model_dump(exclude={"chart"}),
        "id": channel_id(n.kind, Channel.WEBHOOK, source),
        "channel": Channel.WEBHOOK,
    })


def _when(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ban_notifications(ban: Ban, recipient: str, webhook: bool) -> list[Notification]:
    """The `ban_notice` mail for a started, enforced ban, plus its webhook twin if `webhook`."""
    if ban.action != "started" or ban.shadow:
        return []
    duration = _span((ban.end - ban.start).total_seconds())
    if ban.reason == "auto":
        reason = f"repeated rate-limit violations (automatic ban for {duration}, escalation level {ban.level})"
    else:
        reason = f"banned by an administrator (manual ban for {duration})"
    mail = Notification(
        id=channel_id("ban_notice", Channel.EMAIL, ban.id),
        kind="ban_notice",
        recipient=recipient,
        tenant_id=ban.tenant_id,
        severity=Severity.WARNING,
        ts=ban.ts,
        variables={
            "tenant_id": ban.tenant_id,
            "ip": ban.ip,
            "reason": reason,
            "until": _when(ban.end),
            "since": _when(ban.start),
            "duration": duration,
            "level": ban.level,
            "ban_id": ban.id,
        },
    )
    return [mail, on_webhook(mail, ban.id)] if webhook else [mail]


def alert_notifications(alert: Notification, webhook: bool) -> list[Notification]:
    """An anomaly alert mail, plus its webhook twin if it is critical and `webhook`."""
    if webhook and alert.severity is Severity.CRITICAL:
        return [alert, on_webhook(alert, alert.id)]
    return [alert]
