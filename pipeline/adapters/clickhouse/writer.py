"""The ClickHouse writer stage: result topics in, batched idempotent inserts out.

At-least-once: offsets are committed only after every row read up to them is inserted (how
partitions are owned, and how the consumer recovers from outages and stuck groups, is in
`pipeline.adapters.clickhouse.source`). When
inserts fail, the writer keeps its buffer, retries with exponential back-off, and once the
buffer holds `buffer_max_rows` it pauses its partitions (back-pressure: the data waits in
Kafka, nothing is dropped). Records are decoded with the same codec as the workers; a record
that does not decode (or whose decoding raises) is counted and skipped here: the processing
worker dead-letters it.

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

from pipeline.adapters.clickhouse.sinks import JsonRowsSink, Sink, SinkSpec, accepts_json_rows, load_capability_sinks
from pipeline.adapters.clickhouse.source import Assignment, ResultSource
from pipeline.runtime.codec import Codec, RowCodec, UnsupportedModel
from pipeline.runtime.topics import Topic, topic_name

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
        assignment: Assignment = "manual",
        source_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        kafka_options: Mapping[str, Any] | None = None,  # kafka_config.client_kwargs(…, "kafka-python")
    ):
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
        self.source = ResultSource(bootstrap=bootstrap, group_id=group_id, topics=self.specs,
                                   assignment=assignment, clock=clock, consumer_config=dict(kafka_options or {}),
                                   **(source_options or {}))

    # -- buffer -------------------------------------------------------------------------
    def add(self, topic: str, value: bytes | None) -> None:
        try:
            records, rejected = self.codecs[topic].decode(value)
        except Exception as exc:  # one record must never stop the writer; the worker dead-letters it
            self.stats.records_skipped += 1
            log.warning("skipped a record of %s that does not decode: %r", topic, exc)
            return
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
        if not self._offsets:
            return
        if self.source.commit(self._offsets) or self.source.assignment == "group":
            # Refused in group mode: the partitions may be someone else's now; the rows are
            # stored, and whoever reads them next replaces them (deterministic ids).
            self._offsets.clear()

    def _due(self) -> bool:
        buffered = self.stats.buffered_rows
        return buffered >= self.batch_rows or (buffered > 0 and self.clock() - self._last_flush >= self.flush_s)

    # -- loop ---------------------------------------------------------------------------
    @property
    def consumer(self) -> Any:
        """The kafka-python consumer in use, or None while (re)connecting."""
        return self.source.consumer

    def poll_once(self, timeout_ms: int = 200) -> int:
        """One round: poll (unless paused), buffer, flush when due. Returns records read."""
        full = self.stats.buffered_rows >= self.buffer_max_rows
        if full and not self.stats.paused:
            log.warning("writer buffer full (%d rows): pausing consumption", self.stats.buffered_rows)
        self.stats.paused = full
        reconnects = self.source.reconnects
        batches = self.source.poll(timeout_ms=timeout_ms, max_records=5000, paused=full)
        n = 0
        for tp, messages in batches.items():
            for msg in messages:
                self.add(tp.topic, msg.value)
            n += len(messages)
            self._offsets[tp] = messages[-1].offset + 1
        if self.source.reconnects != reconnects:
            self._offsets.clear()  # a new consumer resumes from the last commit
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
            self.source.close()

    def stop(self) -> None:
        self._stop = True
