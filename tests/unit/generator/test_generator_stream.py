"""The generated stream: schema-valid, ordered in event time, unique ids, deterministic per seed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from itertools import islice, pairwise
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.devstack.generator import GeneratorConfig, ground_truth, iter_events, iter_records, preset
from schemas.events import EVENT_ADAPTER, RequestEvent


def _digest(config: GeneratorConfig, n: int = 3000) -> str:
    blob = json.dumps(list(islice(iter_records(config), n)), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def test_every_tiny_record_validates_and_round_trips(tiny_records: list[dict[str, Any]]) -> None:
    """Each dict validates against the schema models and serialises back to the same values."""
    for record in tiny_records:
        event = EVENT_ADAPTER.validate_python(record)
        dumped = event.model_dump(mode="json", exclude_none=True)
        assert datetime.fromisoformat(dumped.pop("ts")) == datetime.fromisoformat(record["ts"])
        assert dumped == {k: v for k, v in record.items() if k != "ts"}


def test_all_four_kinds_are_present(tiny_records: list[dict[str, Any]]) -> None:
    """Tiny carries requests, billing, errors and usage, requests dominating."""
    kinds = Counter(r["kind"] for r in tiny_records)
    assert set(kinds) == {"request", "billing", "error", "usage"}
    assert kinds["request"] > 10 * (kinds["billing"] + kinds["error"] + kinds["usage"]) / 2
    assert 3_000 < len(tiny_records) < 50_000


def test_event_time_never_goes_back(tiny_records: list[dict[str, Any]]) -> None:
    """Timestamps are non-decreasing across the one merged stream and inside the window."""
    config = preset("tiny")
    times = [datetime.fromisoformat(r["ts"]) for r in tiny_records]
    assert all(a <= b for a, b in pairwise(times))
    assert config.start <= times[0]
    assert times[-1] < config.end


def test_event_ids_are_unique(tiny_records: list[dict[str, Any]]) -> None:
    """Every event id occurs once, so sinks can deduplicate on it."""
    ids = [r["event_id"] for r in tiny_records]
    assert len(set(ids)) == len(ids)


def test_ips_are_canonical_and_include_ipv6(tiny_records: list[dict[str, Any]]) -> None:
    """Client IPs are already in canonical text, and some are IPv6."""
    ips = {r["ip"] for r in tiny_records if r["kind"] == "request"}
    assert any(":" in ip for ip in ips)
    assert any("." in ip for ip in ips)


def test_same_seed_same_stream() -> None:
    """Two runs with one seed yield the identical records (hash of the first records)."""
    assert _digest(preset("tiny")) == _digest(preset("tiny"))


def test_different_seed_different_stream() -> None:
    """Another seed yields another stream and another ground truth."""
    other = preset("tiny").model_copy(update={"seed": 8})
    assert _digest(preset("tiny")) != _digest(other)
    assert ground_truth(preset("tiny")) != ground_truth(other)


def test_ground_truth_is_deterministic_and_json_ready() -> None:
    """The ground truth depends only on the config and survives a JSON round trip."""
    truth = ground_truth(preset("tiny"))
    assert truth == ground_truth(preset("tiny"))
    assert json.loads(json.dumps(truth)) == truth
    kinds = {s["kind"] for s in truth["scenarios"]}
    assert kinds == {"abusive_ips", "revenue_drop", "error_spike", "usage_spike", "trial_cohort"}


def test_iter_events_yields_validated_models() -> None:
    """The model path yields schema instances in the same order as the dict path."""
    config = preset("tiny")
    events = list(islice(iter_events(config), 500))
    records = list(islice(iter_records(config), 500))
    assert [e.event_id for e in events] == [r["event_id"] for r in records]
    assert any(isinstance(e, RequestEvent) for e in events)


@pytest.mark.parametrize(
    "change",
    [
        {"start": "2026-01-05T00:00:00"},  # naive
        {"start": "2026-01-05T00:00:30Z"},  # not on a minute
        {"days": 1},  # tiny's scenarios run past one day
        {"n_tenants": 2},  # tiny's scenarios rank up to 3
    ],
)
def test_config_rejects_what_cannot_be_generated(change: dict[str, Any]) -> None:
    """Configs whose start or scenarios fall outside what the run can hold are refused."""
    with pytest.raises(ValidationError):
        GeneratorConfig.model_validate({**preset("tiny").model_dump(), **change})


def test_presets_scale_as_documented() -> None:
    """Demo spans about two weeks and bench is request-heavy, both larger than tiny."""
    demo, bench, tiny = preset("demo"), preset("bench"), preset("tiny")
    assert 14 <= demo.days <= 16
    assert bench.n_tenants * bench.peak_rpm > 10 * demo.n_tenants * demo.peak_rpm
    assert tiny.days == 2
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
