"""Turning rejected input into dead-letter records that keep the evidence."""

from __future__ import annotations

import base64
from datetime import datetime

from pipeline.codec import Rejected
from schemas.results import DeadLetter, stable_id

__all__ = ["dead_letter"]


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
