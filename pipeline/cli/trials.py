"""`tenantwatch trials ...`: expiry runs and resends (signed admin commands), stats and lists
from ClickHouse."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from pipeline.cli._common import (
    Exit,
    add_admin_flags,
    add_json_flag,
    clickhouse,
    emit,
    iso_time,
    positive_int,
    send_admin,
    tenant_id,
)
from pipeline.console.queries import LATEST_TRIALS  # shared with the console
from pipeline.settings import Settings

__all__ = ["add_commands", "cohort_stats", "keys_per_partition", "list_trials"]

# The newest state of every trial (by version), as rows of one sub-query.
def cohort_stats(client: Any) -> list[dict[str, Any]]:
    """Conversion rate and mean days to convert by start-week cohort (Monday, UTC) and plan."""
    rows = client.query(f"""
        SELECT toMonday(toDate(started)) AS week, plan_, count() AS n_started,
               countIf(status_ = 'converted') AS n_converted,
               avgIf(dateDiff('millisecond', started, converted) / 86400000.0,
                     status_ = 'converted' AND converted IS NOT NULL) AS avg_days
        FROM ({LATEST_TRIALS}) GROUP BY week, plan_ ORDER BY week, plan_""").result_rows  # noqa: S608 - fixed SQL
    out = []
    for week, plan, started, converted, avg_days in rows:
        out.append({
            "week": week.isoformat() if isinstance(week, date) else str(week), "plan": plan,
            "started": int(started), "converted": int(converted),
            "conversion_rate": converted / started if started else 0.0,
            "avg_days_to_convert": None if not converted else round(float(avg_days), 3),
        })
    return out


def list_trials(client: Any, status: str | None = None, tenant: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    """The newest state of each trial, newest change first, optionally filtered."""
    rows = client.query(f"""
        SELECT tenant, trial_id, plan_, status_, last_version, started, ends, converted, changed_at
        FROM ({LATEST_TRIALS})
        WHERE ({{status:Nullable(String)}} IS NULL OR status_ = {{status:Nullable(String)}})
          AND ({{tenant:Nullable(String)}} IS NULL OR tenant = {{tenant:Nullable(String)}})
        ORDER BY changed_at DESC, trial_id LIMIT {{limit:UInt32}}""",  # noqa: S608 - bound parameters
        parameters={"status": status, "tenant": tenant, "limit": limit}).result_rows
    names = ("tenant_id", "trial_id", "plan", "status", "version", "started_at", "ends_at", "converted_at",
             "changed_at")
    return [dict(zip(names, r, strict=True)) for r in rows]


def keys_per_partition(partitions: int, prefix: str = "expiry") -> dict[int, str]:
    """A command key for each partition (Kafka's murmur2 partitioner), so one command reaches each."""
    from pipeline.sdk import partition_for

    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        key = f"{prefix}-{i}"
        found.setdefault(partition_for(key, partitions), key)
        i += 1
    return found


def _run_expiry(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli._common import CliError

    # Trials live in the worker that owns their billing partition: one command per partition,
    # keyed so that it lands on that partition's worker (commands are co-partitioned).
    # The worst outcome wins: no answer (5) over refused (4) over done.
    worst = Exit.OK
    for p, key in sorted(keys_per_partition(settings.partitions).items()):
        params = {"at": args.at.isoformat(), "partition": p}
        try:
            code = send_admin(settings, args, "trials.run_expiry", params, tenant=key)
        except CliError as exc:
            if exc.code != Exit.NO_ANSWER:
                raise
            print(f"partition {p}: {exc}", file=sys.stderr)
            code = Exit.NO_ANSWER
        worst = max(worst, code)
    return worst


def _resend(args: argparse.Namespace, settings: Settings) -> int:
    return send_admin(settings, args, "trials.resend", {"step": args.step})


def _percent_rates(rows: list[dict[str, Any]], as_json: bool) -> list[dict[str, Any]]:
    if as_json:
        return rows
    return [{**r, "conversion_rate": f"{r['conversion_rate']:.1%}"} for r in rows]


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    emit(_percent_rates(cohort_stats(clickhouse(settings)), args.json), args.json, empty="no trials")
    return Exit.OK


def _list(args: argparse.Namespace, settings: Settings) -> int:
    emit(list_trials(clickhouse(settings), args.status, args.tenant, args.limit), args.json, empty="no trials")
    return Exit.OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser("trials", help="trial automation: expiry runs, resends, conversion stats")
    tsub = p.add_subparsers(dest="trials_command", required=True, metavar="COMMAND")

    q = tsub.add_parser("run-expiry", help="fire every trial timer due at TIME (event time), on all partitions; "
                                           "a reminder a later mail overtook by then is skipped, not sent with it")
    q.add_argument("--at", required=True, type=iso_time, metavar="TIME",
                   help="ISO 8601 time, e.g. 2026-03-20T00:00:00Z")
    add_admin_flags(q, tenant=False)
    q.set_defaults(func=_run_expiry)

    q = tsub.add_parser("resend", help="send one step's mail of a tenant's trial again")
    q.add_argument("tenant", type=tenant_id, help="the tenant whose trial mail to resend")
    q.add_argument("step", choices=["welcome", "7day", "1day", "expired"], help="which mail")
    add_admin_flags(q, tenant=False)
    q.set_defaults(func=_resend)

    q = tsub.add_parser("stats", help="conversion by start-week cohort and plan (ClickHouse)")
    add_json_flag(q)
    q.set_defaults(func=_stats)

    q = tsub.add_parser("list", help="trials and their current state (ClickHouse)")
    q.add_argument("--status", choices=["trialing", "converted", "canceled", "expired", "suspended"],
                   help="only trials in this state")
    q.add_argument("--tenant", type=tenant_id, help="only this tenant")
    q.add_argument("--limit", type=positive_int, default=100, help="rows to show (default: 100)")
    add_json_flag(q)
    q.set_defaults(func=_list)
