"""The notification agent: notifications topic → storm control → mail or webhook → delivery log.

Wiring (see docs/WIRING.md): `runtime.add_input(Topic.NOTIFICATIONS, Notification)`; the
topic is keyed by recipient, so each partition is a "lane" of recipients with its own
`Notifier` and `StormGuard`, sharing one SMTP connection. Any kind the templates know is
delivered (trial mails, payment_failed, anomaly_alert, ban_notice, alert_digest); channel
`webhook` goes to `TW_NOTIFY_WEBHOOK_URL`, signed with `TW_NOTIFY_WEBHOOK_SECRET`. Anomaly
alert mails carry an inline PNG chart drawn from the series the alert brings
(`agents.notify.chart.notification_chart`); an alert without a series, or a chart that fails
to render, is mailed without one.

State (Faust tables, JSON, tagged with the lane): `deliveries` (notification id → last
`Delivery`: sent/bounced ids are never sent again, so redelivery is harmless), `outbox`
(notifications waiting for a server that is down) and `storm` (open storm windows).
An hourly timer (`TW_NOTIFY_PRUNE_INTERVAL_S`) forgets deliveries that finished more than
`TW_NOTIFY_DELIVERIES_MAX_AGE_S` (30 days, wall clock) ago: only a redelivery from Kafka can
bring an id back, and the topic's retention is far shorter (`agents.notify.retention`). The
deletes go through the table's changelog as tombstones, on the lane's partition.

SMTP down: a send first retries in line a few times (short back-off); if that runs out the
notification goes to the outbox and everything after it on the same lane and channel queues
behind it (order kept, no waiting on a dead server per mail). A timer retries the oldest
entry with exponential back-off (wall clock; up to `outbox_max_age_s`, then `failed`); when
it goes through, the lane drains in order. The outbox is a changelogged table, so a
restart resumes it. Each queued notification logs one `queued` Delivery, then its outcome.

The one crash window: the server accepted a mail and the worker dies before the `sent`
delivery reaches the changelog (it is flushed to Kafka right after each accepted mail, before
the next one is sent, so at most one mail per lane is in that window). The notification is
then redelivered and sent again, with the same Message-ID (derived from the notification
id), so receivers and the sink can deduplicate it. Nothing else can send a mail twice.
The `sent`/`bounced` record goes to the delivery log (topic `deliveries`) with that flush;
a redelivered notification already logged as done publishes its record again (same id), so
a kill between the two writes loses no row of the log.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.notify.chart import notification_chart
from agents.notify.config import NotifyConfig
from agents.notify.notifier import Notifier
from agents.notify.retention import stale_deliveries
from agents.notify.storm import StormGuard
from agents.notify.templates import TemplateRenderer
from agents.notify.webhook import WebhookSender
from agents.trials.tableview import PartitionView
from pipeline.adapters.smtp import MailSender, SmtpMailer
from pipeline.runtime.core import PartitionBatch, Runtime
from pipeline.runtime.table_codecs import JsonValue, StrKey
from pipeline.runtime.topics import Topic, topic_name
from schemas.notify import Channel, Delivery, DeliveryStatus, Notification
from schemas.results import stable_id

__all__ = ["NotifyAgent", "Queued", "register"]

_DONE = (DeliveryStatus.SENT, DeliveryStatus.BOUNCED)


@dataclass(slots=True)
class Queued:
    """A notification waiting in the outbox; times are wall-clock seconds."""

    n: Notification
    since: float
    next_at: float
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n.model_dump(mode="json"), "since": self.since, "next_at": self.next_at,
                "attempts": self.attempts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Queued:
        return cls(Notification.model_validate(data["n"]), data["since"], data["next_at"], data["attempts"])

    @property
    def order(self) -> tuple[datetime, str]:
        return self.n.ts, self.n.id


@dataclass(slots=True)
class _Lane:
    notifier: Notifier
    deliveries: PartitionView[Delivery]
    outbox: PartitionView[Queued]
    storms: PartitionView[StormGuard]
    queue: dict[str, Queued] = field(default_factory=dict)
    storm_dirty: bool = False

    def blocked(self, channel: Channel) -> bool:
        return any(q.n.channel is channel for q in self.queue.values())


def transient(d: Delivery) -> bool:
    """A failure worth retrying later: the sender ran out of in-line retries."""
    return d.status is DeliveryStatus.FAILED and d.error.startswith("gave up")


class NotifyAgent:
    def __init__(self, runtime: Runtime, config: NotifyConfig | None = None, mailer: MailSender | None = None):
        self.runtime = runtime
        self.config = config or NotifyConfig()
        s, app = runtime.settings, runtime.app
        self.source = topic_name(s.topic_prefix, Topic.NOTIFICATIONS)
        self.mailer = mailer or SmtpMailer.from_settings(s, retry=self.config.smtp_retry())
        self.renderer = TemplateRenderer(self.config.template_dir)
        c = self.config
        self.webhook = (WebhookSender(c.webhook_url, c.webhook_secret.get_secret_value().encode())
                        if c.webhook_url else None)

        def table(name: str) -> Any:
            return app.Table(f"{s.app_id}-notify-{name}", partitions=s.partitions, key_type=StrKey,
                             value_type=JsonValue)

        self.deliveries, self.outbox, self.storms = table("deliveries"), table("outbox"), table("storm")
        self._deliveries_writer = runtime.bulk_writer(self.deliveries)
        self.lanes: dict[int, _Lane] = {}
        self.lock = asyncio.Lock()
        self.counts: Counter[str] = Counter()

    def lane(self, p: int) -> _Lane:
        lane = self.lanes.get(p)
        if lane is None:
            policy = self.config.storm()
            deliveries = PartitionView(self.deliveries, self.source, p, Delivery.model_validate,
                                       lambda d: d.model_dump(mode="json"))
            outbox = PartitionView(self.outbox, self.source, p, Queued.from_dict, Queued.to_dict)
            storms = PartitionView(self.storms, self.source, p, lambda v: StormGuard.from_dict(v, policy),
                                   StormGuard.to_dict)
            guard = storms.get(f"storm-{p}") or StormGuard(policy)
            notifier = Notifier(self.mailer, self.runtime.settings.mail_from, renderer=self.renderer,
                                webhook=self.webhook, storm=guard, charts=notification_chart,
                                deliveries=deliveries)
            lane = self.lanes[p] = _Lane(notifier, deliveries, outbox, storms, {k: outbox[k] for k in outbox})
        return lane

    def local_partitions(self) -> set[int]:
        return {tp.partition for tp in self.runtime.app.assignor.assigned_actives() if tp.topic == self.source}

    async def handle(self, batches: Sequence[PartitionBatch]) -> None:
        async with self.lock:
            for b in batches:
                lane = self.lane(b.partition)
                out: list[Delivery] = []
                try:
                    for n in b.events:
                        await self._offer(lane, n, out)
                    if b.watermark is not None:
                        await self._flush_storm(lane, b.watermark, out)
                    await self._finish(b.partition, lane, out)
                except BaseException:
                    self.lanes.pop(b.partition, None)
                    raise

    async def _offer(self, lane: _Lane, n: Notification, out: list[Delivery]) -> None:
        done = lane.deliveries.get(n.id)
        if n.id in lane.queue or (done is not None and done.status in _DONE):
            self.counts["redelivered"] += 1
            if done is not None and done.status in _DONE:
                # A run killed after logging this delivery may not have published its record:
                # publish it again (same id; the delivery log keeps one row per id).
                await self.runtime.send(Topic.DELIVERIES, done, key=done.notification_id)
            return
        decision = lane.notifier.storm.offer(n, n.ts.timestamp())
        lane.storm_dirty |= n.kind in lane.notifier.storm.policy.kinds or len(decision.send) > 1
        for x in decision.send:
            await self._send(lane, x, out)

    async def _flush_storm(self, lane: _Lane, now: float, out: list[Delivery]) -> None:
        digests = lane.notifier.storm.flush(now)
        lane.storm_dirty |= bool(digests)
        for d in digests:
            await self._send(lane, d, out)

    async def _send(self, lane: _Lane, n: Notification, out: list[Delivery]) -> None:
        if lane.blocked(n.channel):
            self._enqueue(lane, n, out, "queued behind undelivered notifications")
            return
        d = await self._deliver(lane, n)
        if transient(d):
            self._enqueue(lane, n, out, d.error, attempts=1)
        elif d.status not in _DONE:  # (a done delivery was published by `_deliver`)
            out.append(d)

    async def _deliver(self, lane: _Lane, n: Notification) -> Delivery:
        d = await lane.notifier.deliver(n)
        if d.status in _DONE:
            # Make "sent" durable, in the table and in the delivery log, before the next mail: a
            # crash can then repeat at most this one.
            lane.deliveries.commit()
            self.counts[d.status.value] += 1
            await self.runtime.send(Topic.DELIVERIES, d, key=d.notification_id)
            await self.runtime.make_durable()
        return d

    def _enqueue(self, lane: _Lane, n: Notification, out: list[Delivery], why: str, attempts: int = 0) -> None:
        wall = time.time()
        q = Queued(n, wall, wall + (self.config.outbox_delay(attempts) if attempts else 0.0), attempts)
        lane.queue[n.id] = lane.outbox[n.id] = q
        d = Delivery(id=stable_id(n.id, DeliveryStatus.QUEUED.value, 0), notification_id=n.id,
                     status=DeliveryStatus.QUEUED, attempts=attempts, error=why[:2000], ts=datetime.now(UTC))
        lane.deliveries[n.id] = d
        out.append(d)

    async def _retry(self, lane: _Lane, wall: float, out: list[Delivery]) -> None:
        """Oldest first per channel; stop a channel at its first entry that is not due or fails."""
        stuck: set[Channel] = set()
        for q in sorted(lane.queue.values(), key=lambda q: q.order):
            channel = q.n.channel
            if channel in stuck:
                continue
            if q.next_at > wall:
                stuck.add(channel)
                continue
            d = await self._deliver(lane, q.n)
            if transient(d) and wall - q.since < self.config.outbox_max_age_s:
                q.attempts += 1
                q.next_at = wall + self.config.outbox_delay(q.attempts)
                lane.outbox[q.n.id] = q
                stuck.add(channel)
                continue
            del lane.queue[q.n.id]
            del lane.outbox[q.n.id]
            if d.status not in _DONE:  # (a done delivery was published by `_deliver`)
                out.append(d)

    async def _finish(self, p: int, lane: _Lane, out: list[Delivery]) -> None:
        if lane.storm_dirty:
            lane.storms[f"storm-{p}"] = lane.notifier.storm
            lane.storm_dirty = False
        for view in (lane.deliveries, lane.outbox, lane.storms):
            view.commit()
        for d in out:
            self.counts[d.status.value] += 1
            await self.runtime.send(Topic.DELIVERIES, d, key=d.notification_id)

    async def tick(self) -> None:
        """Retry the outbox and send digests of closed storm windows (event time of the lane)."""
        if not self._ready():
            return
        wall = time.time()
        async with self.lock:
            for p in sorted(self.local_partitions()):
                lane = self.lane(p)
                out: list[Delivery] = []
                try:
                    now = self.runtime.watermark(Topic.NOTIFICATIONS, p)
                    if now is not None:
                        await self._flush_storm(lane, now, out)
                    if lane.queue:
                        await self._retry(lane, wall, out)
                    await self._finish(p, lane, out)
                except BaseException:
                    self.lanes.pop(p, None)
                    raise

    async def prune(self) -> None:
        """Delete deliveries finished longer than `deliveries_max_age_s` ago, per lane, as tombstones."""
        if not self._ready():
            return
        wall = time.time()
        async with self.lock:
            local = self.local_partitions()
            entries: dict[int, list[tuple[str, Any]]] = defaultdict(list)
            for key, stored in list(self.deliveries.items()):  # stored: {"p": lane, "v": Delivery JSON}
                if isinstance(stored, dict) and stored.get("p") in local:
                    entries[stored["p"]].append((key, stored.get("v")))
            pruned = 0
            for p, items in sorted(entries.items()):
                # Between batches (under the lock) every lane's writes are committed: nothing
                # staged can bring a deleted key back, and nothing queued in Faust's buffer
                # writes a key untouched for that long after its tombstone.
                stale = stale_deliveries(items, now=wall, max_age_s=self.config.deliveries_max_age_s,
                                         keep=self.lane(p).queue)
                pruned += await self._deliveries_writer.write(p, [(key, None) for key in stale])
            if pruned:
                self.counts["pruned"] += pruned
                await self.runtime.make_durable()

    def _ready(self) -> bool:
        app = self.runtime.app
        return not (app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set())

    async def on_revoked(self, sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == self.source:
                self.lanes.pop(tp.partition, None)

    def status(self) -> dict[str, Any]:
        return {**self.counts, "outbox": sum(len(lane.queue) for lane in self.lanes.values()),
                "storm_pending": sum(lane.notifier.storm.pending() for lane in self.lanes.values())}


def register(runtime: Runtime) -> None:
    runtime.add_input(Topic.NOTIFICATIONS, Notification)
    agent = NotifyAgent(runtime)
    runtime.on(Topic.NOTIFICATIONS, agent.handle)
    runtime.app.on_partitions_revoked.connect(agent.on_revoked)
    runtime.app.timer(interval=agent.config.tick_s)(agent.tick)
    runtime.app.timer(interval=agent.config.prune_interval_s)(agent.prune)
    runtime.add_status("notify", agent.status)
