"""Short-lived aiokafka readers of the worker: outside any consumer group, on the worker's loop.

`reader(settings)` opens one (the app's broker and security settings) and closes it;
`first_offset_from` asks the broker which record of a partition comes first at or after an
offset (the runtime's check of a gap in what its consumer delivered: `pipeline.runtime.offsets`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pipeline.adapters.kafka_config import client_kwargs
from pipeline.settings import Settings

__all__ = ["first_offset_from", "reader"]


@asynccontextmanager
async def reader(settings: Settings, **options: Any) -> AsyncIterator[Any]:
    """A started `AIOKafkaConsumer` without a group (no auto-commit), stopped on exit."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False,
                                **client_kwargs(settings, "aiokafka"), **options)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def first_offset_from(settings: Settings, topic: str, partition: int, offset: int,
                            timeout_s: float = 10.0) -> int | None:
    """Offset of the first record of `topic[partition]` at or after `offset` (None: none within `timeout_s`).

    Offsets below the log's start (deleted by retention) read from its start.
    """
    from aiokafka import TopicPartition

    tp = TopicPartition(topic, partition)
    async with reader(settings, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = await consumer.getmany(tp, timeout_ms=500, max_records=1)
            for records in got.values():
                if records:
                    return int(records[0].offset)
    return None
