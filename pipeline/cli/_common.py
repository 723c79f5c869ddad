"""What every `tenantwatch` command shares: exit codes, argument types checked before any
connection, `--json` output, signed admin commands, and one-line errors for services that are
down (never a traceback for an operating condition).

A command module uses these and raises `CliError` (or lets a Kafka / ClickHouse error through):
`pipeline.cli.main` prints `tenantwatch <command>: <message>` on stderr and exits with its code.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any

from pipeline.settings import Settings

__all__ = [
    "EXIT_CODES_HELP",
    "CliError",
    "Exit",
    "actor_name",
    "add_admin_flags",
    "add_json_flag",
    "bootstrap_addresses",
    "clickhouse",
    "emit",
    "ip_address",
    "ip_network",
    "iso_time",
    "positive_int",
    "require_kafka",
    "send_admin",
    "service_error",
    "tenant_id",
]


class Exit(IntEnum):
    """The exit status of every command."""

    OK = 0
    FAILED = 1  # the command ran and did not succeed (e.g. `--strict` and something was invalid)
    USAGE = 2  # bad arguments or a refused start: nothing was sent or connected
    UNREACHABLE = 3  # Kafka or ClickHouse did not answer
    REFUSED = 4  # a worker answered and refused the admin command
    NO_ANSWER = 5  # the admin command was sent; no worker answered in time


EXIT_CODES_HELP = """exit codes:
  0  done
  1  failed (e.g. --strict and some input was invalid, or ClickHouse refused a query)
  2  bad usage or a refused start (nothing was sent)
  3  Kafka or ClickHouse did not answer
  4  the worker refused the admin command (the reason is printed)
  5  the admin command was sent but no worker answered in time"""


class CliError(Exception):
    """An operating condition the command reports in one line, with its exit code."""

    def __init__(self, message: str, code: Exit = Exit.FAILED):
        super().__init__(message)
        self.code = code


# ---- argument types: checked by the parser, before anything connects ------------------------

_ACTOR = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def tenant_id(text: str) -> str:
    """A tenant id as the event contracts accept it."""
    from schemas._base import TENANT_PATTERN

    if not re.fullmatch(TENANT_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tenant id (letters, digits, '_', '.', '-')")
    return text


def ip_address(text: str) -> str:
    """One IPv4 or IPv6 address, in canonical form."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def ip_network(text: str) -> str:
    """An IP address or a CIDR range (host bits may be set: 10.1.2.3/8 means 10.0.0.0/8)."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or CIDR range") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def iso_time(text: str) -> datetime:
    """ISO-8601 text as an aware UTC datetime (naive text is taken as UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time like 2026-03-20T00:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def actor_name(text: str) -> str:
    if not _ACTOR.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an actor name (letters, digits, '_', '.', '@', '-')")
    return text


# ---- shared flags ---------------------------------------------------------------------------

def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


def add_admin_flags(p: argparse.ArgumentParser, *, tenant: bool = True) -> None:
    """The flags of a signed admin command: who, why, how long to wait for the worker's verdict."""
    if tenant:
        p.add_argument("--tenant", required=True, type=tenant_id, help="the tenant the command applies to")
    p.add_argument("--actor", type=actor_name, default=None,
                   help="who is acting, recorded in the audit log (default: your login name)")
    p.add_argument("--reason", default="", help="why, recorded in the audit log")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for a worker's verdict (default: 30; 0: send and do not wait)")


# ---- output ---------------------------------------------------------------------------------

def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def emit(rows: Sequence[Mapping[str, Any]], as_json: bool, empty: str = "(no rows)") -> None:
    """Rows as an aligned table on stdout, or as a JSON array (`--json`)."""
    if as_json:
        print(json.dumps(list(rows), default=str, indent=2))
        return
    if not rows:
        print(empty)
        return
    cols = list(rows[0])
    cells = [[_text(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    for row in [cols, *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# ---- services -------------------------------------------------------------------------------

def clickhouse(settings: Settings) -> Any:
    """A ClickHouse client that has answered a first query, or `CliError(UNREACHABLE)`."""
    import logging

    import clickhouse_connect.driver.httputil  # noqa: F401 - sets urllib3's log level on import; ours comes after

    from pipeline.adapters.clickhouse.client import connect

    for noisy in ("urllib3", "clickhouse_connect"):  # their retry warnings would repeat the one-line error
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        client = connect(settings.dsn)
        client.query("SELECT 1")
    except Exception as exc:
        raise CliError(f"ClickHouse at {_safe_dsn(settings.dsn)} did not answer: {_first_line(exc)}",
                       Exit.UNREACHABLE) from None
    return client


def _safe_dsn(dsn: str) -> str:
    """The DSN without a password."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", dsn)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^')\]]+)")


def _first_line(exc: BaseException) -> str:
    """The gist of a client error: the OS error inside a wrapped one ("Connection refused"), else its first line."""
    text = str(exc).strip()
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip()
    lines = text.splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def service_error(exc: BaseException, settings: Settings) -> CliError | None:
    """A Kafka or ClickHouse client error as a one-line `CliError`; None for anything else (a bug)."""
    package = type(exc).__module__.split(".")[0]
    if package in {"kafka", "aiokafka"}:
        return CliError(f"Kafka at {settings.broker} did not answer: {_first_line(exc)}", Exit.UNREACHABLE)
    if package in {"clickhouse_connect", "chdb"}:
        name = type(exc).__name__
        if name == "OperationalError":  # could not connect, or the connection broke
            return CliError(f"ClickHouse at {_safe_dsn(settings.dsn)} did not answer: {_first_line(exc)}",
                            Exit.UNREACHABLE)
        return CliError(f"ClickHouse refused the query: {_first_line(exc)}", Exit.FAILED)
    return None


def bootstrap_addresses(broker: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` (IPv6 as `[::1]:9092`) as (host, port) pairs."""
    out = []
    for item in filter(None, (part.strip() for part in broker.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"TW_BROKER: {item!r} is not host:port", Exit.USAGE)
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise CliError("TW_BROKER is empty", Exit.USAGE)
    return out


def require_kafka(settings: Settings, timeout_s: float = 5.0) -> None:
    """Fail at once, in one line, when no bootstrap broker accepts a connection (the Kafka client
    itself would retry for half a minute and end with a timeout traceback)."""
    import socket

    errors = []
    for host, port in bootstrap_addresses(settings.broker):
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
        else:
            return
    raise CliError(f"Kafka at {settings.broker} did not answer ({'; '.join(errors)})", Exit.UNREACHABLE)


# ---- signed admin commands ------------------------------------------------------------------

def send_admin(settings: Settings, args: argparse.Namespace, action: str, params: dict[str, Any],
               tenant: str | None = None) -> Exit:
    """Sign, send and wait for one admin command; print the worker's verdict; its exit code."""
    import getpass

    from pydantic import ValidationError

    from pipeline.admin import build_command, send_command
    from schemas.commands import Action

    try:
        command = build_command(settings, action=Action(action), tenant=tenant or args.tenant, params=params,
                                actor=args.actor or _login(getpass), reason=args.reason)
    except (ValidationError, ValueError) as exc:
        raise CliError(f"invalid command: {_first_line(exc)}", Exit.USAGE) from None
    require_kafka(settings)
    audit = send_command(settings, command, wait_s=args.wait)
    if audit is None:
        if args.wait <= 0:
            print(f"{command.action.value}: command {command.nonce} sent (not waiting for a verdict)")
            return Exit.OK
        raise CliError(f"{command.action.value}: command {command.nonce} sent; no worker answered within "
                       f"{args.wait:g}s", Exit.NO_ANSWER)
    print(f"{audit.outcome}: {audit.reason}")
    if audit.outcome != "accepted":
        return Exit.REFUSED
    return Exit.OK


def _login(getpass: Any) -> str:
    try:
        name = str(getpass.getuser())
    except (KeyError, OSError):  # no login name (e.g. a container user without a passwd entry)
        return "cli"
    return name if _ACTOR.fullmatch(name) else "cli"
