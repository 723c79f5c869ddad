"""The anomaly state codecs: exact round trips, river's quantile as oracle, and refusal of anything else."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faust.serializers import codecs
from hypothesis import given, settings
from hypothesis import strategies as st
from river import stats

from agents.anomaly.alerts import SeriesRing
from agents.anomaly.baseline import RollingQuantiles, SeasonalBaseline
from agents.anomaly.detector import StreamDetector
from agents.anomaly.kinds import Kind
from agents.anomaly.metrics import TenantMetrics
from agents.anomaly.rules import default_rule
from agents.anomaly.state_codec import DETECTOR_CODEC, METRICS_CODEC, RING_CODEC, register_codecs
from pipeline.runtime import table_codecs
from schemas.anomaly import BaselineBand, Direction, MetricName, Rule, to_datetime
from schemas.events import UsageEvent

T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC
SIX_H = 6 * 3600.0
RULE = Rule(metric=MetricName.REQUEST_VOLUME, direction=Direction.UP, threshold_sigma=4.0, warmup=50, confirm_n=2,
            confirm_m=3, resolve_after=5, cooldown=10)

register_codecs()


def through(codec: str, obj: Any) -> Any:
    return codecs.loads(codec, codecs.dumps(codec, obj))


def _points(n: int, start: int = 0, seed: int = 5) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    return [(T0 + (start + i) * 600.0, 100.0 + 20 * np.sin(i / 20) + float(rng.normal(0, 3))) for i in range(n)]


def _detector_mid_episode() -> StreamDetector:
    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    for t, x in _points(3000):
        det.observe(t, x, RULE)
    for i in range(3):
        det.observe(T0 + (3000 + i) * 600.0, 400.0, RULE)
    assert det.episode is not None
    return det


def test_a_detector_mid_episode_round_trips_and_continues_identically() -> None:
    """Decoded from its own bytes, a detector scores the rest of the stream exactly as the original."""
    a = _detector_mid_episode()
    data = codecs.dumps(DETECTOR_CODEC, a)
    b = codecs.loads(DETECTOR_CODEC, data)
    assert codecs.dumps(DETECTOR_CODEC, b) == data
    tail = _points(300, start=3003, seed=9)
    assert [a.observe(t, x, RULE) for t, x in tail] == [b.observe(t, x, RULE) for t, x in tail]
    assert len(data) < 64_000, "a detector's table record stays small"


def test_a_revenue_detector_with_its_charge_counts_round_trips_and_continues_identically() -> None:
    """The count baseline and the run of (charges, expected) windows travel with the detector."""
    a = _money_detector()
    data = codecs.dumps(DETECTOR_CODEC, a)
    b = codecs.loads(DETECTOR_CODEC, data)
    assert codecs.dumps(DETECTOR_CODEC, b) == data
    rule = default_rule(MetricName.REVENUE)
    tail = [(T0 + (80 + i) * SIX_H, 0.0 if i < 4 else 15000.0, 0.0 if i < 4 else 3.0) for i in range(12)]
    steps_a = [a.observe(t, x, rule, denominator=k) for t, x, k in tail]
    assert steps_a == [b.observe(t, x, rule, denominator=k) for t, x, k in tail]
    assert any(s.opened for s in steps_a), "four empty windows where three charges are usual confirm a drop"


def test_tenant_metrics_and_a_ring_round_trip() -> None:
    """Open windows (with latency samples) and a chart ring come back equal."""
    tm = TenantMetrics("acme")
    tm.late = 3
    tm.recent_users.extend([10.0, 12.0])
    acc = tm._acc(MetricName.LATENCY_P95, T0)
    assert acc is not None
    acc.samples += [(120.0, 5.0), (80.0, 2.0)]
    tm._acc(MetricName.REQUEST_VOLUME, T0).total = 42.0  # type: ignore[union-attr]
    back = through(METRICS_CODEC, tm)
    assert back.snapshot() == tm.snapshot()
    assert back.close(T0 + 7200) == tm.close(T0 + 7200)

    ring = SeriesRing()
    for i in range(500):
        ring.add(T0 + i * 60, float(i), BaselineBand(id=f"b{i}", tenant="acme", metric=MetricName.REVENUE,
                                                     ts=to_datetime(T0 + i * 60), expected=1.0, lower=0.0,
                                                     upper=2.0, seasonal=False))
    assert through(RING_CODEC, ring).points() == ring.points()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.lists(st.floats(0, 1e6) | st.sampled_from([0.0, 1.0, 2.0]), max_size=300),
       st.sampled_from([0.0, 0.25, 0.5, 0.9, 0.99, 1.0]))
def test_rolling_quantiles_equal_rivers_rolling_quantile(window: int, xs: list[float], q: float) -> None:
    """Oracle: river's (Rust) RollingQuantile gives the very same value after every update."""
    ours, theirs = RollingQuantiles(window), stats.RollingQuantile(q, window)
    for x in xs:
        ours.update(x)
        theirs.update(x)
        assert ours.get(q) == theirs.get()
    restored = RollingQuantiles.restore(json.loads(json.dumps(ours.snapshot())))
    assert restored.get(q) == ours.get(q)


