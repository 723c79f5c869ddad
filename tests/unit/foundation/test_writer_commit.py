"""The writer's Kafka side: refused commits, the stuck-group watchdog, offsets kept across outages."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import (
    IllegalGenerationError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    TopicAuthorizationFailedError,
)
from kafka.structs import TopicPartition

from pipeline.adapters.clickhouse.sinks import MemorySink
from pipeline.adapters.clickhouse.source import ResultSource
from pipeline.adapters.clickhouse.writer import ClickHouseWriter

TP = TopicPartition("tw.requests", 0)


class RefusingConsumer:
    """Stands in for a kafka-python consumer whose commits the group refuses."""

    def __init__(self, error: Exception):
        self.error, self.calls, self.closed = error, 0, False

    def commit(self, offsets: Any) -> None:
        self.calls += 1
        raise self.error

    def close(self, **_: Any) -> None:
        self.closed = True


def writer_with(consumer: Any, assignment: str) -> ClickHouseWriter:
    writer = ClickHouseWriter(bootstrap="127.0.0.1:1", prefix="tw", sink=MemorySink(), assignment=assignment)  # type: ignore[arg-type]
    writer.source.consumer = consumer
    writer._offsets = {TP: 42}
    return writer


@pytest.mark.parametrize("error", [RebalanceInProgressError(), IllegalGenerationError()])
def test_a_commit_refused_by_a_rebalance_is_logged_not_fatal(error: Exception) -> None:
    """In group mode a refused commit drops the offsets: the partition's next owner re-reads them."""
    consumer = RefusingConsumer(error)
    writer = writer_with(consumer, "group")
    writer._commit()
    assert consumer.calls == 1
    assert writer._offsets == {}
    assert writer.source.refused_commits == 1


def test_a_commit_that_times_out_keeps_its_offsets_in_manual_mode() -> None:
    """A broker outage refuses the commit; a manual-mode writer still owns the partition and retries later."""
    writer = writer_with(RefusingConsumer(KafkaTimeoutError()), "manual")
    writer._commit()
    assert writer._offsets == {TP: 42}


def test_repeated_refusals_restart_a_stuck_group_consumer() -> None:
    """Three refusals in a row (kafka-python 3.0 stuck "rebalancing") close the consumer for a fresh join."""
    consumer = RefusingConsumer(RebalanceInProgressError())
    source = ResultSource(bootstrap="127.0.0.1:1", group_id="g", topics=["tw.requests"], assignment="group",
                          max_refused_commits=3)
    source.consumer = consumer
    assert [source.commit({TP: 1}) for _ in range(2)] == [False, False]
    assert source.consumer is consumer
    assert source.reconnects == 0
    assert source.commit({TP: 1}) is False
    assert source.consumer is None
    assert consumer.closed
    assert source.reconnects == 1


def test_manual_mode_never_restarts_on_refusals() -> None:
    """Refusals in manual mode (an outage) keep the consumer: there is no group to rejoin."""
    source = ResultSource(bootstrap="127.0.0.1:1", group_id="g", topics=["tw.requests"], assignment="manual")
    consumer = RefusingConsumer(KafkaTimeoutError())
    source.consumer = consumer
    assert not any(source.commit({TP: 1}) for _ in range(10))
    assert source.consumer is consumer
    assert source.reconnects == 0


def test_other_commit_errors_still_raise() -> None:
    """No waiting fixes an authorization error, so it reaches the caller."""
    writer = writer_with(RefusingConsumer(TopicAuthorizationFailedError()), "group")
    with pytest.raises(TopicAuthorizationFailedError):
        writer._commit()


def test_a_record_whose_decoding_raises_is_skipped() -> None:
    """Whatever a decoder raises on one record, the writer counts it and goes on."""
    writer = ClickHouseWriter(bootstrap="127.0.0.1:1", prefix="tw", sink=MemorySink())
    topic = next(iter(writer.codecs))

    class Exploding:
        def decode(self, value: Any) -> Any:
            raise RecursionError("nesting bomb")

    writer.codecs[topic] = Exploding()  # type: ignore[assignment]
    writer.add(topic, b"[[[[")
    assert writer.stats.records_skipped == 1
    assert writer.stats.buffered_rows == 0


class SilentConsumer:
    """A consumer that returns no records; its broker view (end offsets, positions) is given."""

    def __init__(self, ends: dict[Any, int] | Exception, position: int = 10):
        self.ends, self.at, self.closed, self.probes = ends, position, False, 0

    def assignment(self) -> set[Any]:
        return {TP}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {TP.partition}

    def poll(self, **_: Any) -> dict[Any, list[Any]]:
        return {}

    def end_offsets(self, parts: list[Any], timeout_ms: int) -> dict[Any, int]:
        self.probes += 1
        if isinstance(self.ends, Exception):
            raise self.ends
        return self.ends

    def position(self, tp: Any, timeout_ms: int) -> int:
        return self.at

    def paused(self) -> set[Any]:
        return set()

    def pause(self, *_: Any) -> None: ...

    def resume(self, *_: Any) -> None: ...

    def close(self, **_: Any) -> None:
        self.closed = True


def silent_source(consumer: SilentConsumer, now: list[float]) -> ResultSource:
    source = ResultSource(bootstrap="127.0.0.1:1", group_id="g", topics=["tw.requests"], silent_s=30,
                          clock=lambda: now[0])
    source.consumer = consumer
    return source


def poll_at(source: ResultSource, now: list[float], t: float, *, paused: bool = False) -> None:
    """One poll of the writer's source with the clock at `t`."""
    now[0] = t
    source.poll(timeout_ms=0, max_records=10, paused=paused)


@pytest.mark.parametrize("ends", [KafkaTimeoutError(), {TP: 11}], ids=["unreachable", "records-waiting"])
def test_a_consumer_silent_for_long_is_recreated_when_it_cannot_show_it_is_caught_up(ends: Any) -> None:
    """kafka-python 3.0.12 stayed "No node available" after a broker restart while records waited."""
    now = [0.0]
    consumer = SilentConsumer(ends)
    source = silent_source(consumer, now)
    poll_at(source, now, 29.0)
    assert consumer.probes == 0
    assert source.consumer is consumer
    poll_at(source, now, 31.0)
    assert consumer.probes == 1
    assert source.consumer is None
    assert consumer.closed
    assert source.reconnects == 1


def test_a_silent_consumer_that_is_caught_up_or_paused_is_kept() -> None:
    now = [0.0]
    consumer = SilentConsumer({TP: 10}, position=10)
    source = silent_source(consumer, now)
    poll_at(source, now, 31.0)
    assert consumer.probes == 1
    assert source.consumer is consumer
    poll_at(source, now, 45.0)
    assert consumer.probes == 1  # at most one probe per silent_s
    poll_at(source, now, 100.0, paused=True)
    assert consumer.probes == 1
    assert source.consumer is consumer


def test_a_consumer_without_metadata_during_an_outage_waits_instead_of_raising() -> None:
    """A consumer rebuilt while the broker is down cannot list partitions: the writer thread must live on."""
    from kafka.errors import KafkaConnectionError

    class Unlisted(SilentConsumer):
        def partitions_for_topic(self, topic: str) -> set[int]:
            raise KafkaConnectionError("111 ECONNREFUSED")

    now = [0.0]
    source = silent_source(Unlisted({TP: 10}), now)
    assert source.poll(timeout_ms=0, max_records=10, paused=False) == {}
    assert source.consumer is not None
