"""Boards as plain data (`Board`, `Panel`, `Variable`) and their Grafana JSON model.

Every query targets the Grafana ClickHouse data source plugin (`grafana-clickhouse-datasource`,
v4 target format: `editorType: sql`, `rawSql`, `format` 0 = time series / 1 = table,
`queryType`). The data source is chosen by the board's `datasource` variable, so the same JSON
works with the provisioned data source and with any other ClickHouse data source a Grafana has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from dashboards.palette import COLOURS

__all__ = [
    "CONSOLE_URL_DEFAULT",
    "DATASOURCE_REF",
    "DATASOURCE_UID",
    "PLUGIN_ID",
    "TENANT_REGEX",
    "Board",
    "DataLink",
    "Draw",
    "Panel",
    "PanelKind",
    "Variable",
    "to_grafana",
]

PLUGIN_ID = "grafana-clickhouse-datasource"
# The uid of the provisioned data source (dashboards/provisioning/datasources/clickhouse.yaml).
DATASOURCE_UID = "tenantwatch-clickhouse"
DATASOURCE_REF = {"type": PLUGIN_ID, "uid": "${datasource}"}
# Grafana's `singlequote` format escapes ' but not \: variable values are kept to tenant-id
# characters as a second line of defence (tenant ids are validated on the way in as well).
TENANT_REGEX = "/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/"

# Where the owner console listens by default (`tenantwatch console`); a board's data links
# point at `${console_url}`, a hidden text variable that a URL (`?var-console_url=…`) or
# `tenantwatch dashboards build|push --console-url` can change.
CONSOLE_URL_DEFAULT = "http://127.0.0.1:8088"

PanelKind = Literal["timeseries", "table", "stat", "barchart", "bargauge", "piechart"]
# How a time series is drawn: a line only where points are dense; sparse counts (buckets
# hours or days apart) as bars or points, so no line suggests values between them.
Draw = Literal["line", "bars", "points"]
_TIME_SERIES_KINDS = {"timeseries"}
_GRID_WIDTH = 24


@dataclass(frozen=True)
class DataLink:
    """A link from each row of a panel: `url` may use `${console_url}` and `${__data.fields.<column>}`."""

    title: str
    url: str

    @property
    def fields(self) -> tuple[str, ...]:
        """The result columns the link reads."""
        return tuple(re.findall(r"\$\{__data\.fields\.([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}", self.url))


@dataclass(frozen=True)
class Panel:
    """One panel: a query and how to show it. `columns` is the result shape the tests expect.

    `states`: the state names (decision states, severities, outcomes...) the panel shows, each
    drawn in its colour from `dashboards.palette`. `draw`: how a time series is drawn.
    """

    title: str
    kind: PanelKind
    sql: str
    columns: tuple[str, ...]
    description: str = ""
    unit: str | None = None
    width: int = 12
    height: int = 8
    draw: Draw = "line"
    states: tuple[str, ...] = ()
    links: tuple[DataLink, ...] = ()

    def __post_init__(self) -> None:
        unknown = [s for s in self.states if s not in COLOURS]
        if unknown:
            raise ValueError(f"panel {self.title!r}: no palette colour for {unknown}")
        missing = [f for link in self.links for f in link.fields if f not in self.columns]
        if missing:
            raise ValueError(f"panel {self.title!r}: data link reads columns it does not return: {missing}")

    @property
    def is_time_series(self) -> bool:
        return self.kind in _TIME_SERIES_KINDS


@dataclass(frozen=True)
class Variable:
    """A query template variable; values come from `sql` (one column)."""

    name: str
    label: str
    sql: str
    multi: bool = False
    include_all: bool = False
    regex: str = TENANT_REGEX


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("tenantwatch",)
    time_from: str = "now-24h"
    refresh: str = "1m"


def _target(panel: Panel) -> dict[str, Any]:
    series = panel.is_time_series
    return {
        "refId": "A",
        "datasource": dict(DATASOURCE_REF),
        "editorType": "sql",
        "format": 0 if series else 1,
        "queryType": "timeseries" if series else "table",
        "rawSql": panel.sql.strip(),
    }


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "none", "textMode": "value_and_name"}
    # Bar gauges and pies read one row of named columns (one field per state), so each state
    # keeps its colour override; Grafana does not colour the rows of one field by name.
    if panel.kind == "bargauge":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "orientation": "horizontal", "displayMode": "gradient"}
    if panel.kind == "barchart":
        return {"orientation": "auto", "showValue": "auto", "legend": {"displayMode": "list", "placement": "bottom"}}
    if panel.kind == "piechart":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "legend": {"displayMode": "table", "placement": "right", "values": ["value"]}}
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}


def _layout(panels: tuple[Panel, ...]) -> list[dict[str, int]]:
    """Left-to-right, top-to-bottom flow on Grafana's 24-column grid."""
    x = y = row_h = 0
    out = []
    for p in panels:
        if x + p.width > _GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        out.append({"x": x, "y": y, "w": p.width, "h": p.height})
        x += p.width
        row_h = max(row_h, p.height)
    return out


