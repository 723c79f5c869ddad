"""Owner overview: is the pipeline healthy, and what needs a look right now."""

from __future__ import annotations

from dashboards.boards._sql import ANOMALIES_NOW, OFFENDER_LINK, TRIALS_NOW
from dashboards.model import Board, Panel

__all__ = ["BOARD"]

# Requests are a rate; billing, error and usage events are few and far between (a per-second
# figure of them is a flat line at ~0), so they are counted per interval, as bars.
_REQUESTS = """
SELECT $__timeInterval(ts) AS time, count() / $__interval_s AS requests
FROM requests
WHERE $__timeFilter(ts)
GROUP BY time
ORDER BY time
"""

_OTHER_EVENTS = """
SELECT $__timeInterval(ts) AS time, type, count() AS events
FROM (
    SELECT ts, 'billing' AS type FROM billing WHERE $__timeFilter(ts)
    UNION ALL SELECT ts, 'errors' AS type FROM errors WHERE $__timeFilter(ts)
    UNION ALL SELECT ts, 'usage' AS type FROM usage WHERE $__timeFilter(ts)
)
GROUP BY time, type
ORDER BY time, type
"""

_DLQ = """
SELECT $__timeInterval(ts) AS time, toString(source_topic) AS source_topic, count() AS dead_letters
FROM dead_letters FINAL
WHERE $__timeFilter(ts)
GROUP BY time, source_topic
ORDER BY time, source_topic
"""

_DLQ_TOTAL = """
SELECT count() AS dead_letters FROM dead_letters FINAL WHERE $__timeFilter(ts)
"""

# One column per severity (not one row each): Grafana colours fields, not rows, by name.
_ACTIVE_ANOMALIES = f"""
SELECT countIf(severity = 'critical') AS critical, countIf(severity = 'high') AS high,
       countIf(severity = 'medium') AS medium, countIf(severity = 'low') AS low
FROM ({ANOMALIES_NOW})
WHERE status = 'active'
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_FUNNEL = f"""
SELECT stage, trials FROM (
    SELECT 1 AS ord, 'started' AS stage, count() AS trials FROM ({TRIALS_NOW}) WHERE $__timeFilter(began)
    UNION ALL
    SELECT 2 AS ord, 'still trialing' AS stage, countIf(status = 'trialing') AS trials
    FROM ({TRIALS_NOW}) WHERE $__timeFilter(began)
    UNION ALL
    SELECT 3 AS ord, 'converted' AS stage, countIf(status = 'converted') AS trials
    FROM ({TRIALS_NOW}) WHERE $__timeFilter(began)
    UNION ALL
    SELECT 4 AS ord, 'expired or suspended' AS stage, countIf(status IN ('expired', 'suspended')) AS trials
    FROM ({TRIALS_NOW}) WHERE $__timeFilter(began)
)
ORDER BY ord
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_TOP_OFFENDERS = """
SELECT tenant_id, ip, count() AS violations, uniqExact(limit_name) AS limits_hit, max(ts) AS last_violation
FROM rl_violations FINAL
WHERE $__timeFilter(ts)
GROUP BY tenant_id, ip
ORDER BY violations DESC, last_violation DESC
LIMIT 10
"""

BOARD = Board(
    uid="tw-overview",
    title="tenantwatch · Owner overview",
    description="Pipeline throughput and health, open anomalies, the trial funnel and the noisiest clients.",
    panels=(
        Panel("Requests per second", "timeseries", _REQUESTS, ("time", "requests"),
              "Requests written to ClickHouse, per second of event time.", unit="reqps", width=16,
              states=("requests",)),
        Panel("Dead letters in range", "stat", _DLQ_TOTAL, ("dead_letters",),
              "Malformed input set aside with its reason (exact, FINAL).", width=8),
        Panel("Billing, error and usage events", "timeseries", _OTHER_EVENTS, ("time", "type", "events"),
              "Events per interval of event time (too sparse for a per-second rate).", width=12, draw="bars",
              states=("billing", "errors", "usage")),
        Panel("Dead letters by source topic", "timeseries", _DLQ, ("time", "source_topic", "dead_letters"),
              "Dead letters per interval of event time.", width=12, draw="bars"),
        Panel("Active anomalies by severity", "bargauge", _ACTIVE_ANOMALIES, ("critical", "high", "medium", "low"),
              "Anomaly episodes whose current status is active (FINAL, latest workflow change wins).", width=12,
              states=("critical", "high", "medium", "low")),
        Panel("Trials funnel", "barchart", _FUNNEL, ("stage", "trials"),
              "Trials started in the range and where each stands now (FINAL).", width=12),
        Panel("Top offenders", "table", _TOP_OFFENDERS,
              ("tenant_id", "ip", "violations", "limits_hit", "last_violation"),
              "Clients with the most rate-limit violations in the range (FINAL). A row opens the client in "
              "the owner console.", width=12, links=(OFFENDER_LINK,)),
    ),
)
