"""`python -m pipeline.devstack.generator --preset tiny --out events.jsonl --truth truth.json`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipeline.devstack.generator.config import PRESETS, preset
from pipeline.devstack.generator.engine import ground_truth, iter_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.devstack.generator", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--out", type=Path, help="JSONL file of events ('-' for stdout)")
    parser.add_argument("--truth", type=Path, help="JSON file of the injected scenarios' ground truth")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    parser.add_argument("--days", type=int, help="override the preset's number of simulated days")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in (("seed", args.seed), ("days", args.days)) if v is not None}
    base = preset(args.preset)
    config = type(base).model_validate({**base.model_dump(), **overrides}) if overrides else base
    if args.truth:
        args.truth.write_text(json.dumps(ground_truth(config), indent=2) + "\n")
    if args.out:
        began, count = time.perf_counter(), 0
        out = sys.stdout if str(args.out) == "-" else args.out.open("w")
        try:
            dumps = json.JSONEncoder(separators=(",", ":")).encode
            for record in iter_records(config):
                out.write(dumps(record))
                out.write("\n")
                count += 1
        finally:
            if out is not sys.stdout:
                out.close()
        elapsed = time.perf_counter() - began
        print(f"{count} events in {elapsed:.1f}s ({count / elapsed:,.0f}/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
