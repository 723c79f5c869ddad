"""`tenantwatch report --out report.html`: the boards as a static page, without a Grafana."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.settings import Settings

__all__ = ["add_commands"]


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.macros import TimeRange
    from dashboards.report import write_report
    from dashboards.runner import data_time_range, parse_time
    from pipeline.adapters.clickhouse.client import connect

    client = connect(settings.dsn)
    time_range = None
    if args.start or args.end:
        found = data_time_range(client)
        try:
            start = parse_time(args.start) if args.start else (found.start if found else None)
            end = parse_time(args.end) if args.end else (found.end if found else None)
        except ValueError as exc:
            print(f"error: --from/--to must be ISO-8601 times: {exc}", file=sys.stderr)
            return 2
        if start is None or end is None or end <= start:
            print("error: give a --from earlier than --to (there is no data to take the other bound from)",
                  file=sys.stderr)
            return 2
        time_range = TimeRange.around(start, end)
    outcome = write_report(Path(args.out), client, time_range)
    for element, reason in outcome.failed.items():
        print(f"warning: {element}: {reason}", file=sys.stderr)
    print(f"wrote {args.out}: {outcome.panels} panels, {len(outcome.failed)} failed")
    return 1 if args.strict and outcome.failed else 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="render the dashboards' panels into a static HTML report")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--from", dest="start", help="range start, ISO-8601 (default: the first stored request)")
    p.add_argument("--to", dest="end", help="range end, ISO-8601 (default: the last stored request)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any panel's query failed")
    p.set_defaults(func=_report)
