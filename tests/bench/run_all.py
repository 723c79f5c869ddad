"""`make bench`: run every benchmark script in tests/bench/ in turn and print their figures.

    python tests/bench/run_all.py [NAME ...]   # e.g. ingest ratelimit (default: all)

Each script is a standalone program (`bench_<name>.py`) printing its own figures; they run
one after another so they do not compete for the two cores.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Scripts run more than once, with these argument lists (default: once, without arguments).
RUNS: dict[str, list[list[str]]] = {
    # the generator's events at the density a deployment producing 50k events/s has (the
    # workload of the throughput goal), then as generated: a replay of hours of a small
    # deployment, one rollup per few requests (see bench_ingest.preload)
    "bench_ingest": [["--live-rate", "50000", "--events", "1000000"], []],
}


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for script in scripts:
        for extra in RUNS.get(script.stem, [[]]):
            label = " ".join([script.stem, *extra])
            print(f"\n=== {label} ===", flush=True)
            started = time.monotonic()
            code = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent.parent)
            print(f"--- {label}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
            if code:
                failed.append(label)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
