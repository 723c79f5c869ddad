"""`tenantwatch eval nab|scenarios`, `tenantwatch anomalies ...` and `tenantwatch rules ...`.

Reads come from ClickHouse (`settings.dsn`; with chDB, while the writer is stopped); changes
travel as signed admin commands and print their audit verdict.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

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
    return main((["--quick"] if args.quick else []) + history + preset)


def _query(settings: Settings, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    from pipeline.adapters.clickhouse.client import connect

    result = connect(settings.dsn).query(sql, parameters=params)
    return list(result.column_names), list(result.result_rows)


def _print_table(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    cells = [columns] + [["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in r]
                         for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


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
    columns, rows = _query(settings, sql, params)
    _print_table(columns, rows)
    print(f"{len(rows)} anomal{'y' if len(rows) == 1 else 'ies'}")
    return 0


def _send(settings: Settings, action: str, args: argparse.Namespace, params: dict[str, Any]) -> int:
    from pipeline.admin import submit

    return submit(settings, action=action, tenant=args.tenant, params=params, actor=args.actor, reason=args.reason,
                  wait_s=args.wait)


def _workflow(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"anomaly_id": args.anomaly_id}
    if args.metric:
        params["metric"] = args.metric
    return _send(settings, _WORKFLOW[args.action], args, params)


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
    return _send(settings, "rule.set", args, params)


def _rules_show(args: argparse.Namespace, settings: Settings) -> int:
    from agents.anomaly.rules import DEFAULT_RULES

    if args.defaults:
        for rule in DEFAULT_RULES.values():
            print(rule.model_dump_json())
        return 0
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
    columns, rows = _query(settings, sql, params)
    _print_table(columns, rows)
    print(f"{len(rows)} rule(s) set by command; every other tenant metric uses the default (--defaults)")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", required=True)
    p.add_argument("--actor", default="cli", help="who is acting (recorded in the audit log)")
    p.add_argument("--reason", default="")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the audit verdict")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate detectors offline")
    ev = p.add_subparsers(dest="eval_command", required=True)
    q = ev.add_parser("nab", help="score the anomaly detector on a NAB-layout directory (in sample and"
                                  " leave-one-category-out)")
    q.add_argument("nab_dir")
    q.add_argument("--detections-out", default=None)
    q.add_argument("--no-cv", action="store_true", help="skip the leave-one-category-out cross-validation")
    q.set_defaults(func=_eval_nab)
    q = ev.add_parser("scenarios", help="run the generator's incidents through the anomaly detector core: precision,"
                                        " recall, delays, false alerts per clean tenant-day, severity mix")
    q.add_argument("--quick", action="store_true", help="one small run (what the tests guard)")
    q.add_argument("--history-days", type=int, default=None,
                   help="days of history each stream is seeded from (default 14; with --preset 0)")
    q.add_argument("--preset", default=None, help="score a generator preset's own incidents (e.g. demo)")
    q.set_defaults(func=_eval_scenarios)

    p = sub.add_parser("anomalies", help="list anomalies; acknowledge, resolve or dismiss one")
    an = p.add_subparsers(dest="anomalies_command", required=True)
    q = an.add_parser("list", help="anomalies from ClickHouse, newest first")
    q.add_argument("--tenant")
    q.add_argument("--status", choices=["active", "acknowledged", "resolved", "false_positive"])
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=_list)
    for action in _WORKFLOW:
        q = an.add_parser(action, help=f"{action} an open anomaly (signed command)")
        q.add_argument("anomaly_id")
        q.add_argument("--metric", help="the anomaly's metric (optional: found by id)")
        _common(q)
        q.set_defaults(func=_workflow, action=action)

    p = sub.add_parser("rules", help="show or set per-tenant anomaly rules")
    ru = p.add_subparsers(dest="rules_command", required=True)
    q = ru.add_parser("set", help="edit a tenant's rule for one metric (signed rule.set command)")
    q.add_argument("--metric", required=True)
    q.add_argument("--param", action="append", type=_param, metavar="NAME=VALUE",
                   help="a Rule field, e.g. threshold_sigma=2.5 warmup=24 (repeatable)")
    q.add_argument("--reset", action="store_true", help="drop the override: back to the default rule")
    _common(q)
    q.set_defaults(func=_rules_set)
    q = ru.add_parser("show", help="rules set by command (ClickHouse), or the defaults")
    q.add_argument("--tenant")
    q.add_argument("--defaults", action="store_true", help="print the default rule of every metric")
    q.set_defaults(func=_rules_show)
