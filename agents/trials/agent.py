"""The trial agent: billing events → TrialBook per partition → notifications, commands, states.

Wiring (see docs/WIRING.md):
- State: two Faust tables keyed by tenant (the billing topic's key), JSON values via
  `Trial.to_dict` / `DunningCase.to_dict`, tagged with their source partition. One
  `TrialBook` per assigned billing partition holds the due-timer heap; it is rebuilt from the
  table the first time a partition is used after an assignment (a scan of that partition's
  trials), so finding what is due costs O(due), never a scan.
- Time: the book is advanced after every event to that partition's running watermark
  (newest event time − allowed lateness), then to the batch watermark; a book rebuilt after
  a restart first catches up with the partition's time before the batch. Every step fires
  at its own due time however far time jumps, so the mails do not depend on which tenants
  share a partition (a quiet partition jumps further) or on where a replay was interrupted. With
  `TW_IDLE_TICK_S` set, a timer also advances books of quiet partitions to
  `wall clock − idle_tick_s` (live traffic only: it makes replays depend on the wall clock,
  so it is off by default). `trials.run_expiry` (admin) advances books to a given time.
- Exactly one mail per step and trial: every output has a deterministic id
  (`stable_id(trial_id, step)` for mails). Outputs are produced and *acknowledged by Kafka*
  before the state that records them is written to the tables, and source offsets are
  committed after both. A crash in between replays the batch: the book fires the same steps
  again with the same ids, and the notifier drops ids it already delivered. The reverse order
  could lose a mail (state says "sent", mail never produced); this order can only repeat one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agents.trials.config import TrialsConfig
from agents.trials.dunning import DunningCase
from agents.trials.engine import TrialBook
from agents.trials.machine import Effects, Trial
from agents.trials.tableview import PartitionView
from pipeline.runtime.commands import CommandRejected
from pipeline.runtime.core import PartitionBatch, Runtime
from pipeline.runtime.table_codecs import JsonValue, StrKey
from pipeline.runtime.topics import Topic, topic_name
from schemas.commands import Action, AdminCommand, ParamValue

__all__ = ["TrialsAgent", "parse_time", "register"]

log = logging.getLogger(__name__)


def parse_time(value: ParamValue) -> float:
    """Epoch seconds from a number or an ISO 8601 time (naive means UTC); ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError("a time is required (ISO 8601 or epoch seconds)")
    if isinstance(value, int | float):
        ts = float(value)
    else:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(ts):
        raise ValueError(f"{value!r} is not a time")
    return ts


