"""Flow control that keeps live events when Faust resumes a flow that is already running."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from pipeline.runtime.faust_adapter import ResumeKeepsLiveEvents, _seek_uncommitted, keep_live_events_on_resume


class FakeConsumer:
    """The parts of Faust's consumer the workarounds touch."""

    def __init__(self, assigned: set[TP], committed: dict[TP, int | None], read: dict[TP, int | None]):
        self.assigned, self._committed_offset, self._read_offset = assigned, committed, read
        self.rewound: list[tuple[str, int]] = []
        self._thread = SimpleNamespace(seek_to_beginning=self._seek_to_beginning)

    async def perform_seek(self) -> None: ...

    def assignment(self) -> set[TP]:
        return self.assigned

    async def _seek_to_beginning(self, *tps: Any) -> None:
        self.rewound += [(tp.topic, tp.partition) for tp in tps]


def fake_app(flow: FlowControlEvent, consumer: FakeConsumer | None = None) -> Any:
    return SimpleNamespace(flow_control=flow, consumer=consumer or FakeConsumer(set(), {}, {}), topics=[])


def stream_queue(flow: FlowControlEvent) -> FlowControlQueue[str]:
    """A queue like the one behind each Faust stream (cleared on resume)."""
    return FlowControlQueue(flow_control=flow, clear_on_resume=True)


def test_mode_resume_drops_queued_events_even_when_already_flowing():
    """The upstream behaviour the workaround exists for; if this fails, mode changed and the patch may go."""
    flow = FlowControlEvent()
    queue = stream_queue(flow)
    flow.resume()
    queue.put_nowait("billing[0]@9")
    flow.resume()  # what Recovery.on_recovery_completed does while flow is active
    assert queue.qsize() == 0


def test_resume_while_flowing_keeps_queued_events():
    """Would fail if the resume at the end of table recovery dropped fetched records (kill -9 test lost mails)."""
    app = fake_app(FlowControlEvent())
    queue = stream_queue(app.flow_control)
    keep_live_events_on_resume(app)
    app.flow_control.resume()
    queue.put_nowait("notifications[3]@3")
    app.flow_control.resume()
    assert queue.qsize() == 1
    assert app.flow_control.is_active()


def test_resume_after_suspend_still_clears_stale_events():
    """After a revocation the queued events belong to the old assignment and are fetched again."""
    app = fake_app(FlowControlEvent())
    queue = stream_queue(app.flow_control)
    keep_live_events_on_resume(app)
    app.flow_control.resume()
    queue.put_nowait("old generation")
    app.flow_control.suspend()
    assert not app.flow_control.is_active()
    app.flow_control.resume()
    assert queue.qsize() == 0
    assert app.flow_control.is_active()


def test_install_is_idempotent_and_keeps_the_same_object():
    """Queues registered before the install stay managed: the object is kept, only its class changes."""
    flow = FlowControlEvent()
    app = fake_app(flow)
    queue = stream_queue(flow)
    keep_live_events_on_resume(app)
    keep_live_events_on_resume(app)
    assert app.flow_control is flow
    assert type(flow) is ResumeKeepsLiveEvents
    flow.resume()
    queue.put_nowait("x")
    flow.suspend()
    flow.resume()
    assert queue.qsize() == 0


def test_never_committed_partitions_are_rewound_and_their_read_offsets_reset() -> None:
    """Would fail if records skipped during a rebalance stayed behind the fetch position (two-worker
    test lost half), or if records Faust's fetch loop marked read while the flow was stopped (their
    queue then cleared) stayed unread: a partition with a read offset was left out (a two-worker
    chaos run lost the first records of the partitions the new worker took)."""
    fresh, committed, reading, changelog = TP("tw.requests", 0), TP("tw.requests", 1), TP("tw.requests", 2), TP(
        "app-keys-changelog", 0)
    consumer = FakeConsumer({fresh, committed, reading, changelog}, {committed: 7, fresh: None},
                            {fresh: None, committed: 7, reading: 3})
    app = SimpleNamespace(consumer=consumer, topics=[SimpleNamespace(topics=("tw.requests",))])
    assert asyncio.run(_seek_uncommitted(app)) == 2
    assert sorted(consumer.rewound) == [("tw.requests", 0), ("tw.requests", 2)]
    assert consumer._read_offset[reading] is None  # else the fetch loop drops offsets 0..2 as read
    assert consumer._read_offset[committed] == 7


