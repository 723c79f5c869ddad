"""NAB evaluation: run the agent's detector core over a NAB-layout directory and score it.

`tenantwatch eval nab DIR [--detections-out FILE]` calls `main`. Layout read:
`DIR/data/<category>/<series>.csv` (`timestamp,value`), `DIR/labels/combined_windows.json`,
and `DIR/config/profiles.json` when present (else the three standard profiles below).

Each series is one tenant metric fed through `StreamDetector` (the same core the agent runs)
with `NAB_RULE` (direction both, the plain level model: a NAB value can be any number); a
*detection* is a point where the detector opens a new anomaly. Nothing is fitted to the
labels of a scored series: the rule is fixed in code.

Unless `--no-cv`, the command then cross-validates the rule's settings: every setting of
`GRID` scores the corpus once; for each category, the setting best on the *other*
categories is applied to it, and the held-out scores add up to the leave-one-category-out
(LOCO) figure, the one to quote (an in-sample figure alone flatters whatever was tuned).

Scoring follows NAB's sweeper (Lavin & Ahmad 2015; numenta/NAB `nab/sweeper.py`):
- the first min(⌊0.15·n⌋, 0.15·5000) rows are probationary: neither detections nor window
  rows there are scored (a window entirely inside it is ignored);
- a window scores the best (= earliest) of its detections, `tp·σ(−(right − i + 1)/width)/σ(−1)`
  with σ(x) = 2/(1 + e^{5x}) − 1, or `−fn` when it has none;
- every detection outside windows costs `fp·σ(distance after the preceding window /
  (its width − 1))`, i.e. `−fp` when far from or before any window;
- normalised score = 100·(raw − null)/(perfect − null), totals summed over the corpus;
  null detects nothing (−fn per window), perfect detects each window at its first scored row.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agents.anomaly.detector import StreamDetector
from agents.anomaly.kinds import Kind
from agents.anomaly.multivariate import TenantHST
from schemas.anomaly import Direction, MetricName, Rule, Season

__all__ = [
    "NAB_RULE",
    "PROFILES",
    "Profile",
    "Report",
    "SeriesScore",
    "detect_series",
    "evaluate",
    "main",
    "scaled_sigmoid",
    "score_series",
]


@dataclass(frozen=True, slots=True)
class Profile:
    tp: float
    fp: float
    fn: float


# NAB's config/profiles.json at ea702d7 (also the paper's Table 1).
PROFILES: dict[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}

# The rule NAB series run under: one rule for every series, no per-series or per-category
# choice. Both directions; 3.5σ on the robust σ; one confirmation (NAB rewards the earliest
# point); an episode ends after 12 in-band points and is followed by a quiet 12 hours (and
# ≥ 12 points), since only the first detection in a window counts while every extra one
# costs. Threshold and quiet period are what `cross_validate` chooses by leave-one-category-
# out on the four shipped categories (`GRID`): every fold chose this setting.
NAB_RULE = Rule(
    metric=MetricName.REQUEST_VOLUME,
    direction=Direction.BOTH,
    threshold_sigma=3.5,
    warmup=0,  # the probationary period is NAB's warm-up; the baseline has its own minimum
    confirm_n=1,
    confirm_m=1,
    cooldown=12,
    cooldown_s=43_200.0,
    resolve_after=12,
    season=Season.AUTO,
    history_days=14,
)

PROBATION = 0.15


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid of a relative position: +0.987 at a window's left edge, 0 at its right."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(rows: int) -> int:
    return math.ceil(min(math.floor(PROBATION * rows), PROBATION * 5000))


@dataclass(slots=True)
class SeriesScore:
    name: str
    rows: int
    windows: int  # scored windows
    detections: int  # scored detections (after probation)
    tp: int = 0  # windows with a detection
    fp: int = 0  # detections outside windows
    raw: dict[str, float] = field(default_factory=dict)
    null: dict[str, float] = field(default_factory=dict)
    perfect: dict[str, float] = field(default_factory=dict)


def score_series(
    name: str,
    rows: int,
    windows: Sequence[tuple[int, int]],
    detections: Sequence[int],
    profiles: dict[str, Profile] = PROFILES,
) -> SeriesScore:
    """Score detections (row indices) against windows (inclusive row ranges), per profile."""
    probation = probation_length(rows)
    max_tp = scaled_sigmoid(-1.0)
    wins = sorted(windows)
    rights = [hi for _, hi in wins]
    scored_wins = [(lo, hi) for lo, hi in wins if hi >= probation]
    dets = sorted({i for i in detections if probation <= i < rows})
    out = SeriesScore(name, rows, len(scored_wins), len(dets))
    best: dict[int, float] = {}  # window index → best weighted position score (tp weight 1)
    fp_unit: list[float] = []  # per FP: scaled sigmoid (fp weight 1)
    for i in dets:
        k = next((j for j, (lo, hi) in enumerate(wins) if lo <= i <= hi), None)
        if k is not None:
            lo, hi = wins[k]
            pos = scaled_sigmoid(-(hi - i + 1) / (hi - lo + 1)) / max_tp
            best[k] = max(best.get(k, -math.inf), pos)
            continue
        prev = bisect.bisect_left(rights, i) - 1
        if prev < 0 or wins[prev][1] - wins[prev][0] < 1:
            fp_unit.append(-1.0)
        else:
            lo, hi = wins[prev]
            fp_unit.append(scaled_sigmoid(abs(i - hi) / (hi - lo)))
    out.tp, out.fp = len(best), len(fp_unit)
    first_scored = [max(lo, probation) for lo, _ in scored_wins]
    for pname, p in profiles.items():
        missed = len(scored_wins) - len(best)
        out.raw[pname] = p.tp * sum(best.values()) - p.fn * missed + p.fp * sum(fp_unit)
        out.null[pname] = -p.fn * len(scored_wins)
        out.perfect[pname] = sum(
            p.tp * scaled_sigmoid(-(hi - f + 1) / (hi - lo + 1)) / max_tp
            for (lo, hi), f in zip(scored_wins, first_scored, strict=True)
        )
    return out


def normalised(raw: float, null: float, perfect: float) -> float | None:
    return None if perfect == null else 100.0 * (raw - null) / (perfect - null)


@dataclass(slots=True)
class Report:
    profiles: list[str]
    series: list[SeriesScore]

    def total(self, profile: str, prefix: str = "") -> float | None:
        rows = [s for s in self.series if s.name.startswith(prefix)]
        return normalised(
            sum(s.raw[profile] for s in rows),
            sum(s.null[profile] for s in rows),
            sum(s.perfect[profile] for s in rows),
        )

    def categories(self) -> list[str]:
        return sorted({s.name.split("/")[0] for s in self.series})

    def format(self) -> str:
        head = f"{'series':58} {'win':>3} {'det':>4} {'tp':>3} {'fp':>3} " + " ".join(
            f"{p[:18]:>18}" for p in self.profiles
        )
        lines = [head, "-" * len(head)]
        for s in self.series:
            cells = " ".join(f"{s.raw[p]:>18.3f}" for p in self.profiles)
            lines.append(f"{s.name:58} {s.windows:>3} {s.detections:>4} {s.tp:>3} {s.fp:>3} {cells}")
        lines.append("-" * len(head))
        lines.append("normalised NAB score (100·(raw − null)/(perfect − null)); per-series columns are raw")
        for cat in [*self.categories(), ""]:
            totals = [self.total(p, cat + "/" if cat else "") for p in self.profiles]
            text = " ".join(f"{v:>18.1f}" if v is not None else f"{'n/a':>18}" for v in totals)
            lines.append(f"{(cat or 'TOTAL'):58} {'':>3} {'':>4} {'':>3} {'':>3} " + text)
        return "\n".join(lines)


def _parse_ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text.strip())
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def read_series(path: Path) -> tuple[list[str], list[float], list[float]]:
    """Timestamps as written, epoch seconds, values."""
    stamps: list[str] = []
    epochs: list[float] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stamps.append(row["timestamp"])
            epochs.append(_parse_ts(row["timestamp"]).timestamp())
            values.append(float(row["value"]))
    return stamps, epochs, values


def detect_series(epochs: Sequence[float], values: Sequence[float], rule: Rule = NAB_RULE) -> list[int]:
    """Row indices where the agent's detector opens an anomaly (one series = one tenant metric)."""
    det = StreamDetector("nab", rule.metric, rule, kind=Kind.LEVEL)  # a NAB value can be any real number
    hst = TenantHST()
    out = []
    for i, (ts, value) in enumerate(zip(epochs, values, strict=True)):
        step = det.observe(ts, value, rule, hst.score_and_learn(rule.metric.value, value))
        if step.opened:
            out.append(i)
    return out


