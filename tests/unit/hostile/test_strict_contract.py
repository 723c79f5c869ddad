"""The strict JSON contract of the README, the same in every decoder: the worker's models and
rows, the writer, the SDK and the exported JSON Schema."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from pipeline.adapters.clickhouse.sinks import load_capability_sinks
from pipeline.runtime.codec import Codec, RowCodec, encode_one
from pipeline.sdk import InvalidEventError, Publisher, validate_event_json
from schemas._base import RFC3339
from schemas.events import RequestEvent, UsageEvent
from schemas.export import export_json_schemas
from tests.unit.foundation.test_row_codec import SAMPLES

REQUEST = dict(SAMPLES[RequestEvent], kind="request")
USAGE = dict(SAMPLES[UsageEvent], kind="usage")

# Each was stored before (pydantic's lax mode); the README promised refusal.
LOOSE = [
    (REQUEST, "status", "200"),
    (REQUEST, "latency_ms", "12.5"),
    (REQUEST, "bytes", True),
    (REQUEST, "status", 200.0),
    (REQUEST, "ts", 1767225600),
    (REQUEST, "ts", 1767225600.5),
    (REQUEST, "ts", "1767225600"),
    (REQUEST, "ts", "2026-01-01"),
    (REQUEST, "ts", "2026-01-01T00:00Z"),
    (USAGE, "active_users", "10"),
    (USAGE, "storage_bytes", 1e3),
    (USAGE, "api_calls", False),
]
# Odd but within the contract.
ACCEPTED = [
    (REQUEST, "latency_ms", 12),  # an integer is a number
    (REQUEST, "ts", "2026-01-01T02:00:00+02:00"),
    (REQUEST, "ts", "2026-01-01T00:00:00.123456789Z"),  # kept to the microsecond
    (REQUEST, "ts", "2026-01-01t00:00:00Z"),  # RFC 3339 allows t
    (REQUEST, "ts", "2026-01-01 00:00:00Z"),  # and the space of its note
]


def decoders(model: type[BaseModel]) -> dict[str, Any]:
    """Every way a JSON event is decoded: model codec, row codec (worker and writer), the SDK."""
    return {"model": Codec(model), "rows": RowCodec(model)}


@pytest.mark.parametrize(("base", "field", "value"), LOOSE, ids=[f"{f}={v!r}" for _, f, v in LOOSE])
def test_loose_types_are_refused_by_every_decoder(base: dict[str, Any], field: str, value: Any) -> None:
    """A string for a number, a boolean or 200.0 for an integer, an epoch for a time: refused, naming the field."""
    event = base | {field: value}
    model = RequestEvent if base is REQUEST else UsageEvent
    for name, codec in decoders(model).items():
        # alone, and in a batch whose valid event still passes
        for raw, valid in ((json.dumps(event).encode(), 0), (json.dumps([base, event]).encode(), 1)):
            good, bad = codec.decode(raw)
            assert len(bad) == 1, (name, raw, bad)
            assert field in bad[0].error, (name, raw, bad)
            assert len(good) == valid
    with pytest.raises(InvalidEventError, match=field):
        Publisher.validate(event)
    with pytest.raises(InvalidEventError, match=field):
        validate_event_json(json.dumps(event))


@pytest.mark.parametrize(("base", "field", "value"), ACCEPTED, ids=[f"{f}={v!r}" for _, f, v in ACCEPTED])
def test_odd_but_valid_forms_pass_every_decoder(base: dict[str, Any], field: str, value: Any) -> None:
    """Integers for floats, offsets, nine fraction digits, t or a space: accepted everywhere alike."""
    event = base | {field: value}
    expected = RequestEvent.model_validate(event)
    for codec in decoders(RequestEvent).values():
        good, bad = codec.decode(json.dumps(event).encode())
        assert bad == []
        assert len(good) == 1
    assert Publisher.validate(event) == expected == validate_event_json(json.dumps(event))


def test_python_code_keeps_building_records_from_datetimes() -> None:
    """The SDK takes datetimes (sent as RFC 3339) and models; strictness is for JSON, not for our code."""
    ts = datetime(2026, 1, 1, 12, tzinfo=UTC)
    event = Publisher.validate(REQUEST | {"ts": ts})
    assert event.ts == ts  # type: ignore[attr-defined]
    assert Publisher.validate(event) is event


def _sink_models() -> list[type[BaseModel]]:
    return sorted({spec.model for spec in load_capability_sinks().values()}, key=lambda m: m.__name__)


@pytest.mark.parametrize("model", [m for m in _sink_models() if m in SAMPLES], ids=lambda m: m.__name__)
def test_what_our_code_writes_passes_the_strict_decoders(model: type[BaseModel]) -> None:
    """A record built in Python and serialised as the workers send it re-decodes in the writer."""
    record = model.model_validate(SAMPLES[model])
    value = encode_one(record)
    assert Codec(model).decode(value) == ([record], [])
    rows = RowCodec.for_model(model)
    if rows is not None:
        assert rows.decode(value)[1] == []


timestamps = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30),
                          timezones=st.sampled_from([UTC, None]))


@given(timestamps, st.sampled_from(["T", "t", " "]), st.sampled_from(["Z", "+00:00", "+05:30", "-08:00"]),
       st.sampled_from(["", ".1", ".123456", ".123456789"]))
def test_the_exported_pattern_is_the_timestamp_contract(when: datetime, sep: str, zone: str, frac: str) -> None:
    """Every text the JSON Schema pattern admits decodes to the instant it says (seconds are required)."""
    text = when.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + zone
    assert re.fullmatch(RFC3339, text)
    event = validate_event_json(json.dumps(REQUEST | {"ts": text}))
    offset = timedelta(0) if zone == "Z" else datetime.strptime(zone, "%z").utcoffset()
    assert offset is not None
    micros = int((frac[1:] + "000000")[:6]) if frac else 0
    assert event.ts == when.replace(tzinfo=UTC, microsecond=micros) - offset  # type: ignore[attr-defined]


def test_the_exported_schema_states_the_strict_contract(tmp_path: Any) -> None:
    """`schemas export` says what the decoders enforce: RFC 3339 text for times, and strict types."""
    for path in export_json_schemas(tmp_path):
        schema = json.loads(path.read_text())
        assert schema["properties"]["ts"]["pattern"] == RFC3339
        assert schema["properties"]["ts"]["format"] == "date-time"
        assert "200.0" in schema["$comment"]
