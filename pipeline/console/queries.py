"""What the console reads: a fixed catalogue of named queries with typed, bound parameters.

Only these queries run, whether the console reads ClickHouse itself or asks the writer's
loopback read API (which accepts a name and parameters, never SQL). Time filters count back
from the newest record of the table read (event time), as the CLI's do, so a replay or the
demo (days played in minutes) reads the same as live traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["LATEST_TRIALS", "OPEN_STATUSES", "QUERIES", "Query", "QueryError", "Result", "bind", "jsonable_rows"]

OPEN_STATUSES = ("active", "acknowledged")
ANOMALY_STATUSES = ("active", "acknowledged", "resolved", "false_positive")
TRIAL_STATUSES = ("trialing", "converted", "canceled", "expired", "suspended")

# Each trial's newest state (by version), read by the console and the CLI (`trials list|stats`).
LATEST_TRIALS = """
    SELECT trial_id, argMax(tenant_id, version) AS tenant, argMax(plan, version) AS plan_,
           argMax(status, version) AS status_, max(version) AS last_version,
           argMax(started_at, version) AS started, argMax(ends_at, version) AS ends,
           argMax(converted_at, version) AS converted, argMax(ts, version) AS changed_at
    FROM trial_states GROUP BY trial_id
"""


def _tenant(col: str) -> str:
    return f"({{tenant:String}} = '' OR {col} = {{tenant:String}})"


_IP = "({ip:String} = '' OR ip = {ip:String})"


class QueryError(ValueError):
    """An unknown query or a parameter it does not take."""


@dataclass(frozen=True)
class Query:
    sql: str
    params: Mapping[str, type]  # name -> str | int | list (of str); every one is required after `bind`
    defaults: Mapping[str, Any]


def _q(sql: str, **defaults: Any) -> Query:
    return Query(sql, {k: type(v) for k, v in defaults.items()}, defaults)


# Only fixed fragments are joined into this SQL; every value is a bound parameter.
QUERIES: dict[str, Query] = {
    "anomalies": _q(f"""
        SELECT id, tenant, metric, severity, status, direction, start_ts, last_ts, points,
               round(peak_sigma, 1) AS peak_sigma, verdict
        FROM anomalies FINAL
        WHERE {_tenant("tenant")} AND has({{statuses:Array(String)}}, status)
          AND last_ts >= (SELECT max(last_ts) FROM anomalies) - toIntervalSecond({{since:UInt64}})
        ORDER BY start_ts DESC, id LIMIT {{limit:UInt32}}""",
        tenant="", statuses=list(OPEN_STATUSES), since=7 * 86400, limit=200),
    # A stream's metric points in [since, until) (epoch *minutes*: within the integer bound),
    # oldest first: what a worker seeds a new anomaly stream from (`pipeline.adapters.clickhouse.metric_history`).
    "metric_history": _q("""
        SELECT toFloat64(toUnixTimestamp64Milli(ts)) / 1000 AS t, value, denominator FROM metric_points FINAL
        WHERE tenant = {tenant:String} AND metric = {metric:String}
          AND ts >= toDateTime64({since_min:UInt32} * 60, 3, 'UTC')
          AND ts < toDateTime64({until_min:UInt32} * 60, 3, 'UTC')
        ORDER BY ts LIMIT {limit:UInt32}""", tenant="", metric="", since_min=0, until_min=0, limit=100_000),
    "anomaly": _q("""
        SELECT id, tenant, metric, severity, status, direction, start_ts, detected_ts, last_ts, points, value,
               expected, round(deviation_sigma, 1) AS deviation_sigma, round(peak_sigma, 1) AS peak_sigma, verdict,
               threshold_sigma
        FROM anomalies FINAL WHERE id = {id:String} LIMIT 1""", id=""),
    "anomaly_history": _q("""
        SELECT ts, from_status, to_status, actor, reason FROM anomaly_status FINAL
        WHERE anomaly_id = {id:String} ORDER BY ts, to_status LIMIT 100""", id=""),
    "offenders": _q(f"""
        SELECT v.tenant_id, v.ip, v.violations, v.peak, v.last_seen, b.bans
        FROM (SELECT tenant_id, ip, count() AS violations, max(count) AS peak, max(ts) AS last_seen
              FROM rl_violations FINAL
              WHERE ts >= (SELECT max(ts) FROM rl_violations WHERE {_tenant("tenant_id")})
                    - toIntervalSecond({{since:UInt64}})
                AND {_tenant("tenant_id")} AND {_IP}
              GROUP BY tenant_id, ip) AS v
        LEFT JOIN (SELECT tenant_id, ip, countIf(action = 'started') AS bans FROM rl_bans FINAL
                   WHERE ts >= (SELECT max(ts) FROM rl_violations WHERE {_tenant("tenant_id")})
                    - toIntervalSecond({{since:UInt64}})
                   GROUP BY tenant_id, ip) AS b ON v.tenant_id = b.tenant_id AND v.ip = b.ip
        ORDER BY v.violations DESC, v.peak DESC, v.ip LIMIT {{limit:UInt32}}""",
        tenant="", ip="", since=86400, limit=100),
    "bans": _q(f"""
        SELECT tenant_id, ip, argMax(action, (ts, id)) AS state, argMax(reason, (ts, id)) AS reason,
               argMax(level, (ts, id)) AS level, argMax(start, (ts, id)) AS started,
               argMax(end, (ts, id)) AS ends, max(ts) AS changed
        FROM rl_bans FINAL
        WHERE {_tenant("tenant_id")} AND {_IP}
          AND ts >= (SELECT max(ts) FROM rl_bans) - toIntervalSecond({{since:UInt64}})
        GROUP BY tenant_id, ip ORDER BY changed DESC, ip LIMIT {{limit:UInt32}}""",
        tenant="", ip="", since=7 * 86400, limit=200),
    "limits": _q(f"""
        SELECT tenant_id, argMax(ts, (ts, id)) AS since, argMax(actor, (ts, id)) AS actor,
               argMax(action, (ts, id)) AS last_action, argMax(enabled, (ts, id)) AS enabled,
               argMax(shadow, (ts, id)) AS shadow, argMax(per_minute, (ts, id)) AS per_minute,
               argMax(per_hour, (ts, id)) AS per_hour, argMax(per_day, (ts, id)) AS per_day,
               argMax(whitelist_size, (ts, id)) AS whitelisted, argMax(blacklist_size, (ts, id)) AS blacklisted
        FROM rl_limits FINAL WHERE {_tenant("tenant_id")}
        GROUP BY tenant_id ORDER BY tenant_id LIMIT {{limit:UInt32}}""", tenant="", limit=500),
    "trials": _q(f"""
        SELECT tenant, trial_id, plan_ AS plan, status_ AS status, started, ends, converted, changed_at
        FROM ({LATEST_TRIALS})
        WHERE {_tenant("tenant")} AND ({{status:String}} = '' OR status_ = {{status:String}})
          AND changed_at >= (SELECT max(ts) FROM trial_states) - toIntervalSecond({{since:UInt64}})
        ORDER BY changed_at DESC, trial_id LIMIT {{limit:UInt32}}""",
        tenant="", status="", since=30 * 86400, limit=200),
    "audit": _q(f"""
        SELECT ts, actor, action, tenant_id, outcome, reason, params_json, nonce FROM audit_log FINAL
        WHERE {_tenant("tenant_id")} AND ({{nonce:String}} = '' OR nonce = {{nonce:String}})
        ORDER BY ts DESC, id LIMIT {{limit:UInt32}}""", tenant="", nonce="", limit=50),
}

_MAX_TEXT = 256
_MAX_INT = 10 * 366 * 86400


def _fits(kind: type, value: Any) -> bool:
    if kind is str:
        return isinstance(value, str) and len(value) <= _MAX_TEXT
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT
    return isinstance(value, list) and len(value) <= 16 and all(
        isinstance(v, str) and len(v) <= _MAX_TEXT for v in value)


def bind(name: str, given: Mapping[str, Any]) -> tuple[Query, dict[str, Any]]:
    """The query `name` and its parameters: `given` over the defaults, each checked for its type."""
    query = QUERIES.get(name)
    if query is None:
        raise QueryError(f"no query {name!r}")
    unknown = set(given) - set(query.params)
    if unknown:
        raise QueryError(f"{name} takes no parameter {', '.join(sorted(unknown))}")
    out = dict(query.defaults)
    for key, value in given.items():
        kind = query.params[key]
        if not _fits(kind, value):
            raise QueryError(f"{name}: {key} must be a {kind.__name__} (within bounds)")
        out[key] = list(value) if kind is list else value
    return query, out


Result = dict[str, list[Any]]  # {"columns": [...], "rows": [[...], ...]}


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")  # chDB hands UTC back naive; servers aware in UTC
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def jsonable_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Result:
    """A query result as JSON-ready columns and rows (times as UTC text), the same on every path."""
    return {"columns": list(columns), "rows": [[_cell(v) for v in row] for row in rows]}
