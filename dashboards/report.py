"""A static HTML report of the Grafana boards, for owners without a Grafana.

The same panels run the same SQL (macros expanded over the data's time range by
`dashboards.macros`); time series and bar charts are drawn with matplotlib into PNG data URIs,
stats and tables are HTML. The page loads nothing from the network and runs no script.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dashboards.boards import BOARDS
from dashboards.macros import TimeRange
from dashboards.model import CONSOLE_URL_DEFAULT, Board, DataLink, Panel
from dashboards.palette import FALLBACK, colour_of
from dashboards.runner import PanelResult, data_time_range, run_panel, variable_values

__all__ = ["ReportOutcome", "link_href", "panel_element_id", "render_report", "variables_summary", "write_report"]

log = logging.getLogger(__name__)

_MAX_TABLE_ROWS = 50
_FEW_POINTS = 30  # below this, draw markers: a lone point is invisible as a line
_NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal|Bool)")
_LINK_FIELD = re.compile(r"\$\{__data\.fields\.([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}")
_MAX_LISTED = 3  # a variable with more values is summed up in the header, not listed
_VAR_IN_TITLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}")
_CSS = """
body{font:14px system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1f2328}
header{background:#1f2937;color:#fff;padding:16px 24px}header h1{margin:0 0 4px;font-size:20px}
h2{margin:24px 24px 8px;font-size:18px}.board p.desc{margin:0 24px 8px;color:#57606a}
.grid{display:grid;grid-template-columns:repeat(24,1fr);gap:12px;padding:0 24px}
.panel{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px;overflow:auto;min-width:0}
.panel h3{margin:0 0 6px;font-size:14px}.panel img{width:100%;height:auto}
.stat{display:flex;gap:24px;flex-wrap:wrap}.stat div{font-size:28px;font-weight:600}
.stat span{display:block;font-size:12px;font-weight:400;color:#57606a}
table{border-collapse:collapse;width:100%;font-size:12px}th,td{border-bottom:1px solid #eaeef2;padding:3px 6px;
text-align:left;white-space:nowrap}.empty,.error{color:#57606a;font-style:italic}.error{color:#cf222e}
"""


@dataclass(frozen=True)
class ReportOutcome:
    """What went into the report: panels drawn, and panels whose query failed (with why)."""

    html: str
    panels: int
    failed: dict[str, str]


def panel_element_id(board: Board, index: int) -> str:
    """The HTML id of a panel's element: `panel-<board uid>-<panel id>` (ids start at 1, as in Grafana)."""
    return f"panel-{board.uid}-{index}"


def _is_num(t: str) -> bool:
    return bool(_NUMERIC.match(t))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(panel: Panel) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(max(4.0, panel.width / 2.2), max(2.2, panel.height / 3.2)), layout="constrained")


def _draw(ax: Any, panel: Panel, name: str, points: tuple[list[Any], list[Any]], *, bottom: dict[Any, float],
          width: float) -> None:
    """One series as the panel draws it: bars stacked on the ones before, points, or a line."""
    colour = colour_of(name)
    xs, ys = points[0], [0.0 if v is None else float(v) for v in points[1]]
    if panel.draw == "bars":
        base = [bottom.get(x, 0.0) for x in xs]
        ax.bar(xs, ys, width=width, bottom=base, label=name, color=colour, align="edge")
        for x, y, b in zip(xs, ys, base, strict=True):
            bottom[x] = b + y
    elif panel.draw == "points":
        ax.scatter(xs, ys, s=12, label=name, color=colour)
    else:
        ax.plot(xs, ys, label=name, linewidth=1.2, color=colour,
                marker="o" if len(xs) < _FEW_POINTS else None, markersize=3)


def _time_series(panel: Panel, r: PanelResult, tr: TimeRange) -> str:
    fig = _figure(panel)
    ax = fig.add_subplot()
    labels = [i for i, t in enumerate(r.types) if i and not _is_num(t)]
    values = [i for i, t in enumerate(r.types) if i and _is_num(t)]
    width = tr.interval_s / 86400  # matplotlib dates are in days
    stacked: dict[Any, float] = {}
    if labels and values:  # long format: one series per label value
        series: dict[str, tuple[list[Any], list[Any]]] = {}
        for row in r.rows:
            xs, ys = series.setdefault(str(row[labels[0]]), ([], []))
            xs.append(row[0])
            ys.append(row[values[0]])
        for name, (xs, ys) in sorted(series.items()):
            _draw(ax, panel, name, (xs, ys), bottom=stacked, width=width)
        ax.set_ylabel(r.columns[values[0]])
    else:
        cols = dict(zip(r.columns, range(len(r.columns)), strict=True))
        xs = [row[0] for row in r.rows]
        if "lower" in cols and "upper" in cols:
            lo = [row[cols["lower"]] for row in r.rows]
            hi = [row[cols["upper"]] for row in r.rows]
            ax.fill_between(xs, [float("nan") if v is None else v for v in lo],
                            [float("nan") if v is None else v for v in hi], alpha=0.2, label="band")
        for i in values:
            if r.columns[i] not in {"lower", "upper"}:
                _draw(ax, panel, r.columns[i], (xs, [row[i] for row in r.rows]), bottom=stacked, width=width)
    # The whole range, as Grafana shows it: a lone bar must not fill the chart as if it lasted days.
    naive = r.rows[0][0].tzinfo is None
    ax.set_xlim(*(t.replace(tzinfo=None) if naive else t for t in (tr.start, tr.end)))
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    fig.autofmt_xdate()
    ax.legend(fontsize=7, loc="upper left")
    return f'<img alt="{html.escape(panel.title)}" src="{_png(fig)}">'


def _bars(panel: Panel, r: PanelResult) -> str:
    label = next((i for i, t in enumerate(r.types) if not _is_num(t)), None)
    value = next((i for i, t in enumerate(r.types) if _is_num(t)), None)
    if label is not None and value is not None:  # one row per name
        names = [str(row[label]) for row in r.rows]
        nums = [row[value] or 0 for row in r.rows]
        axis = r.columns[value]
    elif value is not None and len(r.rows) == 1:  # one column per name (bar gauges, pies)
        names = list(r.columns)
        nums = [v or 0 for v in r.rows[0]]
        axis = panel.title
        if not any(nums):
            return _stat(r)  # all zero: the figures say it, an empty chart does not
    else:
        return _table(panel, r)
    colours = [colour_of(n) or FALLBACK for n in names]
    fig = _figure(panel)
    ax = fig.add_subplot()
    if panel.kind == "piechart" and sum(nums) > 0:
        shown = [(n, v, c) for n, v, c in zip(names, nums, colours, strict=True) if v]
        ax.pie([v for _, v, _ in shown], labels=[n for n, _, _ in shown], colors=[c for _, _, c in shown],
               autopct="%1.0f%%", textprops={"fontsize": 8})
    else:
        ax.barh(names[::-1], nums[::-1], color=colours[::-1] if panel.states else None)
        ax.set_xlabel(axis)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    return f'<img alt="{html.escape(panel.title)}" src="{_png(fig)}">'


def link_href(link: DataLink, columns: tuple[str, ...], row: tuple[Any, ...],
              console_url: str = CONSOLE_URL_DEFAULT) -> str:
    """A data link of one row as Grafana expands it: `${console_url}` and percent-encoded fields."""
    from urllib.parse import quote

    values = dict(zip(columns, row, strict=True))
    url = link.url.replace("${console_url}", console_url.rstrip("/"))
    return _LINK_FIELD.sub(lambda m: quote(_cell(values[m.group(1)]), safe=""), url)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def _row(links: tuple[DataLink, ...], columns: tuple[str, ...], row: tuple[Any, ...]) -> str:
    cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
    for link in links:
        cells += f'<td><a href="{html.escape(link_href(link, columns, row))}">{html.escape(link.title)}</a></td>'
    return f"<tr>{cells}</tr>"


def _table(panel: Panel, r: PanelResult) -> str:
    links = tuple(lk for lk in panel.links if set(lk.fields) <= set(r.columns))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in r.columns) + "<th></th>" * len(links)
    body = "".join(_row(links, r.columns, row) for row in r.rows[:_MAX_TABLE_ROWS])
    more = f'<p class="empty">{len(r.rows) - _MAX_TABLE_ROWS} more rows</p>' if len(r.rows) > _MAX_TABLE_ROWS else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _stat(r: PanelResult) -> str:
    row = r.rows[0]
    return '<div class="stat">' + "".join(
        f"<div>{html.escape(_cell(v))}<span>{html.escape(c)}</span></div>" for c, v in zip(r.columns, row, strict=True)
    ) + "</div>"


def _body(panel: Panel, r: PanelResult, tr: TimeRange) -> str:
    if not r.rows:
        return '<p class="empty">No data in this range.</p>'
    if panel.kind == "timeseries":
        return _time_series(panel, r, tr)
    if panel.kind in {"barchart", "bargauge", "piechart"}:
        return _bars(panel, r)
    if panel.kind == "stat":
        return _stat(r)
    return _table(panel, r)


def variables_summary(board: Board, variables: dict[str, list[str]]) -> str:
    """The board header's "what is selected". The report picks every value of a multi-value
    variable, which reads "all (N)"; a long list is cut short (a header that lists two dozen
    tenant ids says nothing)."""
    parts = []
    for v in board.variables:
        chosen = variables.get(v.name, [])
        if not chosen:
            text = "-"
        elif v.multi and v.include_all and len(chosen) > 1:
            text = f"all ({len(chosen)})"
        elif len(chosen) > _MAX_LISTED:
            text = f"{', '.join(chosen[:_MAX_LISTED])} and {len(chosen) - _MAX_LISTED} more"
        else:
            text = ", ".join(chosen)
        parts.append(f"{v.label.lower()}: {text}")
    return "; ".join(parts)


def _title(panel: Panel, variables: dict[str, list[str]]) -> str:
    return _VAR_IN_TITLE.sub(lambda m: ", ".join(variables.get(m.group(1), [])) or m.group(1), panel.title)


def render_report(client: Any, time_range: TimeRange | None = None, boards: tuple[Board, ...] = BOARDS,
                  title: str = "tenantwatch report") -> ReportOutcome:
    """The whole report as one self-contained HTML page."""
    tr = time_range or data_time_range(client)
    if tr is None:
        now = datetime.now(UTC)
        tr = TimeRange(now, now, 60)
    failed: dict[str, str] = {}
    sections, count = [], 0
    for board in boards:
        try:
            variables = variable_values(client, board, tr)
        except Exception as exc:  # a missing table must not sink the whole report
            variables = {v.name: [] for v in board.variables}
            log.warning("variables of %s: %s", board.uid, exc)
        cells = []
        for n, panel in enumerate(board.panels, start=1):
            element = panel_element_id(board, n)
            try:
                inner = _body(panel, run_panel(client, panel, tr, variables), tr)
            except Exception as exc:
                failed[element] = str(exc).splitlines()[0][:300]
                inner = f'<p class="error">Query failed: {html.escape(failed[element])}</p>'
            count += 1
            cells.append(
                f'<section class="panel" id="{element}" data-kind="{panel.kind}" '
                f'style="grid-column:span {panel.width}"><h3>{html.escape(_title(panel, variables))}</h3>'
                f"{inner}</section>"
            )
        chosen = variables_summary(board, variables)
        sections.append(
            f'<div class="board" id="board-{board.uid}"><h2>{html.escape(board.title)}</h2>'
            f'<p class="desc">{html.escape(board.description)}{" — " + html.escape(chosen) if chosen else ""}</p>'
            f'<div class="grid">{"".join(cells)}</div></div>'
        )
    span = f"{tr.start:%Y-%m-%d %H:%M} – {tr.end:%Y-%m-%d %H:%M} UTC"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><div>{span} · interval {tr.interval_s} s · "
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</div></header>{''.join(sections)}</body></html>\n"
    )
    return ReportOutcome(page, count, failed)


def write_report(path: Path, client: Any, time_range: TimeRange | None = None) -> ReportOutcome:
    """Render the report and write it to `path`."""
    outcome = render_report(client, time_range)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(outcome.html, encoding="utf-8")
    return outcome