def _variable(v: Variable) -> dict[str, Any]:
    return {
        "name": v.name,
        "label": v.label,
        "type": "query",
        "datasource": dict(DATASOURCE_REF),
        "query": v.sql.strip(),
        "definition": v.sql.strip(),
        "regex": v.regex,
        "refresh": 2,  # on time range change
        "multi": v.multi,
        "includeAll": v.include_all,
        "sort": 1,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "ClickHouse",
        "type": "datasource",
        "query": PLUGIN_ID,
        "current": {"text": "tenantwatch ClickHouse", "value": DATASOURCE_UID},
        "refresh": 1,
        "hide": 0,
    }


_DRAW: dict[str, dict[str, Any]] = {
    "line": {"drawStyle": "line", "lineWidth": 1, "showPoints": "auto", "spanNulls": False},
    "bars": {"drawStyle": "bars", "lineWidth": 1, "fillOpacity": 80, "barAlignment": 0,
             "stacking": {"mode": "normal", "group": "A"}},
    "points": {"drawStyle": "points", "pointSize": 6, "showPoints": "always"},
}


def state_matcher(name: str) -> str:
    """The display-name regex of a state's series: the name as a whole word, so a long-format
    series (`decisions allowed`, `decisions {state="allowed"}`) and a wide column (`allowed`) match."""
    return f"/\\b{re.escape(name)}\\b/"


def _field_config(p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if p.unit:
        defaults["unit"] = p.unit
    if p.is_time_series:
        defaults["custom"] = dict(_DRAW[p.draw])
    if p.links:
        defaults["links"] = [{"title": link.title, "url": link.url, "targetBlank": False} for link in p.links]
    overrides = [
        {"matcher": {"id": "byRegexp", "options": state_matcher(name)},
         "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": COLOURS[name]}}]}
        for name in p.states
    ]
    return {"defaults": defaults, "overrides": overrides}


def _console_url_variable(url: str) -> dict[str, Any]:
    return {
        "name": "console_url",
        "label": "Owner console",
        "type": "textbox",
        "query": url,
        "current": {"text": url, "value": url},
        "options": [{"selected": True, "text": url, "value": url}],
        "hide": 2,  # hidden: set by provisioning, or per view with ?var-console_url=...
    }


def to_grafana(board: Board, console_url: str = CONSOLE_URL_DEFAULT) -> dict[str, Any]:
    """The Grafana dashboard JSON model of `board` (stable: same input, same output)."""
    panels = []
    for n, (p, pos) in enumerate(zip(board.panels, _layout(board.panels), strict=True), start=1):
        fc = _field_config(p)
        panels.append({
            "id": n,
            "type": p.kind,
            "title": p.title,
            "description": p.description,
            "gridPos": pos,
            "datasource": dict(DATASOURCE_REF),
            "targets": [_target(p)],
            "fieldConfig": fc,
            "options": _options(p),
        })
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": list(board.tags),
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": board.time_from, "to": "now"},
        "refresh": board.refresh,
        "templating": {"list": [_datasource_variable(), *(_variable(v) for v in board.variables),
                                _console_url_variable(console_url.rstrip("/"))]},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["tenantwatch"], "asDropdown": True, "title": "tenantwatch"}],
        "panels": panels,
    }