def test_runtime_skips_records_it_has_processed_already() -> None:
    """Would fail if a seek back after a rebalance made this worker count records twice."""
    from pipeline.runtime.core import Runtime
    from pipeline.settings import Settings

    def ev(p: int, offset: int) -> Any:
        return SimpleNamespace(message=SimpleNamespace(topic="tw.requests", partition=p, offset=offset))

    from tests.unit.foundation.fakes import fake_app

    rt = Runtime(fake_app(), Settings())
    first = asyncio.run(rt._first_time([ev(0, 0), ev(0, 1), ev(1, 0)]))
    again = asyncio.run(rt._first_time([ev(0, 1), ev(0, 2), ev(1, 0), ev(1, 1)]))
    assert [(e.message.partition, e.message.offset) for e in first] == [(0, 0), (0, 1), (1, 0)]
    assert [(e.message.partition, e.message.offset) for e in again] == [(0, 2), (1, 1)]
    assert rt.counters.redelivered == 2



def test_worker_consumers_fetch_with_a_short_broker_wait_and_large_partition_fetches() -> None:
    """Would fail if the app factory left Faust's 1.5 s fetch hold (second-long stalls of busy
    inputs) or its 1 MB per-partition fetch (the worker starved at ~4000 events a fetch)."""
    import asyncio

    from pipeline.runtime.app import create_app
    from pipeline.settings import Settings

    async def consumer_settings() -> tuple[int, int]:
        app, _runtime = create_app(Settings(), capabilities=())
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # built, not started
        try:
            return consumer._fetch_max_wait_ms, consumer._max_partition_fetch_bytes
        finally:
            await consumer.stop()

    wait_ms, partition_bytes = asyncio.run(consumer_settings())
    assert wait_ms == Settings().fetch_wait_ms < 1500
    assert partition_bytes == 16 << 20


def test_the_faust_consumer_still_has_what_the_rewind_uses() -> None:
    """Fails loudly on a Faust release that renames what `_seek_uncommitted` reads and writes."""
    import faust

    app = faust.App("tw-compat-probe", broker="kafka://127.0.0.1:1")
    consumer = app.consumer  # built, not started: no broker needed
    assert isinstance(consumer._read_offset, dict)
    assert consumer._read_offset[TP("t", 0)] is None
    assert isinstance(consumer._committed_offset, dict)
    assert callable(consumer._thread.seek_to_beginning)
    assert callable(consumer.perform_seek)
    assert callable(consumer.seek)  # `seek_partition`
    assert callable(consumer.highwater)  # `owned_highwaters`
    assert consumer._new_offset(TP("t", 0)) is None  # `cap_commits` wraps it: nothing acknowledged yet


def test_the_faust_app_still_has_what_the_other_adapters_read() -> None:
    """Fails loudly on a Faust, mode or aiokafka release that renames what `commit_now`,
    `read_offsets`, `queued_sends`, `leader_topic`, `new_producer_batch` or `refresh_metadata` use."""
    import asyncio

    import faust
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from pipeline.runtime.faust_adapter import (
        commit_now,
        leader_topic,
        new_producer_batch,
        queued_sends,
        read_offsets,
    )

    app = faust.App("tw-compat-probe-2", broker="kafka://127.0.0.1:1")
    assert read_offsets(app) == []  # no consumer built yet: nothing owned, none created
    assert asyncio.run(commit_now(app)) is False
    assert app._consumer is None  # neither call built one
    assert leader_topic(app).startswith("tw-compat-probe-2")
    assert queued_sends(app) == []
    assert isinstance(app.producer.buffer.pending._queue, object)  # the deque `queued_sends` lists
    assert app.consumer is not None  # built, its thread not started
    assert read_offsets(app) == []

    async def aiokafka_parts() -> None:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # not started: no broker needed
        batch = new_producer_batch(producer, 1000)
        assert batch.append(key=b"k", value=b"v", timestamp=None, headers=[]) is not None
        batch.close()
        assert batch.size() > 0
        kafka_consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        assert callable(kafka_consumer._client.force_metadata_update)  # `refresh_metadata`

    asyncio.run(aiokafka_parts())