def test_a_pickle_is_refused_never_run(tmp_path: Path) -> None:
    """Would fail if any of our codecs handed a changelog record to pickle: the marker would exist."""
    marker = tmp_path / "owned"

    class OpenMarker:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    evil = pickle.dumps(OpenMarker())
    for name in (DETECTOR_CODEC, METRICS_CODEC, RING_CODEC, table_codecs.JSON_CODEC, table_codecs.KEY_CODEC):
        before = table_codecs.refused[name]
        assert codecs.loads(name, evil) is None
        assert table_codecs.refused[name] == before + 1, f"{name} counted the refusal"
    assert not marker.exists()


def test_oversized_wrong_version_and_malformed_records_are_refused() -> None:
    """A record over the codec's bound, of another version, or with a field out of range reads as absent."""
    good = json.loads(codecs.dumps(DETECTOR_CODEC, _detector_mid_episode()))
    assert codecs.loads(DETECTOR_CODEC, b" " * (2 << 20)) is None
    assert codecs.loads(DETECTOR_CODEC, json.dumps({**good, "v": 2}).encode()) is None
    for path, value in ((("s", "n"), -1), (("s", "baseline", "bucket_s"), 7.0), (("s", "recent"), "zz"),
                        (("s", "baseline", "level", "window"), "!!"), (("s", "episode"), {"id": 1}),
                        (("s", "baseline", "scales", "none", "abs", "size"), 10**9), (("s", "metric"), "x")):
        doc = json.loads(json.dumps(good))
        node = doc
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        assert codecs.loads(DETECTOR_CODEC, json.dumps(doc).encode()) is None, path


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                  max_size=3), max_leaves=8)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def _small_detector() -> StreamDetector:
    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    for t, x in _points(200):
        det.observe(t, x, RULE)
    return det


def _money_detector(windows: int = 80) -> StreamDetector:
    """A revenue stream whose points carry their charge counts (so it keeps a count baseline)."""
    rule = default_rule(MetricName.REVENUE)
    det = StreamDetector("acme", MetricName.REVENUE, rule)
    rng = np.random.default_rng(4)
    for i in range(windows):
        k = int(rng.poisson(3.0))
        det.observe(T0 + i * SIX_H, 5000.0 * k, rule, denominator=float(k))
    return det


def _small_metrics() -> TenantMetrics:
    tm = TenantMetrics("acme")
    acc = tm._acc(MetricName.LATENCY_P95, T0)
    assert acc is not None
    acc.samples.append((120.0, 5.0))
    tm.recent_users.append(3.0)
    return tm


