"""Event contracts: valid events round-trip, invalid ones are refused with a reason."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import EVENT_ADAPTER, BillingEvent, RequestEvent
from schemas._base import canonical_ip
from schemas.export import export_json_schemas

tenant_ids = st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$", fullmatch=True)
event_ids = st.from_regex(r"^[A-Za-z0-9_.:@-]{1,40}$", fullmatch=True)
times = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC))
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)

requests = st.builds(
    dict,
    kind=st.just("request"),
    event_id=event_ids,
    ts=times.map(lambda t: t.isoformat()),
    tenant_id=tenant_ids,
    ip=ips,
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    path=st.text(min_size=1, max_size=50),
    status=st.integers(100, 599),
    latency_ms=st.floats(0, 3_600_000, allow_nan=False),
    bytes=st.integers(0, 10**9),
)


@given(requests)
def test_valid_request_round_trips_through_json(raw):
    """A valid request survives model → JSON → model unchanged."""
    event = EVENT_ADAPTER.validate_python(raw)
    again = EVENT_ADAPTER.validate_json(event.model_dump_json())
    assert again == event
    assert event.ts.timestamp() == datetime.fromisoformat(raw["ts"]).timestamp()


@given(requests, st.sampled_from(["status", "ip", "ts", "tenant_id", "method", "latency_ms"]), st.data())
@settings(max_examples=150)
def test_corrupted_field_is_refused_with_its_name(raw, field, data):
    """Breaking any one field is refused, and the error names that field."""
    bad_values = {
        "status": st.sampled_from([99, 600, "ok", None]),
        "ip": st.sampled_from(["256.0.0.1", "1.2.3", "01.2.3.4", "::g", "", "1.2.3.4\n"]),
        "ts": st.sampled_from(["2026-01-01T00:00:00", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "soon"]),
        "tenant_id": st.sampled_from(["", "-leading", "a b", "x" * 65, "évil"]),
        "method": st.sampled_from(["get", "TRACE", ""]),
        "latency_ms": st.sampled_from([-1, 3_600_001, "fast"]),
    }
    raw = dict(raw, **{field: data.draw(bad_values[field])})
    with pytest.raises(ValidationError) as info:
        RequestEvent.model_validate(raw)
    assert any(err["loc"][0] == field for err in info.value.errors())


def test_unknown_fields_are_not_silently_accepted():
    """An extra field is an error, not silently dropped."""
    raw = {"event_id": "e", "ts": "2026-01-01T00:00:00Z", "tenant_id": "t", "ip": "1.1.1.1", "method": "GET",
           "path": "/", "status": 200, "latency_ms": 1, "is_admin": True}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RequestEvent.model_validate(raw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "trial_started", "plan": "pro", "trial_days": 14}, "trial_started requires contact_email"),
        ({"type": "charge_succeeded", "amount_minor": 100}, "requires amount_minor and currency"),
        ({"type": "trial_started", "plan": "pro", "trial_days": 14, "contact_email": "a@b.co\r\nBcc: x@y.z"},
         "contact_email"),
        ({"type": "refund", "amount_minor": 5, "currency": "eur"}, "currency"),
    ],
)
def test_billing_rules_by_type(fields, message):
    """Billing events require the fields their type needs; e-mails cannot smuggle headers."""
    with pytest.raises(ValidationError, match=message):
        BillingEvent.model_validate({"event_id": "b", "ts": "2026-01-01T00:00:00Z", "tenant_id": "t", **fields})


@given(ips)
def test_canonical_ip_agrees_with_ipaddress(text):
    """Canonical IP text equals what `ipaddress` prints (IPv4-mapped IPv6 as its IPv4 address)."""
    addr = ipaddress.ip_address(text)
    mapped = getattr(addr, "ipv4_mapped", None)
    assert canonical_ip(text) == str(mapped or addr)
    assert canonical_ip(text.upper()) == canonical_ip(text)


def test_timestamps_keep_their_instant_whatever_the_offset():
    """A time with a UTC offset is accepted and means the same instant."""
    a = RequestEvent.model_validate({"event_id": "e", "ts": "2026-01-01T02:00:00+02:00", "tenant_id": "t",
                                     "ip": "1.1.1.1", "method": "GET", "path": "/", "status": 200, "latency_ms": 1})
    assert a.ts == datetime(2026, 1, 1, tzinfo=UTC)
    assert a.ts - datetime(2026, 1, 1, tzinfo=UTC) == timedelta(0)


def test_json_schema_export_writes_every_contract(tmp_path):
    """`schemas export` writes a parseable JSON Schema per contract, strict about extras."""
    paths = export_json_schemas(tmp_path)
    names = {p.name for p in paths}
    assert {"RequestEvent.schema.json", "BillingEvent.schema.json", "AdminCommand.schema.json"} <= names
    schema = json.loads((tmp_path / "RequestEvent.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["ip"]["format"] == "ipvanyaddress"
