"""Row decoding (the writer's fast path): exactly the model's contract, without model instances.

`RowCodec(model)` must accept and reject what `Codec(model)` does, give the values a model
instance would hold, and serialise them to the bytes the model would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, field_validator, model_validator

from pipeline.adapters.clickhouse.sinks import SINKS, load_capability_sinks
from pipeline.runtime.codec import Codec, RowCodec, UnsupportedModel
from pipeline.runtime.topics import Topic
from schemas.anomaly import Anomaly, AnomalyStatus, Direction, MetricName, Severity, Verdict
from schemas.events import BillingEvent, ErrorEvent, RequestEvent, UsageEvent
from schemas.ratelimit import Decision, Rollup
from schemas.results import AuditRecord, DeadLetter
from schemas.trials import TrialState

TS = datetime(2026, 1, 1, tzinfo=UTC)
REQUEST = {"kind": "request", "event_id": "e1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme",
           "ip": "10.0.0.1", "method": "GET", "path": "/x", "status": 200, "latency_ms": 1.5}

# One valid record of each model exercised below, as it travels on a topic (JSON values).
SAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    RequestEvent: REQUEST,
    ErrorEvent: {"event_id": "e2", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "service": "api",
                 "error_type": "Timeout", "message": "slow", "path": "/x"},
    UsageEvent: {"event_id": "e3", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "storage_bytes": 10,
                 "active_users": 3},
    Decision: Decision.create(tenant_id="acme", ip="2001:db8::1", state="throttled", reason="limit:hour", ts=TS,
                              limit=100, remaining=0, reset_ts=TS, retry_after_s=3.5).model_dump(mode="json"),
    Rollup: Rollup.create(tenant_id="acme", minute=TS, part=2, requests=10, errors=1, client_errors=2, blocked=0,
                          distinct_ips=4, latency_sum_ms=50.0, latency_count=10, latency_max_ms=20.0,
                          latency_p50_ms=4.0, latency_p95_ms=18.0, latency_hist={3: 5, 40: 5}).model_dump(mode="json"),
    DeadLetter: DeadLetter(id="d1", ts=TS, stage="ingest", source_topic="tw.requests", partition=0, offset=7,
                           error="bad", payload_b64="eA==", payload_size=1, truncated=False).model_dump(mode="json"),
    Anomaly: Anomaly(id="a1", tenant="acme", metric=MetricName.ERROR_RATE, start_ts=TS, detected_ts=TS, last_ts=TS,
                     value=0.5, expected=0.1, sigma=0.1, deviation_sigma=4.0, deviation_pct=None, peak_sigma=4.0,
                     direction=Direction.UP, severity=Severity.HIGH, status=AnomalyStatus.ACTIVE, points=1,
                     hst_score=None, verdict=Verdict.RULE_ONLY, threshold_sigma=3.0).model_dump(mode="json"),
    TrialState: {"id": "t1", "trial_id": "tr", "tenant_id": "acme", "plan": "pro", "status": "trialing",
                 "previous": None, "version": 0, "started_at": "2026-01-01T00:00:00Z",
                 "ends_at": "2026-01-15T00:00:00Z", "ts": "2026-01-01T00:00:00Z"},
    AuditRecord: {"id": "x", "nonce": "n", "ts": "2026-01-01T00:00:00Z", "command_ts": None, "actor": "ops",
                  "action": "ban", "tenant_id": "acme", "params_json": "{}", "outcome": "accepted", "reason": ""},
}

MODELS = sorted(SAMPLES, key=lambda m: m.__name__)

# Values that are valid for some fields and invalid, odd or in need of canonicalisation for others.
ODD_VALUES = [
    None, True, False, 0, -1, 1, 99, 100, 599, 600, 1.5, 2.0, -0.0, 1e300, float("nan"), float("inf"),
    10**12, 10**12 + 1, 10**19, "", "x", "x" * 300, "y" * 5000, "12", "1.5", "GET", "get", "request", "error",
    "warning", "active", "up", "accepted",
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T02:00:00.1234567+02:00", "2026-06-01 12:00:00+00:00",
    "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", 1767225600, 1767225600.5, "1767225600",
    "10.0.0.1", "010.0.0.1", "256.0.0.1", "2001:DB8:0:0:0:0:0:1", "::ffff:1.2.3.4", "::FFFF:0A00:0001",
    "fe80::1%eth0", "1.2.3.4\n", "a b", "évil", "a\r\nb", "tab\tbed", '"quoted" \\ \u0000 ☃',
    [], {}, [1, 2], {"1": 2}, {"0": 1, "70000": 2}, "NaN", "inf",
]

field_names = st.sampled_from(sorted({f for m in SAMPLES for f in m.model_fields} | {"is_admin", "kind"}))
edits = st.lists(st.one_of(st.tuples(st.just("set"), field_names, st.sampled_from(ODD_VALUES)),
                           st.tuples(st.just("del"), field_names, st.none())), max_size=3)


def _edited(base: dict[str, Any], ops: list[tuple[str, str, Any]]) -> dict[str, Any]:
    item = dict(base)
    for op, name, value in ops:
        if op == "set":
            item[name] = value
        else:
            item.pop(name, None)
    return item


def _columns(model: type[BaseModel]) -> tuple[str, ...]:
    specs = [s for s in load_capability_sinks().values() if s.model is model]
    return specs[0].columns if specs else tuple(model.model_fields)


@cache
def _codecs(model: type[BaseModel]) -> tuple[Codec[Any], RowCodec, TypeAdapter[list[Any]], set[str]]:
    columns = _columns(model)
    return (Codec(model), RowCodec(model, columns=columns), TypeAdapter(list[model]),  # type: ignore[valid-type]
            set(columns))


def assert_same_as_codec(model: type[BaseModel], value: bytes) -> None:
    """RowCodec and Codec agree on `value`: same rejections, same values, same serialised rows."""
    codec, rows_codec, adapter, columns = _codecs(model)
    models, refused = codec.decode(value)
    rows, refused_rows = rows_codec.decode(value)
    assert [(r.index, r.payload) for r in refused_rows] == [(r.index, r.payload) for r in refused]
    assert rows == [m.model_dump() for m in models]
    assert all(type(r) is dict for r in rows)
    assert rows_codec.encode(rows) == adapter.dump_json(models, include={"__all__": columns})


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_every_single_field_edit_is_decided_alike(model: type[BaseModel]) -> None:
    """Each field set to each odd value, or dropped, and an unknown field added: as a batch (the
    per-item path) and one by one (JSON objects)."""
    base = SAMPLES[model]
    variants = [_edited(base, [("set", name, value)]) for name in [*model.model_fields, "is_admin"]
                for value in ODD_VALUES]
    variants += [_edited(base, [("del", name, None)]) for name in model.model_fields]
    assert_same_as_codec(model, json.dumps(variants).encode())
    for item in variants:
        assert_same_as_codec(model, json.dumps(item).encode())


@given(st.sampled_from(MODELS), st.lists(edits, min_size=1, max_size=6), st.booleans())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_rows_accept_and_reject_exactly_what_the_model_does(
    model: type[BaseModel], batch_edits: list[list[tuple[str, str, Any]]], as_array: bool
) -> None:
    """Valid, invalid and odd-but-valid events: same decisions, values and bytes as the model path."""
    items = [_edited(SAMPLES[model], ops) for ops in batch_edits]
    value = json.dumps(items if as_array else items[0]).encode()
    assert_same_as_codec(model, value)


ips = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
                st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
                st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"), st.text(max_size=12))
times = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1),
                     timezones=st.one_of(st.none(), st.timezones()))
requests = st.fixed_dictionaries(
    {"event_id": st.from_regex(r"^[A-Za-z0-9_.:@-]{1,40}$", fullmatch=True), "ts": times.map(datetime.isoformat),
     "tenant_id": st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$", fullmatch=True) | st.text(max_size=5),
     "ip": ips, "method": st.sampled_from(["GET", "POST", "DELETE", "OPTIONS", "get"]),
     "path": st.text(max_size=30), "status": st.integers(90, 610), "latency_ms": st.floats(-1, 4e6),
     "bytes": st.integers(-1, 10**12 + 1), "user_id": st.none() | st.text(max_size=130)},
    optional={"kind": st.sampled_from(["request", "error"]), "extra": st.integers()},
)


@given(st.lists(requests, min_size=1, max_size=20))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_request_batches_decode_like_the_model(events: list[dict[str, Any]]) -> None:
    """Generated request batches (IPv4/IPv6 in every spelling, any time zone, values near each bound)."""
    assert_same_as_codec(RequestEvent, json.dumps(events).encode())


@pytest.mark.parametrize(
    "value",
    [
        b"", b"   ", b"nope", b"[", b"[1, 2", b'{"kind": "request"', b"[]", b"{}", b"null", b"42",
        json.dumps([REQUEST] * 3).encode(),
        json.dumps([REQUEST, {"oops": 1}, dict(REQUEST, status=42), REQUEST]).encode(),
        # keys twice in one object: the last one wins for both, and both see the bad first one
        b'{"ip": "::1", ' + json.dumps(REQUEST)[1:].encode(),
        b'[{"status": "x", ' + json.dumps(REQUEST)[1:].encode() + b"]",
        b'\n [' + json.dumps(dict(REQUEST, ip="2001:DB8::0:1", ts="2026-01-01T02:00:00+02:00")).encode() + b"] \n",
        json.dumps([dict(REQUEST, event_id=f"e{i}") for i in range(101)]).encode(),  # over max_events
        b"[" + b" " * (9 << 20) + b"]",  # over max_record_bytes
    ],
)
def test_whole_record_cases_match(value: bytes) -> None:
    """Empty, malformed, oversized and over-long records: refused alike."""
    assert_same_as_codec(RequestEvent, value)
    a = Codec(RequestEvent, max_record_bytes=1 << 16, max_events=100).decode(value)
    b = RowCodec(RequestEvent, max_record_bytes=1 << 16, max_events=100).decode(value)
    assert [(r.index, r.error, r.payload) for r in b[1]] == [(r.index, r.error, r.payload) for r in a[1]]
    assert b[0] == [m.model_dump() for m in a[0]]


def test_canonical_values_and_defaults() -> None:
    """IPv6 is canonicalised, timestamps parsed aware, defaults filled, unknown fields refused."""
    codec = RowCodec(RequestEvent, columns=SINKS[Topic.REQUESTS].columns)
    raw = dict(REQUEST, ip="2001:DB8:0:0:0:0:0:1", ts="2026-01-01T02:00:00.5+02:00")
    rows, bad = codec.decode(json.dumps([raw, dict(raw, is_admin=True), dict(raw, ip="::ffff:10.1.2.3")]).encode())
    assert [r.index for r in bad] == [1]
    assert "is_admin" in bad[0].error
    assert rows[0]["ip"] == "2001:db8::1"
    assert rows[1]["ip"] == "10.1.2.3"
    assert rows[0]["ts"] == datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert (rows[0]["kind"], rows[0]["bytes"], rows[0]["user_id"]) == ("request", 0, None)
    written = json.loads(codec.encode(rows))
    assert list(written[0]) == list(SINKS[Topic.REQUESTS].columns)  # only the table's columns, in order
    assert written[0]["ts"] == "2026-01-01T02:00:00.500000+02:00"


def test_models_with_a_contract_outside_their_fields_keep_the_model_path() -> None:
    """Model validators (BillingEvent's required-by-type rule) and the like: no RowCodec."""

    class WithInfo(BaseModel):
        a: int
        b: int

        @field_validator("b")
        @classmethod
        def _after_a(cls, v: int, info: Any) -> int:
            return v + int(info.data.get("a", 0))

    class CheckedModel(BaseModel):
        a: int

        @model_validator(mode="after")
        def _check(self) -> CheckedModel:
            return self

    for model in (BillingEvent, WithInfo, CheckedModel):
        assert RowCodec.for_model(model) is None
        with pytest.raises(UnsupportedModel):
            RowCodec(model)
    # ... and these are the only topics the writer decodes into models
    refused = {s.model.__name__ for s in load_capability_sinks().values() if RowCodec.for_model(s.model) is None}
    assert refused == {"BillingEvent", "Notification"}


def test_billing_still_decodes_exactly_as_the_model() -> None:
    """A billing event missing what its type requires is refused (by the model validator)."""
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter

    writer = ClickHouseWriter(bootstrap="127.0.0.1:1", prefix="tw", sink=ClickHouseSink(client=None))
    codec = writer.codecs["tw.billing"]
    assert type(codec) is Codec
    good = {"event_id": "b1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "type": "charge_succeeded",
            "amount_minor": 100, "currency": "EUR"}
    value = json.dumps([good, dict(good, currency=None), dict(good, ip="1.2.3.4")]).encode()
    events, bad = codec.decode(value)
    assert [e.event_id for e in events] == ["b1"]
    assert [r.index for r in bad] == [1, 2]
