"""Inputs decoded into rows: the runtime reads their time and dead-letters them like models."""

from __future__ import annotations

import json
from typing import Any

from pipeline.runtime.codec import Codec, RowCodec, encode_one
from pipeline.runtime.core import Runtime
from pipeline.runtime.topics import Topic
from pipeline.settings import Settings
from schemas.events import RequestEvent
from tests.unit.foundation.fakes import fake_app

EVENT = {"kind": "request", "event_id": "e-1", "ts": "2026-01-05T10:00:00.5+01:00", "tenant_id": "acme",
         "ip": "2001:DB8::0:1", "method": "GET", "path": "/x", "status": 503, "latency_ms": 12.5}


def test_a_row_dead_letters_as_the_bytes_its_model_would() -> None:
    """Would fail if a handler's poison batch of rows kept other evidence than a batch of models."""
    (row,), _ = RowCodec(RequestEvent).decode(json.dumps([EVENT]).encode())
    (model,), _ = Codec(RequestEvent).decode(json.dumps([EVENT]).encode())
    assert row["ip"] == "2001:db8::1"  # canonical, as the model makes it
    assert RowCodec(RequestEvent).encode_event(row) == encode_one(model)
    assert Codec(RequestEvent).encode_event(model) == encode_one(model)


def test_the_runtime_reads_event_time_from_rows_and_models() -> None:
    """Would fail if the watermark of a rows input were read as an attribute (and crashed)."""
    rt = Runtime(fake_app(), Settings())
    rt.add_input(Topic.REQUESTS, RequestEvent, rows=True)
    rt.add_input(Topic.ERRORS, RequestEvent)  # any model input
    assert isinstance(rt._codecs[Topic.REQUESTS], RowCodec)
    assert not isinstance(rt._codecs[Topic.ERRORS], RowCodec)
    (row,), _ = rt._codecs[Topic.REQUESTS].decode(json.dumps(EVENT).encode())
    (model,), _ = rt._codecs[Topic.ERRORS].decode(json.dumps(EVENT).encode())
    assert rt._ts_of[Topic.REQUESTS](row) == rt._ts_of[Topic.ERRORS](model) == model.ts


def test_only_requests_batch_with_the_short_wait() -> None:
    """Would fail if every input's batching loop woke every 5 ms (idle CPU), or if requests
    (whose rate-limit decisions wait for their batch) got the long wait."""
    import asyncio

    from pipeline.runtime.app import create_app

    class Stream:  # what an ingest agent asks of its stream
        def __init__(self) -> None:
            self.within: float | None = None

        async def take_events(self, max_: int, within: float) -> Any:
            self.within = within
            return
            yield

    settings = Settings(take_within_s=0.004, take_within_other_s=0.07)
    app, _runtime = create_app(settings, capabilities=("anomaly", "notify"))
    waits = {}
    for name, agent in app.agents.items():
        if ".ingest." in name:
            stream = Stream()
            asyncio.run(agent.fun(stream))
            waits[name.rsplit(".", 1)[1]] = stream.within
    assert waits == {"requests": 0.004, "billing": 0.07, "errors": 0.07, "usage": 0.07, "rollups": 0.07,
                     "metrics": 0.07, "notifications": 0.07}
