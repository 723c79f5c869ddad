"""`tenantwatch dashboards build|check|push`: the Grafana boards as code."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from dashboards.model import CONSOLE_URL_DEFAULT
from pipeline.settings import Settings

__all__ = ["add_commands"]


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import main

    return main(["--check"] if args.check else [])


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import build_all, stale_files
    from dashboards.validate import check_dashboards

    errors = check_dashboards(build_all().values())
    errors += [f"out of date: dashboards/json/{n} (run tenantwatch dashboards build)" for n in stale_files()]
    for e in errors:
        print(e, file=sys.stderr)
    print(f"{len(build_all())} dashboards, {len(errors)} problem(s)")
    return 1 if errors else 0


def _push(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import build_all
    from dashboards.push import PushError, push_dashboards
    from dashboards.validate import check_dashboards

    token = args.token or os.environ.get("GRAFANA_TOKEN", "")
    if not token:
        print("error: give --token (or set GRAFANA_TOKEN): a Grafana service account token", file=sys.stderr)
        return 2
    models = list(build_all(args.console_url).values())
    errors = check_dashboards(models)
    if errors:
        print("\n".join(["refusing to push invalid dashboards:", *errors]), file=sys.stderr)
        return 1
    try:
        pushed = push_dashboards(args.url, token, models, folder=args.folder, folder_uid=args.folder_uid,
                                 timeout=args.timeout)
    except PushError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in pushed:
        print(f"{r.uid}: {r.title} -> {args.url.rstrip('/')}{r.url} (version {r.version})")
    return 0


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("dashboards", help="build, check or push the Grafana dashboards")
    sub = p.add_subparsers(dest="dashboards_command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="write dashboards/json/*.json from the Python boards")
    b.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    b.set_defaults(func=_build)

    c = sub.add_parser("check", help="structural check of every board (uids, panels, targets, variables)")
    c.set_defaults(func=_check)

    push = sub.add_parser("push", help="create or overwrite the boards in a Grafana (idempotent, by uid)")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://localhost:3000")
    push.add_argument("--token", help="service account token (or user:password); default $GRAFANA_TOKEN")
    push.add_argument("--folder", default="tenantwatch", help="folder title (created if missing)")
    push.add_argument("--folder-uid", default="tenantwatch", help="folder uid (stable across pushes)")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
    push.add_argument("--console-url", default=CONSOLE_URL_DEFAULT,
                      help=f"the owner console's address, for the boards' row links (default: {CONSOLE_URL_DEFAULT})")
    push.set_defaults(func=_push)
