"""Run a board's queries outside Grafana (tests, static report): macros expanded, variables chosen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from dashboards.macros import TimeRange, expand
from dashboards.model import Board, Panel

__all__ = ["PanelResult", "data_time_range", "run_panel", "variable_values"]


@dataclass(frozen=True)
class PanelResult:
    """What a panel's query returned: column names, ClickHouse type names, rows."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def variable_values(client: Any, board: Board, time_range: TimeRange) -> dict[str, list[str]]:
    """Values for each variable, as Grafana would pick them by default.

    A multi-value variable with "All" gets every value; a single-value one its first value.
    Variables are evaluated in order, so one may depend on the ones before it.
    """
    chosen: dict[str, list[str]] = {}
    for v in board.variables:
        rows = client.query(expand(v.sql, time_range, chosen)).result_rows
        values = [str(r[0]) for r in rows]
        chosen[v.name] = values if v.multi and v.include_all else values[:1]
    return chosen


def run_panel(client: Any, panel: Panel, time_range: TimeRange, variables: dict[str, list[str]]) -> PanelResult:
    """Run `panel`'s SQL with macros and variables expanded (values quoted, never pasted)."""
    result = client.query(expand(panel.sql, time_range, variables))
    types = tuple(t.name for t in result.column_types)
    return PanelResult(tuple(result.column_names), types, list(result.result_rows))


def data_time_range(client: Any, points: int = 200) -> TimeRange | None:
    """The event-time span of the stored requests (None when there are none)."""
    lo, hi, n = client.query("SELECT min(ts), max(ts), count() FROM requests").result_rows[0]
    if not n:
        return None
    start = lo.replace(tzinfo=UTC) if lo.tzinfo is None else lo
    end = hi.replace(tzinfo=UTC) if hi.tzinfo is None else hi
    return TimeRange.around(start, max(end, start + timedelta(seconds=1)), points)