class TrialsAgent:
    """Owns the trial tables, the per-partition books and the trial admin commands."""

    def __init__(self, runtime: Runtime, config: TrialsConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or TrialsConfig()
        self.schedule, self.dunning = self.config.schedule(), self.config.dunning()
        s, app = runtime.settings, runtime.app
        self.source = topic_name(s.topic_prefix, Topic.BILLING)
        self.trials = app.Table(f"{s.app_id}-trials-trials", partitions=s.partitions, key_type=StrKey,
                                value_type=JsonValue)
        self.cases = app.Table(f"{s.app_id}-trials-dunning", partitions=s.partitions, key_type=StrKey,
                               value_type=JsonValue)
        self.books: dict[int, TrialBook] = {}
        self.newest: dict[int, float] = {}  # newest event time applied, per partition
        self.lock = asyncio.Lock()
        self.emitted: Counter[str] = Counter()

    def book(self, partition: int) -> TrialBook:
        """The partition's book; built (index included) from the tables on first use."""
        book = self.books.get(partition)
        if book is None:
            trials = PartitionView(self.trials, self.source, partition, Trial.from_dict, Trial.to_dict)
            cases = PartitionView(self.cases, self.source, partition, DunningCase.from_dict, DunningCase.to_dict)
            book = TrialBook(self.schedule, self.dunning, trials=trials, cases=cases)
            book.rebuild_index()
            self.books[partition] = book
        return book

    def local_partitions(self) -> set[int]:
        return {tp.partition for tp in self.runtime.app.assignor.assigned_actives() if tp.topic == self.source}

    async def handle(self, batches: Sequence[PartitionBatch]) -> None:
        async with self.lock:
            for b in batches:
                await self._step(b.partition, b.events, b.watermark, b.newest_before)

    async def _step(self, partition: int, events: Sequence[Any], now: float | None,
                    newest_before: float | None = None, *, jump: bool = False) -> Effects:
        """Apply a batch and advance the book; `jump`: `now` comes from the wall clock or an
        operator, not from events (stale reminders are skipped, `TrialBook.advance`)."""
        book = self.book(partition)
        try:
            effects = Effects()
            newest, lateness = self.newest.get(partition, -math.inf), self.runtime.settings.allowed_lateness_s
            if newest_before is not None and newest_before > newest:
                # A book rebuilt after a restart resumes at the partition's time (restored from
                # the checkpoint), as a book that never stopped would be: whether a start arrives
                # stale (`TrialBook.apply`) must not depend on where the worker was killed.
                newest = newest_before
                effects.extend(book.advance(newest - lateness))
            for event in events:
                # Advance after each event, so what is due does not depend on how events were
                # batched (a batch spanning days would otherwise skip reminders it jumped over).
                effects.extend(book.apply(event))
                newest = max(newest, event.ts.timestamp())
                effects.extend(book.advance(newest - lateness))
            self.newest[partition] = newest
            if now is not None:
                effects.extend(book.advance(now, skip_stale=jump))
            await self._publish(effects)
            for view in (book.trials, book.cases):
                assert isinstance(view, PartitionView)
                view.commit()
        except BaseException:
            # The batch will be replayed or dead-lettered: rebuild the book from what is stored.
            self.books.pop(partition, None)
            raise
        return effects

    async def _publish(self, effects: Effects) -> None:
        if not effects:
            return
        send = self.runtime.send
        for state in effects.states:
            await send(Topic.TRIAL_STATE, state, key=state.tenant_id)
        for command in effects.commands:
            await send(Topic.TENANT_COMMANDS, command, key=command.tenant_id)
        for mail in effects.notifications:
            await send(Topic.NOTIFICATIONS, mail, key=mail.recipient)
        # Acknowledged before the state is written (Faust's own flush gives up after 0.1 s without
        # progress: a kill then found the state saying "sent" and the notification never produced).
        await self.runtime.make_durable()
        self.emitted.update(states=len(effects.states), commands=len(effects.commands),
                            notifications=len(effects.notifications))

    async def idle_tick(self) -> None:
        """Advance quiet partitions from the wall clock (only with TW_IDLE_TICK_S)."""
        idle = self.runtime.settings.idle_tick_s
        if idle is None or self.runtime.app.rebalancing:
            return
        target = time.time() - idle
        async with self.lock:
            for p in sorted(self.local_partitions() & set(self.books)):
                now = self.runtime.watermark(Topic.BILLING, p)
                await self._step(p, (), target if now is None else max(now, target), jump=True)

    async def run_expiry(self, cmd: AdminCommand) -> str:
        """`trials.run_expiry`: fire every timer due at `params.at` (optionally one partition)."""
        try:
            at = parse_time(cmd.params.get("at"))
        except (TypeError, ValueError) as exc:
            raise CommandRejected(f"at: {exc}") from None
        local = self.local_partitions()
        wanted = cmd.params.get("partition")
        if wanted is None:
            targets = sorted(local)
        elif isinstance(wanted, int) and not isinstance(wanted, bool) and wanted in local:
            targets = [wanted]
        else:
            raise CommandRejected(f"partition {wanted!r} is not assigned to this worker")
        total = Effects()
        async with self.lock:
            for p in targets:
                total.extend(await self._step(p, (), at, jump=True))
        when = datetime.fromtimestamp(at, UTC).isoformat()
        return (f"expiry run at {when} on partitions {targets}: {len(total.notifications)} mail(s), "
                f"{len(total.commands)} tenant command(s), {len(total.states)} state change(s)")

    async def resend(self, cmd: AdminCommand) -> str:
        """`trials.resend`: one step's mail again, with an id of its own (per command nonce)."""
        step = cmd.params.get("step")
        if not isinstance(step, str):
            raise CommandRejected("step: one of welcome, 7day, 1day, expired")
        stored = self.trials.get(cmd.tenant_id)
        if stored is None:
            raise CommandRejected(f"no trial for tenant {cmd.tenant_id}")
        partition = int(stored["p"])
        if partition not in self.local_partitions():
            raise CommandRejected(f"tenant {cmd.tenant_id} is not on this worker")
        now = self.runtime.watermark(Topic.BILLING, partition)
        async with self.lock:
            effects = self.book(partition).resend(cmd.tenant_id, step, cmd.nonce,
                                                  cmd.ts.timestamp() if now is None else now)
            if not effects.notifications:
                raise CommandRejected("; ".join(effects.ignored) or "nothing to resend")
            await self._publish(effects)
        mail = effects.notifications[0]
        return f"resent {step} to {mail.recipient} as notification {mail.id}"

    async def on_revoked(self, sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        """Drop books of partitions going away; they are rebuilt from the tables when back."""
        for tp in revoked:
            if tp.topic == self.source:
                self.books.pop(tp.partition, None)

    def status(self) -> dict[str, Any]:
        return {**self.emitted, "partitions": sorted(self.books),
                "timers": sum(len(b.index) for b in self.books.values())}


def register(runtime: Runtime) -> None:
    agent = TrialsAgent(runtime)
    runtime.on(Topic.BILLING, agent.handle)
    runtime.commands.on([Action.TRIALS_RUN_EXPIRY], agent.run_expiry)
    runtime.commands.on([Action.TRIALS_RESEND], agent.resend)
    runtime.app.on_partitions_revoked.connect(agent.on_revoked)
    if runtime.settings.idle_tick_s is not None:
        runtime.app.timer(interval=agent.config.tick_s)(agent.idle_tick)
    runtime.add_status("trials", agent.status)
