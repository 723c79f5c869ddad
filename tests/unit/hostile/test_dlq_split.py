"""Dead letters (and every batched output) split into records under the message size, never dropped."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from pipeline.runtime.codec import Codec, Rejected, RowCodec, encode_batch, encode_batches
from pipeline.runtime.dlq import dead_letter
from pipeline.settings import Settings
from schemas.events import RequestEvent
from schemas.results import DeadLetter

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
DLQ = Codec(DeadLetter)


def letters(n: int, payload: int) -> list[DeadLetter]:
    return [DeadLetter(id=f"d{i}", ts=NOW, stage="ingest", source_topic="tw.requests", partition=0, offset=7,
                       batch_index=i, error="status: Input should be less than or equal to 599",
                       payload_b64=base64.b64encode(b"x" * payload).decode(), payload_size=payload, truncated=False)
            for i in range(n)]


@given(st.lists(st.integers(0, 3000), max_size=40), st.integers(200, 20_000), st.integers(1, 50))
def test_split_keeps_every_record_in_order_within_the_bounds(sizes: list[int], max_bytes: int,
                                                              max_events: int) -> None:
    """Concatenated, the arrays are the input; each is under the bounds unless it holds one oversized record."""
    models = [letters(1, s)[0].model_copy(update={"id": f"d{i}"}) for i, s in enumerate(sizes)]
    chunks = encode_batches(models, max_bytes, max_events)
    assert [m for c in chunks for m in DLQ.decode(c)[0]] == models
    for chunk in chunks:
        items = json.loads(chunk)
        assert 1 <= len(items) <= max_events
        assert len(chunk) <= max_bytes or len(items) == 1
    if len(chunks) == 1:
        assert chunks[0] == encode_batch(models)  # nothing to split: the one array as before


def test_the_reported_9000_dead_letters_fit_in_records_under_a_megabyte() -> None:
    """The 7.95 MB record of 9,000 invalid events: one 13 MB array before, now records ≤ 1,000,000 bytes."""
    event = json.loads(RequestEvent.model_validate(
        {"event_id": "e", "ts": "2026-05-04T12:00:00Z", "tenant_id": "acme", "ip": "203.0.113.7", "method": "GET",
         "path": "/" + "x" * 700, "status": 200, "latency_ms": 12.5}).model_dump_json()) | {"status": 999}
    value = json.dumps([event | {"event_id": f"e{i}"} for i in range(9000)]).encode()
    assert 7_900_000 < len(value) < 8 << 20
    _, bad = RowCodec(RequestEvent).decode(value)
    assert len(bad) == 9000
    dead = [dead_letter(r, stage="ingest", topic="tw.requests", partition=0, offset=1, max_bytes=4096, now=NOW)
            for r in bad]
    assert len(encode_batch(dead)) > 8 << 20  # what the producer refused
    limit = Settings().output_record_max_bytes
    chunks = encode_batches(dead, limit)
    assert all(len(c) <= limit for c in chunks)
    assert sum(len(DLQ.decode(c)[0]) for c in chunks) == 9000


def test_a_reason_quoting_many_lone_surrogates_still_makes_a_dead_letter() -> None:
    """Would fail if escaping the surrogates made the reason longer than a dead letter admits."""
    from pipeline.runtime.codec import reason_text

    text = reason_text("bad: " + "\ud800" * 1999)
    assert len(text) == 2000
    text.encode("utf-8")
    letter = dead_letter(Rejected(0, text, b"x"), stage="ingest", topic="tw.requests", partition=0, offset=1,
                         max_bytes=4096, now=NOW)
    assert letter.error == text
