"""`tenantwatch ip|limits|tenant …`: signed rate-limit admin commands and the top-offenders report.

    tenantwatch ip ban 203.0.113.9 --tenant acme [--duration 1h] [--reason "..."]
    tenantwatch ip unban 203.0.113.9 --tenant acme
    tenantwatch ip whitelist|blacklist|unlist <ip-or-cidr> --tenant acme
    tenantwatch ip top [--since 24h] [--tenant acme] [--limit 20] [--json]
    tenantwatch limits set --tenant acme [--per-minute N|off] [--per-hour N|off] [--per-day N|off] …
    tenantwatch limits show --tenant acme [--json]
    tenantwatch tenant enable|disable --tenant acme · tenantwatch tenant shadow --tenant acme [--off]

Admin commands print the worker's verdict (exit codes: see `tenantwatch --help`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline import durations
from pipeline.cli._common import (
    CliError,
    Exit,
    add_admin_flags,
    add_json_flag,
    clickhouse,
    emit,
    ip_address,
    ip_network,
    positive_int,
    send_admin,
    tenant_id,
)
from pipeline.console.queries import bind  # the one offenders query, shared with the console
from pipeline.settings import Settings

__all__ = ["add_commands", "latest_limits", "limit_params", "parse_duration", "top_offenders"]

_LIMIT_FLAGS = {
    "per_minute": "requests per minute per client IP ('off' disables the window)",
    "per_hour": "requests per hour per client IP ('off' disables the window)",
    "per_day": "requests per day per client IP ('off' disables the window)",
    "violation_threshold": "violations within --violation-period-s that start a ban",
    "violation_period_s": "the window violations are counted in, e.g. 1h",
    "ban_base_s": "length of a first automatic ban, e.g. 15m (doubled for each earlier ban)",
    "ban_max_s": "the longest an automatic ban grows to, and a manual ban's default, e.g. 1d",
    "ban_forget_s": "this long after its last ban ended, a client's next ban is a first one again, e.g. 7d",
}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``24h``, ``7d`` or ``2w`` (an argparse type)."""
    try:
        return durations.seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> int | None:
    if text.lower() in {"off", "none"}:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or 'off'")
    return value


def _ban(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"ip": args.ip}
    if args.duration is not None:
        params["duration_s"] = args.duration
    return send_admin(settings, args, "ip.ban", params)


def _unban(args: argparse.Namespace, settings: Settings) -> int:
    return send_admin(settings, args, "ip.unban", {"ip": args.ip})


def _listing(args: argparse.Namespace, settings: Settings) -> int:
    return send_admin(settings, args, f"ip.{args.list_action}", {"cidr": args.cidr})


