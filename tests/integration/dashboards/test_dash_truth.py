"""The boards tell the truth on the scenario: mails in event time, no capped scores, sparse
counts not joined by lines, one colour per state, rates only where a rate means something."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest

from dashboards.boards import BOARDS
from dashboards.macros import TimeRange
from dashboards.model import Board, Panel, to_grafana
from dashboards.palette import COLOURS
from dashboards.runner import PanelResult, run_panel, variable_values
from schemas.notify import Notification
from tests.integration.dashboards.scenario import CAPPED_SIGMA, Scenario

pytestmark = pytest.mark.integration

_ALL = [(b, p) for b in BOARDS for p in b.panels]
_SERIES = [pytest.param(b, p, id=f"{b.uid}:{p.title}") for b, p in _ALL if p.is_time_series]
_RATE_UNITS = {"ops", "reqps", "rps", "wps"}


def panel(title: str) -> tuple[Board, Panel]:
    return next((b, p) for b, p in _ALL if p.title == title)


def run(client: Any, board: Board, p: Panel, tr: TimeRange) -> PanelResult:
    return run_panel(client, p, tr, variable_values(client, board, tr))


def series_of(r: PanelResult) -> dict[str, list[tuple[datetime, float]]]:
    """Series name → points: long format (time, label, value) or wide (time, value columns...)."""
    if len(r.columns) == 3 and not isinstance(r.rows[0][1], int | float):
        out: dict[str, list[tuple[datetime, float]]] = {}
        for t, label, v in r.rows:
            out.setdefault(str(label), []).append((t, v))
        return out
    return {c: [(row[0], row[i]) for row in r.rows] for i, c in enumerate(r.columns) if i}


def names_shown(r: PanelResult, p: Panel) -> set[str]:
    """What a panel's legend (or slices, or bars) would be called."""
    if p.is_time_series:
        return set(series_of(r))
    if p.kind in {"piechart", "bargauge"}:
        return set(r.columns)
    return set()


def test_mail_panels_place_mails_at_the_event_time_they_became_due(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange
) -> None:
    """Every welcome mail of the scenario is counted although its deliveries carry wall-clock times.

    Would fail if the panels filtered deliveries by their own (wall-clock) ts, as they did.
    """
    sc, _ = dash_scenario
    due = [n for n in sc.records["notifications"] if isinstance(n, Notification)
           and dash_range.start <= n.ts <= dash_range.end]
    assert due
    assert all(d.ts > dash_range.end for d in sc.records["deliveries"]), "deliveries stamped off-range"
    board, by_kind = panel("Mails sent and failed by kind")
    rows = run(chdb_client, board, by_kind, dash_range).rows
    welcome = next(r for r in rows if r[0] == "trial_welcome")
    assert sum(welcome[1:5]) == len(due)
    assert welcome[2] == 1, "the one notification whose three attempts all failed"
    board, over_time = panel("Mails by outcome")
    assert sum(r[2] for r in run(chdb_client, board, over_time, dash_range).rows) == len(due)


def test_no_panel_shows_a_capped_score(chdb_client: Any, dash_scenario: Any, dash_range: TimeRange) -> None:
    """An anomaly whose σ score sits at its cap shows no cap anywhere; no panel returns a raw σ score."""
    seen = 0
    for board, p in _ALL:
        r = run(chdb_client, board, p, dash_range)
        assert not [c for c in r.columns if "sigma" in c and c != "threshold_sigma"], (p.title, r.columns)
        for row in r.rows:
            assert CAPPED_SIGMA not in [abs(v) for v in row if isinstance(v, float)], (p.title, row)
        seen += len(r.rows)
    assert seen > 0
    _, timeline = panel("Timeline")
    assert {"severity", "value", "expected", "change_pct"} <= set(timeline.columns)


def sparse(points: list[tuple[datetime, float]]) -> bool:
    """Too few points for a line, or holes: a step more than twice the series' usual one (an
    hourly metric is dense at its own cadence; violations hours or days apart are not)."""
    times = sorted({t for t, _ in points})
    steps = sorted((b - a).total_seconds() for a, b in itertools.pairwise(times))
    return len(times) < 3 or steps[-1] > 2 * steps[len(steps) // 2]


@pytest.mark.parametrize(("board", "p"), _SERIES)
def test_sparse_series_are_not_drawn_as_lines(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange, board: Board, p: Panel
) -> None:
    """A series with empty intervals between its points is drawn as bars or points, never a line
    that would invent values in between (in the Grafana JSON and in the report alike)."""
    r = run(chdb_client, board, p, dash_range)
    holes = [name for name, pts in series_of(r).items() if sparse(pts)]
    grafana = next(x for x in to_grafana(board)["panels"] if x["title"] == p.title)
    style = grafana["fieldConfig"]["defaults"]["custom"]["drawStyle"]
    if holes:
        assert p.draw != "line", f"sparse series drawn as lines: {holes}"
        assert style in {"bars", "points"}
    assert style == {"line": "line", "bars": "bars", "points": "points"}[p.draw]


def test_each_state_has_one_colour_on_every_panel(chdb_client: Any, dash_scenario: Any, dash_range: TimeRange) -> None:
    """Every state a panel shows (decision states, severities, mail outcomes, event kinds) has a
    colour override from the one palette, and a state has the same colour wherever it appears."""
    colours: dict[str, set[str]] = {}
    checked = 0
    for board in BOARDS:
        model = {x["title"]: x for x in to_grafana(board)["panels"]}
        for p in board.panels:
            shown = names_shown(run(chdb_client, board, p, dash_range), p) & set(COLOURS)
            assert shown <= set(p.states), f"{p.title}: {sorted(shown - set(p.states))} without a fixed colour"
            for o in model[p.title]["fieldConfig"]["overrides"]:
                name = o["matcher"]["options"].strip("/").replace("\\b", "")
                colours.setdefault(name, set()).add(o["properties"][0]["value"]["fixedColor"])
            checked += len(shown)
    assert checked >= 10
    assert all(len(c) == 1 for c in colours.values()), colours
    assert {n: c.pop() for n, c in colours.items()} == {n: COLOURS[n] for n in colours}


def test_rates_only_for_requests(chdb_client: Any, dash_scenario: Any, dash_range: TimeRange) -> None:
    """Only requests are shown per second; billing, error and usage events (a few a day: a flat
    zero line as a rate) are counted per interval, as bars."""
    rates = [(b, p) for b, p in _ALL if p.unit in _RATE_UNITS]
    assert rates
    for board, p in rates:
        assert set(series_of(run(chdb_client, board, p, dash_range))) <= {"requests"}, p.title
    board, other = panel("Billing, error and usage events")
    assert other.draw == "bars"
    assert other.unit is None
    assert set(series_of(run(chdb_client, board, other, dash_range))) == {"billing", "errors", "usage"}


def test_scenario_has_sparse_and_dense_series(chdb_client: Any, dash_scenario: Any, dash_range: TimeRange) -> None:
    """The sparseness check above sees both kinds on this scenario (else it would check nothing)."""
    sc: Scenario = dash_scenario[0]
    assert sc.records["rl_violations"]
    found = {sparse(pts)
             for b, p in _ALL if p.is_time_series
             for pts in series_of(run(chdb_client, b, p, dash_range)).values()}
    assert found == {True, False}
