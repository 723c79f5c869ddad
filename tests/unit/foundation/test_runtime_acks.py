"""When the runtime lets a batch's offsets be committed: only once its state is in Kafka."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types.tuples import Message

from pipeline.runtime import Runtime
from pipeline.settings import Settings


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

    def event(self, offset: int) -> Any:
        """An event delivered to one stream, acked the way Faust acks it."""
        msg = Committable("tw.requests", 0, offset, 0.0, 0, None, None, b"{}", None)
        msg.incref()
        return SimpleNamespace(message=msg, ack=lambda: msg.ack(self))


def test_batch_offsets_become_committable_only_once_its_writes_are_in_kafka() -> None:
    """Would fail if the commit could pass a batch whose changelog writes were still in flight."""
    consumer = Consumer()
    acked, ev = consumer.acked, consumer.event

    async def scenario() -> None:
        flushed = asyncio.Event()

        async def flush() -> None:
            flushed.set()

        app = SimpleNamespace(producer=SimpleNamespace(flush=flush, buffer=None))
        rt = Runtime(app, Settings())
        write = asyncio.get_running_loop().create_future()
        rt._bulk_pending.append(write)  # the batch's changelog batch, not yet acknowledged by Kafka
        batch = [ev(0), ev(1)]
        rt._ack_when_durable(batch)
        for e in batch:  # what take_events does when the loop body returns
            e.ack()
        await asyncio.wait_for(flushed.wait(), 5)
        assert acked == []  # still in flight: nothing committable
        write.set_result(None)
        await asyncio.wait_for(asyncio.gather(*rt._releasing), 5)
        assert acked == [0, 1]
        assert rt._bulk_pending == []

    asyncio.run(scenario())


def test_write_behind_batches_become_committable_at_the_checkpoint_that_wrote_their_state() -> None:
    """Would fail if a held batch were committable before the checkpoint's writes reached Kafka,
    or if a batch held after a checkpoint began were released by it."""
    consumer = Consumer()
    acked, ev = consumer.acked, consumer.event

    async def scenario() -> None:
        async def flush_producer() -> None: ...

        ticks: list[Any] = []
        async def wait_empty(consumer: Any, logger: Any) -> None: ...

        app = SimpleNamespace(producer=SimpleNamespace(flush=flush_producer, buffer=None),
                              timer=lambda interval: ticks.append, _consumer_wait_empty=wait_empty)
        rt = Runtime(app, Settings(checkpoint_s=60))
        writes: list[asyncio.Future[None]] = []
        late: list[Any] = []

        async def flush_state() -> None:  # a capability writing its dirty keys
            write = asyncio.get_running_loop().create_future()
            writes.append(write)
            rt._bulk_pending.append(write)
            if not late:  # a batch finishing while the checkpoint writes: the next checkpoint's
                late.extend([ev(2)])
                rt._hold(late)

        rt.on_checkpoint(flush_state)
        assert ticks == [rt._checkpoint_tick]  # an idle worker checkpoints too
        first = [ev(0), ev(1)]
        rt._hold(first)
        for e in first:  # take_events acks when the loop body returns
            e.ack()
        assert acked == []
        await rt.checkpoint()
        await asyncio.sleep(0)
        assert acked == []  # the state of offsets 0-1 is not in Kafka yet
        writes[0].set_result(None)
        await asyncio.wait_for(asyncio.gather(*rt._releasing), 5)
        assert acked == [0, 1]
        late[0].ack()
        assert acked == [0, 1]  # offset 2 waits for the next checkpoint
        await rt.checkpoint()
        writes[1].set_result(None)
        await asyncio.wait_for(asyncio.gather(*rt._releasing), 5)
        assert acked == [0, 1, 2]

    asyncio.run(scenario())


def test_faust_waiting_for_acks_at_shutdown_gets_its_checkpoints() -> None:
    """Would fail (hang, then time out) if a stopping worker waited for acks only a checkpoint gives."""
    from pipeline.faust_compat import run_while_draining

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
    commit, or if a busy worker committed after every batch."""
    import time

    consumer = Consumer()
    ev = consumer.event
    commits: list[list[int]] = []

    async def scenario() -> None:
        async def flush() -> None: ...

        async def commit() -> None:  # Faust's Consumer.commit: commits what is acked by now
            commits.append(list(consumer.acked))

        app = SimpleNamespace(producer=SimpleNamespace(flush=flush, buffer=None),
                              _consumer=SimpleNamespace(commit=commit))
        rt = Runtime(app, Settings())
        rt._busy = 1  # the next batch is being processed
        busy = [ev(0)]
        rt._ack_when_durable(busy)
        busy[0].ack()
        await asyncio.wait_for(asyncio.gather(*rt._releasing), 5)
        assert consumer.acked == [0]
        assert commits == []  # left to the periodic commit
        rt._busy, rt._last_batch_end = 0, time.monotonic() - 1  # nothing arrived for a second
        last = [ev(1)]
        rt._ack_when_durable(last)
        last[0].ack()
        await asyncio.wait_for(asyncio.gather(*rt._releasing), 5)
        assert commits == [[0, 1]]

    asyncio.run(scenario())
