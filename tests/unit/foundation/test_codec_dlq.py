"""Record decoding: single events and batches, every bad event isolated with a reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from pipeline.runtime.codec import Codec, encode_batch
from pipeline.runtime.dlq import dead_letter
from schemas.events import RequestEvent

GOOD = {"kind": "request", "event_id": "e1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "ip": "10.0.0.1",
        "method": "GET", "path": "/x", "status": 200, "latency_ms": 1.5}
codec = Codec(RequestEvent, max_record_bytes=1 << 16, max_events=100)


def test_single_event_and_batch_forms_decode_alike():
    """One JSON object and a JSON array of it give the same event."""
    one, bad1 = codec.decode(json.dumps(GOOD).encode())
    many, bad2 = codec.decode(json.dumps([GOOD, GOOD]).encode())
    assert bad1 == bad2 == []
    assert one == many[:1]
    assert len(many) == 2


def test_bad_items_in_a_batch_are_isolated_with_their_index():
    """A batch keeps its good events; each bad one is rejected with its position and bytes."""
    value = json.dumps([GOOD, {"oops": 1}, dict(GOOD, status=42), GOOD]).encode()
    good, bad = codec.decode(value)
    assert len(good) == 2
    assert [r.index for r in bad] == [1, 2]
    assert "status" in bad[1].error
    assert json.loads(bad[0].payload) == {"oops": 1}


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(value):
    """Whatever the bytes, decode returns (events, rejections) and never raises."""
    good, bad = codec.decode(value)
    assert all(isinstance(e, RequestEvent) for e in good)
    assert all(r.error for r in bad)


def test_size_and_count_bounds():
    """Oversized records and over-long batches are refused whole."""
    assert "exceeds" in codec.decode(b"[" + b" " * (1 << 16) + b"]")[1][0].error
    assert "batch of 101 events exceeds 100" in codec.decode(json.dumps([GOOD] * 101).encode())[1][0].error


def test_encode_batch_round_trips():
    """encode_batch output decodes back to the same models."""
    events = [RequestEvent.model_validate(dict(GOOD, event_id=f"e{i}")) for i in range(3)]
    assert codec.decode(encode_batch(events))[0] == events


def test_dead_letter_keeps_bounded_evidence_and_a_stable_id():
    """A dead letter keeps at most max_bytes of the payload and the same id on redelivery."""
    _, bad = codec.decode(b"x" * 5000)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a = dead_letter(bad[0], stage="ingest", topic="tw.requests", partition=3, offset=17, max_bytes=100, now=now)
    b = dead_letter(bad[0], stage="ingest", topic="tw.requests", partition=3, offset=17, max_bytes=100, now=now)
    assert a.id == b.id
    assert a.truncated
    assert a.payload_size == 5000
    assert base64.b64decode(a.payload_b64) == b"x" * 100
