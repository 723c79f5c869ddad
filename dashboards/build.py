"""Write (or check) the committed dashboard JSON: `python -m dashboards.build [--check]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dashboards.boards import BOARDS
from dashboards.model import CONSOLE_URL_DEFAULT, to_grafana

__all__ = ["JSON_DIR", "build_all", "main", "render", "stale_files"]

JSON_DIR = Path(__file__).resolve().parent / "json"


def render(model: dict[str, Any]) -> str:
    """The committed text of one dashboard model (sorted keys: diffs stay small)."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all(console_url: str = CONSOLE_URL_DEFAULT) -> dict[str, dict[str, Any]]:
    """File name → Grafana JSON model, for every board (data links into the console at `console_url`)."""
    return {f"{b.uid}.json": to_grafana(b, console_url) for b in BOARDS}


def stale_files(out: Path = JSON_DIR) -> list[str]:
    """Files under `out` that differ from what the builders produce (or are missing/extra)."""
    models = build_all()
    stale = [n for n, m in models.items() if not (out / n).exists() or (out / n).read_text() != render(m)]
    stale += [p.name for p in out.glob("*.json") if p.name not in models]
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="directory to write (default: dashboards/json)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            print(f"out of date: {args.out / name} (run python -m dashboards.build)", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in build_all().items():
        (args.out / name).write_text(render(model))
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
