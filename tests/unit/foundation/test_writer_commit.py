"""The ClickHouse writer survives a refused offset commit (it stopped storing anything before)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import IllegalGenerationError, RebalanceInProgressError, TopicAuthorizationFailedError
from kafka.structs import TopicPartition

from pipeline.clickhouse.sinks import MemorySink
from pipeline.clickhouse.writer import ClickHouseWriter


class RefusingConsumer:
    def __init__(self, error: Exception):
        self.error, self.calls = error, 0

    def commit(self, offsets: Any) -> None:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize("error", [RebalanceInProgressError(), IllegalGenerationError()])
def test_a_commit_refused_by_a_rebalance_is_logged_not_fatal(error: Exception) -> None:
    writer = ClickHouseWriter(bootstrap="127.0.0.1:1", prefix="tw", sink=MemorySink())
    writer.consumer = RefusingConsumer(error)
    writer._offsets = {TopicPartition("tw.requests", 0): 42}
    writer._commit()
    assert writer.consumer.calls == 1
    assert writer._offsets == {}  # re-read by the partition's next owner; inserts are idempotent


def test_other_commit_errors_still_raise() -> None:
    writer = ClickHouseWriter(bootstrap="127.0.0.1:1", prefix="tw", sink=MemorySink())
    writer.consumer = RefusingConsumer(TopicAuthorizationFailedError())
    writer._offsets = {TopicPartition("tw.requests", 0): 42}
    with pytest.raises(TopicAuthorizationFailedError):
        writer._commit()
