"""Benchmark of the console's reads on the embedded engine (a script, not part of the test run).

    .venv/bin/python tests/bench/bench_console.py [--violations 200000] [--reads 40] [--inserts 30]

1. A console view's query (top offenders over `--violations` rows) through the writer's
   loopback read API against the same query run in-process: the API's cost, as a ratio.
2. The writer's inserts (20k-row JSON batches, as it writes them) while a console reader
   queries without pause, against the same inserts with no reader: what sharing the one chDB
   client (one call at a time) costs the writer's hot path, as a ratio.
Figures from a shared, busy machine are noisy: compare the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.adapters.clickhouse.client import connect  # noqa: E402 - after the path set-up
from pipeline.adapters.clickhouse.migrations import migrate  # noqa: E402 - after the path set-up
from pipeline.adapters.clickhouse.read_api import (  # noqa: E402 - after the path set-up
    ReadApiServer,
    SerializedClient,
    run_named,
)
from pipeline.console.reads import ReadApiReader  # noqa: E402 - after the path set-up

COLUMNS = ["id", "tenant_id", "ip", "limit_name", "limit", "count", "window_s", "shadow", "ts"]


def violations(n: int, start: int) -> bytes:
    rows = [{"id": f"v{start + i}", "tenant_id": f"t{i % 24:02d}",
             "ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
             "limit_name": "minute", "limit": 100, "count": 100 + i % 50, "window_s": 60.0, "shadow": False,
             "ts": f"2026-01-0{1 + i % 7} {i % 24:02d}:{i % 60:02d}:00.000"} for i in range(n)]
    return json.dumps(rows).encode()


def insert(client: Any, body: bytes) -> None:
    client.raw_insert("rl_violations", column_names=COLUMNS, insert_block=body, fmt="JSONEachRow")


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def show(label: str, times: list[float]) -> float:
    p50 = statistics.median(times)
    p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
    print(f"{label:<48} p50 {p50 * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms   (n={len(times)})")
    return p50


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--violations", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=40)
    parser.add_argument("--inserts", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        client = SerializedClient(connect(f"chdb://{tmp}/ch"))
        migrate(client)
        for i in range(0, args.violations, 20_000):
            insert(client, violations(min(20_000, args.violations - i), i))
        server = ReadApiServer(client).start()
        reader = ReadApiReader(server.url, server.token)
        params = {"since": 7 * 86400}
        print(f"rl_violations: {args.violations:,} rows (busy shared machine: compare ratios)")
        direct = show("offenders, in-process", timed(lambda: run_named(client, "offenders", params), args.reads))
        api = show("offenders, through the read API", timed(lambda: reader.read("offenders", params), args.reads))
        print(f"{'read API / in-process':<48} {api / direct:8.2f}x")

        batch = violations(20_000, 10_000_000)
        alone = show("20k-row insert, no reader", timed(lambda: insert(client, batch), args.inserts))
        stop = threading.Event()
        reads = 0

        def keep_reading() -> None:
            nonlocal reads
            while not stop.is_set():
                reader.read("offenders", params)
                reads += 1

        thread = threading.Thread(target=keep_reading, daemon=True)
        thread.start()
        shared = show("20k-row insert, console reading without pause",
                      timed(lambda: insert(client, batch), args.inserts))
        stop.set()
        thread.join(timeout=60)
        print(f"{'insert with reader / alone':<48} {shared / alone:8.2f}x   ({reads} reads meanwhile)")
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