def limit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The `limits set` flags given on the command line (``off`` → None: that window is off)."""
    return {name: getattr(args, name) for name in _LIMIT_FLAGS if getattr(args, name) is not _UNSET}


def _limits_set(args: argparse.Namespace, settings: Settings) -> int:
    params = limit_params(args)
    if not params:
        raise CliError("give at least one limit flag (see tenantwatch limits set --help)", Exit.USAGE)
    return send_admin(settings, args, "limits.set", params)


def _tenant(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"on": not args.off} if args.tenant_command == "shadow" else {}
    return send_admin(settings, args, f"tenant.{args.tenant_command}", params)


def top_offenders(client: Any, since_s: float, tenant: str | None = None, limit: int = 20) -> list[tuple[Any, ...]]:
    """(tenant, ip, violations, peak count, last violation, bans started) over the last ``since_s``.

    ``since_s`` counts back from the newest violation recorded (of ``tenant`` when given, so
    another tenant's newer traffic does not move the window): event time, so replays and
    demos (which play days in minutes) get the same answer as live traffic.
    """
    query, params = bind("offenders", {"since": int(since_s), "tenant": tenant or "", "limit": limit})
    return [tuple(r) for r in client.query(query.sql, parameters=params).result_rows]


_TOP_COLUMNS = ("tenant_id", "ip", "violations", "peak", "last_violation", "bans")


def _top(args: argparse.Namespace, settings: Settings) -> int:
    rows = top_offenders(clickhouse(settings), args.since, args.tenant, args.limit)
    emit([dict(zip(_TOP_COLUMNS, r, strict=True)) for r in rows], args.json, empty="no violations in that window")
    return Exit.OK


def latest_limits(client: Any, tenant: str) -> tuple[Any, str, str, dict[str, Any]] | None:
    """(when, actor, action, policy) of the tenant's newest limits record, or None if never set."""
    rows = client.query(
        "SELECT ts, actor, action, policy_json FROM rl_limits FINAL WHERE tenant_id = {t:String} "
        "ORDER BY ts DESC, id DESC LIMIT 1", parameters={"t": tenant}).result_rows
    if not rows:
        return None
    ts, actor, action, body = rows[0]
    return ts, actor, action, json.loads(body)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    latest = latest_limits(clickhouse(settings), args.tenant)
    if args.json:
        keys = ("set_at", "actor", "action", "policy")
        print(json.dumps({"tenant_id": args.tenant, **dict(zip(keys, latest or (None,) * 4, strict=True))},
                         default=str, indent=2))
        return Exit.OK
    if latest is None:
        print(f"{args.tenant}: no limits set (the default policy applies)")
        return Exit.OK
    ts, actor, action, policy = latest
    print(f"{args.tenant}: set {ts} by {actor} ({action})")
    print(json.dumps(policy, indent=2))
    return Exit.OK


_UNSET: Any = object()


def add_commands(sub: Any) -> None:
    """Add the `ip`, `limits` and `tenant` subcommands."""
    p = sub.add_parser("ip", help="ban, unban, allow/deny-list client IPs; top offenders",
                       description="Signed commands on client IPs of one tenant, and the top offenders.")
    ip = p.add_subparsers(dest="ip_command", required=True, metavar="COMMAND")
    q = ip.add_parser("ban", help="ban an IP now (signed command)")
    q.add_argument("ip", type=ip_address, help="the client IP address")
    q.add_argument("--duration", type=parse_duration, default=None,
                   help="ban length, e.g. 30m, 6h (default: the tenant's longest ban, ban_max_s)")
    add_admin_flags(q)
    q.set_defaults(func=_ban)
    q = ip.add_parser("unban", help="lift a ban (signed command)")
    q.add_argument("ip", type=ip_address, help="the client IP address")
    add_admin_flags(q)
    q.set_defaults(func=_unban)
    for action, what in (("whitelist", "never limit"), ("blacklist", "always block"),
                         ("unlist", "remove from both lists")):
        q = ip.add_parser(action, help=f"{what}: an IP or CIDR range (signed command)")
        q.add_argument("cidr", type=ip_network, metavar="IP_OR_CIDR", help="an IP address or a range like 10.0.0.0/8")
        add_admin_flags(q)
        q.set_defaults(func=_listing, list_action=action)
    q = ip.add_parser("top", help="clients with the most violations (ClickHouse)")
    q.add_argument("--since", type=parse_duration, default=86400.0,
                   help="look back this far from the newest violation, e.g. 24h (default: 24h)")
    q.add_argument("--tenant", type=tenant_id, default=None, help="only this tenant (default: all)")
    q.add_argument("--limit", type=positive_int, default=20, help="rows to show (default: 20)")
    add_json_flag(q)
    q.set_defaults(func=_top)

    p = sub.add_parser("limits", help="set or show a tenant's rate limits",
                       description="A tenant's rate limits: change them (signed command) or show the current ones.")
    li = p.add_subparsers(dest="limits_command", required=True, metavar="COMMAND")
    q = li.add_parser("set", help="change some of a tenant's limits (signed command; others stay)")
    for name, text in _LIMIT_FLAGS.items():
        kind = _limit if name.startswith("per_") else (positive_int if name == "violation_threshold"
                                                       else parse_duration)
        q.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=_UNSET, help=text)
    add_admin_flags(q)
    q.set_defaults(func=_limits_set)
    q = li.add_parser("show", help="the tenant's newest limits record (ClickHouse)")
    q.add_argument("--tenant", required=True, type=tenant_id, help="the tenant")
    add_json_flag(q)
    q.set_defaults(func=_show)

    p = sub.add_parser("tenant", help="enable, disable or shadow a tenant's rate limiting",
                       description="Switch a tenant's rate limiting (signed commands).")
    te = p.add_subparsers(dest="tenant_command", required=True, metavar="COMMAND")
    for action, text in (("enable", "enforce the tenant's limits"), ("disable", "stop limiting the tenant"),
                         ("shadow", "decide but do not enforce (decisions marked shadow)")):
        q = te.add_parser(action, help=text)
        if action == "shadow":
            q.add_argument("--off", action="store_true", help="leave shadow mode (enforce again)")
        add_admin_flags(q)
        q.set_defaults(func=_tenant)
