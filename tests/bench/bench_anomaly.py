"""Anomaly core figures: points/s per (tenant, metric) stream on one core, and bytes per stream state.

Run: `.venv/bin/python tests/bench/bench_anomaly.py [--points N]`. Single process, single thread.
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import random
import time
import tracemalloc

from agents.anomaly.baseline import SeasonalBaseline
from agents.anomaly.detector import StreamDetector
from agents.anomaly.multivariate import TenantHST, encode_hst
from agents.anomaly.rules import default_rule
from schemas.anomaly import MetricName

T0 = 1_767_571_200.0  # 2026-01-05 UTC
RULE = default_rule(MetricName.REQUEST_VOLUME)


def _stream(n: int, step: float, seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + i * step
        daily = 1000 + 400 * math.sin(2 * math.pi * (t % 86_400) / 86_400)
        out.append((t, daily * rng.gauss(1, 0.03) + (5000 if rng.random() < 0.001 else 0)))
    return out


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:58} {n / seconds:>10,.0f} points/s  ({seconds * 1e6 / n:6.1f} µs/point)")


def bench_throughput(n: int) -> None:
    pts = _stream(n, 60.0)
    base = SeasonalBaseline()
    start = time.perf_counter()
    for t, x in pts:
        base.estimate(t)
        base.update(t, x)
    _rate("baseline only (estimate + update)", n, time.perf_counter() - start)

    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    start = time.perf_counter()
    for t, x in pts:
        det.observe(t, x, RULE)
    _rate("StreamDetector.observe (band + episode records)", n, time.perf_counter() - start)

    revenue = default_rule(MetricName.REVENUE)
    charges = [(t, max(0, round(x / 400))) for t, x in _stream(n, 6 * 3600.0, seed=2)]  # ~2-4 charges a window
    det = StreamDetector("acme", MetricName.REVENUE, revenue)
    start = time.perf_counter()
    for t, k in charges:
        det.observe(t, 4000.0 * k, revenue, denominator=float(k))
    _rate("StreamDetector.observe, revenue with its charge counts", n, time.perf_counter() - start)

    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    hst = TenantHST()
    start = time.perf_counter()
    for t, x in pts:
        det.observe(t, x, RULE, hst.score_and_learn("request_volume", x))
    _rate("StreamDetector.observe + tenant HalfSpaceTrees", n, time.perf_counter() - start)

    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    for t, x in pts[: n // 2]:
        det.observe(t, x, RULE)
    warm = pts[n // 2 : n // 2 + 5000]  # a warm state, as a table holds it
    start = time.perf_counter()
    for t, x in warm:
        det = pickle.loads(pickle.dumps(det))  # noqa: S301  # our own state: the Faust table round trip
        det.observe(t, x, RULE)
    _rate("observe + pickle round trip per point (table write)", len(warm), time.perf_counter() - start)


def bench_memory(days: int, step: float) -> None:
    pts = _stream(int(days * 86_400 / step), step)
    det = StreamDetector("acme", MetricName.REQUEST_VOLUME, RULE)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for t, x in pts:
        det.observe(t, x, RULE)
    gc.collect()
    live = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    size = len(pickle.dumps(det))
    hst = TenantHST()
    for t, x in pts[:2000]:
        hst.score_and_learn("request_volume", x)
        hst.score_and_learn("revenue", x * 0.1 + t % 7)
    print(
        f"{days:>3} days at {step:>5.0f} s: detector state pickled {size / 1024:8.1f} KiB, "
        f"Python heap ≈ {live / 1024:6.1f} KiB (Rust quantile windows untraced); "
        f"tenant HST stored {len(encode_hst(hst)) / 1024:4.1f} KiB (tw-tenant-hst codec)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=50_000)
    args = parser.parse_args()
    print("throughput, one (tenant, metric) stream, one core")
    bench_throughput(args.points)
    print("\nstate size per (tenant, metric) stream (bounded: hourly buckets, slot rings, 512-point σ windows)")
    for days, step in ((7, 60.0), (30, 60.0), (30, 300.0), (30, 3600.0)):
        bench_memory(days, step)


if __name__ == "__main__":
    main()
