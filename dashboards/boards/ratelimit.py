"""Rate limiting: violations, bans, offenders, limit usage and decisions, per tenant."""

from __future__ import annotations

from dashboards.boards._sql import OFFENDER_LINK, TENANTS
from dashboards.model import Board, Panel, Variable
from dashboards.palette import DECISION_STATES
from schemas.ratelimit import TenantPolicy

__all__ = ["BOARD"]

_TENANT_IN = "tenant_id IN (${tenant:singlequote})"
# Tenants without a stored configuration run on the default policy.
_DEFAULT_PER_HOUR = TenantPolicy.model_fields["per_hour"].default
_DEFAULT_PER_DAY = TenantPolicy.model_fields["per_day"].default

_VIOLATIONS = f"""
SELECT $__timeInterval(ts) AS time, toString(limit_name) AS limit_name, count() AS violations
FROM rl_violations FINAL
WHERE $__timeFilter(ts) AND {_TENANT_IN}
GROUP BY time, limit_name
ORDER BY time, limit_name
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

# A ban is a (tenant, ip, start); its latest record says whether it ended and when it ends.
_BANS_NOW = f"""
SELECT tenant_id, ip, argMax(reason, ts) AS ban_reason, max(level) AS ban_level, `start` AS ban_start,
       argMax(`end`, ts) AS ban_end, toString(argMax(action, ts)) AS last_action, argMax(shadow, ts) AS is_shadow
FROM rl_bans FINAL
WHERE ts <= $__toTime AND {_TENANT_IN}
GROUP BY tenant_id, ip, `start`
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_ACTIVE_BANS = f"""
SELECT tenant_id, ip, toString(ban_reason) AS reason, ban_level AS level, ban_start AS started, ban_end AS ends,
       is_shadow AS shadow
FROM ({_BANS_NOW})
WHERE last_action = 'started' AND ban_end > $__toTime
ORDER BY ends DESC
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_ACTIVE_BANS_COUNT = f"""
SELECT count() AS active_bans FROM ({_BANS_NOW}) WHERE last_action = 'started' AND ban_end > $__toTime
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_TOP_24H = f"""
SELECT v.tenant_id AS tenant_id, v.ip AS ip, v.violations AS violations, coalesce(d.not_allowed, 0) AS not_allowed,
       v.last_violation AS last_violation
FROM (
    SELECT tenant_id, ip, count() AS violations, max(ts) AS last_violation
    FROM rl_violations FINAL
    WHERE ts > $__toTime - INTERVAL 24 HOUR AND ts <= $__toTime AND {_TENANT_IN}
    GROUP BY tenant_id, ip
) AS v
LEFT JOIN (
    SELECT tenant_id, ip, countIf(toString(state) != 'allowed') AS not_allowed
    FROM rl_decisions FINAL
    WHERE ts > $__toTime - INTERVAL 24 HOUR AND ts <= $__toTime AND {_TENANT_IN}
    GROUP BY tenant_id, ip
) AS d ON d.tenant_id = v.tenant_id AND d.ip = v.ip
ORDER BY violations DESC, not_allowed DESC
LIMIT 20
SETTINGS join_use_nulls = 1
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

# Limits apply per (tenant, ip): a tenant's usage is that of its busiest client IP over the
# hour and the day before the range end, against the tenant's configuration at that time.
_USAGE = f"""
SELECT u.tenant_id AS tenant_id, u.top_ip_hour AS busiest_ip_last_hour,
       if(l.tenant_id = '', {_DEFAULT_PER_HOUR}, l.lim_hour) AS per_hour_limit,
       if(per_hour_limit > 0, round(100 * u.top_ip_hour / per_hour_limit, 1), NULL) AS hour_usage_pct,
       u.top_ip_day AS busiest_ip_last_day,
       if(l.tenant_id = '', {_DEFAULT_PER_DAY}, l.lim_day) AS per_day_limit,
       if(per_day_limit > 0, round(100 * u.top_ip_day / per_day_limit, 1), NULL) AS day_usage_pct
