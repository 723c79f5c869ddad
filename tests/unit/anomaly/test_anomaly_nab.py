"""NAB scorer (sigmoid, null = 0, perfect = 100, a hand-checked case, a sweeper-style oracle) and CLI."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.anomaly import nab
from agents.anomaly.nab import PROFILES, Report, normalised, probation_length, scaled_sigmoid, score_series


def test_scaled_sigmoid_landmarks() -> None:
    """+0.98661 at a window's left edge, 0 at its right edge, −1 from 3 widths past it."""
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_is_15_percent_capped_at_750() -> None:
    """NAB's probationary period: ⌊0.15·n⌋ rows, at most 0.15·5000."""
    assert probation_length(4032) == 604
    assert probation_length(22695) == 750


def test_null_scores_zero_and_perfect_scores_hundred() -> None:
    """By construction: no detections normalise to 0, one detection at each window start to 100."""
    windows = [(200, 240), (500, 560), (800, 805)]
    null = score_series("s", 1000, windows, [])
    perfect = score_series("s", 1000, windows, [lo for lo, _ in windows])
    for p in PROFILES:
        assert normalised(null.raw[p], null.null[p], null.perfect[p]) == 0.0
        assert normalised(perfect.raw[p], perfect.null[p], perfect.perfect[p]) == pytest.approx(100.0)


def test_hand_checked_case() -> None:
    """100 rows, probation 15, one window 40..49: TP at 45, a repeat at 47, FPs at 20 and 70, one in probation."""
    s = score_series("s", 100, [(40, 49)], [10, 20, 45, 47, 70])
    tp = (2 / (1 + math.exp(-2.5)) - 1) / (2 / (1 + math.exp(-5)) - 1)  # position −0.5, normalised
    fp_after = 2 / (1 + math.exp(5 * 21 / 9)) - 1  # 21 rows after a 10-row window
    assert tp == pytest.approx(0.8598, abs=1e-4)
    assert s.raw["standard"] == pytest.approx(tp - 0.11 + 0.11 * fp_after)
    assert s.raw["reward_low_FP_rate"] == pytest.approx(tp - 0.22 + 0.22 * fp_after)
    assert (s.tp, s.fp, s.detections, s.windows) == (1, 2, 4, 1)
    missed = score_series("s", 100, [(40, 49)], [])
    assert missed.raw["reward_low_FN_rate"] == -2.0


def test_window_inside_probation_is_not_scored() -> None:
    """A window wholly inside the probationary period neither costs nor counts."""
    s = score_series("s", 1000, [(10, 50)], [])
    assert s.windows == 0
    assert s.raw["standard"] == 0.0


def _sweeper_oracle(rows: int, windows: list[tuple[int, int]], dets: set[int], p: nab.Profile) -> float:
    """NAB's sweeper as a per-row walk: every row gets a score as if detected, then the sums."""
    probation = min(math.floor(0.15 * rows), 0.15 * 5000)
    max_tp = scaled_sigmoid(-1.0)
    by_window: dict[int, float] = {}
    fp_total = 0.0
    cur = prev = None
    for i in range(rows):
        for k, (lo, _) in enumerate(windows):
            if i == lo:
                cur = k
        if cur is not None:
            lo, hi = windows[cur]
            score = scaled_sigmoid(-(hi - i + 1) / (hi - lo + 1)) * p.tp / max_tp
            if i >= probation:
                by_window.setdefault(cur, -p.fn)
                if i in dets:
                    by_window[cur] = max(by_window[cur], score)
            if i == hi:
                prev, cur = k_hi(windows, i), None
        else:
            if prev is None:
                pos = 3.0
            else:
                plo, phi = windows[prev]
                pos = abs(phi - i) / (phi - plo)
            if i >= probation and i in dets:
                fp_total += scaled_sigmoid(pos) * p.fp
    return sum(by_window.values()) + fp_total


def k_hi(windows: list[tuple[int, int]], i: int) -> int:
    return next(k for k, (_, hi) in enumerate(windows) if hi == i)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]], list[int]]:
    rows = draw(st.integers(40, 400))
    cuts = sorted(draw(st.sets(st.integers(0, rows - 1), min_size=0, max_size=6)))
    windows = [(cuts[j], cuts[j + 1]) for j in range(0, len(cuts) - 1, 2) if cuts[j + 1] > cuts[j]]
    dets = draw(st.lists(st.integers(0, rows - 1), max_size=25))
    return rows, windows, dets


@settings(max_examples=300, deadline=None)
@given(case=_cases())
def test_scorer_matches_a_sweeper_style_walk(case: tuple[int, list[tuple[int, int]], list[int]]) -> None:
    """The interval-based scorer equals a row-by-row walk in the manner of NAB's sweeper."""
    rows, windows, dets = case
    s = score_series("s", rows, windows, dets)
    for name, p in PROFILES.items():
        oracle = _sweeper_oracle(rows, windows, set(dets), p)
        assert s.raw[name] == pytest.approx(oracle, abs=1e-9)


def _write_nab_dir(root: Path, cats: tuple[str, ...] = ("cat",)) -> None:
    start = datetime(2014, 1, 1, tzinfo=UTC)
    stamps = [start + timedelta(minutes=5 * i) for i in range(2000)]
    fmt = "%Y-%m-%d %H:%M:%S"
    labels = {}
    for k, cat in enumerate(cats):
        values = [10.0 + ((i + k) % 7) * 0.1 for i in range(2000)]
        for i in range(1500, 1520):
            values[i] = 80.0  # an unmistakable burst
        (root / "data" / cat).mkdir(parents=True)
        lines = ["timestamp,value", *(f"{t.strftime(fmt)},{v}" for t, v in zip(stamps, values, strict=True))]
        (root / "data" / cat / "s.csv").write_text("\n".join(lines) + "\n")
        labels[f"{cat}/s.csv"] = [[stamps[1450].strftime(fmt) + ".000000", stamps[1550].strftime(fmt) + ".000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))


def test_evaluate_runs_the_detector_and_writes_detections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a small NAB-layout dir without profiles.json the burst is found inside its window."""
    _write_nab_dir(tmp_path)
    out = tmp_path / "det.json"
    report = nab.evaluate(tmp_path, out)
    assert isinstance(report, Report)
    found = json.loads(out.read_text())
    assert "2014-01-06 05:00:00" in found["cat/s.csv"]  # row 1500
    assert report.series[0].tp == 1
    assert (report.total("standard") or 0) > 50
    assert nab.main([str(tmp_path), "--no-cv"]) == 0
    assert "TOTAL" in capsys.readouterr().out


def test_cross_validation_chooses_each_fold_on_the_other_categories(tmp_path: Path) -> None:
    """LOCO: every category is scored with the setting best on the others; the printout names both figures."""
    _write_nab_dir(tmp_path, ("a", "b"))
    grid = [(3.5, 12.0, 0.0), (3.5, 24.0, 0.0)]  # equal on these series: a tie goes to the first
    cv = nab.cross_validate(tmp_path, grid=grid)
    assert cv.chosen == {"a": grid[0], "b": grid[0]}
    assert set(cv.in_sample) == set(grid)
    loco = cv.held_out.total("standard")
    assert loco is not None
    assert loco > 50
    assert loco == cv.in_sample[grid[0]]  # both folds chose the same setting
    text = cv.format()
    assert "LOCO score (cross-validated)" in text
    assert "in-sample best" in text
