"""`tenantwatch eval nab|scenarios`, `tenantwatch anomalies ...` and `tenantwatch rules ...`.

Reads come from ClickHouse (`settings.dsn`; with chDB, while the writer is stopped); changes
travel as signed admin commands and print their audit verdict.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.cli._common import (
    Exit,
    add_admin_flags,
    add_json_flag,
    clickhouse,
    emit,
    positive_int,
    send_admin,
    tenant_id,
)
from pipeline.settings import Settings

__all__ = ["add_commands"]

_WORKFLOW = {"ack": "anomaly.ack", "resolve": "anomaly.resolve", "false-positive": "anomaly.false_positive"}


def _eval_nab(args: argparse.Namespace, settings: Settings) -> int:
    from agents.anomaly.nab import main

    argv = [args.nab_dir] + (["--detections-out", args.detections_out] if args.detections_out else [])
    return main(argv + (["--no-cv"] if args.no_cv else []))


def _eval_scenarios(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.devstack.anomaly_eval import main

    history = [] if args.history_days is None else ["--history-days", str(args.history_days)]
    preset = [] if args.preset is None else ["--preset", args.preset]
    backfill = [] if args.backfill_days is None else ["--backfill-days", str(args.backfill_days)]
    return main((["--quick"] if args.quick else []) + history + preset + backfill + ["--seed", str(args.seed)])


def _query(settings: Settings, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = clickhouse(settings).query(sql, parameters=params)
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


def _list(args: argparse.Namespace, settings: Settings) -> int:
    where, params = ["1"], {"limit": args.limit}
    if args.tenant:
        where.append("tenant = {tenant:String}")
        params["tenant"] = args.tenant
    if args.status:
        where.append("status = {status:String}")
        params["status"] = args.status
    # Only fixed fragments are joined; every value is a bound parameter.
    sql = (
        "SELECT id, tenant, metric, severity, status, direction, start_ts, last_ts, points,"  # noqa: S608
        " round(peak_sigma, 1) AS peak_sigma, verdict FROM anomalies FINAL"
        f" WHERE {' AND '.join(where)} ORDER BY start_ts DESC LIMIT {{limit:UInt32}}"
    )
    rows = _query(settings, sql, params)
    emit(rows, args.json, empty="no anomalies")
    if not args.json and rows:
        print(f"{len(rows)} anomal{'y' if len(rows) == 1 else 'ies'}")
    return Exit.OK


def _workflow(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"anomaly_id": args.anomaly_id}
    if args.metric:
        params["metric"] = args.metric
    return send_admin(settings, args, _WORKFLOW[args.action], params)


def _param(text: str) -> tuple[str, Any]:
    """`name=value` with value read as JSON where it parses (numbers, true/false), else as text."""
    name, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, list | dict):
        raise argparse.ArgumentTypeError(f"{name}: only scalar values")
    return name, value


def _rules_set(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"metric": args.metric, **dict(args.param or [])}
    if args.reset:
        params["reset"] = True
    return send_admin(settings, args, "rule.set", params)


def _rules_show(args: argparse.Namespace, settings: Settings) -> int:
    from agents.anomaly.rules import DEFAULT_RULES

    if args.defaults:
        emit([rule.model_dump(mode="json") for rule in DEFAULT_RULES.values()], args.json)
        return Exit.OK
    where, params = ["1"], {}
    if args.tenant:
        where.append("tenant = {tenant:String}")
        params["tenant"] = args.tenant
    # Only fixed fragments are joined; every value is a bound parameter.
    sql = (
        "SELECT tenant, metric, argMax(ts, ts) AS since, argMax(actor, ts) AS actor,"  # noqa: S608
        " argMax(is_default, ts) AS is_default, argMax(rule_json, ts) AS rule FROM anomaly_rules FINAL"
        f" WHERE {' AND '.join(where)} GROUP BY tenant, metric ORDER BY tenant, metric"
    )
    rows = _query(settings, sql, params)
    emit(rows, args.json, empty="no rules set by command")
    if not args.json:
        print(f"{len(rows)} rule(s) set by command; every other tenant metric uses the default (--defaults)")
    return Exit.OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate detectors offline")
    ev = p.add_subparsers(dest="eval_command", required=True)
    q = ev.add_parser("nab", help="score the anomaly detector on a NAB-layout directory (in sample and"
                                  " leave-one-category-out)")
    q.add_argument("nab_dir", help="a directory in the NAB layout (data/ and labels/)")
    q.add_argument("--detections-out", default=None, help="also write every detection to this CSV file")
    q.add_argument("--no-cv", action="store_true", help="skip the leave-one-category-out cross-validation")
    q.set_defaults(func=_eval_nab)
    q = ev.add_parser("scenarios", help="run the generator's incidents through the anomaly detector core: precision,"
                                        " recall, delays, false alerts per clean tenant-day, severity mix")
    q.add_argument("--quick", action="store_true", help="one small run (what the tests guard)")
    q.add_argument("--history-days", type=int, default=None,
                   help="days of the run itself each stream learns before it is scored (default 14; with --preset 0)")
    q.add_argument("--preset", default=None, help="score a generator preset's own incidents (e.g. demo)")
    q.add_argument("--backfill-days", type=int, default=None,
                   help="with --preset: days of the owner's history before the preset that streams learn first,"
                        " as `tenantwatch demo` seeds them (default 14; 0: warm up live)")
    q.add_argument("--seed", type=int, default=7,
                   help="with --preset: the generator's seed (default: 7, as `tenantwatch demo` plays it)")
    q.set_defaults(func=_eval_scenarios)

    p = sub.add_parser("anomalies", help="list anomalies; acknowledge, resolve or dismiss one")
    an = p.add_subparsers(dest="anomalies_command", required=True, metavar="COMMAND")
    q = an.add_parser("list", help="anomalies from ClickHouse, newest first")
    q.add_argument("--tenant", type=tenant_id, help="only this tenant (default: all)")
    q.add_argument("--status", choices=["active", "acknowledged", "resolved", "false_positive"],
                   help="only anomalies in this status")
    q.add_argument("--limit", type=positive_int, default=50, help="rows to show (default: 50)")
    add_json_flag(q)
    q.set_defaults(func=_list)
    for action in _WORKFLOW:
        q = an.add_parser(action, help=f"{action} an open anomaly (signed command)")
        q.add_argument("anomaly_id", help="the anomaly's id (anomalies list shows it)")
        q.add_argument("--metric", help="the anomaly's metric (optional: found by id)")
        add_admin_flags(q)
        q.set_defaults(func=_workflow, action=action)

    p = sub.add_parser("rules", help="show or set per-tenant anomaly rules")
    ru = p.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    q = ru.add_parser("set", help="edit a tenant's rule for one metric (signed rule.set command)")
    q.add_argument("--metric", required=True, help="the metric whose rule to change, e.g. revenue")
    q.add_argument("--param", action="append", type=_param, metavar="NAME=VALUE",
                   help="a Rule field, e.g. threshold_sigma=2.5 warmup=24 (repeatable)")
    q.add_argument("--reset", action="store_true", help="drop the override: back to the default rule")
    add_admin_flags(q)
    q.set_defaults(func=_rules_set)
    q = ru.add_parser("show", help="rules set by command (ClickHouse), or the defaults")
    q.add_argument("--tenant", type=tenant_id, help="only this tenant (default: all)")
    q.add_argument("--defaults", action="store_true", help="print the default rule of every metric")
    add_json_flag(q)
    q.set_defaults(func=_rules_show)
