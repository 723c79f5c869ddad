"""The delivery side: notification → storm check → render → message → sender → `Delivery`.

Idempotent by notification id: a notification already `sent` or `bounced` (per the
`deliveries` mapping; a Faust table in the agent) is not sent again, so at-least-once
input and redelivery after a crash do not double mails. A `failed` one may be retried.

Anomaly alert mails get an inline chart from `charts` (a `ChartSource`: notification → PNG
bytes or None), drawn in a worker thread so the event loop keeps serving Kafka. A chart that
fails to render is logged and the mail goes out without it: a chart never stops a mail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from email.message import EmailMessage

from agents.notify.message import InvalidMessage, build_message, chart_cid, sender_address
from agents.notify.storm import StormGuard
from agents.notify.templates import MissingVariables, TemplateRenderer, UnknownTemplate, UnsafeSubject
from agents.notify.webhook import WebhookSender
from pipeline.adapters.smtp import DeliveryResult, MailSender
from schemas.notify import Channel, Delivery, DeliveryStatus, Notification
from schemas.results import stable_id

__all__ = ["ChartSource", "Notifier"]

log = logging.getLogger(__name__)

_DONE = (DeliveryStatus.SENT, DeliveryStatus.BOUNCED)
ChartSource = Callable[[Notification], bytes | None]


def _wall() -> datetime:
    return datetime.now(UTC)


class Notifier:
    def __init__(
        self,
        mailer: MailSender,
        mail_from: str,
        *,
        renderer: TemplateRenderer | None = None,
        webhook: WebhookSender | None = None,
        storm: StormGuard | None = None,
        charts: ChartSource | None = None,
        deliveries: MutableMapping[str, Delivery] | None = None,
        clock: Callable[[], datetime] = _wall,
    ) -> None:
        self.mailer, self.mail_from = mailer, mail_from
        self._domain = sender_address(mail_from).domain
        self.renderer = renderer or TemplateRenderer()
        self.webhook, self.storm, self.charts = webhook, storm or StormGuard(), charts
        self.deliveries: MutableMapping[str, Delivery] = {} if deliveries is None else deliveries
        self._clock = clock  # delivery records are operational: wall time by default

    async def submit(self, n: Notification, now: float | None = None) -> list[Delivery]:
        """Offer one notification (event time `now`, default its own ts); deliver what is due."""
        decision = self.storm.offer(n, n.ts.timestamp() if now is None else now)
        return [await self.deliver(x) for x in decision.send]

    async def tick(self, now: float) -> list[Delivery]:
        """Advance event time: deliver digests of storm windows that closed."""
        return [await self.deliver(x) for x in self.storm.flush(now)]

    async def chart(self, n: Notification) -> bytes | None:
        """The inline PNG of an anomaly alert, or None (no source, nothing to draw, or it failed)."""
        if self.charts is None or n.kind != "anomaly_alert" or n.channel is not Channel.EMAIL:
            return None
        try:
            return await asyncio.to_thread(self.charts, n)
        except Exception:
            log.warning("chart of notification %s failed to render; sending without it", n.id, exc_info=True)
            return None

    def compose(self, n: Notification, chart_png: bytes | None = None) -> EmailMessage:
        """Render and build the mail; raises InvalidMessage / template errors with a reason."""
        variables: dict[str, object] = dict(n.variables)
        if chart_png is not None:
            variables["chart_cid"] = chart_cid(n.id, self._domain)
        return build_message(n, self.renderer.render(n.kind, variables), self.mail_from, chart_png=chart_png)

    async def deliver(self, n: Notification) -> Delivery:
        done = self.deliveries.get(n.id)
        if done is not None and done.status in _DONE:
            return done
        if n.channel is Channel.WEBHOOK:
            if self.webhook is None:
                result = DeliveryResult(DeliveryStatus.FAILED, 0, "no webhook configured")
            else:
                result = await self.webhook.send(n)
        else:
            try:
                message = self.compose(n, await self.chart(n))
            except (InvalidMessage, MissingVariables, UnknownTemplate, UnsafeSubject) as exc:
                result = DeliveryResult(DeliveryStatus.FAILED, 0, f"{type(exc).__name__}: {exc}")
            else:
                result = await self.mailer.send(message)
        delivery = Delivery(
            id=stable_id(n.id, result.status.value, result.attempts),
            notification_id=n.id,
            status=result.status,
            attempts=result.attempts,
            error=result.error[:2000],
            code=result.code,
            message_id=result.message_id,
            ts=self._clock(),
        )
        self.deliveries[n.id] = delivery
        return delivery
