"""SQL fragments shared by several boards (one home for "current status" logic)."""

from __future__ import annotations

__all__ = ["ANOMALIES_NOW", "MAILS_LATEST", "TENANTS", "TRIALS_NOW"]

# Each anomaly episode (latest version, FINAL) with its status as of the range end: the last
# workflow change if there is one, else the status on the record. Columns: id, tenant, metric,
# severity, start_ts, last_ts, peak_sigma, verdict, status.
ANOMALIES_NOW = """
    SELECT a.id AS id, a.tenant AS tenant, toString(a.metric) AS metric, toString(a.severity) AS severity,
           a.start_ts AS start_ts, a.last_ts AS last_ts, a.peak_sigma AS peak_sigma,
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

# Each e-mail notification with the outcome of its latest delivery attempt. Columns:
# notification_id, kind, tenant_id, outcome, attempts, delivered_ts.
MAILS_LATEST = """
    SELECT d.notification_id AS notification_id, any(n.kind) AS kind, any(n.tenant_id) AS tenant_id,
           toString(argMax(d.status, tuple(d.attempts, d.ts))) AS outcome, max(d.attempts) AS attempts,
           max(d.ts) AS delivered_ts
    FROM deliveries AS d FINAL
    INNER JOIN (SELECT id, kind, tenant_id FROM notifications FINAL WHERE toString(channel) = 'email') AS n
        ON n.id = d.notification_id
    WHERE $__timeFilter(d.ts)
    GROUP BY d.notification_id
"""

# The tenant picker: tenants that sent anything in the range.
TENANTS = "SELECT DISTINCT tenant_id FROM requests WHERE $__timeFilter(ts) ORDER BY tenant_id"
