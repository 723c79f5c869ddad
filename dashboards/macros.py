"""Expand the Grafana ClickHouse plugin's macros and template variables into plain SQL.

The same SQL that Grafana runs is run here by the tests and by the static report, so the
expansion follows the plugin's own (`pkg/macros/macros.go` of grafana/clickhouse-datasource):
`$__timeFilter(ts)` → `ts >= toDateTime(<from>) AND ts <= toDateTime(<to>)` and so on.

Template variables are only accepted in a quoting format (`${tenant:singlequote}` or
`${tenant:sqlstring}`); their values become ClickHouse string literals with backslashes and
quotes escaped, so no value can leave its literal. A bare `$tenant` / `${tenant}` / `[[tenant]]`
is refused: Grafana would paste such a value into the SQL unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["MacroError", "TimeRange", "expand", "quote_literal", "variable_names"]


class MacroError(ValueError):
    """A macro or template variable that cannot be expanded safely."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard time range and the panel interval (Grafana's `$__interval`)."""

    start: datetime
    end: datetime
    interval_s: int = 60

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MacroError("time range bounds must be timezone-aware")
        if self.end < self.start:
            raise MacroError("time range ends before it starts")
        if self.interval_s < 1:
            raise MacroError("interval must be at least 1 second")

    @classmethod
    def around(cls, start: datetime, end: datetime, points: int = 200) -> TimeRange:
        """A range with an interval that gives about `points` buckets (as Grafana picks one)."""
        span = max(1, int((end - start).total_seconds()))
        nice = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
        interval = next((n for n in nice if span / n <= points), nice[-1])
        return cls(start.astimezone(UTC), end.astimezone(UTC), interval)


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?"
_MACRO = re.compile(r"\$__([A-Za-z_]+)(?:\(([^()]*)\))?")
_VAR_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?\}")
_VAR_BARE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\]\]")
_QUOTING_FORMATS = {"singlequote", "sqlstring"}


def quote_literal(value: str) -> str:
    """`value` as a ClickHouse string literal: backslash and quote escaped, control bytes refused."""
    if not isinstance(value, str):
        raise MacroError(f"template variable values must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise MacroError("template variable values must not contain NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sec(t: datetime) -> int:
    return int(t.timestamp())


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _args(name: str, raw: str | None, want: int) -> list[str]:
    args = [a.strip() for a in raw.split(",")] if raw is not None and raw.strip() else []
    if len(args) != want:
        raise MacroError(f"$__{name} expects {want} argument(s), got {len(args)}")
    for a in args:
        if not re.fullmatch(_IDENT, a):
            raise MacroError(f"$__{name} argument {a!r} is not a column name")
    return args


def _macro(name: str, raw: str | None, tr: TimeRange) -> str:
    f, t = tr.start, tr.end
    if name == "timeFilter":
        (c,) = _args(name, raw, 1)
        return f"{c} >= toDateTime({_sec(f)}) AND {c} <= toDateTime({_sec(t)})"
    if name == "timeFilter_ms":
        (c,) = _args(name, raw, 1)
        return f"{c} >= fromUnixTimestamp64Milli({_ms(f)}) AND {c} <= fromUnixTimestamp64Milli({_ms(t)})"
    if name == "dateFilter":
        (c,) = _args(name, raw, 1)
        return f"{c} >= toDate('{f:%Y-%m-%d}') AND {c} <= toDate('{t:%Y-%m-%d}')"
    if name == "timeInterval":
        (c,) = _args(name, raw, 1)
        return f"toStartOfInterval(toDateTime({c}), INTERVAL {tr.interval_s} second)"
    if name == "timeInterval_ms":
        (c,) = _args(name, raw, 1)
        return f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {tr.interval_s * 1000} millisecond)"
    no_args = {
        "fromTime": f"toDateTime({_sec(f)})",
        "toTime": f"toDateTime({_sec(t)})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({_ms(f)})",
        "toTime_ms": f"fromUnixTimestamp64Milli({_ms(t)})",
        "interval_s": str(tr.interval_s),
    }
    if name in no_args:
        if raw is not None:
            raise MacroError(f"$__{name} takes no arguments")
        return no_args[name]
    raise MacroError(f"unknown macro $__{name}")


def variable_names(sql: str) -> set[str]:
    """The template variables `sql` refers to, in any syntax."""
    names = {m.group(1) for m in _VAR_BRACED.finditer(sql)}
    names |= {m.group(1) or m.group(2) for m in _VAR_BARE.finditer(sql) if not (m.group(1) or "").startswith("__")}
    return names


def _variable(name: str, fmt: str | None, variables: Mapping[str, str | Sequence[str]]) -> str:
    if fmt not in _QUOTING_FORMATS:
        raise MacroError(
            f"template variable ${{{name}}} must use a quoting format (${{{name}:singlequote}}); "
            "unquoted values would reach the SQL unescaped"
        )
    if name not in variables:
        raise MacroError(f"no value for template variable {name!r}")
    value = variables[name]
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        return "NULL"  # an empty multi-value selection matches nothing (`x IN (NULL)`)
    return ", ".join(quote_literal(v) for v in values)


def expand(sql: str, time_range: TimeRange, variables: Mapping[str, str | Sequence[str]] | None = None) -> str:
    """`sql` with every macro and template variable replaced by plain, bound SQL."""
    variables = variables or {}
    out = _MACRO.sub(lambda m: _macro(m.group(1), m.group(2), time_range), sql)
    # Checked before substitution: a value may itself contain `$name`, which is only text.
    bare = [m.group(0) for m in _VAR_BARE.finditer(_VAR_BRACED.sub("", out))]
    if bare:
        raise MacroError(f"template variable {bare[0]} must use a quoting format, e.g. ${{name:singlequote}}")
    return _VAR_BRACED.sub(lambda m: _variable(m.group(1), m.group(2), variables), out)
