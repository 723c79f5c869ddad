"""The request-event sink: bounded, never blocking, publishing from a background thread.

``offer`` is what a request handler calls: it appends a tuple to a bounded queue and returns
(or counts the event dropped if the queue is full). A daemon thread builds the JSON
(:mod:`tenantwatch_edge.events`) and hands it to a kafka-python producer on the partition of
its ``tenant:ip`` key (murmur2, as Kafka's default partitioner), a partition's events packed
as one JSON array per record as the pipeline's SDK does. A broker that is missing, or goes
away, costs the events in the queue (dropped, counted), never a request's time: the producer
may block only the background thread (``max_block_ms``), the queue stays bounded meanwhile,
and so does what the producer holds unacknowledged (``max_in_flight`` events, 5 × the queue
by default; kafka-python 3 itself buffers without bound until ``delivery_timeout_ms``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from kafka.partitioner.default import murmur2

from tenantwatch_edge.broker import reachable
from tenantwatch_edge.events import build

__all__ = ["EventSink"]

log = logging.getLogger(__name__)

_MAX_BATCH = 500  # events per JSON-array record at most (≈ 150 kB)
_YIELD_EVERY = 32  # events built between two offers of the GIL (≈ 0.2 ms of work)
Request = tuple[float, str, str, str, str, int, float, int]  # ts, tenant, ip, method, path, status, ms, bytes


class EventSink:
    """Publishes request events to ``<prefix>.requests``; see the module docstring."""

    def __init__(self, bootstrap: str, topic: str, *, capacity: int = 10_000, options: Mapping[str, Any] | None = None,
                 producer_factory: Callable[[], Any] | None = None, idle_s: float = 0.005,
                 max_in_flight: int | None = None) -> None:
        self.bootstrap, self.topic, self.capacity = bootstrap, topic, capacity
        self.max_in_flight = 5 * capacity if max_in_flight is None else max_in_flight  # events the producer holds
        self._handed = 0  # events handed to the producer (sent + failed + in flight)
        self.options = dict(options or {})
        self._factory = producer_factory or self._kafka_producer
        self._queue: deque[Request] = deque()
        self._idle_s = idle_s
        self._node = uuid.uuid4().hex[:12]  # event ids: <node>.<n>, unique per sink
        self._n = 0
        self._partitions: int | None = None  # of the requests topic, read once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenantwatch-edge-sink", daemon=True)
        self.counts = {"offered": 0, "sent": 0, "dropped_full": 0, "dropped_unavailable": 0, "failed": 0,
                       "invalid": 0}

    # -- the request path -------------------------------------------------------------------
    def offer(  # noqa: PLR0917  # called per request: positional arguments are the cheap ones
        self, ts: float, tenant: str, ip: str, method: str, path: str, status: int, latency_ms: float, size: int,
    ) -> bool:
        """Queue one request event; False (counted) if the queue is full. Never blocks."""
        q = self._queue
        if len(q) >= self.capacity:
            self.counts["dropped_full"] += 1
            return False
        q.append((ts, tenant, ip, method, path, status, latency_ms, size))
        self.counts["offered"] += 1
        return True

    # -- the background thread ------------------------------------------------------------------
    def start(self) -> EventSink:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout``) and stop."""
        self._stop.set()
        self._thread.join(timeout)

    def _kafka_producer(self) -> Any:
        from kafka import KafkaProducer

        if not reachable(self.bootstrap):
            # (`tenantwatch_edge.broker`: a producer that fails to bootstrap leaves a thread behind)
            raise ConnectionError(f"no broker answers at {self.bootstrap}")
        return KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all", max_block_ms=1000,
                             request_timeout_ms=5000, delivery_timeout_ms=30_000, retries=3,
                             client_id="tenantwatch-edge", **self.options)

    def _drop_all(self) -> None:
        n = len(self._queue)
        self._queue.clear()
        self.counts["dropped_unavailable"] += n

    def _run(self) -> None:
        producer: Any = None
        retry_at = 0.0
        warned = False
        while True:
            stopping = self._stop.is_set()
            if producer is None:
                if time.monotonic() >= retry_at:
                    try:
                        producer = self._factory()
                    except Exception as exc:  # no broker (yet): drop what waits, try again later
                        if not warned:
                            log.warning("request events: broker %s unavailable (%s: %s); dropping until it is back",
                                        self.bootstrap, type(exc).__name__, str(exc)[:200])
                            warned = True
                        retry_at = time.monotonic() + 2.0
                if producer is None:
                    self._drop_all()
                    if stopping:
                        return
                    self._stop.wait(0.05)
                    continue
            if not self._queue:
                if stopping:
                    self._close(producer)
                    return
                self._stop.wait(self._idle_s)
                continue
            self._send_some(producer)

    def _send_some(self, producer: Any) -> None:
        # Events of one partition travel as one JSON-array record (what the pipeline's SDK does):
        # a worker decodes one record of hundreds of events far faster than hundreds of records.
        q, counts = self._queue, self.counts
        if self._handed - counts["sent"] - counts["failed"] >= self.max_in_flight:
            # The broker stopped acknowledging: kafka-python 3 would buffer without bound until
            # delivery_timeout_ms; what the producer holds is bounded here instead.
            counts["dropped_unavailable"] += len(q)
            q.clear()
            self._stop.wait(0.01)
            return
        batches: dict[int, list[bytes]] = {}
        pending = 0  # built, not yet handed to the producer
        try:
            if self._partitions is None:
                parts = producer.partitions_for(self.topic)  # blocks this thread only (max_block_ms)
                if not parts:
                    raise LookupError(f"no partitions for {self.topic}")
                self._partitions = len(parts)
            for i in range(min(len(q), _MAX_BATCH)):
                if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                    # Let a request thread waiting for the GIL run now, not after the interpreter's
                    # 5 ms switch interval: this thread must never be what slows a request.
                    time.sleep(0)
                ts, tenant, ip, method, path, status, ms, size = q.popleft()
                self._n += 1
                value = build(f"{self._node}.{self._n}", ts, tenant, ip, method, path, status, ms, size)
                if value is None:
                    counts["invalid"] += 1
                    continue
                p = (murmur2(f"{tenant}:{ip}".encode()) & 0x7FFFFFFF) % self._partitions
                batches.setdefault(p, []).append(value)
                pending += 1
            for p, values in batches.items():
                future = producer.send(self.topic, value=b"[" + b",".join(values) + b"]", partition=p)
                n = len(values)
                pending -= n
                self._handed += n
                future.add_callback(self._sent, n).add_errback(self._failed, n)
        except Exception:  # no metadata within max_block_ms: the broker is gone
            counts["dropped_unavailable"] += len(q) + pending
            q.clear()

    def _sent(self, n: int, _meta: Any) -> None:
        self.counts["sent"] += n

    def _failed(self, n: int, _exc: Any) -> None:
        self.counts["failed"] += n

    def _close(self, producer: Any) -> None:
        try:
            producer.flush(timeout=2.0)
            producer.close(timeout=2.0)
        except Exception as exc:  # closing towards a missing broker: nothing left to save
            log.debug("request events: producer close: %s", exc)
