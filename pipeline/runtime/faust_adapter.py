"""Workarounds for Faust behaviours that would otherwise cost us data (three), start-up time
(one) or latency (one).

Table writes from batched iteration (faust-streaming #497). A Table write picks its changelog
partition from the *current event*, a context variable that Faust sets while iterating a
stream one event at a time. Batches from `take_events()` are filled in a background task, so
the variable is unset when our code writes. Every table we keep is keyed like its source topic
(co-partitioned), so the right partition is that of any event from the same source partition:
`in_partition_of(event)` sets it for a block of writes.

Events dropped when flow resumes. `FlowControlEvent.resume()` (mode) empties every stream
queue, and Faust calls it at the end of table recovery (`Recovery.on_recovery_completed`)
while flow is *already* active: recovery resumed it to read the changelogs, the source
partitions are resumed and seeked before this call, and the fetcher keeps filling the queues
in between. Records fetched from the seeked position and still queued are thrown away
without being processed or acknowledged; the fetch position is already past them, so this
worker never sees them again, and once later records of the partition are acknowledged the
commit moves past them too (`Consumer._new_offset` fills the hole as a "gap", or lets one
missing offset at the head through). Under CPU load the kill -9 trials test lost 1-9 mails
this way in half of its runs. `keep_live_events_on_resume(app)` makes `resume()` empty
the queues only when flow was suspended, and rewinds never-committed partitions after
recovery's seek (with two workers, records published while a worker finished a rebalance
were skipped and never read: a fresh partition has no committed offset to seek back to;
records Faust's fetch loop marked read while the flow was stopped likewise).

Records skipped without a trace. Besides the two paths above, Faust drops fetched records of
partitions outside its active set and deliveries cut short by a stopping flow, relying on a
later seek; and its commit of a never-committed partition takes the first run of acknowledged
offsets wherever it starts. The runtime checks what it is handed (`pipeline.runtime.offsets`)
with `stream_start`, `seek_partition` and `owned_highwaters`, and `cap_commits` keeps every commit
at or below what it processed without a hole.

A second of start-up. Faust's `TableManager.on_start` naps 1 s so that tables defined late
still make it into the subscription, and `app.task` coroutines start only once table
recovery is over. Our tables all exist before the worker starts (the app factory defines
them), and some tasks (the rate limiter's policy reader) gate the first batch. Apps made by
the factory use `PromptTableManager`: no nap, and coroutines registered with
`start_early(app, fn)` start as the table manager starts (the producer and consumer are up).

Second-long stalls. Faust's worker consumer asks the broker to hold a fetch up to 1.5 s when
no data is there (`fetch_max_wait_ms=1500`, not a setting). aiokafka keeps one fetch in
flight per broker and leaves out of it the partitions whose records it still buffers, so a
fetch sent while the busy input's records wait to be taken covers only idle partitions, and
the broker holds it: no new input arrives for 1.5 s. Depending on timing this repeated every
cycle and the rate limiter's decision delay went from ~12 ms to ~1 s at p50 (in about half of
the `bench_ratelimit_e2e` runs, in bursts). `short_fetch_wait(ms)` caps that hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event
from faust.tables import TableManager
from mode.utils.queues import FlowControlEvent

__all__ = ["PromptTableManager", "ResumeKeepsLiveEvents", "before_recovery", "cap_commits", "commit_now",
           "filter_changelog", "in_partition_of", "keep_live_events_on_resume", "leader_topic", "new_producer_batch",
           "owned_highwaters", "owned_partitions", "queued_sends", "read_offsets", "refresh_metadata",
           "run_while_draining", "running_producer", "seek_partition", "short_fetch_wait", "start_early",
           "stream_start"]

EarlyTask = Callable[[], Awaitable[None]]
log = logging.getLogger(__name__)


@contextmanager
def in_partition_of(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class ResumeKeepsLiveEvents(FlowControlEvent):
    """A flow-control event whose `resume()` clears the queues only when flow was suspended.

    After a suspension (a rebalance) what is queued is dropped as Faust intends; the seek
    that ends recovery brings the fetch position back (`_seek_uncommitted` covers partitions
    never committed), so dropped records are fetched again.
    """

    def resume(self) -> None:
        if self.is_active():
            return  # already flowing: what the queues hold is live and its offsets are read
        super().resume()


def keep_live_events_on_resume(app: Any) -> None:
    """Make rebalances lose no records: see `ResumeKeepsLiveEvents` and `_seek_uncommitted` (idempotent).

    Swaps the class of the existing flow-control object so the queues already registered
    with it stay registered; call before the worker starts (the app factory does).
    """
    flow = app.flow_control
    if not isinstance(flow, ResumeKeepsLiveEvents):
        flow.__class__ = ResumeKeepsLiveEvents
    consumer = app.consumer
    if not getattr(consumer, "_tw_seeks_uncommitted", False):
        original = consumer.perform_seek

        async def perform_seek() -> None:
            started = time.monotonic()
            await original()
            sought = time.monotonic()
            rewound = await _seek_uncommitted(app)
            log.info("seek to committed offsets took %.2fs; %d never-committed partition(s) rewound in %.2fs",
                     sought - started, rewound, time.monotonic() - sought)

        consumer.perform_seek = perform_seek
        consumer._tw_seeks_uncommitted = True


async def _seek_uncommitted(app: Any) -> int:
    """Rewind stream partitions that have no committed offset to their beginning.

    After a rebalance Faust seeks every partition to its committed offset, but aiokafka
    only seeks when that offset is above 0: a partition never committed keeps the position
    its fetcher reached. Records fetched while the flow was suspended are skipped (and
    acknowledged) by the stream as belonging to another generation, so without this rewind
    they are never read: with two workers, one lost every record published while it
    finished joining. Reading a never-committed partition from its start is what
    `auto_offset_reset=earliest` promises anyway.

    The rewind is unconditional, and Faust's read offset of the partition is reset with it.
    Faust's fetch loop goes on handing over the records it fetched after the flow stopped a
    rebalance, and marks each one read although the stream queues they go to were just
    cleared; a partition was left out of this rewind when it had a read offset, so those
    records were never processed (a two-worker chaos run lost the first 1-2 records of the
    partitions the new worker took, 14-96 requests of each of their first tenant-minutes),
    and a rewound partition whose read offset stayed set would have had its records below
    that offset dropped by the fetch loop as already read. Records this worker processed
    before come again and the runtime skips them (`Runtime._first_time`: its processed
    offsets, or the checkpoint's).
    """
    from aiokafka import TopicPartition

    consumer = app.consumer
    sources = {name for topic in app.topics for name in getattr(topic, "topics", ())}
    committed = consumer._committed_offset
    read = consumer._read_offset
    fresh = [tp for tp in consumer.assignment() if tp.topic in sources and not committed.get(tp)]
    for tp in fresh:
        read[tp] = None  # Faust's fetch loop delivers a record only at or past its read offset
    if fresh:
        # On the driver's thread, which wants aiokafka's own TopicPartition; one call, one wait.
        await consumer._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in fresh))
    return len(fresh)


def stream_start(app: Any, topic: str, partition: int) -> int | None:
    """Where this worker reads a partition from when it has processed none of it: the committed
    offset (0: never committed, read from the start), or None when it does not own the partition."""
    from faust.types import TP

    consumer = app.consumer
    tp = TP(topic, partition)
    if tp not in consumer.assignment():
        return None
    return int(consumer._committed_offset.get(tp) or 0)


def owned_partitions(app: Any, topics: Any) -> list[tuple[str, int]]:
    """(topic, partition) of each partition of `topics` this worker owns (none before its consumer starts)."""
    return [(tp.topic, tp.partition) for tp in _assigned(app.consumer) if tp.topic in topics]


def owned_highwaters(app: Any, topics: Any) -> list[tuple[str, int, int]]:
    """(topic, partition, high-water mark) of each partition of `topics` this worker owns and has fetched from."""
    from faust.types import TP

    out: list[tuple[str, int, int]] = []
    for topic, partition in owned_partitions(app, topics):
        highwater = app.consumer.highwater(TP(topic, partition))
        if highwater is not None:
            out.append((topic, partition, int(highwater)))
    return out


def _started_consumer(app: Any) -> Any | None:
    """Faust's consumer once the worker created it (`app.consumer` would build one before)."""
    return getattr(app, "_consumer", None)


def _assigned(consumer: Any | None) -> list[Any]:
    """The partitions (Faust TPs) a worker consumer owns, sorted; none before it has started."""
    from faust.exceptions import ConsumerNotStarted

    if consumer is None:
        return []
    try:
        return sorted(consumer.assignment())
    except ConsumerNotStarted:  # built, its thread not started yet
        return []


async def commit_now(app: Any) -> bool:
    """Commit the acknowledged offsets now (Faust's `Consumer.commit`); False before the consumer exists."""
    consumer = _started_consumer(app)
    if consumer is None:
        return False
    await consumer.commit()
    return True


def read_offsets(app: Any) -> list[tuple[str, int, int | None, int | None]]:
    """(topic, partition, read offset, high-water mark) of each partition the worker owns: the
    last offset Faust handed to a stream (None: none yet) and the broker's end as last fetched
    (None: not fetched yet). Faust has no public accessor for the read offset."""
    consumer: Any = _started_consumer(app)  # None: no partitions below
    out: list[tuple[str, int, int | None, int | None]] = []
    for tp in _assigned(consumer):
        try:
            high = consumer.highwater(tp)
        except Exception:  # unknown until the first fetch of a fresh assignment
            high = None
        read = consumer._read_offset.get(tp)
        out.append((tp.topic, tp.partition, None if read is None else int(read),
                    None if high is None else int(high)))
    return out


def queued_sends(app: Any) -> list[asyncio.Future[Any]]:
    """Futures of the records waiting in Faust's producer buffer (`topic.send`), not yet handed to aiokafka."""
    pending = getattr(getattr(app.producer, "buffer", None), "pending", None)
    return [f for f in getattr(pending, "_queue", ()) if isinstance(f, asyncio.Future)]


def running_producer(app: Any) -> Any:
    """The running aiokafka producer behind Faust's (`pipeline.runtime.bulk` appends batches to it)."""
    return app.producer._producer


def new_producer_batch(producer: Any, max_bytes: int) -> Any:
    """An empty aiokafka batch of up to `max_bytes`, compressed as `producer`'s batches
    (`AIOKafkaProducer.create_batch` takes its size from the producer's settings)."""
    from aiokafka.producer.message_accumulator import BatchBuilder

    accumulator = producer._message_accumulator
    if getattr(accumulator, "_txn_manager", None) is not None:  # transactional batches: the producer's own
        return producer.create_batch()
    return BatchBuilder(max_bytes, accumulator._compression_type)


def leader_topic(app: Any) -> str:
    """The topic of Faust's leader assignor (one partition; created before the worker starts)."""
    return str(app._leader_assignor._leader_topic_name)


async def refresh_metadata(consumer: Any) -> None:
    """Ask the broker for fresh metadata now (an aiokafka consumer's client; a topic may be minutes old)."""
    await consumer._client.force_metadata_update()


async def seek_partition(app: Any, topic: str, partition: int, offset: int) -> None:
    """Fetch a partition again from `offset` (Faust's `Consumer.seek`, which also resets its read offset)."""
    from faust.types import TP

    await app.consumer.seek(TP(topic, partition), offset)


def cap_commits(app: Any, limit: Callable[[str, int], int | None]) -> None:
    """Never commit an offset of a partition beyond `limit(topic, partition)` (None: no bound).

    Faust commits the first run of consecutive acknowledged offsets (`Consumer._new_offset`),
    and for a partition never committed before it takes that run wherever it starts: records
    at the head that were never delivered are committed past. It also fills offsets it saw
    skipped in the fetched sequence as "gaps". The runtime knows what it processed without a
    hole (`pipeline.runtime.offsets`); this bounds every commit by it. Offsets Faust took off
    its acknowledged list above the bound are acknowledged again when their records come back.
    """
    consumer = app.consumer
    if getattr(consumer, "_tw_caps_commits", False):
        return
    original = consumer._new_offset

    def new_offset(tp: Any) -> int | None:
        offset: int | None = original(tp)
        if offset is None:
            return None
        bound = limit(tp.topic, tp.partition)
        if bound is not None and offset > bound:
            log.warning("commit of %s[%d] held at %d (acknowledged up to %d)", tp.topic, tp.partition, bound, offset)
            return bound or None
        return offset

    consumer._new_offset = new_offset
    consumer._tw_caps_commits = True


def start_early(app: Any, fn: EarlyTask) -> None:
    """Run `fn()` for the app's life from the start of its table manager (see `PromptTableManager`).

    Like `app.task(fn)`, but without waiting for table recovery; the app must use
    `PromptTableManager` (`TableManager=` in its settings), else `fn` never starts.
    """
    early: list[EarlyTask] = app.__dict__.setdefault("_tw_early_tasks", [])
    early.append(fn)


RecoveryHook = Callable[[Any], Awaitable[None]]
ChangelogFilter = Callable[[int, Any, Any], bool]


def before_recovery(app: Any, fn: RecoveryHook) -> None:
    """Await `fn(assigned)` at each rebalance before any table starts recovering (`PromptTableManager`)."""
    hooks: list[RecoveryHook] = app.__dict__.setdefault("_tw_before_recovery", [])
    hooks.append(fn)


def filter_changelog(table: Any, admits: ChangelogFilter) -> None:
    """Recover `table` from only the changelog records `admits(partition, key, headers)` accepts.

    Faust applies changelog records in batches (`Collection.apply_changelog_batch`, called by
    its recovery with events whose key is deserialized and whose headers are the record's);
    this wraps that method on the one table instance.
    """
    original = table.apply_changelog_batch

    def apply_changelog_batch(batch: Any) -> None:
        original([ev for ev in batch if admits(ev.message.partition, ev.key, ev.headers)])

    table.apply_changelog_batch = apply_changelog_batch


class PromptTableManager(TableManager):
    """Faust's table manager without the 1 s nap of its start; starts `start_early` tasks first,
    and runs `before_recovery` hooks at each rebalance before recovery begins.

    Same steps as `faust.tables.TableManager.on_start` (faust-streaming 0.11-0.15) otherwise.
    """

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        for fn in self.app.__dict__.get("_tw_before_recovery", ()):
            await fn(assigned)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_start(self) -> None:
        for fn in self.app.__dict__.get("_tw_early_tasks", ()):
            app: Any = self.app  # AppT does not declare mode's Service.add_future
            app.add_future(fn())  # owned by the app: cancelled when it stops
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def run_while_draining(app: Any, fn: EarlyTask, every_s: float = 0.1) -> None:
    """Call `fn()` repeatedly while Faust waits for every fetched message to be acknowledged.

    Before a rebalance gives partitions away, and when the worker stops, Faust waits until no
    message is left unacknowledged (`App._consumer_wait_empty`), then commits. Messages whose
    acknowledgement waits for a runtime checkpoint would keep it waiting forever once the app's
    timers stop (at shutdown they do): `fn` (the checkpoint) runs meanwhile.
    """
    original = app._consumer_wait_empty

    async def wait_empty(consumer: Any, logger: Any) -> None:
        async def drain() -> None:
            while True:
                await fn()
                await asyncio.sleep(every_s)

        task = asyncio.ensure_future(drain())
        try:
            await original(consumer, logger)
        finally:
            task.cancel()

    app._consumer_wait_empty = wait_empty


def short_fetch_wait(ms: int) -> None:
    """Make Faust's worker consumers ask the broker to hold an empty fetch at most `ms` ms (Faust: 1500).

    Patches the aiokafka driver's consumer factory (process-wide; the last call wins). An idle
    worker then sends a fetch every `ms` ms instead of every 1.5 s (40 a second at 25 ms).
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    cls: Any = AIOKafkaConsumerThread
    if not hasattr(cls, "_tw_fetch_wait_ms"):
        original = cls._create_worker_consumer

        def create(self: Any, transport: Any) -> Any:
            consumer = original(self, transport)
            consumer._fetch_max_wait_ms = cls._tw_fetch_wait_ms  # read when the consumer starts
            return consumer

        cls._create_worker_consumer = create
    cls._tw_fetch_wait_ms = ms