FROM (
    SELECT tenant_id, max(hour_n) AS top_ip_hour, max(day_n) AS top_ip_day
    FROM (
        SELECT tenant_id, ip, countIf(ts > $__toTime - INTERVAL 1 HOUR) AS hour_n, count() AS day_n
        FROM requests FINAL
        WHERE ts > $__toTime - INTERVAL 24 HOUR AND ts <= $__toTime AND {_TENANT_IN}
        GROUP BY tenant_id, ip
    )
    GROUP BY tenant_id
) AS u
LEFT JOIN (
    SELECT tenant_id, argMax(per_hour, ts) AS lim_hour, argMax(per_day, ts) AS lim_day
    FROM rl_limits FINAL
    WHERE ts <= $__toTime
    GROUP BY tenant_id
) AS l ON l.tenant_id = u.tenant_id
ORDER BY hour_usage_pct DESC, tenant_id
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

# Traffic by decision: each request with the decision state in force for its (tenant, ip)
# when it arrived (the latest state change at or before it; "allowed" before any). The
# decisions topic carries state changes only, so counting its rows would count changes.
_REQUEST_DECISIONS = f"""
SELECT r.ts AS ts, if(d.state = '', 'allowed', d.state) AS decision
FROM (
    SELECT tenant_id, ip, ts FROM requests FINAL WHERE $__timeFilter(ts) AND {_TENANT_IN}
) AS r
ASOF LEFT JOIN (
    SELECT tenant_id, ip, ts, toString(state) AS state FROM rl_decisions FINAL
    WHERE ts <= $__toTime AND {_TENANT_IN}
) AS d ON r.tenant_id = d.tenant_id AND r.ip = d.ip AND r.ts >= d.ts
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_DECISIONS = f"""
SELECT $__timeInterval(ts) AS time, decision, count() AS requests
FROM ({_REQUEST_DECISIONS})
GROUP BY time, decision
ORDER BY time, decision
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

# One column per state (not one row each): Grafana colours a pie's fields, not its rows, by name.
_DECISION_TOTALS = f"""
SELECT {", ".join(f"countIf(decision = '{s}') AS {s}" for s in DECISION_STATES)}
FROM ({_REQUEST_DECISIONS})
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

BOARD = Board(
    uid="tw-ratelimit",
    title="tenantwatch · Rate limiting",
    description="Per-tenant, per-IP rate limits: violations, bans, offenders, limit usage and gateway decisions.",
    variables=(Variable("tenant", "Tenant", TENANTS, multi=True, include_all=True),),
    panels=(
        Panel("Violations over time", "timeseries", _VIOLATIONS, ("time", "limit_name", "violations"),
              "Limit windows first exceeded, by window (FINAL).", width=16, draw="bars"),
        Panel("Active bans", "stat", _ACTIVE_BANS_COUNT, ("active_bans",),
              "Bans started and not yet ended at the range end.", width=8),
        Panel("Bans in force", "table", _ACTIVE_BANS,
              ("tenant_id", "ip", "reason", "level", "started", "ends", "shadow"),
              width=12),
        Panel("Top offenders (24 h)", "table", _TOP_24H,
              ("tenant_id", "ip", "violations", "not_allowed", "last_violation"),
              "Violations and non-allowed decisions in the 24 hours before the range end. A row opens the "
              "client in the owner console.", width=12, links=(OFFENDER_LINK,)),
        Panel("Limit usage per tenant", "table", _USAGE,
              ("tenant_id", "busiest_ip_last_hour", "per_hour_limit", "hour_usage_pct",
               "busiest_ip_last_day", "per_day_limit", "day_usage_pct"),
              "Busiest client IP of each tenant against its hourly and daily limits, at the range end.",
              width=24),
        Panel("Requests by decision", "timeseries", _DECISIONS, ("time", "decision", "requests"),
              "Requests per interval by the decision in force for their client (shadow decisions included).",
              width=16, draw="bars", states=DECISION_STATES),
        Panel("Decision totals", "piechart", _DECISION_TOTALS, DECISION_STATES,
              "Requests in the range by the decision in force for their client.", width=8,
              states=DECISION_STATES),
    ),
)