def _use(obj: Any) -> None:
    if isinstance(obj, StreamDetector) and obj.metric is MetricName.REVENUE:
        for i in range(3):
            obj.observe(T0 + (200 + i) * SIX_H, 0.0, default_rule(MetricName.REVENUE), denominator=0.0)
    elif isinstance(obj, StreamDetector):
        obj.observe(T0 + 300 * 600.0, 100.0, RULE)
    else:
        obj.add_usage(UsageEvent(event_id="u1", ts=to_datetime(T0 + 60), tenant_id="acme", active_users=3,
                                 storage_bytes=10))
        obj.close(T0 + 10 * 86_400)


@pytest.mark.parametrize(("codec", "make"), [(DETECTOR_CODEC, _small_detector), (DETECTOR_CODEC, _money_detector),
                                             (METRICS_CODEC, _small_metrics)])
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_any_mutated_record_is_refused_or_works(codec: str, make: Any, data: st.DataObject) -> None:
    """A record with any one field replaced decodes to None, or to state that works: no crash is stored."""
    doc = json.loads(codecs.dumps(codec, make()))
    path = data.draw(st.sampled_from(_leaves(doc)))
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = data.draw(_JSON)
    obj = codecs.loads(codec, json.dumps(doc).encode())
    if obj is not None:
        _use(obj)


def test_a_fresh_baseline_round_trips() -> None:
    """A baseline with no history (no bucket yet) restores too."""
    b = SeasonalBaseline()
    assert SeasonalBaseline.restore(json.loads(json.dumps(b.snapshot()))).snapshot() == b.snapshot()


def test_restore_refuses_a_non_object() -> None:
    """Restoring from a list or a string raises a ValueError (the codec's signal to refuse)."""
    for bad in ([], "x", 3, None):
        with pytest.raises(ValueError, match="expected an object"):
            StreamDetector.restore(bad)


def test_a_detector_saved_before_kinds_keeps_raw_baselines_and_restarts_transformed_ones() -> None:
    """A record without `kind`: a count's baseline (raw space) is kept, revenue's (now √ space) restarts."""
    volume = json.loads(json.dumps(_detector_mid_episode().snapshot()))
    del volume["kind"]
    kept = StreamDetector.restore(volume)
    assert kept.kind.value == "count"
    assert kept.n == volume["n"]
    assert kept.episode is not None  # the open episode survives either way
    revenue = StreamDetector("acme", MetricName.REVENUE, RULE)
    for t, x in _points(200):
        revenue.observe(t, x, RULE)
    old = json.loads(json.dumps(revenue.snapshot()))
    del old["kind"]
    fresh = StreamDetector.restore(old)
    assert fresh.kind.value == "money"
    assert fresh.n == 0
    assert fresh.baseline.n == 0
    assert fresh.last_ts == revenue.last_ts  # redeliveries are still skipped


def test_a_detector_saved_before_weekly_shrinkage_takes_it_by_its_kind() -> None:
    """A baseline record without `shrink_weekly`: a product metric's detector shrinks its weekly
    profile from then on, a NAB (level) series does not; saved again, the flag is in the record."""
    volume = json.loads(json.dumps(_detector_mid_episode().snapshot()))
    assert volume["baseline"]["shrink_weekly"] is True
    del volume["baseline"]["shrink_weekly"]
    restored = StreamDetector.restore(volume)
    assert restored.baseline.shrink_weekly is True
    assert restored.snapshot()["baseline"]["shrink_weekly"] is True
    level = StreamDetector("nab", MetricName.REQUEST_VOLUME, RULE, kind=Kind.LEVEL)
    for t, x in _points(200):
        level.observe(t, x, RULE)
    saved = json.loads(json.dumps(level.snapshot()))
    assert saved["baseline"]["shrink_weekly"] is False
    del saved["baseline"]["shrink_weekly"]
    assert StreamDetector.restore(saved).baseline.shrink_weekly is False
    bad = json.loads(json.dumps(level.snapshot()))
    bad["baseline"]["shrink_weekly"] = "yes"
    with pytest.raises(ValueError, match="shrink_weekly"):
        StreamDetector.restore(bad)
