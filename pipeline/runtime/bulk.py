"""Many Kafka records at the cost of a few batches: table changelogs and keyed outputs.

Each record sent through Faust (``topic.send`` or ``table[key] = value``) costs ≈ 85 µs: a
FutureMessage, a callback, a trip through the producer buffer. A batch that changes 20,000
rate-limit keys or publishes 2,000 decisions spends most of its time there. Here records are
appended straight into aiokafka batches (one ``send_batch`` per ~1 MB and partition,
`BATCH_BYTES`); the futures go to the runtime
(`Runtime._ack_when_durable`, `make_durable`), which waits for them before the source batch
is acknowledged, exactly as for Faust's own sends.

- :class:`BulkWriter` keeps a table's contract: the same changelog topic and partition (the
  source partition: only for tables keyed like their source topic), the same key and value
  bytes Faust would write, the local store updated; recovery is Faust's, unchanged.
- :meth:`BatchAppender.send_keyed` publishes records to the partition of their key
  (murmur2, as Faust's and the SDK's producers choose it), so consumers keyed by
  ``tenant:ip`` see each key in order.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from faust.serializers.codecs import get_codec

from pipeline.runtime.faust_adapter import new_producer_batch, running_producer
from pipeline.runtime.table_codecs import dumper
from pipeline.sdk import partition_for

__all__ = ["BatchAppender", "BulkWriter"]

Raw = tuple[bytes | None, bytes | None]

# Bytes per batch built here. The producer's own batches stay at Faust's 16 kB: those linger
# for more records, and 1 MB ones raised the rate limiter's decision delay from ~10 ms to
# ~600 ms. Ours are closed when submitted, and the producer queues one batch per partition,
# sending the next only once it drained: 16 kB (~60 changelog records) made a checkpoint of
# 24k keys ~400 round trips (4.3 s); 1 MB made it 0.35 s. 1 MB is within a default broker's
# message.max.bytes.
BATCH_BYTES = 1_000_000


class BatchAppender:
    """Appends raw records to aiokafka batches of one app's producer; futures go to `pending`."""

    def __init__(self, app: Any, pending: list[asyncio.Future[Any]]):
        self.app = app
        self.pending = pending
        self._partitions: dict[str, int] = {}

    async def append(self, topic: str, partition: int, records: Iterable[Raw],
                     headers: Sequence[tuple[str, bytes]] = ()) -> int:
        """Append (key, value) byte pairs to `topic`/`partition`, each with `headers`; returns how many."""
        producer = running_producer(self.app)
        batch = _new_batch(producer)
        n = 0
        hdrs = list(headers)
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None, headers=hdrs) is None:
                await self._submit(producer, batch, topic, partition)
                batch = _new_batch(producer)
                if batch.append(key=key, value=value, timestamp=None, headers=hdrs) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes is larger than a producer batch")
            n += 1
        if n:
            await self._submit(producer, batch, topic, partition)
        return n

    async def warm(self, topics: Iterable[str]) -> None:
        """Fetch the topics' metadata now, not on the first record (a 0.1-0.3 s stall of that batch)."""
        for topic in topics:
            await self._count(topic)

    async def _count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await running_producer(self.app).partitions_for(topic))
        return count

    async def send_keyed(self, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
        """Publish (key, value) pairs, each to its key's partition, in order per key."""
        count = await self._count(topic)
        by_partition: dict[int, list[Raw]] = defaultdict(list)
        for key, value in records:
            by_partition[partition_for(key, count)].append((key.encode(), value))
        n = 0
        for partition, raw in by_partition.items():
            n += await self.append(topic, partition, raw)
        return n

    async def _submit(self, producer: Any, batch: Any, topic: str, partition: int) -> None:
        batch.close()
        self.pending.append(await producer.send_batch(batch, topic, partition=partition))


def _new_batch(producer: Any) -> Any:
    """An empty batch of up to `BATCH_BYTES`, compressed as the producer's."""
    return new_producer_batch(producer, BATCH_BYTES)


def _dumper(serializer: Any) -> Callable[[Any], bytes]:
    """The function Faust applies to a table's keys or values (its `key_serializer` or `value_serializer`)."""
    if not serializer:
        return lambda x: x if isinstance(x, bytes) else bytes(x)
    dumps = dumper(serializer) or get_codec(serializer).dumps
    return lambda x: x if isinstance(x, bytes) else dumps(x)


class BulkWriter:
    """Write many keys of one table partition with one changelog batch per ~1 MB.

    `headers(partition)` gives each record's headers: the runtime tags a fenced table's
    records with the partition's checkpoint epoch (`pipeline.runtime.state`).
    """

    def __init__(self, table: Any, appender: BatchAppender,
                 headers: Callable[[int], Sequence[tuple[str, bytes]]] = lambda _p: ()):
        self.table = table
        self.headers = headers
        self._appender = appender
        self._key = _dumper(table.key_serializer)
        self._value = _dumper(table.value_serializer)

    def encode(self, items: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any, Raw]]:
        """(key, value, its changelog bytes) now: a snapshot that later changes to `value` do not alter."""
        dump_key, dump_value = self._key, self._value
        return [(k, v, (dump_key(k), None if v is None else dump_value(v))) for k, v in items]

    async def write(self, partition: int, items: Iterable[tuple[Any, Any]],
                    headers: Sequence[tuple[str, bytes]] | None = None) -> int:
        """Set (value) or delete (None) each key; returns the number of changelog records."""
        return await self.write_encoded(partition, self.encode(items), headers)

    async def write_encoded(self, partition: int, encoded: Iterable[tuple[Any, Any, Raw]],
                            headers: Sequence[tuple[str, bytes]] | None = None) -> int:
        """Write what `encode` returned (the local store takes the values, Kafka the bytes)."""
        store = self.table.data

        def records() -> Iterable[Raw]:
            for key, value, raw in encoded:
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = value
                yield raw

        return await self._appender.append(self.table.changelog_topic.get_topic_name(), partition, records(),
                                           self.headers(partition) if headers is None else headers)
