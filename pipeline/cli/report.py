"""`tenantwatch report --out report.html`: the boards as a static page, without a Grafana."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.cli._common import CliError, Exit, add_json_flag, clickhouse, iso_time
from pipeline.settings import Settings

__all__ = ["add_commands"]


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.macros import TimeRange
    from dashboards.report import write_report
    from dashboards.runner import data_time_range

    if args.start and args.end and args.end <= args.start:
        raise CliError("--from must be earlier than --to", Exit.USAGE)
    client = clickhouse(settings)
    time_range = None
    if args.start or args.end:
        found = data_time_range(client)
        start = args.start or (found.start if found else None)
        end = args.end or (found.end if found else None)
        if start is None or end is None or end <= start:
            raise CliError("give a --from earlier than --to (there is no data to take the other bound from)",
                           Exit.USAGE)
        time_range = TimeRange.around(start, end)
    outcome = write_report(Path(args.out), client, time_range)
    for element, reason in outcome.failed.items():
        print(f"warning: {element}: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({"out": str(args.out), "panels": outcome.panels, "failed": outcome.failed}, indent=2))
    else:
        print(f"wrote {args.out}: {outcome.panels} panels, {len(outcome.failed)} failed")
    return Exit.FAILED if args.strict and outcome.failed else Exit.OK


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="render the dashboards' panels into a static HTML report")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--from", dest="start", type=iso_time, metavar="TIME",
                   help="range start, ISO-8601 (default: the first stored request)")
    p.add_argument("--to", dest="end", type=iso_time, metavar="TIME",
                   help="range end, ISO-8601 (default: the last stored request)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any panel's query failed")
    add_json_flag(p)
    p.set_defaults(func=_report)
