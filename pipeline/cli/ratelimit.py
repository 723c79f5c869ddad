"""`tenantwatch ip|limits|tenant …`: signed rate-limit admin commands and the top-offenders report.

    tenantwatch ip ban 203.0.113.9 --tenant acme [--duration 1h] [--reason "..."]
    tenantwatch ip unban|whitelist|blacklist|unlist <ip-or-cidr> --tenant acme
    tenantwatch ip top [--since 24h] [--tenant acme] [--limit 20]
    tenantwatch limits set --tenant acme [--per-minute N|off] [--per-hour N|off] [--per-day N|off] …
    tenantwatch limits show --tenant acme
    tenantwatch tenant enable|disable --tenant acme · tenantwatch tenant shadow --tenant acme [--off]

Commands print the audit verdict; exit status 0 accepted, 1 rejected or invalid, 2 no answer.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
from typing import Any

from pipeline.settings import Settings

__all__ = ["add_commands", "latest_limits", "limit_params", "parse_duration", "top_offenders"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LIMIT_FLAGS = ("per_minute", "per_hour", "per_day", "violation_threshold", "violation_period_s",
                "ban_base_s", "ban_max_s", "ban_forget_s")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``24h``, ``7d`` or ``2w``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 24h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _limit(text: str) -> int | None:
    if text.lower() in {"off", "none"}:
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'off'") from None


def _send(settings: Settings, args: argparse.Namespace, action: str, params: dict[str, Any]) -> int:
    from pipeline.admin import submit

    return submit(settings, action=action, tenant=args.tenant, params=params,
                  actor=args.actor or getpass.getuser(), reason=args.reason, wait_s=args.wait)


def _ip(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "top":
        return _top(args, settings)
    if not args.target or not args.tenant:
        print(f"ip {args.action} needs an address and --tenant")
        return 1
    params: dict[str, Any]
    if args.action in {"ban", "unban"}:
        params = {"ip": args.target}
        if args.action == "ban" and args.duration is not None:
            params["duration_s"] = args.duration
    else:
        params = {"cidr": args.target}
    return _send(settings, args, f"ip.{args.action}", params)


def _limits(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "show":
        return _show(args, settings)
    return _send(settings, args, "limits.set", limit_params(args))


def limit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The `limits set` flags given on the command line (``off`` → None: that window is off)."""
    return {name: getattr(args, name) for name in _LIMIT_FLAGS if getattr(args, name) is not _UNSET}


def _tenant(args: argparse.Namespace, settings: Settings) -> int:
    params: dict[str, Any] = {"on": not args.off} if args.action == "shadow" else {}
    return _send(settings, args, f"tenant.{args.action}", params)


_TOP_SQL = """
    SELECT v.tenant_id, v.ip, v.violations, v.peak, v.last_seen, b.bans
    FROM (SELECT tenant_id, ip, count() AS violations, max(count) AS peak, max(ts) AS last_seen
          FROM rl_violations FINAL
          WHERE ts >= (SELECT max(ts) FROM rl_violations) - toIntervalSecond({since:UInt64})
            AND ({tenant:String} = '' OR tenant_id = {tenant:String})
          GROUP BY tenant_id, ip) AS v
    LEFT JOIN (SELECT tenant_id, ip, countIf(action = 'started') AS bans
               FROM rl_bans FINAL
               WHERE ts >= (SELECT max(ts) FROM rl_violations) - toIntervalSecond({since:UInt64})
               GROUP BY tenant_id, ip) AS b ON v.tenant_id = b.tenant_id AND v.ip = b.ip
    ORDER BY v.violations DESC, v.peak DESC, v.ip LIMIT {n:UInt32}"""


def top_offenders(client: Any, since_s: float, tenant: str | None = None, limit: int = 20) -> list[tuple[Any, ...]]:
    """(tenant, ip, violations, peak count, last violation, bans started) over the last ``since_s``.

    ``since_s`` counts back from the newest violation recorded: event time, so replays and
    demos (which play days in minutes) get the same answer as live traffic.
    """
    params = {"since": int(since_s), "tenant": tenant or "", "n": limit}
    return [tuple(r) for r in client.query(_TOP_SQL, parameters=params).result_rows]


def _top(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.clickhouse.client import connect

    rows = top_offenders(connect(settings.dsn), args.since, args.tenant, args.limit)
    print(f"{'tenant':<20} {'ip':<40} {'violations':>10} {'peak':>8} {'bans':>5}  last violation")
    for tenant, ip, violations, peak, last, bans in rows:
        print(f"{tenant:<20} {ip:<40} {violations:>10} {peak:>8} {bans:>5}  {last}")
    return 0


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
    from pipeline.adapters.clickhouse.client import connect

    latest = latest_limits(connect(settings.dsn), args.tenant)
    if latest is None:
        print(f"{args.tenant}: no limits set (the default policy applies)")
        return 0
    ts, actor, action, policy = latest
    print(f"{args.tenant}: set {ts} by {actor} ({action})")
    print(json.dumps(policy, indent=2))
    return 0


_UNSET: Any = object()


def _common(p: argparse.ArgumentParser, tenant_required: bool = True) -> None:
    p.add_argument("--tenant", required=tenant_required, help="tenant id")
    p.add_argument("--actor", default=None, help="who is acting (default: the login name)")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the verdict")


def add_commands(sub: Any) -> None:
    """Add the `ip`, `limits` and `tenant` subcommands."""
    p = sub.add_parser("ip", help="ban, unban, allow/deny-list client IPs; top offenders")
    p.add_argument("action", choices=["ban", "unban", "whitelist", "blacklist", "unlist", "top"])
    p.add_argument("target", nargs="?", help="IP address (ban, unban) or IP/CIDR range (lists)")
    p.add_argument("--duration", type=parse_duration, default=None, help="ban length, e.g. 30m, 6h (ban)")
    p.add_argument("--since", type=parse_duration, default=86400.0, help="top: look-back, e.g. 24h")
    p.add_argument("--limit", type=int, default=20, help="top: rows to show")
    _common(p, tenant_required=False)
    p.set_defaults(func=_ip)

    p = sub.add_parser("limits", help="set or show a tenant's rate limits")
    p.add_argument("action", choices=["set", "show"])
    for name in _LIMIT_FLAGS:
        kind = _limit if name.startswith("per_") else (int if name == "violation_threshold" else parse_duration)
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=_UNSET,
                       help="'off' disables the window" if name.startswith("per_") else None)
    _common(p)
    p.set_defaults(func=_limits)

    p = sub.add_parser("tenant", help="enable, disable or shadow a tenant's rate limiting")
    p.add_argument("action", choices=["enable", "disable", "shadow"])
    p.add_argument("--off", action="store_true", help="shadow: leave shadow mode")
    _common(p)
    p.set_defaults(func=_tenant)
