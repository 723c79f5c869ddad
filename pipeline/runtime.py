"""The processing runtime: one Faust agent per input topic that decodes each record once,
dead-letters what is bad, advances event time, and hands per-partition batches of validated
events to the capabilities registered for that topic."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from pydantic import BaseModel

from pipeline.bulk import BatchAppender, BulkWriter
from pipeline.clock import EventClock
from pipeline.codec import Codec, Rejected, RowCodec, encode_batch, encode_one
from pipeline.dlq import dead_letter
from pipeline.faust_compat import run_while_draining, start_early
from pipeline.settings import Settings
from pipeline.topics import Topic, topic_name

__all__ = ["Handler", "PartitionBatch", "Runtime"]

log = logging.getLogger(__name__)
_CHECKPOINT_TICK_S = 0.1  # how often an idle worker looks for held batches to checkpoint


@dataclass(slots=True)
class PartitionBatch:
    """Validated events from one source partition, in arrival order: model instances, or rows
    (dicts of the model's fields) for inputs added with `rows=True` (`Runtime.add_input`).

    `anchor` is a Faust event of that partition: wrap table writes in
    `pipeline.faust_compat.in_partition_of(batch.anchor)`.
    """

    topic: Topic
    partition: int
    anchor: Any
    events: list[Any]
    watermark: float | None = None


Handler = Callable[[Sequence[PartitionBatch]], Awaitable[None]]


@dataclass
class Counters:
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead_letters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    redelivered: int = 0  # records skipped because this worker had processed them already


class Runtime:
    """Holds the Faust app, topics, codecs, event clock and registered handlers."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.settings = settings
        self.take_max = settings.take_max_records
        self.clock = EventClock(settings.allowed_lateness_s)
        self.counters = Counters()
        self._topics: dict[Topic, Any] = {}
        self._handlers: dict[Topic, list[Handler]] = defaultdict(list)
        self._codecs: dict[Topic, Codec[Any]] = {}
        self._ts_of: dict[Topic, Callable[[Any], datetime]] = {}  # an event's time: model or row
        self._status: dict[str, Callable[[], Any]] = {}
        self._commands: Any = None
        self._bulk_pending: list[asyncio.Future[Any]] = []
        self._done: dict[tuple[str, int], int] = {}  # highest offset processed per topic-partition
        self._releasing: set[asyncio.Future[None]] = set()  # acks waiting for their batch's writes
        self._flushers: list[Callable[[], Awaitable[None]]] = []  # write-behind state (`on_checkpoint`)
        self._held: list[Any] = []  # events of batches processed since the last checkpoint
        self._checkpoint_lock = asyncio.Lock()
        self._last_checkpoint = self._last_batch_end = time.monotonic()
        self._busy = 0  # batches being processed now
        self.bulk = BatchAppender(app, self._bulk_pending)
        # A worker's first outputs would otherwise wait for each topic's metadata.
        self.start_early(self._warm_outputs)

    @property
    def commands(self) -> Any:
        """The admin-command router (created on first use, so apps without commands skip it)."""
        if self._commands is None:
            from pipeline.commands import CommandRouter

            self._commands = CommandRouter(self)
        return self._commands

    def start_early(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn()` for the worker's life, from its start (not after table recovery like `app.task`)."""
        start_early(self.app, fn)

    def bulk_writer(self, table: Any) -> BulkWriter:
        """A writer of many keys of `table` per call, made durable with each batch."""
        return BulkWriter(table, self.bulk)

    def watermark(self, topic: Topic, partition: int) -> float | None:
        """Event time of one input topic-partition (each topic keeps its own watermark)."""
        return self.clock.now((topic, partition))

    def processed_offset(self, topic: Topic, partition: int) -> int:
        """Offset of the last record of an input topic-partition this worker processed (-1: none),
        dead-lettered records included: with the partition's end offset, it tells a caught-up input."""
        return self._done.get((topic_name(self.settings.topic_prefix, topic), partition), -1)

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
        """Many records as one JSON-array Kafka record (consumers accept both forms)."""
        if records:
            await self.topic(topic).send(key=key.encode() if key else None, value=encode_batch(records))

    def add_input(self, topic: Topic, model: type[BaseModel], *, rows: bool = False,
                  within_s: float | None = None) -> None:
        """Register the agent that decodes `topic` into `model` and dispatches to handlers.

        `rows=True`: handlers get rows, plain dicts of the model's validated fields (same
        contract, see `pipeline.codec.RowCodec`), not instances: about half the decoding cost
        of a busy input. A model the row decoder cannot mirror raises `UnsupportedModel`.
        `within_s`: how long a batch waits to fill (default `take_within_other_s`).
        """
        within = self.settings.take_within_other_s if within_s is None else within_s
        limit = self.settings.max_events_per_record
        codec: Codec[Any] = RowCodec(model, max_events=limit) if rows else Codec(model, max_events=limit)
        self._codecs[topic] = codec
        self._ts_of[topic] = itemgetter("ts") if rows else attrgetter("ts")
        name = topic_name(self.settings.topic_prefix, topic)

        async def consume(stream: Any) -> None:
            async for events in stream.take_events(self.take_max, within=within):
                await self.process(topic, name, codec, events)

        consume.__name__ = f"ingest_{topic.name.lower()}"
        consume.__qualname__ = consume.__name__
        self.app.agent(self.topic(topic), name=f"tenantwatch.ingest.{topic.value}")(consume)

    async def process(self, topic: Topic, name: str, codec: Codec[Any], records: Sequence[Any]) -> None:
        self._busy += 1
        try:
            await self._process(topic, name, codec, records)
        finally:
            self._busy -= 1
            self._last_batch_end = time.monotonic()

    async def _process(self, topic: Topic, name: str, codec: Codec[Any], records: Sequence[Any]) -> None:
        events = self._first_time(records)
        by_partition: dict[int, PartitionBatch] = {}
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
            dead.extend(self._dead_letters(bad, "ingest", name, msg.partition, msg.offset))
        self.counters.records[topic] += len(events)
        for batch in by_partition.values():
            self.counters.events[topic] += len(batch.events)
            if batch.events:
                newest = max(map(self._ts_of[topic], batch.events)).timestamp()
                self.clock.observe((topic, batch.partition), newest)
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
        if self._flushers:
            self._hold(records)  # checkpointed by `_checkpoint_tick`, a task of its own
        else:
            self._ack_when_durable(records)

    async def _warm_outputs(self) -> None:
        await self.bulk.warm(topic_name(self.settings.topic_prefix, t) for t in Topic)

    def _first_time(self, events: Sequence[Any]) -> list[Any]:
        """Drop records this worker already processed (acknowledged all the same).

        After a rebalance Faust seeks back to committed offsets, and the consumer rewinds
        partitions that were never committed (`pipeline.faust_compat`); records fetched
        before the seek may then arrive twice, and Faust re-delivers the last read offset.
        Everything at or below the highest offset processed here has its state written
        already (a batch is acknowledged only once durable), so it is skipped.
        """
        done = self._done
        fresh: list[Any] = []
        for ev in events:
            msg = ev.message
            key = (msg.topic, msg.partition)
            if msg.offset <= done.get(key, -1):
                self.counters.redelivered += 1
                continue
            done[key] = msg.offset
            fresh.append(ev)
        return fresh

    def _ack_when_durable(self, events: Sequence[Any]) -> None:
        """Let `events` be acknowledged only once what their batch produced is in Kafka, without waiting.

        `take_events` acknowledges a batch when the loop body returns, and Faust commits acked
        offsets. Waiting for the batch's changelog writes there (`make_durable`) left the worker
        idle for every batch's produce round trip. Instead each message gets one more reference,
        so `take_events`' ack is not the last one, and a task drops it once everything queued
        so far (this batch's writes and earlier ones) is acknowledged by Kafka: the commit still
        never passes a batch whose state is not durable, and the next batch runs meanwhile.
        Redelivered copies (skipped by `_first_time`) are held too: acking one would let the
        commit pass its original while that is still in flight.
        """
        if events:
            for ev in events:
                ev.message.incref()
            self._release_when_durable(events)

    def _release_when_durable(self, events: Sequence[Any]) -> None:
        """Drop the extra reference of `events` once everything queued so far is in Kafka."""
        task = asyncio.ensure_future(self._release(events, self._queued_writes()))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    # -- write-behind state ---------------------------------------------------------------------
    def on_checkpoint(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Register `flush()`: it writes what a capability changed since its previous call.

        State that many events touch (the rate limiter's keys) need not be written after every
        batch. With a flusher registered, batches are held (not committable) until a
        checkpoint: every `checkpoint_s` seconds, or as soon as the inputs go quiet, the
        runtime takes the batches held so far, calls every flusher, and lets those batches be
        acknowledged once all that is in Kafka. A key changed by many batches in between is
        written once. A restart re-reads from the last checkpoint's offsets, against the state
        written at that checkpoint or later.
        """
        if not self._flushers:
            self.app.timer(interval=_CHECKPOINT_TICK_S)(self._checkpoint_tick)
            # Rebalances and shutdown wait for every message's ack: checkpoint meanwhile.
            run_while_draining(self.app, self.checkpoint, _CHECKPOINT_TICK_S)
        self._flushers.append(flush)

    def _hold(self, events: Sequence[Any]) -> None:
        for ev in events:
            ev.message.incref()  # take_events' ack is not the last one: the checkpoint's is
        self._held.extend(events)

    async def checkpoint(self) -> None:
        """Flush write-behind state; the batches held until now become committable once it is durable."""
        async with self._checkpoint_lock:
            # Taken first: every batch held by now has marked its changes, so the flushers write them.
            held, self._held = self._held, []
            for flush in self._flushers:
                await flush()
            self._last_checkpoint = time.monotonic()
            if held:
                self._release_when_durable(held)

    async def _checkpoint_tick(self) -> None:
        if not self._held:
            return
        if self._idle() or time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_s:
            await self.checkpoint()

    async def _release(self, events: Sequence[Any], queued: list[asyncio.Future[Any]]) -> None:
        await self._wait_durable(queued)
        for ev in events:
            ev.ack()  # the last reference: the offset becomes committable
        if self._idle() and not self._held:
            await self._commit_now()

    def _idle(self) -> bool:
        """The input went quiet: no batch in progress, and none finished for a checkpoint tick."""
        return not self._busy and time.monotonic() - self._last_batch_end >= _CHECKPOINT_TICK_S

    async def _commit_now(self) -> None:
        """Commit the acknowledged offsets now, not at the next commit interval (`commit_interval_s`).

        Only when the input went quiet, so a busy worker commits no more often: a worker that
        caught up has its offsets committed a tick after its last batch is durable, and a
        restart re-reads nothing it had finished.
        """
        consumer = getattr(self.app, "_consumer", None)  # Faust creates it when the worker starts
        if consumer is None:
            return
        try:
            await consumer.commit()
        except Exception:  # the periodic commit retries; a failed early one costs nothing
            log.warning("early offset commit failed", exc_info=True)

    def _queued_writes(self) -> list[asyncio.Future[Any]]:
        """Futures of every record produced so far and not yet known acknowledged."""
        pending = getattr(getattr(self.app.producer, "buffer", None), "pending", None)
        # In Faust's buffer or as bulk batches (the bulk list is pruned only once its futures are
        # done: other batches may still wait on the same futures).
        return [f for f in getattr(pending, "_queue", ()) if isinstance(f, asyncio.Future)] + self._bulk_pending

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
