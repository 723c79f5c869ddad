"""The request-event sink never blocks and bounds what it holds, whatever the broker does."""

from __future__ import annotations

import threading
from typing import Any

from tenantwatch_edge.sink import EventSink
from tests.conftest import wait_for


class _SilentBroker:
    """A producer whose broker takes records and never acknowledges them (a test double for a
    broker that stopped answering mid-stream; the missing-broker case runs on real sockets in
    tests/integration/edge)."""

    def __init__(self) -> None:
        self.records = 0
        self.lock = threading.Lock()

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def send(self, topic: str, value: bytes, partition: int) -> Any:
        with self.lock:
            self.records += 1
        return _Pending()

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


class _Pending:
    def add_callback(self, *args: Any) -> _Pending:
        return self

    def add_errback(self, *args: Any) -> _Pending:
        return self


def offer(sink: EventSink, n: int) -> int:
    return sum(sink.offer(1.78e9, "acme", f"192.0.2.{i % 200}", "GET", "/", 200, 1.0, 10) for i in range(n))


def test_unacknowledged_events_are_bounded_then_dropped_and_counted() -> None:
    """Past max_in_flight unacknowledged events, the sink drops (counted) instead of buffering for ever."""
    broker = _SilentBroker()
    sink = EventSink("unused", "tw.requests", capacity=100, max_in_flight=300, producer_factory=lambda: broker)
    sink.start()
    try:
        total = 0
        for _ in range(20):
            total += 100
            offer(sink, 100)
            wait_for(lambda: not sink._queue, timeout=10, interval=0.01, what="the queue drained")
        c = sink.counts
        assert sink._handed <= 300 + 100, "at most one drain past the bound"
        assert c["offered"] + c["dropped_full"] == total
        assert c["dropped_unavailable"] >= total - 400
        assert c["sent"] == 0
    finally:
        sink.close(timeout=2)


def test_a_full_queue_drops_at_once() -> None:
    """With the sink thread not running, offers past the capacity return False and are counted."""
    sink = EventSink("unused", "tw.requests", capacity=10)
    assert offer(sink, 25) == 10
    assert sink.counts["dropped_full"] == 15


def test_a_missing_broker_leaves_no_thread_behind() -> None:
    """Would fail if the sink built Kafka producers against a broker that does not answer: kafka-python
    3 kept such a producer's bootstrap running (and logging) after the sink was closed."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    before = set(threading.enumerate())  # (threads other tests left are not this one's)
    sink = EventSink(f"127.0.0.1:{port}", "tw.requests", capacity=10).start()
    assert offer(sink, 3) == 3
    wait_for(lambda: sink.counts["dropped_unavailable"] == 3, timeout=10, what="the events dropped as unavailable")
    sink.close(timeout=3)
    assert not sink._thread.is_alive()
    assert not [t for t in threading.enumerate() if t not in before]


def test_a_feed_without_a_broker_leaves_no_thread_behind() -> None:
    """Would fail if the decisions feed built a consumer per retry against a broker that does not
    answer (kafka-python 3 kept each one's bootstrap thread running)."""
    import socket

    from tenantwatch_edge.decisions import DecisionCache
    from tenantwatch_edge.feed import DecisionFeed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    before = set(threading.enumerate())
    feed = DecisionFeed(DecisionCache(), f"127.0.0.1:{port}", "tw").start()
    wait_for(lambda: feed.counts["reconnects"] >= 2, timeout=15, what="two failed attempts")
    feed.close(timeout=3)
    assert not [t for t in threading.enumerate() if t not in before]
