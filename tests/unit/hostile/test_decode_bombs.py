"""Records built to be expensive to refuse (many unknown keys, huge lists and objects, millions of
items) are refused with a reason before pydantic reports each bad value; valid large batches
decode as before."""

from __future__ import annotations

import json

import pytest

from pipeline.runtime.codec import Codec, RowCodec
from schemas.commands import AdminCommand
from schemas.events import RequestEvent
from schemas.notify import Notification
from schemas.ratelimit import TenantPolicy
from tests.unit.foundation.test_row_codec import REQUEST


def _object(n: int) -> bytes:
    return b"{" + b",".join(b'"k%d":1' % i for i in range(n)) + b"}"


@pytest.mark.parametrize("codec", [Codec(RequestEvent), RowCodec(RequestEvent)], ids=["model", "rows"])
def test_an_object_of_700k_unknown_keys_is_refused_by_its_key_count(codec: Codec[object]) -> None:
    """Would fail if the 8 MB object were validated (700,000 errors, 6-18 s) instead of counted."""
    good, bad = codec.decode(_object(700_000))
    assert good == []
    assert bad[0].error == "an object of 700000 keys; the model has 11 fields"


def test_a_key_bomb_inside_a_batch_is_refused_alone() -> None:
    """The bomb item is refused with its index; the valid events around it pass."""
    valid = json.dumps(REQUEST).encode()
    good, bad = RowCodec(RequestEvent).decode(b"[" + valid + b"," + _object(100_000) + b"," + valid + b"]")
    assert len(good) == 2
    assert [(r.index, r.error) for r in bad] == [(1, "an object of 100000 keys; the model has 11 fields")]


@pytest.mark.parametrize(("codec", "value", "reason"), [
    (Codec(Notification), b'{"variables": ' + _object(600_000) + b"}", "an object of 600000 keys (at most 4096)"),
    (Codec(AdminCommand), b'{"params": ' + _object(600_000) + b"}", "an object of 600000 keys (at most 4096)"),
    (Codec(TenantPolicy), b'{"tenant_id": "a", "whitelist": [' + b",".join([b'"x"'] * 800_000) + b"]}",
     "an array of 800000 items (at most 10000)"),
], ids=["variables", "params", "whitelist"])
def test_huge_nested_objects_and_lists_are_refused_by_their_size(codec: Codec[object], value: bytes,
                                                                reason: str) -> None:
    """Would fail if 800,000 bad IPs (20 s through their validator) or 600,000 keys were validated."""
    good, bad = codec.decode(value)
    assert good == []
    assert bad[0].error == reason


def test_millions_of_tiny_items_are_refused_by_the_event_bound() -> None:
    """2.7 M empty objects (32 s of errors before) are refused as an over-long batch."""
    good, bad = RowCodec(RequestEvent).decode(b"[" + b"{}," * 2_700_000 + b"{}]")
    assert good == []
    assert bad[0].error == "batch of 2700001 events exceeds 10000"


def test_a_valid_batch_with_many_values_decodes_exactly_as_in_small_records() -> None:
    """Would fail if measuring a large record (over 50,000 values) changed what it decodes to."""
    events = [dict(REQUEST, event_id=f"e{i}", ip=f"10.0.{i // 250}.{i % 250}") for i in range(6000)]
    value = json.dumps(events).encode()
    assert value.count(b",") > 50_000
    codec = RowCodec(RequestEvent)
    whole, refused = codec.decode(value)
    assert refused == []
    parts = [row for i in range(0, 6000, 1000) for row in codec.decode(json.dumps(events[i:i + 1000]).encode())[0]]
    assert whole == parts
    assert len(whole) == 6000
