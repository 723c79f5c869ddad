"""Anomalies: what is open, when it happened, and each metric against its baseline band."""

from __future__ import annotations

from dashboards.boards._sql import ANOMALIES_NOW
from dashboards.model import Board, DataLink, Panel, Variable

__all__ = ["BOARD"]

_BY_SEVERITY_STATUS = f"""
SELECT severity, status, count() AS anomalies
FROM ({ANOMALIES_NOW})
WHERE $__timeFilter(start_ts)
GROUP BY severity, status
ORDER BY indexOf(['critical', 'high', 'medium', 'low'], severity), status
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_OPENED = """
SELECT $__timeInterval(start_ts) AS time, toString(severity) AS severity, count() AS opened
FROM anomalies FINAL
WHERE $__timeFilter(start_ts)
GROUP BY time, severity
ORDER BY time, severity
"""

# Impact as the change against the expected value, in percent (NULL where nothing was expected:
# a percentage of zero means nothing).
_TIMELINE = f"""
SELECT id, start_ts, last_ts, tenant, metric, severity, status, round(value, 2) AS value,
       round(expected, 2) AS expected,
       if(abs(expected) < 1e-9, NULL, round(100 * (value - expected) / abs(expected), 1)) AS change_pct, verdict
FROM ({ANOMALIES_NOW})
WHERE $__timeFilter(start_ts)
ORDER BY start_ts DESC
LIMIT 200
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

# Points and the band they were scored against share (tenant, metric, ts).
_BAND = """
SELECT p.ts AS time, p.value AS value, b.expected AS expected, b.lower AS lower, b.upper AS upper
FROM (
    SELECT ts, value
    FROM metric_points FINAL
    WHERE tenant = ${tenant:singlequote} AND toString(metric) = ${metric:singlequote} AND $__timeFilter(ts)
) AS p
LEFT JOIN (
    SELECT ts, expected, lower, upper
    FROM baselines FINAL
    WHERE tenant = ${tenant:singlequote} AND toString(metric) = ${metric:singlequote} AND $__timeFilter(ts)
) AS b ON b.ts = p.ts
ORDER BY time
SETTINGS join_use_nulls = 1
"""

# The rule history keeps every change; the latest per (tenant, metric) is in force.
_RULES = """
SELECT tenant, toString(metric) AS metric, toString(direction) AS direction, threshold_sigma, warmup, enabled,
       is_default, ts AS changed, actor, reason
FROM anomaly_rules FINAL
WHERE ts <= $__toTime
ORDER BY tenant, metric, changed DESC
LIMIT 1 BY tenant, metric
"""

_SEVERITIES = ("critical", "high", "medium", "low")

_TENANTS = "SELECT DISTINCT tenant FROM metric_points WHERE $__timeFilter(ts) ORDER BY tenant"
_METRICS = """
SELECT DISTINCT toString(metric) FROM metric_points
WHERE tenant = ${tenant:singlequote} AND $__timeFilter(ts) ORDER BY 1
"""

BOARD = Board(
    uid="tw-anomalies",
    title="tenantwatch · Anomalies",
    description="Anomaly episodes per tenant and metric, their workflow, and each metric against its baseline.",
    variables=(
        Variable("tenant", "Tenant", _TENANTS),
        Variable("metric", "Metric", _METRICS, regex="/^[a-z0-9_]{1,64}$/"),
    ),
    panels=(
        Panel("Anomalies by severity and status", "table", _BY_SEVERITY_STATUS, ("severity", "status", "anomalies"),
              "Episodes started in the range, by severity and current status (FINAL).", width=8),
        Panel("Anomalies opened", "timeseries", _OPENED, ("time", "severity", "opened"),
              "Episodes by the interval they started in.", width=16, draw="bars", states=_SEVERITIES),
        Panel("Timeline", "table", _TIMELINE,
              ("id", "start_ts", "last_ts", "tenant", "metric", "severity", "status", "value", "expected",
               "change_pct", "verdict"),
              "Latest 200 episodes in the range, newest first: the value against the expected one, and the "
              "change in percent. A row opens the anomaly in the owner console.", width=24,
              links=(DataLink("Open in the owner console",
                              "${console_url}/anomalies/${__data.fields.id:percentencode}"),)),
        Panel("${metric} of ${tenant} against its baseline", "timeseries", _BAND,
              ("time", "value", "expected", "lower", "upper"),
              "The metric and the band (expected ± threshold·σ) it was scored against.", width=24, height=10),
        Panel("Rules", "table", _RULES,
              ("tenant", "metric", "direction", "threshold_sigma", "warmup", "enabled", "is_default", "changed",
               "actor", "reason"),
              "The rule in force per tenant and metric (latest change, FINAL).", width=24),
    ),
)
