"""The ClickHouse writer stage: result topics in, batched idempotent inserts out.

At-least-once: offsets are committed only after every row read up to them is inserted. When
inserts fail, the writer keeps its buffer, retries with exponential back-off, and once the
buffer holds `buffer_max_rows` it pauses its partitions (back-pressure: the data waits in
Kafka, nothing is dropped). Records are decoded with the same codec as the workers; a record
that does not decode is counted and skipped here (the processing worker dead-letters it).

When the sink takes JSON rows (ClickHouse does), a topic whose model allows it is decoded by a
`RowCodec`: the model's own validation, into plain dicts that are encoded to JSON right away,
so no model instances are built and the buffer holds compact bytes (which the garbage
collector need not scan). Other topics (models with model validators, ...) buffer models.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pipeline.clickhouse.sinks import JsonRowsSink, Sink, SinkSpec, accepts_json_rows, load_capability_sinks
from pipeline.codec import Codec, RowCodec, UnsupportedModel
from pipeline.topics import Topic, topic_name

__all__ = ["ClickHouseWriter", "WriterStats"]

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    rows_inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    records_skipped: int = 0
    batches: int = 0
    insert_failures: int = 0
    last_batch_rows: int = 0
    last_batch_seconds: float = 0.0
    buffered_rows: int = 0
    paused: bool = False


class ClickHouseWriter:
    """Consumes `topics` with kafka-python and writes them through `sink` in batches."""

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        sink: Sink,
        topics: Iterable[Topic] | None = None,
        group_id: str = "tenantwatch-writer",
        batch_rows: int = 20_000,
        flush_s: float = 1.0,
        buffer_max_rows: int = 200_000,
        retry_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        kafka_options: Mapping[str, Any] | None = None,  # pipeline.kafka_config.client_kwargs(…, "kafka-python")
    ):
        self._kafka_options = dict(kafka_options or {})
        self.sink = sink
        sinks = load_capability_sinks()
        self.specs: dict[str, SinkSpec] = {
            topic_name(prefix, t): sinks[t] for t in (topics if topics is not None else sinks)
        }
        # Topics whose rows go to the sink as JSON (see the module doc); the others keep models.
        self.row_codecs: dict[str, RowCodec] = {}
        if accepts_json_rows(sink):
            for name, spec in self.specs.items():
                try:
                    self.row_codecs[name] = RowCodec(spec.model, columns=spec.columns)
                except UnsupportedModel as exc:
                    log.info("%s is decoded into models (no row decoder: %s)", name, exc)
        self.codecs: dict[str, Codec[Any]] = {
            name: self.row_codecs.get(name) or Codec(spec.model) for name, spec in self.specs.items()
        }
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.buffer_max_rows = buffer_max_rows
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.stats = WriterStats()
        # topic name -> models, or JSON chunks (one per record) for `row_codecs` topics
        self._buffer: dict[str, list[Any]] = defaultdict(list)
        self._buffered: dict[str, int] = defaultdict(int)  # topic name -> rows in its buffer
        self._offsets: dict[Any, int] = {}  # TopicPartition -> next offset to commit
        self._last_flush = clock()
        self._retry_at = 0.0
        self._backoff = 0.0
        self._stop = False
        self._bootstrap = bootstrap
        self._group_id = group_id
        self.consumer: Any = None

    # -- buffer -------------------------------------------------------------------------
    def add(self, topic: str, value: bytes | None) -> None:
        records, rejected = self.codecs[topic].decode(value)
        if rejected:
            self.stats.records_skipped += len(rejected)
        if records:
            rows = self.row_codecs.get(topic)
            if rows is None:
                self._buffer[topic].extend(records)
            else:
                self._buffer[topic].append(rows.encode(records))
            self._buffered[topic] += len(records)
            self.stats.buffered_rows += len(records)

    def flush(self) -> bool:
        """Insert everything buffered. True when the buffer is empty afterwards."""
        started = self.clock()
        rows = 0
        for topic in list(self._buffer):
            records = self._buffer[topic]
            if not records:
                continue
            spec = self.specs[topic]
            n = self._buffered[topic]
            try:
                if topic in self.row_codecs:
                    cast(JsonRowsSink, self.sink).insert_json(spec.table, spec.columns, records)
                else:
                    self.sink.insert(spec.table, spec.columns, records)
            except Exception as exc:
                self.stats.insert_failures += 1
                log.warning("insert into %s failed (%d rows kept for retry): %s", spec.table, n, exc)
                return False
            rows += n
            self.stats.rows_inserted[spec.table] += n
            self.stats.buffered_rows -= n
            del self._buffer[topic], self._buffered[topic]
        self.stats.batches += 1 if rows else 0
        self.stats.last_batch_rows = rows
        self.stats.last_batch_seconds = self.clock() - started
        self._last_flush = self.clock()
        return True

    def _flush_and_commit(self) -> None:
        now = self.clock()
        if now < self._retry_at:
            return
        if self.flush():
            self._backoff = 0.0
            self._commit()
        else:
            self._backoff = min(self.retry_max_s, max(0.1, self._backoff * 2))
            self._retry_at = now + self._backoff

    def _commit(self) -> None:
        if not self._offsets or self.consumer is None:
            return
        from kafka.errors import (
            CommitFailedError,
            IllegalGenerationError,
            KafkaError,
            RebalanceInProgressError,
            UnknownMemberIdError,
        )
        from kafka.structs import OffsetAndMetadata

        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._offsets.items()}
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            rebalanced = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)
            if not (exc.retriable or isinstance(exc, rebalanced)):
                raise
            # A rebalance (or a moving coordinator) refused the commit. The rows are stored;
            # whoever owns these partitions next reads them again and the inserts replace
            # themselves (deterministic ids). A writer that died here stopped storing anything.
            log.warning("offset commit refused (%r); records since the last commit will be re-read", exc)
        self._offsets.clear()

    def _due(self) -> bool:
        buffered = self.stats.buffered_rows
        return buffered >= self.batch_rows or (buffered > 0 and self.clock() - self._last_flush >= self.flush_s)

    # -- loop ---------------------------------------------------------------------------
    def _connect(self) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5000,
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
            consumer_timeout_ms=1000,
            # New topics must be picked up soon: with the 5-minute default, a writer that
            # subscribed before a topic had partition metadata sat idle until the refresh.
            metadata_max_age_ms=10_000,
            **self._kafka_options,
        )
        deadline = self.clock() + 30
        while self.clock() < deadline and any(not self.consumer.partitions_for_topic(t) for t in self.specs):
            time.sleep(0.2)  # topics created a moment ago may not have partitions in metadata yet
        self.consumer.subscribe(topics=sorted(self.specs))

    def poll_once(self, timeout_ms: int = 200) -> int:
        """One round: poll (unless paused), buffer, flush when due. Returns records read."""
        if self.consumer is None:
            self._connect()
        consumer = self.consumer
        full = self.stats.buffered_rows >= self.buffer_max_rows
        if full and not self.stats.paused:
            consumer.pause(*consumer.assignment())
            self.stats.paused = True
            log.warning("writer buffer full (%d rows): pausing consumption", self.stats.buffered_rows)
        elif not full and self.stats.paused:
            consumer.resume(*consumer.paused())
            self.stats.paused = False
        batches = consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        n = 0
        for tp, messages in batches.items():
            for msg in messages:
                self.add(tp.topic, msg.value)
            n += len(messages)
            self._offsets[tp] = messages[-1].offset + 1
        if self._due() or (self.stats.paused and self.stats.buffered_rows):
            self._flush_and_commit()
        return n

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run until `should_stop()` or `stop()`; flushes what it can on the way out."""
        try:
            while not (self._stop or should_stop()):
                self.poll_once()
            deadline = self.clock() + self.retry_max_s
            while self.stats.buffered_rows and self.clock() < deadline:
                if self.flush():
                    self._commit()
                    break
                time.sleep(0.5)
        finally:
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
                self.consumer = None

    def stop(self) -> None:
        self._stop = True
