"""`tenantwatch`: the command line of the local stack, the workers and the admin tools."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.settings import Settings

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace, Settings], int]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.devstack.manager import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        result: Any = stack.up()
    elif args.action == "down":
        result = stack.down()
    else:
        result = stack.status()
    print(json.dumps(result, indent=2))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.kafka_admin import ensure_topics

    created = ensure_topics(settings)
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ops.processes import run_worker

    # None = all; "" = none (just decoding, dead letters and admin commands)
    caps = None if args.capabilities is None else tuple(c for c in args.capabilities.split(",") if c)
    run_worker(settings, caps, loglevel=args.loglevel)
    return 0


def _writer(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ops.processes import run_writer

    run_writer(settings)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.clickhouse.client import connect
    from pipeline.adapters.clickhouse.migrations import migrate

    applied = migrate(connect(settings.dsn))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.kafka_config import client_kwargs
    from pipeline.sdk import MAX_EVENT_BYTES, InvalidEventError, Publisher

    sent = bad = 0
    pub = Publisher(settings.broker, prefix=settings.topic_prefix, options=client_kwargs(settings, "kafka-python"))
    # Bytes, not text: a line that is not UTF-8 is an invalid line, not the end of the run.
    with pub, open(args.file, "rb") as fh:
        for lineno, line in enumerate(_bounded_lines(fh, MAX_EVENT_BYTES), 1):
            if not line.strip():
                continue
            try:
                pub.publish_json(line)
                sent += 1
            except InvalidEventError as exc:
                bad += 1
                print(f"{args.file}:{lineno}: not sent: {exc}", file=sys.stderr)
    print(f"published {sent} event(s); {bad} invalid line(s) not sent")
    return 1 if bad and args.strict else 0


def _bounded_lines(fh: Any, max_bytes: int) -> Any:
    """The lines of a binary file; a line longer than `max_bytes` comes as its first
    `max_bytes + 1` bytes (which the validator refuses as oversized) and is never held whole."""
    while line := fh.readline(max_bytes + 1):
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while (rest := fh.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass  # skip the remainder of the long line
        yield line


def _schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.export import export_json_schemas

    for path in export_json_schemas(Path(args.dir)):
        print(path)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.devstack.demo import DemoStalled, run_demo
    from pipeline.devstack.kafka import StackError

    try:
        return run_demo(settings, preset=args.preset, days=args.days, seed=args.seed, keep_stack=args.keep_stack)
    except (DemoStalled, StackError) as exc:
        print(f"tenantwatch demo: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenantwatch",
        description="Streaming watchtower for multi-tenant SaaS: rate limits, anomalies, trial automation. "
        "Settings come from TW_* environment variables (see README). With the development signing key "
        "(or a placeholder, or a key under 32 bytes) every command warns, and refuses to run (exit 2) when "
        "TW_BROKER is not loopback unless TW_ALLOW_DEV_KEY=1. Exit codes: 0 done, 1 failed, 2 bad usage or "
        "refused start, 3 Kafka did not answer.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line (or TW_LOG_JSON=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or inspect the local Kafka broker and SMTP sink")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=_stack)

    p = sub.add_parser("topics", help="create tenantwatch's Kafka topics (idempotent)")
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=_topics)

    p = sub.add_parser("worker", help="run a processing worker (Faust consumer-group member)")
    p.add_argument("--capabilities", help="comma-separated subset of agents to run (default: all)")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=_worker)

    p = sub.add_parser("writer", help="run the ClickHouse writer stage (one per chDB data dir)")
    p.set_defaults(func=_writer)

    p = sub.add_parser("migrate", help="apply ClickHouse schema migrations")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("publish", help="validate and publish events from a JSON-lines file (strict JSON contract; "
                                       "invalid lines are reported and skipped)")
    p.add_argument("file")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was invalid")
    p.set_defaults(func=_publish)

    p = sub.add_parser("schemas", help="export JSON Schema of the event contracts")
    p.add_argument("action", choices=["export"])
    p.add_argument("dir")
    p.set_defaults(func=_schemas_export)

    p = sub.add_parser("demo", help="run the whole pipeline on synthetic traffic and print a summary")
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "bench"])
    p.add_argument("--days", type=int, default=None, help="simulated days (default: the preset's)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep-stack", action="store_true", help="leave Kafka and the SMTP sink running")
    p.set_defaults(func=_demo)

    for extend in _extensions():
        extend(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Every other module of this package adds its subcommands with `add_commands(subparsers)`.

    Such a module imports its agent package only inside the command functions, so parsing
    stays cheap (river and scipy alone cost seconds of start-up).
    """
    import importlib
    import pkgutil

    return [
        importlib.import_module(f"{__name__}.{m.name}").add_commands
        for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
        if not m.name.startswith("_")
    ]


# Commands that neither sign, nor talk to the broker, nor run a process: no key check.
_OFFLINE = frozenset({"schemas", "dashboards", "eval", "report"})


EXIT_UNREACHABLE = 3  # a service (Kafka) did not answer; 2 is bad usage or a refused start


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    from pipeline.ops.logging_setup import configure_logging

    configure_logging(json=settings.log_json or args.log_json, level=logging.INFO if args.verbose else logging.WARNING)
    if args.command not in _OFFLINE:
        from pipeline.ops.startup_checks import startup_verdict

        verdict = startup_verdict(settings)  # the development key: warned of, refused off loopback
        if verdict.warning is not None:
            log = logging.getLogger("tenantwatch")
            (log.error if verdict.refuse else log.warning)("%s", verdict.warning)
        if verdict.refuse:
            return 2
    func: Command = args.func
    try:
        return func(args, settings)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("kafka", "aiokafka"):
            raise
        # An unreachable or refusing broker is an operating condition, not a bug: one line.
        print(f"tenantwatch {args.command}: Kafka at {settings.broker} did not answer: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


