"""Fuzz of every decode path (worker inputs, admin commands, the writer's topics, the SDK, the
broadcast reader, the CLI's line reader): whatever the bytes, 0 crashes, and what is refused
becomes a dead letter that the writer's own decoder reads back."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.runtime.broadcast import BroadcastReader
from pipeline.runtime.codec import Codec, Rejected, encode_batch
from pipeline.runtime.dlq import dead_letter
from pipeline.runtime.topics import Topic
from pipeline.sdk import MAX_EVENT_BYTES, InvalidEventError, Publisher, validate_event_json
from pipeline.settings import Settings
from schemas.anomaly import MetricName, MetricPoint
from schemas.commands import Action
from schemas.notify import Notification
from schemas.ratelimit import RollupParts, TenantPolicy
from schemas.results import DeadLetter
from tests.unit.foundation.test_row_codec import SAMPLES
from tests.unit.foundation.test_writer_rows import JsonSink, writer_for
from tests.unit.hostile.hostile_inputs import crashes, hostile

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
SETTINGS = Settings(topic_prefix="tw")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seeds() -> list[bytes]:
    from pipeline.admin import build_command

    records: list[Any] = [dict(sample) for sample in SAMPLES.values()]
    records += [
        {"kind": "billing", "event_id": "b1", "ts": "2026-01-01T00:00:00Z", "tenant_id": "acme", "type": "refund",
         "amount_minor": 100, "currency": "EUR"},
        json.loads(MetricPoint(tenant="acme", metric=MetricName.REVENUE, ts=NOW, value=12.5).model_dump_json()),
        json.loads(TenantPolicy(tenant_id="acme", whitelist=("10.0.0.0/8",)).model_dump_json()),
        json.loads(Notification(id="n1", kind="welcome", recipient="owner@acme.example", tenant_id="acme",
                                variables={"name": "Acme", "days": 7, "ratio": 0.5, "ok": True, "none": None},
                                ts=NOW).model_dump_json()),
        build_command(SETTINGS, action=Action.IP_BAN, tenant="acme", params={"ip": "10.0.0.1"},
                      actor="ops").model_dump(mode="json"),
        json.loads(RollupParts(source=1, watermark=1_777_896_000.0).model_dump_json()),
    ]
    singles = [json.dumps(r).encode() for r in records]
    return [*singles, json.dumps(records[:3]).encode(), b" \n" + singles[0] + b"\n"]


SEEDS = _seeds()
DLQ = Codec(DeadLetter)


def _worker_decoders() -> dict[str, Codec[Any]]:
    """The codecs a worker decodes with, built by the app itself (every capability's inputs, commands)."""
    from pipeline.runtime.app import create_app

    _app, runtime = create_app(SETTINGS)
    decoders: dict[str, Codec[Any]] = {str(topic): codec for topic, codec in runtime._codecs.items()}
    decoders[str(Topic.COMMANDS)] = runtime.commands.codec
    return decoders


WORKER = _worker_decoders()


def check_decoded(codec: Codec[Any], value: bytes) -> None:
    """What the runtime does with a decoded record: dead-letters each refusal (read back by the
    writer's decoder), keeps the evidence of each good event."""
    good, bad = codec.decode(value)
    assert isinstance(good, list)
    assert isinstance(bad, list)
    for r in bad:
        assert isinstance(r, Rejected)
        assert isinstance(r.payload, bytes)
        assert r.error
        letter = dead_letter(r, stage="ingest", topic="tw.requests", partition=0, offset=1, max_bytes=4096, now=NOW)
        back, refused = DLQ.decode(encode_batch([letter]))
        assert refused == []
        assert back == [letter]
    for event in good:
        assert codec.encode_event(event)


def test_the_worker_decodes_every_input_the_capabilities_registered() -> None:
    """Would fail if an input topic were added without passing through this fuzz."""
    assert set(WORKER) >= {"requests", "billing", "errors", "usage", "rollups", "metrics", "notifications",
                           "commands"}


@pytest.mark.parametrize("topic", sorted(WORKER))
@given(values=st.lists(hostile(SEEDS), min_size=1, max_size=4))
@FUZZ
def test_worker_decoders_never_crash(topic: str, values: list[bytes]) -> None:
    """Random bytes, bit flips, surrogates, nesting bombs, huge strings: 0 crashes in any worker decoder."""
    codec = WORKER[topic]
    assert crashes(lambda v: check_decoded(codec, v), values) == []


WRITER = writer_for(JsonSink())


@given(topic=st.sampled_from(sorted(WRITER.specs)), values=st.lists(hostile(SEEDS), min_size=1, max_size=4))
@FUZZ
def test_the_writer_never_crashes_on_any_topic(topic: str, values: list[bytes]) -> None:
    """`ClickHouseWriter.add` over every topic it stores: 0 crashes, and what it kept inserts."""
    assert crashes(lambda v: WRITER.add(topic, v), values) == []
    assert WRITER.flush()


@given(values=st.lists(hostile(SEEDS), min_size=1, max_size=4))
@FUZZ
def test_the_sdk_refuses_hostile_json_with_invalid_event_error_only(values: list[bytes]) -> None:
    """`validate_event_json` (the CLI's path) raises InvalidEventError and nothing else: 0 crashes."""
    assert crashes(validate_event_json, values, allowed=(InvalidEventError,)) == []


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


python_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8)
    | st.sampled_from(["\ud800", "/\udfff", "a\ud800b", "x" * 70_000, NOW, float("nan")])
    | st.builds(pow, st.just(10), st.sampled_from([400, 5000]))
    | st.builds(_nested, st.sampled_from([300, 5_000])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(field=st.sampled_from([*SAMPLES[next(iter(SAMPLES))], "extra", "\ud800"]), value=python_values)
@FUZZ
def test_the_sdk_refuses_hostile_python_values_with_invalid_event_error_only(field: str, value: Any) -> None:
    """`Publisher.validate` on a request with any Python value in any field: InvalidEventError or a model."""
    event = dict(SAMPLES[next(iter(SAMPLES))], kind="request") | {field: value}
    assert crashes(lambda _: Publisher.validate(event), [b""], allowed=(InvalidEventError,)) == []


POLICIES = BroadcastReader("127.0.0.1:1", "tw.ratelimit-policies", lambda k, v: None, codec=Codec(TenantPolicy))
ANY_JSON = BroadcastReader("127.0.0.1:1", "tw.other", lambda k, v: None)


@given(key=st.binary(max_size=16), values=st.lists(hostile(SEEDS), min_size=1, max_size=4))
@FUZZ
def test_the_broadcast_reader_skips_hostile_records(key: bytes, values: list[bytes]) -> None:
    """Broadcast records (policies, and any-JSON readers): refused with a reason, never raised."""
    for reader in (POLICIES, ANY_JSON):
        assert crashes(reader.decode, values) == []
        assert crashes(lambda v, r=reader: r._apply(key, v), values) == []
        for value in values:
            decoded, why = reader.decode(value)
            if why is not None:  # refused: nothing to apply
                assert decoded is None


@given(st.binary(max_size=4000), st.integers(1, 64))
def test_the_cli_reads_lines_bounded(content: bytes, max_bytes: int) -> None:
    """No line handed to the validator is longer than the bound + 1; short lines come back intact."""
    from pipeline.cli import _bounded_lines

    lines = list(_bounded_lines(io.BytesIO(content), max_bytes))
    assert all(len(line) <= max_bytes + 1 for line in lines)
    if all(len(line) + 1 <= max_bytes for line in content.split(b"\n")):  # each line with its newline
        assert b"".join(lines) == content


def test_an_oversized_line_is_an_invalid_event() -> None:
    """A line over MAX_EVENT_BYTES is cut and refused as oversized, and the next line is read."""
    from pipeline.cli import _bounded_lines

    good = json.dumps(SAMPLES[next(iter(SAMPLES))]).encode()
    lines = list(_bounded_lines(io.BytesIO(b"[" * (MAX_EVENT_BYTES + 10) + b"\n" + good + b"\n"), MAX_EVENT_BYTES))
    assert len(lines) == 2
    with pytest.raises(InvalidEventError, match="exceeds"):
        validate_event_json(lines[0])
    assert validate_event_json(lines[1]).event_id == "e1"  # type: ignore[attr-defined]


def test_fuzz_seeds_are_valid_for_their_own_decoder() -> None:
    """Would fail if a decoder accepted no seed: its fuzz would then never reach deep validation."""
    for topic, codec in WORKER.items():
        assert any(codec.decode(seed)[0] for seed in SEEDS), topic
    assert any(POLICIES.decode(seed)[1] is None for seed in SEEDS)
