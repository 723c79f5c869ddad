"""The writer's row path: bad events are counted as skipped, the rest reach the sink as JSON rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from pipeline.adapters.clickhouse.sinks import FlakySink, MemorySink, accepts_json_rows, join_json_arrays
from pipeline.adapters.clickhouse.writer import ClickHouseWriter
from pipeline.runtime.codec import Codec, RowCodec
from schemas.events import RequestEvent

GOOD = {"kind": "request", "event_id": "e1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "ip": "10.0.0.1",
        "method": "GET", "path": "/x", "status": 200, "latency_ms": 1.5}
BILLING = {"event_id": "b1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "type": "refund",
           "amount_minor": 100, "currency": "EUR"}
REQUESTS, BILLING_TOPIC = "tw.requests", "tw.billing"


class JsonSink:
    """Records what the writer hands over: JSON chunks, or models for the topics without rows."""

    accepts_json_rows = True

    def __init__(self) -> None:
        self.json: dict[str, list[dict[str, Any]]] = {}
        self.models: dict[str, list[BaseModel]] = {}
        self.calls = 0

    def insert(self, table: str, column_names: Sequence[str], records: Sequence[BaseModel]) -> None:
        self.calls += 1
        self.models.setdefault(table, []).extend(records)

    def insert_json(self, table: str, column_names: Sequence[str], chunks: Sequence[bytes]) -> None:
        self.calls += 1
        rows = json.loads(join_json_arrays(chunks))
        assert all(set(r) <= set(column_names) for r in rows)
        self.json.setdefault(table, []).extend(rows)


def writer_for(sink: Any) -> ClickHouseWriter:
    return ClickHouseWriter(bootstrap="127.0.0.1:1", prefix="tw", sink=sink)


def test_rejected_events_are_skipped_and_the_rest_inserted_as_rows() -> None:
    sink = JsonSink()
    writer = writer_for(sink)
    assert isinstance(writer.codecs[REQUESTS], RowCodec)
    mixed = [GOOD, dict(GOOD, event_id="e2", ip="2001:DB8::0:1"), dict(GOOD, ip="256.0.0.1"),
             dict(GOOD, is_admin=True), dict(GOOD, ts="1999-01-01T00:00:00Z"), dict(GOOD, status="ok")]
    writer.add(REQUESTS, json.dumps(mixed).encode())
    writer.add(REQUESTS, json.dumps(dict(GOOD, event_id="e3")).encode())
    writer.add(REQUESTS, b"not json")
    writer.add(REQUESTS, None)
    assert writer.stats.records_skipped == 4 + 2
    assert writer.stats.buffered_rows == 3
    assert writer.flush()
    assert writer.stats.buffered_rows == 0
    assert writer.stats.rows_inserted["requests"] == 3
    rows = sink.json["requests"]
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3"]
    assert rows[1]["ip"] == "2001:db8::1"
    assert rows[0] == {"event_id": "e1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "ip": "10.0.0.1",
                       "method": "GET", "path": "/x", "status": 200, "latency_ms": 1.5, "bytes": 0, "user_id": None}
    assert writer.flush()  # nothing left: no further insert
    assert sink.calls == 1


def test_rows_equal_what_the_model_path_writes() -> None:
    """The same records through the row path and the model path give the same JSON rows."""
    values = [json.dumps([dict(GOOD, event_id=f"e{i}", ip=ip, ts=ts) for i, (ip, ts) in enumerate([
        ("::FFFF:10.0.0.9", "2026-03-01T12:00:00.123456789+05:30"), ("2001:0db8:0000::0001", "2026-03-01T12:00:00Z"),
        ("10.0.0.1", "2026-03-01 12:00:00+00:00")])]).encode(), json.dumps(dict(GOOD, user_id="u", bytes=7)).encode()]
    row_sink, model_sink = JsonSink(), JsonSink()
    rows_writer, models_writer = writer_for(row_sink), writer_for(model_sink)
    models_writer.codecs[REQUESTS] = Codec(RequestEvent)
    del models_writer.row_codecs[REQUESTS]
    for value in values:
        rows_writer.add(REQUESTS, value)
        models_writer.add(REQUESTS, value)
    assert rows_writer.flush()
    assert models_writer.flush()
    columns = rows_writer.specs[REQUESTS].columns
    from_models = [{c: json.loads(m.model_dump_json())[c] for c in columns} for m in model_sink.models["requests"]]
    assert row_sink.json["requests"] == from_models
    assert len(from_models) == 4


def test_topics_without_a_row_codec_still_buffer_models() -> None:
    """Billing (a model validator) goes through the model path, and its bad events are skipped too."""
    sink = JsonSink()
    writer = writer_for(sink)
    assert BILLING_TOPIC not in writer.row_codecs
    writer.add(BILLING_TOPIC, json.dumps([BILLING, dict(BILLING, currency=None)]).encode())
    writer.add(REQUESTS, json.dumps([GOOD]).encode())
    assert writer.stats.records_skipped == 1
    assert writer.flush()
    assert [e.event_id for e in sink.models["billing"]] == ["b1"]  # type: ignore[attr-defined]
    assert len(sink.json["requests"]) == 1
    assert writer.stats.rows_inserted == {"billing": 1, "requests": 1}


def test_failed_inserts_keep_the_rows_for_the_retry() -> None:
    inner = JsonSink()
    sink = FlakySink(inner)
    assert accepts_json_rows(sink)
    writer = writer_for(sink)
    writer.add(REQUESTS, json.dumps([GOOD, dict(GOOD, event_id="e2")]).encode())
    sink.failing.set()
    assert not writer.flush()
    assert not writer.flush()
    assert (writer.stats.insert_failures, writer.stats.buffered_rows, sink.failures) == (2, 2, 2)
    writer.add(REQUESTS, json.dumps(dict(GOOD, event_id="e3")).encode())
    sink.failing.clear()
    assert writer.flush()
    assert [r["event_id"] for r in inner.json["requests"]] == ["e1", "e2", "e3"]
    assert writer.stats.rows_inserted["requests"] == 3
    assert writer.stats.buffered_rows == 0


def test_sinks_without_json_rows_get_models() -> None:
    """MemorySink (and a FlakySink around it) keeps the model path: tuples of model values."""
    for sink in (MemorySink(), FlakySink(MemorySink())):
        assert not accepts_json_rows(sink)
        writer = writer_for(sink)
        assert writer.row_codecs == {}
        writer.add(REQUESTS, json.dumps([GOOD, dict(GOOD, status=1)]).encode())
        assert writer.stats.records_skipped == 1
        assert writer.flush()
        memory = sink if isinstance(sink, MemorySink) else sink.inner
        assert isinstance(memory, MemorySink)
        assert [row[0] for row in memory.tables["requests"]] == ["e1"]


def test_join_json_arrays() -> None:
    assert join_json_arrays([b"[1,2]"]) == b"[1,2]"
    assert json.loads(join_json_arrays([b"[1,2]", b"[]", b"[3]"])) == [1, 2, 3]
