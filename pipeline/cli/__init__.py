"""`tenantwatch`: the command line of the local stack, the workers and the admin tools."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.cli._common import EXIT_CODES_HELP, CliError, Exit, require_kafka, service_error
from pipeline.settings import Settings

__all__ = ["EXIT_UNREACHABLE", "build_parser", "main"]

Command = Callable[[argparse.Namespace, Settings], int]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.devstack.manager import LocalStack

    stack = LocalStack(settings)
    if args.stack_command == "up":
        result: Any = stack.up()
    elif args.stack_command == "down":
        result = stack.down()
    else:
        result = stack.status()
    print(json.dumps(result, indent=2))
    return Exit.OK


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.kafka_admin import ensure_topics

    created = ensure_topics(settings)
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
    return 0


def _require_codecs() -> None:
    from pipeline.adapters.kafka_config import missing_codecs

    if missing := missing_codecs():
        raise CliError(f"cannot read compressed records: no library for {', '.join(missing)}; "
                       "reinstall tenantwatch with its dependencies")


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ops.processes import run_worker

    _require_codecs()

    # None = all; "" = none (just decoding, dead letters and admin commands)
    caps = None if args.capabilities is None else tuple(c for c in args.capabilities.split(",") if c)
    run_worker(settings, caps, loglevel=args.loglevel)
    return 0


def _writer(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ops.processes import run_writer

    _require_codecs()

    run_writer(settings)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.clickhouse.client import connect
    from pipeline.adapters.clickhouse.migrations import migrate

    applied = migrate(connect(settings.dsn))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _open_input(name: str) -> Any:
    """The events file as binary (`-`: standard input), opened before anything connects."""
    if name == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise CliError(f"{name}: no such file", Exit.USAGE) from None
    except IsADirectoryError:
        raise CliError(f"{name}: is a directory, not a JSON-lines file", Exit.USAGE) from None
    except OSError as exc:
        raise CliError(f"{name}: cannot read it: {exc.strerror}", Exit.USAGE) from None


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters.kafka_config import client_kwargs
    from pipeline.sdk import MAX_EVENT_BYTES, InvalidEventError, Publisher

    sent = bad = 0
    source = _open_input(args.file)  # a missing file is said before Kafka is asked anything
    require_kafka(settings)
    # Bytes, not text: a line that is not UTF-8 is an invalid line, not the end of the run.
    with source as fh, Publisher(settings.broker, prefix=settings.topic_prefix,
                                 options=client_kwargs(settings, "kafka-python")) as pub:
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
    return Exit.FAILED if bad and args.strict else Exit.OK


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
        return run_demo(settings, preset=args.preset, days=args.days, seed=args.seed, keep_stack=args.keep_stack,
                        backfill_days=args.backfill_days)
    except (DemoStalled, StackError) as exc:
        raise CliError(str(exc)) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tenantwatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenantwatch",
        description="Streaming watchtower for multi-tenant SaaS: rate limits, anomalies, trial automation. "
        "Settings come from TW_* environment variables (see README). With the development signing key "
        "(or a placeholder, or a key under 32 bytes) every command warns, and refuses to run (exit 2) when "
        "TW_BROKER is not loopback unless TW_ALLOW_DEV_KEY=1. Commands are a noun, then a verb: "
        "tenantwatch ip ban 203.0.113.9 --tenant acme; each has --help.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tenantwatch {_version()}",
                        help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line (or TW_LOG_JSON=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stack", help="start, stop or inspect the local Kafka broker and SMTP sink")
    st = p.add_subparsers(dest="stack_command", required=True, metavar="COMMAND")
    for name, text in (("up", "start the local broker and SMTP sink (prints their addresses as JSON)"),
                       ("down", "stop them"), ("status", "whether they run, as JSON")):
        st.add_parser(name, help=text).set_defaults(func=_stack)

    p = sub.add_parser("topics", help="tenantwatch's Kafka topics")
    tp = p.add_subparsers(dest="topics_command", required=True, metavar="COMMAND")
    tp.add_parser("create", help="create the topics that are missing (idempotent)").set_defaults(func=_topics)

    p = sub.add_parser("worker", help="run a processing worker (Faust consumer-group member)")
    p.add_argument("--capabilities", help="comma-separated subset of agents to run (default: all; '' for none)")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"],
                   help="the worker's log level (default: warn)")
    p.set_defaults(func=_worker)

    p = sub.add_parser("writer", help="run the ClickHouse writer stage (one per chDB data dir)")
    p.set_defaults(func=_writer)

    p = sub.add_parser("migrate", help="apply ClickHouse schema migrations")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("publish", help="validate and publish events from a JSON-lines file (strict JSON contract; "
                                       "invalid lines are reported and skipped)")
    p.add_argument("file", help="JSON-lines file of events, or - for standard input")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was invalid")
    p.set_defaults(func=_publish)

    p = sub.add_parser("schemas", help="the JSON Schema of the event contracts")
    sc = p.add_subparsers(dest="schemas_command", required=True, metavar="COMMAND")
    q = sc.add_parser("export", help="write one JSON Schema file per contract")
    q.add_argument("dir", help="directory to write the schema files to")
    q.set_defaults(func=_schemas_export)

    p = sub.add_parser("demo", help="run the whole pipeline on synthetic traffic and print a summary")
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "bench"],
                   help="traffic size (default: demo)")
    p.add_argument("--days", type=int, default=None, help="simulated days (default: the preset's)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the traffic generator (default: 7)")
    p.add_argument("--keep-stack", action="store_true", help="leave Kafka and the SMTP sink running")
    p.add_argument("--backfill-days", type=int, choices=range(31), default=14, metavar="DAYS",
                   help="days of the owner's metric history loaded before the preset, which new anomaly"
                        " streams seed from (default: 14; 0: they warm up live, two days)")
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

EXIT_UNREACHABLE = Exit.UNREACHABLE  # kept for callers of the former constant


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code (argparse's usage errors and --help/--version included)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage error (2, message on stderr), --help or --version (0)
        return exc.code if isinstance(exc.code, int) else Exit.USAGE
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
            return Exit.USAGE
    func: Command = args.func
    try:
        return int(func(args, settings))
    except CliError as exc:
        error = exc
    except Exception as exc:
        mapped = service_error(exc, settings)  # an unreachable Kafka or ClickHouse is an operating condition
        if mapped is None:
            raise
        error = mapped
    verb = getattr(args, f"{args.command}_command", None)
    print(f"tenantwatch {args.command}{' ' + verb if verb else ''}: {error}", file=sys.stderr)
    return int(error.code)
