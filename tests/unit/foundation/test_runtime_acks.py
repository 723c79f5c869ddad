"""When the runtime lets a batch's offsets be committed: only once a checkpoint made its state durable."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types.tuples import Message

from pipeline.runtime.core import Runtime, StagedWrite
from pipeline.runtime.state import EPOCH_HEADER, decode_checkpoint
from pipeline.settings import Settings
from tests.unit.foundation.fakes import fake_app


class Committable(Message):  # as Faust's ConsumerMessage: the last ack tells the consumer
    def on_final_ack(self, consumer: Any) -> bool:
        return consumer.ack(self)


class Consumer:
    """Records the offsets that became committable."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Any) -> bool:
        self.acked.append(message.offset)
        return True

    def event(self, offset: int, partition: int = 0) -> Any:
        """An event delivered to one stream, acked the way Faust acks it."""
        msg = Committable("tw.requests", partition, offset, 0.0, 0, None, None, b"{}", None)
        msg.incref()
        return SimpleNamespace(message=msg, ack=lambda: msg.ack(self))


class Appender:
    """Stands in for the runtime's batch appender: each append is a Kafka write the test completes."""

    def __init__(self, pending: list[asyncio.Future[Any]]) -> None:
        self.pending = pending
        self.appended: list[tuple[str, int, list[Any], list[Any]]] = []
        self.writes: list[asyncio.Future[None]] = []

    async def append(self, topic: str, partition: int, records: Any, headers: Any = ()) -> int:
        rows = list(records)
        self.appended.append((topic, partition, rows, list(headers)))
        write = asyncio.get_running_loop().create_future()
        self.writes.append(write)
        self.pending.append(write)
        return len(rows)


class Writer:
    """Stands in for a table's BulkWriter; `during` runs while the write is in flight."""

    def __init__(self, appender: Appender, during: Any = None) -> None:
        self.appender, self.during = appender, during

    async def write_encoded(self, partition: int, encoded: list[Any], headers: Any) -> int:
        if self.during is not None:
            self.during()
        return await self.appender.append("state-changelog", partition, encoded, headers)


def runtime(**settings: Any) -> tuple[Runtime, Appender]:
    rt = Runtime(fake_app(), Settings(**settings))
    appender = rt.bulk = Appender(rt._bulk_pending)  # type: ignore[assignment]
    rt.checkpoints.runtime = rt
    return rt, appender


async def complete(appender: Appender, upto: int) -> None:
    """Let Kafka acknowledge writes as they come, until the first `upto` are acknowledged."""
    while True:
        for w in appender.writes[:upto]:
            if not w.done():
                w.set_result(None)
        if len(appender.writes) >= upto:
            return
        await asyncio.sleep(0.001)


def test_held_batches_become_committable_only_after_their_checkpoint_record() -> None:
    """Would fail if a batch were committable before its state and its checkpoint record reached Kafka."""
    consumer = Consumer()

    async def scenario() -> None:
        rt, appender = runtime(checkpoint_s=60)
        rt.on_checkpoint(lambda: [StagedWrite(Writer(appender), 0, [("k", 1, (b"k", b"1"))])])  # type: ignore[arg-type]
        batch = [consumer.event(0), consumer.event(1)]
        rt._hold(batch)
        for e in batch:  # take_events acks when the loop body returns
            e.ack()
        task = asyncio.ensure_future(rt.checkpoint())
        await complete(appender, 1)  # the state is in Kafka ...
        await asyncio.sleep(0.01)
        assert consumer.acked == []  # ... but not yet the checkpoint record
        await complete(appender, 2)
        await asyncio.wait_for(task, 5)
        assert consumer.acked == [0, 1]
        (_, p, _, headers), (cp_topic, cp_p, [(key, raw)], _) = appender.appended
        assert (p, headers) == (0, [(EPOCH_HEADER, b"1")])  # the sealed epoch, not the next one
        assert (cp_topic, cp_p, key) == (rt.checkpoints.topic, 0, b"0")
        cp = decode_checkpoint(raw)
        assert (cp.epoch, cp.offsets) == (1, {"tw.requests": 1})
        assert rt.fence.committed(0) == 1
        assert rt.fence.open_epoch(0) == 2

    asyncio.run(scenario())


