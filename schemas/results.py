"""Records the pipeline itself emits: dead letters and the admin audit log.

Capability results live beside their own topic (`schemas/ratelimit.py`, `schemas/anomaly.py`,
`schemas/trials.py`, `schemas/notify.py`). Every result carries a deterministic `id` so that
sinks can be idempotent under at-least-once delivery.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas._base import Record, Timestamp

__all__ = ["AuditRecord", "DeadLetter", "stable_id"]


def stable_id(*parts: object) -> str:
    """A short deterministic id from its parts (blake2b-128 over their text, hex)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class DeadLetter(Record):
    """A message (or one event inside a batch record) that could not be decoded or validated."""

    id: str
    ts: Timestamp  # when it was dead-lettered (wall clock: it is an operational record)
    stage: Annotated[str, StringConstraints(max_length=64)]
    source_topic: Annotated[str, StringConstraints(max_length=249)]
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=-1)]
    batch_index: Annotated[int, Field(ge=-1)] = -1  # position inside a batch record; -1 = whole record
    error: Annotated[str, StringConstraints(max_length=2000)]
    # the original bytes, base64, cut at the configured bound (settings.dlq_payload_max_bytes)
    payload_b64: Annotated[str, StringConstraints(max_length=1 << 22)]
    payload_size: Annotated[int, Field(ge=0)]
    truncated: bool


class AuditRecord(Record):
    """Every admin command seen by an agent, accepted or rejected, with the reason.

    `id` is per delivery attempt (nonce + Kafka coordinates): a replay gets its own row, a
    redelivery of the same message the same row.
    """

    id: str
    nonce: Annotated[str, StringConstraints(max_length=64)]
    ts: Timestamp
    command_ts: Timestamp | None
    actor: Annotated[str, StringConstraints(max_length=64)]
    action: Annotated[str, StringConstraints(max_length=64)]
    tenant_id: Annotated[str, StringConstraints(max_length=64)]
    params_json: Annotated[str, StringConstraints(max_length=4096)]
    outcome: Literal["accepted", "rejected"]
    reason: Annotated[str, StringConstraints(max_length=512)]
