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


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent.parent)
        print(f"--- {script.stem}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