def _window_rows(epochs: Sequence[float], limits: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    rows = []
    for lo_text, hi_text in limits:
        lo = bisect.bisect_left(epochs, _parse_ts(lo_text).timestamp())
        hi = bisect.bisect_right(epochs, _parse_ts(hi_text).timestamp()) - 1
        if lo <= hi:
            rows.append((lo, hi))
    return rows


def _profiles(nab_dir: Path) -> dict[str, Profile]:
    path = nab_dir / "config" / "profiles.json"
    if not path.exists():
        return dict(PROFILES)
    raw = json.loads(path.read_text())
    out = {}
    for name, body in raw.items():
        cost = body["CostMatrix"]
        out[name] = Profile(tp=float(cost["tpWeight"]), fp=float(cost["fpWeight"]), fn=float(cost["fnWeight"]))
    return out


def evaluate(nab_dir: Path, detections_out: Path | None = None, rule: Rule = NAB_RULE) -> Report:
    """Detect and score every series under `nab_dir/data`; optionally write the detections JSON."""
    windows = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    profiles = _profiles(nab_dir)
    scores: list[SeriesScore] = []
    detections: dict[str, list[str]] = {}
    for path in sorted((nab_dir / "data").glob("*/*.csv")):
        name = f"{path.parent.name}/{path.name}"
        stamps, epochs, values = read_series(path)
        found = detect_series(epochs, values, rule)
        detections[name] = [stamps[i] for i in found]
        if name in windows:
            rows = _window_rows(epochs, windows[name])
            scores.append(score_series(name, len(values), rows, found, profiles))
    if detections_out is not None:
        detections_out.write_text(json.dumps(detections, indent=1, sort_keys=True) + "\n")
    return Report(list(profiles), scores)


# The settings cross-validation chooses among: one rule for every series, varied in how far
# out a point must be and how long a stream stays quiet after an episode. Small on purpose:
# each setting is one pass over the corpus.
GRID: tuple[tuple[float, float, float], ...] = tuple(
    (threshold, quiet_h, lik) for threshold in (3.0, 3.5, 4.0) for quiet_h in (12.0, 24.0) for lik in (0.0, 2.0)
)


def grid_rule(threshold: float, quiet_h: float, likelihood: float) -> Rule:
    return NAB_RULE.model_copy(update={"threshold_sigma": threshold, "cooldown_s": quiet_h * 3600.0,
                                       "cooldown": max(1, round(quiet_h)), "likelihood_sigma": likelihood})


@dataclass(slots=True)
class CrossValidation:
    """Leave-one-category-out: each category scored with the setting best on the others."""

    profile: str
    chosen: dict[str, tuple[float, float, float]]  # held-out category → setting chosen without it
    held_out: Report  # every series, each scored under its fold's setting
    in_sample: dict[tuple[float, float, float], float | None]  # setting → score on every category

    def format(self) -> str:
        lines = [f"leave-one-category-out ({self.profile} profile): settings chosen on the other categories"]
        for cat, setting in sorted(self.chosen.items()):
            score = self.held_out.total(self.profile, cat + "/")
            text = "n/a" if score is None else f"{score:.1f}"
            lines.append(f"  {cat:28} {_describe(setting)} → held-out {text}")
        loco = self.held_out.total(self.profile)
        best = max(self.in_sample.items(), key=lambda kv: -math.inf if kv[1] is None else kv[1])
        lines.append("in sample, every setting:")
        for setting, score in self.in_sample.items():
            lines.append(f"  {_describe(setting):52} {'n/a' if score is None else f'{score:.1f}'}")
        lines.append(f"LOCO score (cross-validated) {'n/a' if loco is None else f'{loco:.1f}'}")
        lines.append(f"in-sample best {best[1]:.1f} ({_describe(best[0])});"
                     f" NAB_RULE in sample {self.in_sample.get(_nab_setting(), float('nan')):.1f}")
        return "\n".join(lines)


def _nab_setting() -> tuple[float, float, float]:
    return NAB_RULE.threshold_sigma, NAB_RULE.cooldown_s / 3600.0, NAB_RULE.likelihood_sigma


def _describe(setting: tuple[float, float, float]) -> str:
    threshold, quiet_h, lik = setting
    return f"threshold {threshold:g}σ, quiet {quiet_h:g} h, likelihood {f'{lik:g}σ' if lik else 'off'}"


def cross_validate(nab_dir: Path, profile: str = "standard",
                   grid: Sequence[tuple[float, float, float]] = GRID) -> CrossValidation:
    """Score every grid setting once, then choose per held-out category on the others' total."""
    reports = {setting: evaluate(nab_dir, rule=grid_rule(*setting)) for setting in grid}
    first = next(iter(reports.values()))
    cats = first.categories()
    chosen: dict[str, tuple[float, float, float]] = {}
    series: list[SeriesScore] = []
    for cat in cats:
        def others(setting: tuple[float, float, float], cat: str = cat) -> float:
            rows = [s for s in reports[setting].series if not s.name.startswith(cat + "/")]
            value = normalised(sum(s.raw[profile] for s in rows), sum(s.null[profile] for s in rows),
                               sum(s.perfect[profile] for s in rows))
            return -math.inf if value is None else value
        best = max(grid, key=others)  # ties: the first in grid order
        chosen[cat] = best
        series += [s for s in reports[best].series if s.name.startswith(cat + "/")]
    in_sample = {setting: r.total(profile) for setting, r in reports.items()}
    return CrossValidation(profile, chosen, Report(first.profiles, series), in_sample)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenantwatch eval nab", description=__doc__.split("\n")[0])
    parser.add_argument("nab_dir", type=Path, help="a directory in NAB layout (data/, labels/)")
    parser.add_argument("--detections-out", type=Path, default=None, help="write detections JSON here")
    parser.add_argument("--no-cv", action="store_true",
                        help=f"skip the leave-one-category-out cross-validation ({len(GRID)} passes over the corpus)")
    args = parser.parse_args(argv)
    report = evaluate(args.nab_dir, args.detections_out)
    print(report.format())  # the CLI's output
    if not args.no_cv:
        print()
        print(cross_validate(args.nab_dir).format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
