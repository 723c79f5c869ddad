"""`tenantwatch console …`: the owner console (a web app) and its owner accounts.

    tenantwatch console serve [--host 127.0.0.1] [--port 8765] [--demo] [--with-pipeline]
    tenantwatch console add-owner NAME [--password-stdin] [--replace] [--demo]
    tenantwatch console login-link NAME [--valid 24h] [--demo]

Exit codes: 0 done, 1 failed, 2 bad usage or refused start, 3 a service did not answer.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from pipeline.cli._common import Exit
from pipeline.settings import Settings

__all__ = ["add_commands"]

EXIT_USAGE = Exit.USAGE
EXIT_UNREACHABLE = Exit.UNREACHABLE


def _settings(args: argparse.Namespace, settings: Settings) -> Settings:
    if not args.demo:
        return settings
    from pipeline.devstack.demo import demo_settings

    return demo_settings(settings)


def _err(message: str) -> None:
    print(f"tenantwatch console: {message}", file=sys.stderr)


def _serve(args: argparse.Namespace, base: Settings) -> int:
    from pipeline.console.reads import ReadUnavailable
    from pipeline.ops.startup_checks import console_bind_verdict

    settings = _settings(args, base)
    host, port = args.host or settings.console_host, args.port or settings.console_port
    verdict = console_bind_verdict(settings, host)
    if verdict.refuse:
        _err(verdict.warning or "refused")
        return EXIT_USAGE
    args.tls_cert = args.tls_cert or settings.console_tls_cert
    args.tls_key = args.tls_key or settings.console_tls_key
    if (args.tls_cert is None) != (args.tls_key is None):
        _err("--tls-cert and --tls-key go together")
        return EXIT_USAGE
    from pipeline.console.server import owner_store

    if not owner_store(settings).names():
        _err(f"no owner can sign in yet: add one with `tenantwatch console add-owner NAME"
             f"{' --demo' if args.demo else ''}`")
        return EXIT_USAGE
    procs: list[Any] = []
    stack = None
    try:
        if args.with_pipeline:
            stack, procs = _start_pipeline(settings)
        try:
            return _run(settings, host, port, args)
        except ReadUnavailable as exc:
            _err(str(exc))
            return EXIT_UNREACHABLE
    finally:
        if procs:
            from pipeline.devstack.demo import stop_pipeline

            stop_pipeline(procs)
        if stack is not None:
            stack.down()


def _run(settings: Settings, host: str, port: int, args: argparse.Namespace) -> int:
    from pipeline.console.reads import open_reader
    from pipeline.console.server import serve, tls_context

    reader = open_reader(settings)
    reader.read("audit", {"limit": 1})  # ClickHouse (or the writer) answers before we listen
    try:
        tls = tls_context(args.tls_cert, args.tls_key)
    except (OSError, ValueError) as exc:
        _err(f"TLS certificate or key not usable: {exc}")
        return EXIT_USAGE

    def ready(url: str) -> None:
        print(f"owner console on {url} (data: {reader.mode}); Ctrl-C stops it", flush=True)

    try:
        serve(settings, host, port, reader=reader, tls=tls, ready=ready)
    except OSError as exc:
        _err(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    return 0


def _start_pipeline(settings: Settings) -> tuple[Any, list[Any]]:
    """The local stack, a worker and a writer on `settings`' data; waits for the writer's read API."""
    from pipeline.adapters.clickhouse.read_api import announcement_path, read_announcement
    from pipeline.devstack.demo import start_pipeline, stop_pipeline
    from pipeline.devstack.manager import LocalStack

    stack = LocalStack(settings)
    print("starting the local stack, a worker and a writer…", flush=True)
    stack.up()
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    announcement_path(settings).unlink(missing_ok=True)  # a writer that died left it
    procs = start_pipeline(settings, logs)
    deadline = time.monotonic() + 120
    while read_announcement(announcement_path(settings)) is None:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop_pipeline(procs)
            stack.down()
            raise SystemExit(f"tenantwatch console: the writer did not start serving; see {logs / 'writer.log'}")
        time.sleep(0.2)
    return stack, procs


def _add_owner(args: argparse.Namespace, base: Settings) -> int:
    from pipeline.console.owners import OwnerStoreError
    from pipeline.console.server import owner_store

    settings = _settings(args, base)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            _err("the passwords differ")
            return EXIT_USAGE
    try:
        owner = owner_store(settings).add(args.name, password, replace=args.replace)
    except OwnerStoreError as exc:
        _err(str(exc))
        return EXIT_USAGE
    print(f"owner {owner.name} added. Enrol this TOTP secret in an authenticator app:")
    print(f"  secret: {owner.totp_secret}")
    print(f"  uri:    {owner.provisioning_uri}")
    return 0


def _login_link(args: argparse.Namespace, base: Settings) -> int:
    from pipeline.console.owners import OwnerStoreError
    from pipeline.console.server import console_url, owner_store

    settings = _settings(args, base)
    try:
        token = owner_store(settings).issue_one_time(args.name, time.time(), ttl_s=args.valid)
    except OwnerStoreError as exc:
        _err(str(exc))
        return EXIT_USAGE
    print(f"{console_url(settings.console_host, settings.console_port)}/login/once?token={token}")
    return 0


def _duration(text: str) -> float:
    from pipeline.console.actions import PlanError, duration_s

    try:
        return duration_s(text)
    except PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(sub: Any) -> None:
    """Add `console serve|add-owner|login-link`."""
    p = sub.add_parser("console", help="the owner console: a web app to watch and act (signed commands)",
                       description="The owner console: views of anomalies, offenders, bans, limits, trials and "
                       "the audit log, and actions signed with this server's key on the owner's behalf. Exit "
                       "codes: 0 done, 1 failed, 2 bad usage or refused start, 3 a service did not answer.")
    cs = p.add_subparsers(dest="console_command", required=True)

    def demo_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--demo", action="store_true", help="use the data of `tenantwatch demo` (<data dir>/demo)")

    q = cs.add_parser("serve", help="serve the console until Ctrl-C",
                      description="Serve the console. On the embedded ClickHouse it reads through the running "
                      "writer (or, with no writer running, opens the data as it was left); with a ClickHouse "
                      "server DSN it reads directly. Off loopback it refuses the development signing key.")
    q.add_argument("--host", default=None, help="address to listen on (default TW_CONSOLE_HOST, 127.0.0.1)")
    q.add_argument("--port", type=int, default=None, help="port (default TW_CONSOLE_PORT, 8765)")
    q.add_argument("--with-pipeline", action="store_true",
                   help="also start the local stack, a worker and a writer on this data (stopped on exit)")
    q.add_argument("--tls-cert", default=None,
                   help="PEM certificate: serve HTTPS, cookies then Secure (default TW_CONSOLE_TLS_CERT)")
    q.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert (default TW_CONSOLE_TLS_KEY)")
    demo_flag(q)
    q.set_defaults(func=_serve)

    q = cs.add_parser("add-owner", help="add an owner account (password + TOTP); prints the TOTP secret")
    q.add_argument("name", help="owner name (it is the actor in the audit log): letters, digits, _ . @ -")
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    q.add_argument("--replace", action="store_true", help="reset an existing owner (new password and secret)")
    demo_flag(q)
    q.set_defaults(func=_add_owner)

    q = cs.add_parser("login-link", help="print a one-time login link for an owner")
    q.add_argument("name", help="owner name")
    q.add_argument("--valid", type=_duration, default=86400.0, help="how long the link works, e.g. 1h (default 24h)")
    demo_flag(q)
    q.set_defaults(func=_login_link)