def test_a_batch_processed_while_the_checkpoint_writes_waits_for_the_next_one() -> None:
    """Would fail if a checkpoint released a batch its snapshot did not include."""
    consumer = Consumer()

    async def scenario() -> None:
        rt, appender = runtime(checkpoint_s=60)
        late: list[Any] = []

        def arrives() -> None:  # a batch finishing while the checkpoint writes: the next checkpoint's
            if not late:
                late.append(consumer.event(2))
                rt._hold(late)
                late[0].ack()

        writer = Writer(appender, during=arrives)
        rt.on_checkpoint(lambda: [StagedWrite(writer, 0, [("k", 1, (b"k", b"1"))])])  # type: ignore[arg-type]
        first = [consumer.event(0), consumer.event(1)]
        rt._hold(first)
        for e in first:
            e.ack()
        task = asyncio.ensure_future(rt.checkpoint())
        await complete(appender, 2)
        await asyncio.wait_for(task, 5)
        assert consumer.acked == [0, 1]
        task = asyncio.ensure_future(rt.checkpoint())
        await complete(appender, 4)
        await asyncio.wait_for(task, 5)
        assert consumer.acked == [0, 1, 2]
        assert [h for _, _, _, h in appender.appended[::2]] == [[(EPOCH_HEADER, b"1")], [(EPOCH_HEADER, b"2")]]

    asyncio.run(scenario())


def test_no_batch_starts_while_a_checkpoint_takes_its_snapshot() -> None:
    """Would fail if a checkpoint encoded state while a batch was half-way through changing it."""

    async def scenario() -> None:
        rt, appender = runtime()
        order: list[str] = []
        rt.on_checkpoint(lambda: order.append("snapshot") or [])  # type: ignore[func-returns-value]
        rt._busy = 1  # a batch is being processed
        rt._drained.clear()
        rt._held.append(Consumer().event(0))
        task = asyncio.ensure_future(rt.checkpoint())
        await asyncio.sleep(0.01)
        assert order == []  # waits for the batch to end
        assert not rt._gate.is_set()  # and lets no new one start
        order.append("batch ends")
        rt._busy = 0
        rt._drained.set()
        await complete(appender, 1)
        await asyncio.wait_for(task, 5)
        assert order == ["batch ends", "snapshot"]
        assert rt._gate.is_set()

    asyncio.run(scenario())


def test_memory_dropped_after_a_checkpoint_loses_no_batch_that_ran_while_it_wrote() -> None:
    """Would fail if a batch could start while a checkpoint with `then` (a rebalance dropping the
    capabilities' memory) was still writing: its effects would be dropped, its offsets committed."""

    async def scenario() -> None:
        rt, appender = runtime(checkpoint_s=60)
        order: list[str] = []
        rt.on_checkpoint(lambda: [StagedWrite(Writer(appender), 0, [("k", 1, (b"k", b"1"))])])  # type: ignore[arg-type]
        rt._held.append(Consumer().event(0))

        async def batch() -> None:  # what `process` does first: wait for the gate
            while not rt._gate.is_set():
                await rt._gate.wait()
            order.append("batch")

        task = asyncio.ensure_future(rt.checkpoint(then=lambda: order.append("memory dropped")))
        await asyncio.sleep(0.01)  # the snapshot is taken; the state write is in flight
        waiting = asyncio.ensure_future(batch())
        await asyncio.sleep(0.01)
        assert order == [], "no batch runs while the checkpoint that drops memory writes"
        await complete(appender, 2)
        await asyncio.wait_for(task, 5)
        await asyncio.wait_for(waiting, 5)
        assert order == ["memory dropped", "batch"]
        assert rt._gate.is_set()

        plain = asyncio.ensure_future(rt.checkpoint())  # without `then` the gate reopens after the snapshot
        rt._held.append(Consumer().event(1))
        await asyncio.sleep(0.01)
        assert rt._gate.is_set()
        await complete(appender, 4)
        await asyncio.wait_for(plain, 5)

    asyncio.run(scenario())


