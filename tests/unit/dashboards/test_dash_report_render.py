"""`dashboards.report` rendering on canned query results: escaping, empty and failed panels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboards.boards import BOARDS
from dashboards.macros import TimeRange
from dashboards.report import link_href, panel_element_id, render_report, variables_summary

TR = TimeRange(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC), 3600)
EVIL = "<script>alert(1)</script>"


@dataclass
class _Type:
    name: str


@dataclass
class _Result:
    column_names: tuple[str, ...]
    column_types: list[_Type]
    result_rows: list[tuple[Any, ...]]


class CannedClient:
    """Answers every query with the same three columns; fails queries on `broken_table`."""

    def __init__(self, rows: int = 3, broken_table: str | None = None):
        self.rows = rows
        self.broken_table = broken_table
        self.queries: list[str] = []

    def query(self, sql: str) -> _Result:
        self.queries.append(sql)
        if self.broken_table and f"FROM {self.broken_table}" in sql:
            raise RuntimeError(f"Code: 60. Table {self.broken_table} does not exist. {EVIL}")
        t0 = datetime(2026, 1, 5)
        rows = [(t0 + timedelta(hours=i), EVIL, float(i)) for i in range(self.rows)]
        return _Result(("time", "label", "value"), [_Type("DateTime"), _Type("String"), _Type("Float64")], rows)


def test_every_panel_gets_an_element_and_values_are_escaped() -> None:
    """Each panel has its element id; hostile text from the data never becomes markup."""
    outcome = render_report(CannedClient(), TR)
    assert outcome.failed == {}
    assert outcome.panels == sum(len(b.panels) for b in BOARDS)
    for board in BOARDS:
        for n in range(1, len(board.panels) + 1):
            assert f'id="{panel_element_id(board, n)}"' in outcome.html
    assert EVIL not in outcome.html
    assert "&lt;script&gt;" in outcome.html
    assert "data:image/png;base64," in outcome.html
    assert "http://" not in outcome.html
    assert "https://" not in outcome.html


def test_queries_are_expanded_before_they_reach_the_client() -> None:
    """No macro or template variable is left in what the report sends to ClickHouse."""
    client = CannedClient()
    render_report(client, TR)
    assert client.queries
    assert not [q for q in client.queries if "$__" in q or "${" in q]


def test_a_failing_panel_is_reported_and_the_rest_still_render() -> None:
    """A missing table marks its panels as failed, escaped, while other panels still draw."""
    outcome = render_report(CannedClient(broken_table="rl_violations"), TR)
    assert outcome.failed
    assert all("rl_violations" in reason for reason in outcome.failed.values())
    assert outcome.html.count('class="error"') == len(outcome.failed)
    assert EVIL not in outcome.html
    assert outcome.panels == sum(len(b.panels) for b in BOARDS)


def test_empty_results_say_so() -> None:
    """Panels without rows say "No data" instead of drawing an empty chart."""
    outcome = render_report(CannedClient(rows=0), TR)
    assert outcome.html.count("No data in this range.") == outcome.panels


def test_header_sums_up_a_long_tenant_pick() -> None:
    """"All" of two dozen tenants (the report's pick of a multi-value variable) reads "all (24)", not
    the list of ids; a single pick is named."""
    board = next(b for b in BOARDS if b.uid == "tw-ratelimit")
    tenants = [f"tenant-{n:02d}" for n in range(24)]
    summary = variables_summary(board, {"tenant": tenants})
    assert summary == "tenant: all (24)"
    anomalies = next(b for b in BOARDS if b.uid == "tw-anomalies")
    assert variables_summary(anomalies, {"tenant": ["acme"], "metric": []}) == "tenant: acme; metric: -"


def test_report_rows_link_into_the_console_with_encoded_values() -> None:
    """A data link expands as Grafana's would: the console URL, then each field percent-encoded."""
    offenders = next(p for b in BOARDS for p in b.panels if p.title == "Top offenders")
    href = link_href(offenders.links[0], ("tenant_id", "ip"), ("acme&co", "2001:db8::1"), "http://c:8088/")
    assert href == "http://c:8088/offenders?tenant=acme%26co&ip=2001%3Adb8%3A%3A1"
