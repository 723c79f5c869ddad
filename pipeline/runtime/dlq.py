"""Turning rejected input into dead-letter records that keep the evidence."""

from __future__ import annotations

import base64
import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.runtime.codec import Rejected
from schemas.results import DeadLetter, stable_id

__all__ = ["RecordSpan", "dead_letter", "source_of"]


def dead_letter(
    rejected: Rejected, *, stage: str, topic: str, partition: int, offset: int, max_bytes: int, now: datetime
) -> DeadLetter:
    """A DeadLetter whose id is stable per (topic, partition, offset, index): redelivery dedups."""
    payload = rejected.payload
    kept = payload[:max_bytes]
    return DeadLetter(
        id=stable_id(topic, partition, offset, rejected.index),
        ts=now,
        stage=stage,
        source_topic=topic,
        partition=partition,
        offset=offset,
        batch_index=rejected.index,
        error=rejected.error,
        payload_b64=base64.b64encode(kept).decode(),
        payload_size=len(payload),
        truncated=len(kept) < len(payload),
    )


@dataclass(slots=True)
class RecordSpan:
    """Where the decoded events of one Kafka record sit in a batch: they end at position `end`;
    `bad` are the (sorted) indices of the record's events that did not decode."""

    end: int
    offset: int
    bad: list[int]


def source_of(spans: Sequence[RecordSpan], position: int) -> tuple[int, int]:
    """The (offset, index in its record) of the event at `position` of a batch, so a dead letter
    of a decoded event gets the id and location a decoding failure of it would have had.

    >>> source_of([RecordSpan(2, 40, []), RecordSpan(4, 41, [0, 2])], 3)
    (41, 3)
    """
    i = bisect.bisect_right([s.end for s in spans], position)
    span = spans[i]
    index = position - (spans[i - 1].end if i else 0)
    for b in span.bad:  # the index-th good event skips the bad ones before it
        if b <= index:
            index += 1
        else:
            break
    return span.offset, index
