"""Structural checks of Grafana dashboard JSON models, before they reach a Grafana.

What Grafana itself would only show as a broken panel: duplicate uids or panel ids, targets
without SQL or with another data source, a query that uses a template variable the board does
not define (or in an unquoted format), overlapping panels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from dashboards.macros import MacroError, TimeRange, expand, variable_names
from dashboards.model import PLUGIN_ID

__all__ = ["check_dashboard", "check_dashboards"]

_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_PANEL_TYPES = {"timeseries", "table", "stat", "barchart", "bargauge", "piechart"}
_QUERY_TYPES = {0: "timeseries", 1: "table"}
_GRID = 24
_PROBE = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), 60)


def _check_sql(where: str, sql: Any, defined: set[str]) -> list[str]:
    if not isinstance(sql, str) or not sql.strip():
        return [f"{where}: empty SQL"]
    errors = [f"{where}: uses undefined variable ${n}" for n in sorted(variable_names(sql) - defined)]
    try:
        expand(sql, _PROBE, dict.fromkeys(defined, "probe"))
    except MacroError as exc:
        errors.append(f"{where}: {exc}")
    return errors


def _check_ref(where: str, ref: Any) -> list[str]:
    if not isinstance(ref, Mapping) or ref.get("type") != PLUGIN_ID or ref.get("uid") != "${datasource}":
        return [f"{where}: datasource must be {{type: {PLUGIN_ID}, uid: ${{datasource}}}}, got {ref!r}"]
    return []


def _check_variables(model: Mapping[str, Any]) -> tuple[list[str], set[str]]:
    errors: list[str] = []
    defined: set[str] = set()
    variables = model.get("templating", {}).get("list", [])
    if not any(v.get("type") == "datasource" and v.get("name") == "datasource" and v.get("query") == PLUGIN_ID
               for v in variables):
        errors.append(f"no `datasource` variable of plugin {PLUGIN_ID}")
    for v in variables:
        name = v.get("name")
        where = f"variable {name!r}"
        if not name or name in defined:
            errors.append(f"{where}: missing or duplicate name")
        if v.get("type") == "query":
            errors += _check_ref(where, v.get("datasource"))
            errors += _check_sql(where, v.get("query"), defined)  # may use variables defined before it
        defined.add(name)
    return errors, defined - {"datasource"}


def _overlaps(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


_LINK_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::[A-Za-z]+)?\}")


def _check_links(where: str, panel: Mapping[str, Any], defined: set[str]) -> list[str]:
    """Data links may use the board's variables and Grafana's own (`${__data...}`), nothing else."""
    links = panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    errors = []
    for link in links:
        url = link.get("url") if isinstance(link, Mapping) else None
        if not isinstance(url, str) or not url:
            errors.append(f"{where}: data link without a url")
            continue
        unknown = [n for n in _LINK_VARIABLE.findall(url) if not n.startswith("__") and n not in defined]
        errors += [f"{where}: data link uses undefined variable ${n}" for n in unknown]
    return errors


def _check_panel(panel: Mapping[str, Any], defined: set[str]) -> list[str]:
    where = f"panel {panel.get('id')!r} ({panel.get('title')!r})"
    errors = _check_links(where, panel, defined)
    if panel.get("type") not in _PANEL_TYPES:
        errors.append(f"{where}: unknown panel type {panel.get('type')!r}")
    if not panel.get("title"):
        errors.append(f"{where}: no title")
    grid = panel.get("gridPos", {})
    if not all(isinstance(grid.get(k), int) for k in "xywh") or grid["x"] + grid["w"] > _GRID or grid["w"] < 1:
        errors.append(f"{where}: bad gridPos {grid!r}")
    errors += _check_ref(where, panel.get("datasource"))
    targets = panel.get("targets") or []
    if not targets:
        errors.append(f"{where}: no targets")
    ref_ids = [t.get("refId") for t in targets]
    if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
        errors.append(f"{where}: refIds missing or not unique: {ref_ids}")
    for t in targets:
        tw = f"{where} target {t.get('refId')}"
        errors += _check_ref(tw, t.get("datasource"))
        if t.get("editorType") != "sql":
            errors.append(f"{tw}: editorType must be 'sql'")
        if _QUERY_TYPES.get(t.get("format")) != t.get("queryType"):
            errors.append(f"{tw}: format {t.get('format')!r} does not match queryType {t.get('queryType')!r}")
        if (t.get("format") == 0) != (panel.get("type") == "timeseries"):
            errors.append(f"{tw}: time series format on a {panel.get('type')} panel (or the reverse)")
        errors += _check_sql(tw, t.get("rawSql"), defined)
    return errors


def check_dashboard(model: Mapping[str, Any]) -> list[str]:
    """Everything wrong with one dashboard model (empty when it is fine)."""
    errors: list[str] = []
    if not isinstance(model.get("uid"), str) or not _UID.match(model["uid"]):
        errors.append(f"uid {model.get('uid')!r} must be 1-40 of [A-Za-z0-9_-]")
    if not model.get("title"):
        errors.append("no title")
    var_errors, defined = _check_variables(model)
    errors += var_errors
    panels = model.get("panels") or []
    if not panels:
        errors.append("no panels")
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or not all(isinstance(i, int) for i in ids):
        errors.append(f"panel ids missing or not unique: {ids}")
    for p in panels:
        errors += _check_panel(p, defined)
    grids = [(p.get("id"), p.get("gridPos")) for p in panels if isinstance(p.get("gridPos"), Mapping)]
    for i, (ida, ga) in enumerate(grids):
        for idb, gb in grids[i + 1:]:
            if all(isinstance(g.get(k), int) for g in (ga, gb) for k in "xywh") and _overlaps(ga, gb):
                errors.append(f"panels {ida} and {idb} overlap")
    return [f"{model.get('uid')}: {e}" for e in errors]


def check_dashboards(models: Iterable[Mapping[str, Any]]) -> list[str]:
    """`check_dashboard` over each model, plus uids and titles unique across them."""
    models = list(models)
    errors = [e for m in models for e in check_dashboard(m)]
    for key in ("uid", "title"):
        values = [m.get(key) for m in models]
        dupes = sorted({str(v) for v in values if values.count(v) > 1})
        errors += [f"duplicate dashboard {key}: {d}" for d in dupes]
    return errors
