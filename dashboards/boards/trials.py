"""Trials: how many run, how many convert (by cohort and plan), how fast, and the mails they cost."""

from __future__ import annotations

from dashboards.boards._sql import MAILS_LATEST, TRIALS_NOW
from dashboards.model import Board, Panel

__all__ = ["BOARD"]

_ACTIVE = f"""
SELECT count() AS active_trials FROM ({TRIALS_NOW}) WHERE status = 'trialing'
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_CONVERTED_TOTAL = f"""
SELECT countIf(status = 'converted') AS converted, count() AS started,
       if(started > 0, round(100 * converted / started, 1), NULL) AS conversion_pct
FROM ({TRIALS_NOW})
WHERE $__timeFilter(began)
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_CONVERSIONS = f"""
SELECT $__timeInterval(converted_at) AS time, plan, count() AS conversions
FROM (
    SELECT plan, assumeNotNull(converted_ts) AS converted_at
    FROM ({TRIALS_NOW})
    WHERE status = 'converted' AND converted_ts IS NOT NULL
)
WHERE $__timeFilter(converted_at)
GROUP BY time, plan
ORDER BY time, plan
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_BY_COHORT = f"""
SELECT toDate(began) AS cohort, plan, count() AS trials, countIf(status = 'converted') AS converted,
       round(100 * converted / trials, 1) AS conversion_pct
FROM ({TRIALS_NOW})
WHERE $__timeFilter(began)
GROUP BY cohort, plan
ORDER BY cohort, plan
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_TIME_TO_CONVERT = f"""
SELECT plan, count() AS conversions,
       round(avg(dateDiff('second', began, assumeNotNull(converted_ts))) / 3600, 1) AS avg_hours,
       round(quantileExact(0.5)(dateDiff('second', began, assumeNotNull(converted_ts))) / 3600, 1) AS median_hours,
       round(max(dateDiff('second', began, assumeNotNull(converted_ts))) / 3600, 1) AS max_hours
FROM ({TRIALS_NOW})
WHERE status = 'converted' AND converted_ts IS NOT NULL AND $__timeFilter(began)
GROUP BY plan
ORDER BY plan
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_MAILS_OVER_TIME = f"""
SELECT $__timeInterval(due_ts) AS time, outcome, count() AS mails
FROM ({MAILS_LATEST})
GROUP BY time, outcome
ORDER BY time, outcome
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

_MAILS_BY_KIND = f"""
SELECT kind, countIf(outcome = 'sent') AS sent, countIf(outcome = 'failed') AS failed,
       countIf(outcome = 'bounced') AS bounced, countIf(outcome = 'queued') AS queued,
       sum(attempts) AS attempts
FROM ({MAILS_LATEST})
GROUP BY kind
ORDER BY kind
"""  # noqa: S608 - built from constant SQL fragments; variables are expanded quoted, later

BOARD = Board(
    uid="tw-trials",
    title="tenantwatch · Trials",
    description="Trial automation: active trials, conversions by cohort and plan, time to convert, mail delivery.",
    time_from="now-30d",
    panels=(
        Panel("Active trials", "stat", _ACTIVE, ("active_trials",), "Trials still running at the range end (FINAL).",
              width=8, height=5),
        Panel("Conversion", "stat", _CONVERTED_TOTAL, ("converted", "started", "conversion_pct"),
              "Of the trials started in the range, how many converted (exact, FINAL).", width=16, height=5),
        Panel("Conversions over time", "timeseries", _CONVERSIONS, ("time", "plan", "conversions"), width=12,
              draw="bars"),
        Panel("Conversion rate by cohort and plan", "table", _BY_COHORT,
              ("cohort", "plan", "trials", "converted", "conversion_pct"),
              "Cohort = day the trial started.", width=12),
        Panel("Time to convert", "table", _TIME_TO_CONVERT,
              ("plan", "conversions", "avg_hours", "median_hours", "max_hours"), width=12),
        Panel("Mails by outcome", "timeseries", _MAILS_OVER_TIME, ("time", "outcome", "mails"),
              "E-mails by the event time they became due and the outcome of their latest delivery attempt.",
              width=12, draw="bars", states=("sent", "queued", "failed", "bounced")),
        Panel("Mails sent and failed by kind", "table", _MAILS_BY_KIND,
              ("kind", "sent", "failed", "bounced", "queued", "attempts"),
              "E-mails that became due in the range (event time), by kind.", width=24),
    ),
)