def test_resume_from_a_checkpoint_skips_what_it_covers_and_restores_event_time() -> None:
    """Would fail if a restarted worker counted records its recovered state already holds."""
    from pipeline.runtime.state import Checkpoint
    from pipeline.runtime.topics import Topic
    from schemas.events import RequestEvent

    rt, _ = runtime()
    rt.add_input(Topic.REQUESTS, RequestEvent, rows=True)
    rt.resume_from({0: Checkpoint(3, {"tw.requests": 5}, {"tw.requests": 1_000.0})})
    fresh = asyncio.run(rt._first_time([SimpleNamespace(message=SimpleNamespace(topic="tw.requests", partition=0,
                                                                                offset=o)) for o in (4, 5, 6)]))
    assert [e.message.offset for e in fresh] == [6]
    assert rt.clock.newest((Topic.REQUESTS, 0)) == 1_000.0


def test_faust_waiting_for_acks_at_shutdown_gets_its_checkpoints() -> None:
    """Would fail (hang, then time out) if a stopping worker waited for acks only a checkpoint gives."""
    from pipeline.runtime.faust_adapter import run_while_draining

    held = {"unacked": 3}
    drained = asyncio.Event()

    async def faust_wait_empty(consumer: Any, logger: Any) -> None:  # Faust: wait until all acked
        await drained.wait()

    async def checkpoint() -> None:  # each checkpoint acknowledges part of what was held
        held["unacked"] = max(0, held["unacked"] - 1)
        if not held["unacked"]:
            drained.set()

    app = SimpleNamespace(_consumer_wait_empty=faust_wait_empty)
    run_while_draining(app, checkpoint, every_s=0.01)
    asyncio.run(asyncio.wait_for(app._consumer_wait_empty(None, None), 5))
    assert held["unacked"] == 0


def test_a_worker_whose_input_went_quiet_commits_without_waiting_for_the_interval() -> None:
    """Would fail if offsets released once the input went quiet waited for Faust's periodic
    commit, or if a busy worker committed after every checkpoint."""
    import time

    consumer = Consumer()
    commits: list[list[int]] = []

    async def scenario() -> None:
        async def commit() -> None:  # Faust's Consumer.commit: commits what is acked by now
            commits.append(list(consumer.acked))

        rt, appender = runtime()
        rt.app._consumer = SimpleNamespace(commit=commit)
        rt._busy = 1  # the next batch is being processed
        busy = [consumer.event(0)]
        rt._hold(busy)
        busy[0].ack()
        rt._drained.set()  # (the batch in progress is not this test's concern)
        task = asyncio.ensure_future(rt.checkpoint())
        await complete(appender, 1)
        await asyncio.wait_for(task, 5)
        assert consumer.acked == [0]
        assert commits == []  # left to the periodic commit
        rt._busy, rt._last_batch_end = 0, time.monotonic() - 1  # nothing arrived for a second
        last = [consumer.event(1)]
        rt._hold(last)
        last[0].ack()
        task = asyncio.ensure_future(rt.checkpoint())
        await complete(appender, 2)
        await asyncio.wait_for(task, 5)
        assert commits == [[0, 1]]

    asyncio.run(scenario())


def test_capabilities_rebuild_their_memory_once_recovery_has_resumed() -> None:
    """Would fail if a capability's rebuild ran before the recovered offsets were in force, or if a
    failing rebuild (a head start only) broke the rebalance that called it."""
    from pipeline.runtime.state import Checkpoint

    rt, _ = runtime()
    seen: list[dict[tuple[str, int], int]] = []

    def broken() -> None:
        raise RuntimeError("boom")

    rt.on_resumed(broken)
    rt.on_resumed(lambda: seen.append(dict(rt.offsets.done)))
    rt.resume_from({2: Checkpoint(1, {"tw.requests": 9}, {})})
    assert seen == [{("tw.requests", 2): 9}]
