"""A compacted topic that every worker reads whole: configuration all partitions must see.

Faust's GlobalTable is meant for this, but with several workers faust-streaming loses
updates (#283): a second rate-limit worker kept deciding with the default policy. Here each
worker runs its own consumer without a group, assigned every partition, reads from the
beginning and then follows the topic. `ready` is set once it has read what the topic held
when the worker started, so no decision is made on a stale configuration after a restart.
Writers publish `key → JSON value` (None deletes) and apply the change locally at once.

A record that does not decode is logged with its reason and skipped: with a `codec`, the value
must be one valid event of its model (strict JSON, as every input); without, any JSON, read
by pydantic's parser (bounded nesting, no lone surrogates), never Python's recursive one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic_core import from_json

from pipeline.runtime.codec import Codec
from pipeline.runtime.faust_adapter import refresh_metadata

__all__ = ["BroadcastReader"]

log = logging.getLogger(__name__)


class BroadcastReader:
    """Follows `topic` from its beginning, calling `apply(key, value_or_None)` for every record
    (the value decoded by `codec` when given: a model instance)."""

    def __init__(self, bootstrap: str, topic: str, apply: Callable[[str, Any], None],
                 options: Mapping[str, Any] | None = None, codec: Codec[Any] | None = None):
        """`options`: client security settings (`kafka_config.client_kwargs(settings, "aiokafka")`)."""
        self.bootstrap = bootstrap
        self.options = dict(options or {})
        self.topic = topic
        self.apply = apply
        self.codec = codec
        self.ready = asyncio.Event()
        self.records = 0
        self.rejected = 0

    async def run(self) -> None:
        """Read until cancelled (the worker stopping); retries on errors with a short back-off."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading %s failed; starting over", self.topic)
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.options)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            while not partitions:
                await refresh_metadata(consumer)  # the topic may be minutes old
                partitions = consumer.partitions_for_topic(self.topic) or set()
                if not partitions:
                    await asyncio.sleep(0.5)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                if not self.ready.is_set() and await self._caught_up(consumer, ends):
                    self.ready.set()
                    log.info("read %d record(s) of %s", self.records, self.topic)
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for m in messages:
                        self._apply(m.key, m.value)
        finally:
            await consumer.stop()

    @staticmethod
    async def _caught_up(consumer: Any, ends: dict[Any, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def decode(self, value: bytes | None) -> tuple[Any, str | None]:
        """(the value to apply, None), or (None, why it is refused); never raises."""
        if value is None:
            return None, None  # a tombstone: the key is deleted
        if self.codec is not None:
            good, bad = self.codec.decode(value)
            if bad or len(good) != 1:
                return None, bad[0].error if bad else f"{len(good)} values in one record"
            return good[0], None
        try:
            return from_json(value), None
        except Exception as exc:  # ValueError for invalid JSON; anything else is the record's fault too
            return None, f"invalid JSON: {exc}"

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            decoded, why = self.decode(value)
            if why is not None:
                self.rejected += 1
                log.error("bad record in %s (key %r) skipped: %s", self.topic, key[:64], why[:500])
                return
            self.apply(key.decode(), decoded)
            self.records += 1
        except Exception:  # one bad record must not stop the configuration of every tenant
            self.rejected += 1
            log.exception("bad record in %s (key %r)", self.topic, key[:64])
