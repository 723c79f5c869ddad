"""The processing runtime: one Faust agent per input topic that decodes each record once,
dead-letters what is bad, advances event time (dead-lettering upstream events too far ahead of
their partition: `pipeline.runtime.event_time`), and hands per-partition batches of validated events to
the capabilities registered for that topic."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from pydantic import BaseModel

from pipeline.runtime.bulk import BatchAppender, BulkWriter
from pipeline.runtime.checkpoints import Checkpoints
from pipeline.runtime.clock import EventClock
from pipeline.runtime.codec import Codec, Rejected, RowCodec, encode_batches, encode_one
from pipeline.runtime.dlq import RecordSpan, dead_letter, source_of
from pipeline.runtime.faust_adapter import (
    cap_commits,
    commit_now,
    owned_highwaters,
    owned_partitions,
    queued_sends,
    run_while_draining,
    seek_partition,
    start_early,
    stream_start,
)
from pipeline.runtime.offsets import Admitted, Gap, Key, OffsetTracker
from pipeline.runtime.state import Checkpoint, EpochFence
from pipeline.runtime.topics import Topic, topic_name
from pipeline.settings import Settings

__all__ = ["Handler", "PartitionBatch", "Runtime", "Snapshot", "StagedWrite"]

log = logging.getLogger(__name__)
_CHECKPOINT_TICK_S = 0.1  # how often an idle worker looks for held batches to checkpoint
_TAIL_QUIET_S = 1.0  # how long the inputs stay quiet before unprocessed fetched records count as skipped
# Inputs upstream apps write: their event times are screened before they move time. The other
# inputs are this system's own outputs, derived from screened events.
_SCREENED = frozenset({Topic.REQUESTS, Topic.BILLING, Topic.ERRORS, Topic.USAGE})


@dataclass(slots=True)
class PartitionBatch:
    """Validated events from one source partition, in arrival order: model instances, or rows
    (dicts of the model's fields) for inputs added with `rows=True` (`Runtime.add_input`).

    `anchor` is a Faust event of that partition: wrap table writes in
    `pipeline.runtime.faust_adapter.in_partition_of(batch.anchor)`.
    """

    topic: Topic
    partition: int
    anchor: Any
    events: list[Any]
    watermark: float | None = None
    # The newest event time of the partition before this batch: with the clock's lateness, lets
    # a handler advance event time event by event (the rate limiter's `on_requests`), so what it
    # decides does not depend on where batches begin and end.
    newest_before: float | None = None


Handler = Callable[[Sequence[PartitionBatch]], Awaitable[None]]


@dataclass(slots=True)
class StagedWrite:
    """Records of one table partition, encoded at a checkpoint (`BulkWriter.encode`), written after it."""

    writer: BulkWriter
    partition: int
    encoded: list[Any]


Snapshot = Callable[[], list[StagedWrite]]


@dataclass
class Counters:
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead_letters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Upstream events dead-lettered as too far ahead of their partition (in dead_letters too), and
    # input events older than their partition's watermark (passed on: each capability counts them).
    too_far_ahead: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    late: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    redelivered: int = 0  # records skipped because this worker had processed them already


class Runtime:
    """Holds the Faust app, topics, codecs, event clock and registered handlers."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.settings = settings
        self.take_max = settings.take_max_records
        self.clock = EventClock(settings.allowed_lateness_s, settings.lead_rule)
        # The wall clock bounds upstream event time only in live deployments (never in replays).
        self._live = settings.max_clock_skew_s is not None
        self.counters = Counters()
        self._topics: dict[Topic, Any] = {}
        self._handlers: dict[Topic, list[Handler]] = defaultdict(list)
        self._codecs: dict[Topic, Codec[Any]] = {}
        self._ts_of: dict[Topic, Callable[[Any], datetime]] = {}  # an event's time: model or row
        self._tenant_of: dict[Topic, Callable[[Any], str]] = {}
        self._status: dict[str, Callable[[], Any]] = {}
        self._commands: Any = None
        self._bulk_pending: list[asyncio.Future[Any]] = []
        # What each input partition had processed, without a hole (`pipeline.runtime.offsets`).
        self.offsets = OffsetTracker()
        self._tails: dict[Key, tuple[int, int]] = {}  # (next wanted, high-water) at the last tail check
        self._snapshots: list[Snapshot] = []  # write-behind state (`on_checkpoint`)
        self._on_resumed: list[Callable[[], None]] = []
        self._held: list[Any] = []  # events of batches processed since the last checkpoint
        self._checkpoint_lock = asyncio.Lock()
        self._gate = asyncio.Event()  # cleared while a checkpoint takes its snapshot: no batch starts
        self._gate.set()
        self._drained = asyncio.Event()  # set whenever no batch is being processed
        self._drained.set()
        self._inputs: dict[str, Topic] = {}  # input topic name -> Topic
        self.fence = EpochFence()
        self.checkpoints = Checkpoints(self, self.fence)
        self._last_checkpoint = self._last_batch_end = time.monotonic()
        # How long each recent checkpoint held batches back (snapshot, seal), in ms: a pause every
        # decision in flight waits out, so the status file shows it.
        self._pauses: deque[float] = deque(maxlen=256)
        self._busy = 0  # batches being processed now
        self.bulk = BatchAppender(app, self._bulk_pending)
        # A worker's first outputs would otherwise wait for each topic's metadata.
        self.start_early(self._warm_outputs)
        self.app.timer(interval=_CHECKPOINT_TICK_S)(self._checkpoint_tick)
        # Rebalances and shutdown wait for every message's ack: checkpoint meanwhile.
        run_while_draining(self.app, self.checkpoint, _CHECKPOINT_TICK_S)
        cap_commits(self.app, self._commit_limit)
        # Longer than a batch may wait to fill, so what waits in a stream buffer is not taken for lost.
        self._tail_quiet_s = max(_TAIL_QUIET_S, 2 * max(settings.take_within_s, settings.take_within_other_s))
        self.app.timer(interval=self._tail_quiet_s)(self._check_tails)
        self.add_status("offsets", lambda: {"redelivered": self.counters.redelivered, **self.offsets.counts})
        self.add_status("checkpoints", self._checkpoint_status)
        self.add_status("event_time", lambda: {"too_far_ahead": dict(self.counters.too_far_ahead),
                                               "late": dict(self.counters.late)})

    @property
    def commands(self) -> Any:
        """The admin-command router (created on first use, so apps without commands skip it)."""
        if self._commands is None:
            from pipeline.runtime.commands import CommandRouter

            self._commands = CommandRouter(self)
        return self._commands

    def start_early(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn()` for the worker's life, from its start (not after table recovery like `app.task`)."""
        start_early(self.app, fn)

    def table(self, name: str, *, fenced: bool = True, **options: Any) -> Any:
        """A changelogged Faust table (`app.Table(name, partitions=..., **options)`).

        `fenced` (the default, for state derived from the inputs): its records carry their
        partition's checkpoint epoch, and recovery applies only epochs a checkpoint made
        durable (`pipeline.runtime.state`). Unfenced: every record applies (ledgers of what happened
        outside, such as mails sent).
        """
        table = self.app.Table(name, partitions=self.settings.partitions, **options)
        if fenced:
            self.checkpoints.fence_table(table)
        return table

    def bulk_writer(self, table: Any) -> BulkWriter:
        """A writer of many keys of `table` per call, made durable with each batch."""
        if self.checkpoints.is_fenced(table):
            return BulkWriter(table, self.bulk, self.fence.header)
        return BulkWriter(table, self.bulk)

    def watermark(self, topic: Topic, partition: int) -> float | None:
        """Event time of one input topic-partition (each topic keeps its own watermark)."""
        return self.clock.now((topic, partition))

    async def end_offsets(self, topic: Topic) -> dict[int, int]:
        """The broker's end offset of every partition of an input topic (raises if it does not answer)."""
        from faust.types import TP

        name = topic_name(self.settings.topic_prefix, topic)
        got = await self.app.consumer.highwaters(*(TP(name, p) for p in range(self.settings.partitions)))
        return {tp.partition: int(offset) for tp, offset in got.items()}

    def processed_offset(self, topic: Topic, partition: int) -> int:
        """Offset of the last record of an input topic-partition this worker processed (-1: none),
        dead-lettered records included: with the partition's end offset, it tells a caught-up input."""
        return self.offsets.done.get((topic_name(self.settings.topic_prefix, topic), partition), -1)

    def extra_status(self) -> dict[str, Any]:
        """Capability figures for the status file (decisions, anomalies, mails, ...)."""
        return {name: fn() for name, fn in self._status.items()}

    def add_status(self, name: str, fn: Callable[[], Any]) -> None:
        self._status[name] = fn

    def topic(self, topic: Topic) -> Any:
        if topic not in self._topics:
            self._topics[topic] = self.app.topic(
                topic_name(self.settings.topic_prefix, topic),
                key_serializer="raw",
                value_serializer="raw",
                partitions=self.settings.partitions,
            )
        return self._topics[topic]

    def on(self, topic: Topic, handler: Handler) -> None:
        """Call `handler` with every batch of validated events from input `topic`."""
        self._handlers[topic].append(handler)

    async def send(self, topic: Topic, record: BaseModel, key: str | None = None) -> None:
        await self.topic(topic).send(key=key.encode() if key else None, value=encode_one(record))

    async def send_keyed(self, topic: Topic, records: Sequence[tuple[str, BaseModel]]) -> None:
        """Many records, each its own Kafka record on its key's partition, as a few batches."""
        if records:
            name = topic_name(self.settings.topic_prefix, topic)
            await self.bulk.send_keyed(name, ((key, encode_one(r)) for key, r in records))

    async def send_batch(self, topic: Topic, records: Sequence[BaseModel], key: str | None = None) -> None:
        """Many records as one JSON-array Kafka record (consumers accept both forms), or as
        several, in order and on the same key, when one would exceed `output_record_max_bytes`."""
        if records:
            out = self.topic(topic)
            raw_key = key.encode() if key else None
            for value in encode_batches(records, self.settings.output_record_max_bytes):
                await out.send(key=raw_key, value=value)

    def add_input(self, topic: Topic, model: type[BaseModel], *, rows: bool = False,
                  within_s: float | None = None) -> None:
        """Register the agent that decodes `topic` into `model` and dispatches to handlers.

        `rows=True`: handlers get rows, plain dicts of the model's validated fields (same
        contract, see `pipeline.runtime.codec.RowCodec`), not instances: about half the decoding cost
        of a busy input. A model the row decoder cannot mirror raises `UnsupportedModel`.
        `within_s`: how long a batch waits to fill (default `take_within_other_s`).
        """
        within = self.settings.take_within_other_s if within_s is None else within_s
        limit = self.settings.max_events_per_record
        codec: Codec[Any] = RowCodec(model, max_events=limit) if rows else Codec(model, max_events=limit)
        self._codecs[topic] = codec
        self._ts_of[topic] = itemgetter("ts") if rows else attrgetter("ts")
        if "tenant_id" in model.model_fields:
            self._tenant_of[topic] = itemgetter("tenant_id") if rows else attrgetter("tenant_id")
        name = topic_name(self.settings.topic_prefix, topic)
        self._inputs[name] = topic

        async def consume(stream: Any) -> None:
            async for events in stream.take_events(self.take_max, within=within):
                await self.process(topic, name, codec, events)

        consume.__name__ = f"ingest_{topic.name.lower()}"
        consume.__qualname__ = consume.__name__
        self.app.agent(self.topic(topic), name=f"tenantwatch.ingest.{topic.value}")(consume)

    async def process(self, topic: Topic, name: str, codec: Codec[Any], records: Sequence[Any]) -> None:
        events = await self._first_time(records)
        while not self._gate.is_set():  # a checkpoint is taking its snapshot
            await self._gate.wait()
        self._busy += 1
        self._drained.clear()
        try:
            await self._process(topic, name, codec, records, events)
        finally:
            self._busy -= 1
            if not self._busy:
                self._drained.set()
            self._last_batch_end = time.monotonic()

    async def _process(self, topic: Topic, name: str, codec: Codec[Any], records: Sequence[Any],
                       events: Sequence[Any]) -> None:
        by_partition: dict[int, PartitionBatch] = {}
        spans: dict[int, list[RecordSpan]] = defaultdict(list)  # where each event came from, to dead-letter it
        dead: list[BaseModel] = []
        for ev in events:
            msg = ev.message
            try:
                good, bad = codec.decode(ev.value)
            except Exception as exc:  # a codec bug must not stop the stream
                log.exception("decoding %s[%d]@%d failed", name, msg.partition, msg.offset)
                good, bad = [], [Rejected(-1, f"internal decode error: {exc!r}", ev.value or b"")]
            batch = by_partition.get(msg.partition)
            if batch is None:
                batch = by_partition[msg.partition] = PartitionBatch(topic, msg.partition, ev, [])
            batch.events.extend(good)
            if good:
                bad_at = sorted(r.index for r in bad if r.index >= 0)
                spans[msg.partition].append(RecordSpan(len(batch.events), msg.offset, bad_at))
            dead.extend(self._dead_letters(bad, "ingest", name, msg.partition, msg.offset))
        self.counters.records[topic] += len(events)
        for batch in by_partition.values():
            batch.newest_before = self.clock.newest((topic, batch.partition))
            if batch.events:
                dead.extend(self._advance(topic, name, codec, batch, spans[batch.partition]))
            self.counters.events[topic] += len(batch.events)
            batch.watermark = self.clock.now((topic, batch.partition))
        batches = [b for b in by_partition.values() if b.events]
        for handler in self._handlers.get(topic, ()):
            try:
                await handler(batches)
            except Exception as exc:
                # A handler bug is a poison batch: keep its evidence, keep the stream moving.
                stage = getattr(handler, "__qualname__", "handler")
                log.exception("handler %s failed on a batch of %s", stage, name)
                for b in batches:
                    rejected = [Rejected(i, f"{stage} failed: {exc!r}", codec.encode_event(e))
                                for i, e in enumerate(b.events)]
                    dead.extend(self._dead_letters(rejected, stage[:64], name, b.partition, b.anchor.message.offset))
        if dead:
            self.counters.dead_letters[topic] += len(dead)
            await self.send_batch(Topic.DLQ, dead, key=name)
        self._hold(records)  # committable after the checkpoint that covers it (`checkpoint`)

    def _advance(self, topic: Topic, name: str, codec: Codec[Any], batch: PartitionBatch,
                 spans: Sequence[RecordSpan]) -> list[BaseModel]:
        """Move the partition's time with the batch; drop (and return as dead letters) the events
        of an upstream input too far ahead of it; count the late ones."""
        ts_of, stream = self._ts_of[topic], (topic, batch.partition)
        mark = self.clock.now(stream)
        newest = max(map(ts_of, batch.events)).timestamp()
        wall = time.time() if self._live else None
        dead: list[BaseModel] = []
        tenant_of = self._tenant_of.get(topic, _no_tenant)
        if topic not in _SCREENED:
            self.clock.observe(stream, newest)
        elif self.clock.clears(stream, newest, wall):  # the common case: no per-event judgement
            self.clock.observe(stream, newest)
            self.clock.note(stream, map(tenant_of, batch.events))
        else:
            events = batch.events
            verdict = self.clock.admit(stream, [ts_of(e).timestamp() for e in events],
                                       [tenant_of(e) for e in events], wall)
            if verdict.refused:
                for r in verdict.refused:
                    offset, index = source_of(spans, r.index)
                    dead.extend(self._dead_letters([Rejected(index, r.reason, codec.encode_event(events[r.index]))],
                                                   "event-time", name, batch.partition, offset))
                self.counters.too_far_ahead[topic] += len(verdict.refused)
                batch.events = [events[i] for i in verdict.accepted]
        if mark is not None and batch.events and min(map(ts_of, batch.events)).timestamp() < mark:
            self.counters.late[topic] += sum(1 for e in batch.events if ts_of(e).timestamp() < mark)
        return dead

    async def _warm_outputs(self) -> None:
        await self.bulk.warm(topic_name(self.settings.topic_prefix, t) for t in Topic)

    async def _first_time(self, events: Sequence[Any]) -> list[Any]:
        """The records of a batch to process: each once, in order, none skipped (`pipeline.runtime.offsets`).

        After a rebalance Faust seeks back to committed offsets, and the consumer rewinds
        partitions that were never committed (`pipeline.runtime.faust_adapter`); records fetched
        before the seek may then arrive twice, and Faust re-delivers the last read offset.
        Everything at or below the last offset processed here has its state written already (a
        batch is acknowledged only once durable), so it is skipped (and acknowledged all the
        same). A record beyond the next one wanted is held back until the broker says whether
        the offsets between hold records: if not, it is processed; if so, the consumer skipped
        them, and the partition is read again from the first.
        """
        admitted = self.offsets.admit(events, self._stream_start)
        self.counters.redelivered += admitted.redelivered
        if not admitted.gaps:
            return admitted.fresh
        return admitted.fresh + await self._settle_gaps(admitted)

    async def _settle_gaps(self, admitted: Admitted) -> list[Any]:
        fresh: list[Any] = []
        pending: dict[Key, Gap] = dict(admitted.gaps)
        while pending:
            key, gap = pending.popitem()
            (topic, partition) = key
            if gap.rewinding:  # fetched before the seek back took effect (or lost to it): seek again
                await self._seek(topic, partition, self.offsets.rewind_to(key, gap))
                continue
            try:
                first = await _first_offset_from(self.settings, topic, partition, gap.expected)
            except Exception:
                log.warning("could not ask the broker about %s[%d] from %d", topic, partition, gap.expected,
                            exc_info=True)
                first = None
            if first is None:  # no answer: read again from the offset wanted, and ask again then
                await self._seek(topic, partition, self.offsets.rewind_to(key, gap, probed=False))
                continue
            settled = self.offsets.resolve(key, gap, first)
            if settled is None:
                log.warning("%s[%d]: records %d-%d were skipped by the consumer; reading them again",
                            topic, partition, first, gap.seen - 1)
                await self._seek(topic, partition, self.offsets.rewind_to(key, gap))
                continue
            self.counters.redelivered += settled.redelivered
            fresh.extend(settled.fresh)
            pending.update(settled.gaps)
        return fresh

    async def _check_tails(self) -> None:
        """Read again the last records of a partition the consumer skipped (no later record shows them).

        While no batch runs, every record fetched should get processed: a partition whose
        high-water mark stayed beyond the next offset wanted for a whole quiet period (1 s, or
        twice the longest a batch waits to fill), and whose broker has a record there, is sought
        back to it (records still queued would come twice and be skipped as redelivered).
        """
        quiet = time.monotonic() - self._last_batch_end >= self._tail_quiet_s
        if self._busy or not quiet or getattr(self.app, "rebalancing", False):
            self._tails.clear()
            return
        offsets = self.offsets
        before, self._tails = self._tails, {}
        for topic, partition, highwater in owned_highwaters(self.app, self._inputs):
            key = (topic, partition)
            wanted = offsets.next_wanted(key, self._stream_start)
            if wanted is None or highwater <= wanted or offsets.tails_checked.get(key) == highwater:
                continue
            self._tails[key] = (wanted, highwater)
            if before.get(key) != (wanted, highwater):
                continue  # judged only once it stayed so for a whole quiet period
            try:
                first = await _first_offset_from(self.settings, topic, partition, wanted, timeout_s=1.0)
            except Exception:
                log.warning("could not ask the broker about %s[%d] from %d", topic, partition, wanted, exc_info=True)
                continue
            if first is None or first >= highwater:  # no record there (transaction markers)
                offsets.tails_checked[key] = highwater
                continue
            if self._busy or offsets.next_wanted(key, self._stream_start) != wanted:
                return  # records came meanwhile: not a tail
            log.warning("%s[%d]: records %d-%d were fetched but never processed; reading them again",
                        topic, partition, wanted, highwater - 1)
            offsets.counts["tail_seeks"] += 1
            await self._seek(topic, partition, wanted)

    async def _seek(self, topic: str, partition: int, offset: int) -> None:
        try:
            await seek_partition(self.app, topic, partition, offset)
        except Exception:  # e.g. revoked by a rebalance meanwhile, whose own seek takes over
            log.warning("could not seek %s[%d] to %d", topic, partition, offset, exc_info=True)

    def _stream_start(self, key: Key) -> int | None:
        return stream_start(self.app, *key) if key[0] in self._inputs else None

    def _commit_limit(self, topic: str, partition: int) -> int | None:
        if topic not in self._inputs:
            return None
        return self.offsets.commit_limit((topic, partition), self._stream_start)

    # -- checkpoints ----------------------------------------------------------------------------
    def on_checkpoint(self, snapshot: Snapshot) -> None:
        """Register `snapshot()`: it encodes what a capability changed since its previous call.

        State that many events touch (the rate limiter's keys) need not be written after every
        batch. Every batch is held (not committable) until a checkpoint: every `checkpoint_s`
        seconds, or as soon as the inputs go quiet (a capability that changes state outside a
        batch, such as an admin order, awaits `checkpoint()` itself). A
        checkpoint waits until no batch is being processed, calls every snapshot (no batch
        runs meanwhile, so what they encode is exactly the effect of the held batches), seals
        the open epoch of each partition involved, writes the snapshots, waits for Kafka to
        have everything, writes the partitions' checkpoint records, and only then lets the
        held batches be committed (see `pipeline.runtime.state` for what a restart does with them).
        """
        self._snapshots.append(snapshot)

    def _hold(self, events: Sequence[Any]) -> None:
        for ev in events:
            ev.message.incref()  # take_events' ack is not the last one: the checkpoint's is
        self._held.extend(events)

    async def checkpoint(self, then: Callable[[], None] | None = None) -> None:
        """Make the held batches' state durable as one epoch per partition; then they become committable.

        `then`: called once the checkpoint is durable, before any further batch runs (the gate
        stays closed through the writes): a capability that drops its memory after a
        checkpoint (a rebalance) must not lose a batch that ran while the checkpoint wrote.
        """
        async with self._checkpoint_lock:
            self._gate.clear()
            paused = time.perf_counter()
            try:
                await self._drained.wait()
                # No batch runs from here to the gate's reopening: no awaits in between.
                held, self._held = self._held, []
                staged = [w for snap in self._snapshots for w in snap()]
                covered = sorted({ev.message.partition for ev in held} | {w.partition for w in staged})
                sealed = {p: self.fence.seal(p) for p in covered}
                records = self._checkpoint_records(held, sealed)
            finally:
                if then is None:
                    self._gate.set()
                    self._pauses.append((time.perf_counter() - paused) * 1000)
            try:
                for w in staged:
                    header = self.fence.header_of(w.partition, sealed[w.partition])
                    await w.writer.write_encoded(w.partition, w.encoded, header)
                if records:  # (every held batch's partition is among them)
                    await self.make_durable()  # the epoch's state and outputs, before its checkpoint records
                    await self.checkpoints.write(records)
                    await self.make_durable()
                    for p, cp in records.items():
                        self.fence.commit(p, cp)
                self._last_checkpoint = time.monotonic()
                for ev in held:
                    ev.ack()  # the last reference: the offset becomes committable
                if then is not None:
                    then()
            finally:
                if then is not None:
                    self._gate.set()
                    self._pauses.append((time.perf_counter() - paused) * 1000)
        if held and self._idle() and not self._held:
            await self._commit_now()

    def _checkpoint_status(self) -> dict[str, float]:
        """Recent checkpoints' pauses (batches held back while the snapshot is taken), in ms."""
        recent = sorted(self._pauses)
        if not recent:
            return {"recent": 0}
        return {"recent": len(recent), "pause_ms_p50": round(recent[len(recent) // 2], 2),
                "pause_ms_max": round(recent[-1], 2)}

    def _checkpoint_records(self, held: Sequence[Any], sealed: dict[int, int]) -> dict[int, Checkpoint]:
        """The checkpoint of each sealed partition: previous offsets and times, advanced by `held`."""
        out: dict[int, Checkpoint] = {}
        for p, epoch in sealed.items():
            prev = self.fence.checkpoints.get(p) or Checkpoint()
            out[p] = Checkpoint(epoch, dict(prev.offsets), dict(prev.newest))
        for ev in held:
            msg = ev.message
            offsets = out[msg.partition].offsets
            if msg.offset > offsets.get(msg.topic, -1):
                offsets[msg.topic] = msg.offset
        for p, cp in out.items():
            for name, topic in self._inputs.items():
                newest = self.clock.newest((topic, p))
                if newest is not None:
                    cp.newest[name] = newest
        return out

    def on_resumed(self, fn: Callable[[], None]) -> None:
        """Call `fn()` after each recovery, once the recovered state is final and before any batch runs:
        a capability may rebuild its memory from its tables then, rather than on its first batch."""
        self._on_resumed.append(fn)

    def owned_partitions(self, topic: Topic) -> list[int]:
        """The partitions of input `topic` this worker owns now."""
        name = topic_name(self.settings.topic_prefix, topic)
        return [p for _, p in owned_partitions(self.app, {name})]

    def highwaters(self, topic: Topic) -> dict[int, int]:
        """The high-water mark (end offset) of each partition of input `topic` this worker owns,
        as its consumer last fetched it (partitions not fetched from yet are left out)."""
        name = topic_name(self.settings.topic_prefix, topic)
        return {p: high for _, p, high in owned_highwaters(self.app, {name})}

    def resume_from(self, checkpoints: dict[int, Checkpoint]) -> None:
        """After recovery: records at or below a checkpoint's offsets are done (their effects are in
        the recovered state), and each input's event time is what it was at that checkpoint."""
        self.offsets.reset({(name, p): offset for p, cp in checkpoints.items() for name, offset in cp.offsets.items()})
        for p, cp in checkpoints.items():
            for name, newest in cp.newest.items():
                topic = self._inputs.get(name)
                if topic is not None:
                    self.clock.observe((topic, p), newest)
        for fn in self._on_resumed:
            try:
                fn()
            except Exception:  # a head start only: the capability rebuilds on its first batch anyway
                log.exception("rebuilding memory after recovery failed")

    async def _checkpoint_tick(self) -> None:
        if not self._held:
            return
        if self._idle() or time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_s:
            await self.checkpoint()

    def _idle(self) -> bool:
        """The input went quiet: no batch in progress, and none finished for a checkpoint tick."""
        return not self._busy and time.monotonic() - self._last_batch_end >= _CHECKPOINT_TICK_S

    async def _commit_now(self) -> None:
        """Commit the acknowledged offsets now, not at the next commit interval (`commit_interval_s`).

        Only when the input went quiet, so a busy worker commits no more often: a worker that
        caught up has its offsets committed a tick after its last batch is durable, and a
        restart re-reads nothing it had finished.
        """
        try:
            await commit_now(self.app)
        except Exception:  # the periodic commit retries; a failed early one costs nothing
            log.warning("early offset commit failed", exc_info=True)

    def _queued_writes(self) -> list[asyncio.Future[Any]]:
        """Futures of every record produced so far and not yet known acknowledged."""
        # In Faust's buffer or as bulk batches (the bulk list is pruned only once its futures are
        # done: other batches may still wait on the same futures).
        return queued_sends(self.app) + self._bulk_pending

    async def _wait_durable(self, queued: list[asyncio.Future[Any]]) -> None:
        await self.app.producer.flush()
        results = await asyncio.gather(*queued, return_exceptions=True)
        bulk = self._bulk_pending
        bulk[:] = [f for f in bulk if not f.done()]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.error("%d changelog/output record(s) failed to reach Kafka: %r", len(failed), failed[0])

    async def make_durable(self) -> None:
        """Wait until every record produced so far (table changelogs included) is acknowledged.

        Runs after a batch's handlers and before the batch is acknowledged (`take_events` acks
        when the loop body returns; Faust commits acked offsets later). Faust's own flush
        (`ProducerBuffer.flush`) gives up after 0.1 s without progress, so on a busy machine
        offsets could be committed while the batch's table writes were still queued, and a
        crash then lost state whose source events are never replayed: a kill -9 test saw a
        rate-limit counter go back.
        """
        # Snapshot before the first await: the caller's writes are all queued by now.
        await self._wait_durable(self._queued_writes())

    def _dead_letters(
        self, rejected: Sequence[Rejected], stage: str, name: str, partition: int, offset: int
    ) -> list[BaseModel]:
        if not rejected:
            return []
        now = datetime.now(UTC)
        out: list[BaseModel] = []
        for r in rejected:
            try:
                out.append(dead_letter(r, stage=stage, topic=name, partition=partition, offset=offset,
                                       max_bytes=self.settings.dlq_payload_max_bytes, now=now))
            except Exception:
                log.exception("could not build a dead letter for %s[%d]@%d", name, partition, offset)
        return out


def _no_tenant(event: Any) -> str:
    return ""


async def _first_offset_from(settings: Settings, topic: str, partition: int, offset: int,
                             timeout_s: float = 10.0) -> int | None:
    from pipeline.adapters.kafka_reader import first_offset_from

    return await first_offset_from(settings, topic, partition, offset, timeout_s)
