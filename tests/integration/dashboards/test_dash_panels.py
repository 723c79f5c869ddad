"""Every panel's SQL, macros expanded by `dashboards.macros`, run against chDB on the scenario."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from dashboards.boards import BOARDS
from dashboards.macros import TimeRange, expand
from dashboards.model import Board, Panel
from dashboards.palette import DECISION_STATES
from dashboards.runner import run_panel, variable_values
from schemas.events import RequestEvent
from schemas.ratelimit import Decision
from tests.integration.dashboards.scenario import Scenario

pytestmark = pytest.mark.integration

_TABLE_REF = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal)")
_PANELS = [pytest.param(b, p, id=f"{b.uid}:{p.title}") for b in BOARDS for p in b.panels]


def tables_of(sql: str) -> set[str]:
    return set(_TABLE_REF.findall(sql))


def existing_tables(client: Any) -> set[str]:
    return {r[0] for r in client.query("SHOW TABLES").result_rows}


def require_tables(client: Any, sql: str) -> None:
    missing = tables_of(sql) - existing_tables(client)
    if missing:
        pytest.skip(f"capability table(s) not created by any migration yet: {', '.join(sorted(missing))}")


@pytest.mark.parametrize(("board", "panel"), _PANELS)
def test_panel_returns_rows_of_its_declared_shape(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange, board: Board, panel: Panel
) -> None:
    """The panel's query runs, has the declared columns, and returns rows over the scenario."""
    require_tables(chdb_client, panel.sql)
    _, inserted = dash_scenario
    assert tables_of(panel.sql) <= set(inserted), "the scenario must put rows in every table a panel reads"
    variables = variable_values(chdb_client, board, dash_range)
    result = run_panel(chdb_client, panel, dash_range, variables)
    assert result.columns == panel.columns
    assert result.rows, "the scenario has data for this panel"
    assert any(_NUMERIC.match(t) for t in result.types), f"no numeric column: {result.types}"
    if panel.is_time_series:
        assert result.types[0].startswith(("DateTime", "Nullable(DateTime")), result.types
        assert result.columns[0] == "time"
        times = [r[0] for r in result.rows]
        assert times == sorted(times), "time series must come ordered by time"


@pytest.mark.parametrize("board", [pytest.param(b, id=b.uid) for b in BOARDS if b.variables])
def test_variable_queries_list_scenario_tenants(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange, board: Board
) -> None:
    """Each template variable query returns values; the tenant picker offers the scenario's tenants."""
    for v in board.variables:
        require_tables(chdb_client, v.sql)
    values = variable_values(chdb_client, board, dash_range)
    assert all(values[v.name] for v in board.variables), values
    # The default pick of a single-value picker depends on what else is stored (other tests
    # share this ClickHouse): check the whole list the picker offers.
    picker = next(v for v in board.variables if v.name == "tenant")
    offered = [str(r[0]) for r in chdb_client.query(expand(picker.sql, dash_range, values)).result_rows]
    assert any(t.startswith("dash-") for t in offered), offered


def test_time_filter_narrows_what_a_panel_sees(chdb_client: Any, dash_scenario: Any, dash_range: TimeRange) -> None:
    """A shorter range (the last six hours) yields fewer event buckets than the whole range."""
    board = BOARDS[0]
    panel = board.panels[0]
    whole = run_panel(chdb_client, panel, dash_range, {})
    late = TimeRange(dash_range.end - timedelta(hours=6), dash_range.end, dash_range.interval_s)
    part = run_panel(chdb_client, panel, late, {})
    assert part.rows
    assert len(part.rows) < len(whole.rows)
    assert min(r[0] for r in part.rows) >= late.start.replace(tzinfo=None) - timedelta(seconds=late.interval_s)


_INJECTIONS = [
    "x' OR 1=1 --",
    "x\\' OR 1=1 --",
    "dash-acme-001' UNION ALL SELECT now(), 1, 1, 1, 1 --",
    "'; DROP TABLE requests; --",
    "x\\",
    "${tenant:singlequote}",
    "$__timeFilter(ts)",
]


@pytest.mark.parametrize("value", _INJECTIONS)
def test_injected_variable_values_stay_string_literals(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange, value: str
) -> None:
    """A hostile variable value reads back unchanged as one literal and matches no tenant."""
    echoed = chdb_client.query(expand("SELECT ${v:singlequote}", dash_range, {"v": value})).result_rows
    assert echoed == [(value,)]
    band = next(p for p in BOARDS[2].panels if "baseline" in p.title)
    result = run_panel(chdb_client, band, dash_range, {"tenant": [value], "metric": ["request_volume"]})
    assert result.rows == []
    assert "requests" in {r[0] for r in chdb_client.query("SHOW TABLES").result_rows}


def decisions_in_force(sc: Scenario, tenants: list[str], tr: TimeRange) -> Counter[str]:
    """An independent count of requests by the decision in force for their (tenant, ip) when they came."""
    changes: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    for d in sc.records["rl_decisions"]:
        assert isinstance(d, Decision)
        changes.setdefault((d.tenant_id, d.ip), []).append((d.ts, d.state))
    counts: Counter[str] = Counter()
    for r in sc.records["requests"]:
        assert isinstance(r, RequestEvent)
        if r.tenant_id in tenants and tr.start <= r.ts <= tr.end:
            before = [(ts, state) for ts, state in changes.get((r.tenant_id, r.ip), []) if ts <= r.ts]
            counts[max(before)[1] if before else "allowed"] += 1
    return counts


def test_decision_totals_count_requests_of_exactly_the_chosen_tenants(
    chdb_client: Any, dash_scenario: Any, dash_range: TimeRange
) -> None:
    """Decision totals count traffic (requests by the decision in force), for the chosen tenants only.

    Would fail if the panel counted decision state changes (a few dozen rows) instead of requests.
    """
    sc, _ = dash_scenario
    totals = next(p for p in BOARDS[1].panels if p.title == "Decision totals")
    chosen = ["dash-acme-001", "dash-umbrella-000"]
    result = run_panel(chdb_client, totals, dash_range, {"tenant": chosen})
    got = dict(zip(result.columns, result.rows[0], strict=True))
    want = decisions_in_force(sc, chosen, dash_range)
    assert got == {state: want.get(state, 0) for state in DECISION_STATES}
    assert want["allowed"] > 0
    assert sum(want.values()) > want["allowed"], "the scenario limits these tenants"
    over_time = next(p for p in BOARDS[1].panels if p.title == "Requests by decision")
    rows = run_panel(chdb_client, over_time, dash_range, {"tenant": chosen}).rows
    assert sum(r[2] for r in rows) == sum(want.values())
    assert sum(run_panel(chdb_client, totals, dash_range, {"tenant": []}).rows[0]) == 0
