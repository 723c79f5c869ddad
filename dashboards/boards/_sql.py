"""SQL fragments shared by several boards (one home for "current status" logic)."""

from __future__ import annotations

from dashboards.model import DataLink

__all__ = ["ANOMALIES_NOW", "MAILS_LATEST", "OFFENDER_LINK", "TENANTS", "TRIALS_NOW"]

# Rows of offender tables (columns tenant_id, ip) open that client in the owner console.
OFFENDER_LINK = DataLink(
    "Open in the owner console",
    "${console_url}/offenders?tenant=${__data.fields.tenant_id:percentencode}&ip=${__data.fields.ip:percentencode}",
)

# Each anomaly episode (latest version, FINAL) with its status as of the range end: the last
# workflow change if there is one, else the status on the record. Columns: id, tenant, metric,
# severity, start_ts, last_ts, value, expected, verdict, status. The raw σ score is left out on
# purpose: it is capped (a flat baseline gives an "infinite" one), so it reads as nonsense on a
# board; severity and the value against its expected one say what it means.
ANOMALIES_NOW = """
    SELECT a.id AS id, a.tenant AS tenant, toString(a.metric) AS metric, toString(a.severity) AS severity,
           a.start_ts AS start_ts, a.last_ts AS last_ts, a.value AS value, a.expected AS expected,
           toString(a.verdict) AS verdict,
           if(s.anomaly_id = '', toString(a.status), s.last_status) AS status
    FROM anomalies AS a FINAL
    LEFT JOIN (
        SELECT anomaly_id, toString(argMax(to_status, ts)) AS last_status
        FROM anomaly_status FINAL
        WHERE ts <= $__toTime
        GROUP BY anomaly_id
    ) AS s ON s.anomaly_id = a.id
    WHERE a.start_ts <= $__toTime
"""

# Each trial as it stands at the range end (highest version at or before it). Columns:
# trial, tenant_id, plan, status, began, ends_ts, converted_ts.
TRIALS_NOW = """
    SELECT trial, argMax(t_tenant, v) AS tenant_id, argMax(t_plan, v) AS plan,
           argMax(t_status, v) AS status, min(t_started) AS began,
           argMax(t_ends, v) AS ends_ts, argMax(t_converted, v) AS converted_ts
    FROM (
        SELECT trial_id AS trial, tenant_id AS t_tenant, plan AS t_plan, toString(status) AS t_status,
               version AS v, started_at AS t_started, ends_at AS t_ends, converted_at AS t_converted
        FROM trial_states FINAL
        WHERE ts <= $__toTime
    )
    GROUP BY trial
"""

# Each e-mail notification due in the range, with the outcome of its latest delivery attempt.
# Columns: notification_id, kind, tenant_id, due_ts, outcome, attempts, delivered_ts.
# The range is event time: a mail is placed at the event time it became due (the
# notification's ts). A delivery's own ts is the wall-clock time of the attempt, which a replay
# or the demo (days of event time in minutes) puts far outside the range.
MAILS_LATEST = """
    SELECT d.notification_id AS notification_id, any(n.kind) AS kind, any(n.tenant_id) AS tenant_id,
           any(n.due) AS due_ts, toString(argMax(d.status, tuple(d.attempts, d.ts))) AS outcome,
           max(d.attempts) AS attempts, max(d.ts) AS delivered_ts
    FROM deliveries AS d FINAL
    INNER JOIN (
        SELECT id, kind, tenant_id, ts AS due FROM notifications FINAL
        WHERE toString(channel) = 'email' AND $__timeFilter(ts)
    ) AS n ON n.id = d.notification_id
    GROUP BY d.notification_id
"""

# The tenant picker: tenants that sent anything in the range.
TENANTS = "SELECT DISTINCT tenant_id FROM requests WHERE $__timeFilter(ts) ORDER BY tenant_id"
