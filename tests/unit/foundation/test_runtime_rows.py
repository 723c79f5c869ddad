"""Inputs decoded into rows: the runtime reads their time and dead-letters them like models."""

from __future__ import annotations

import json
from types import SimpleNamespace

from pipeline.codec import Codec, RowCodec, encode_one
from pipeline.runtime import Runtime, _encode_event
from pipeline.settings import Settings
from pipeline.topics import Topic
from schemas.events import RequestEvent

EVENT = {"kind": "request", "event_id": "e-1", "ts": "2026-01-05T10:00:00.5+01:00", "tenant_id": "acme",
         "ip": "2001:DB8::0:1", "method": "GET", "path": "/x", "status": 503, "latency_ms": 12.5}


def test_a_row_dead_letters_as_the_bytes_its_model_would() -> None:
    """Would fail if a handler's poison batch of rows kept other evidence than a batch of models."""
    (row,), _ = RowCodec(RequestEvent).decode(json.dumps([EVENT]).encode())
    (model,), _ = Codec(RequestEvent).decode(json.dumps([EVENT]).encode())
    assert row["ip"] == "2001:db8::1"  # canonical, as the model makes it
    assert _encode_event(RowCodec(RequestEvent), row) == encode_one(model)
    assert _encode_event(Codec(RequestEvent), model) == encode_one(model)


def test_the_runtime_reads_event_time_from_rows_and_models() -> None:
    """Would fail if the watermark of a rows input were read as an attribute (and crashed)."""
    app = SimpleNamespace(topic=lambda *a, **k: object(), agent=lambda *a, **k: (lambda fn: fn))
    rt = Runtime(app, Settings())
    rt.add_input(Topic.REQUESTS, RequestEvent, rows=True)
    rt.add_input(Topic.ERRORS, RequestEvent)  # any model input
    assert isinstance(rt._codecs[Topic.REQUESTS], RowCodec)
    assert not isinstance(rt._codecs[Topic.ERRORS], RowCodec)
    (row,), _ = rt._codecs[Topic.REQUESTS].decode(json.dumps(EVENT).encode())
    (model,), _ = rt._codecs[Topic.ERRORS].decode(json.dumps(EVENT).encode())
    assert rt._ts_of[Topic.REQUESTS](row) == rt._ts_of[Topic.ERRORS](model) == model.ts
