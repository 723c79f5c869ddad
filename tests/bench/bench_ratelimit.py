"""Rate-limiter core benchmark: decisions/s vs ``limits`` moving window, bytes per key, RSS.

Run: ``python tests/bench/bench_ratelimit.py [--events N] [--keys N]``. One process, one core.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.ratelimit import RateLimiter  # after the path fix above
from schemas.ratelimit import TenantPolicy

T0 = 1_780_000_000.0


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def policies(tenants: int) -> list[TenantPolicy]:
    """Realistic limits; every fourth tenant has allow/deny lists (100 v4 CIDRs, some v6)."""
    out = []
    for i in range(tenants):
        lists: dict[str, tuple[str, ...]] = {}
        if i % 4 == 0:
            lists = {
                "blacklist": (*tuple(f"203.{i % 256}.{j}.0/24" for j in range(100)), "2001:db8:bad::/48"),
                "whitelist": ("198.51.100.0/24", "2001:db8:600d::/48"),
            }
        out.append(TenantPolicy(tenant_id=f"t{i}", per_minute=120, per_hour=1000, per_day=10000, **lists))
    return out


def stream(n: int, tenants: int, ips: int, rate: float, seed: int = 1) -> list[tuple[str, str, float]]:
    """``n`` events over ``tenants`` × skewed IP popularity (a few heavy hitters), ``rate`` events/s."""
    rng = random.Random(seed)
    pool = [f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}" for k in range(ips)]
    pool[::50] = [f"203.{t % 256}.7.{t % 200}" for t in range(len(pool[::50]))]  # some blacklisted
    tnames = [f"t{i}" for i in range(tenants)]
    out, t = [], T0
    for _ in range(n):
        t += rng.expovariate(rate)
        ip = pool[int(ips * rng.random() ** 4)]  # skewed: low indexes are the heavy hitters
        out.append((tnames[hash(ip) % tenants], ip, t))
    return out


def bench_core(events: list[tuple[str, str, float]], tenants: int) -> tuple[float, RateLimiter]:
    """Best of three: decisions per second through ``decide_batch`` in batches of 1,000."""
    best = 0.0
    lim = RateLimiter(policies(tenants))
    for _ in range(3):
        lim = RateLimiter(policies(tenants))
        gc.collect()
        start = time.perf_counter()
        for i in range(0, len(events), 1000):
            lim.decide_batch(events[i : i + 1000])
        best = max(best, len(events) / (time.perf_counter() - start))
    return best, lim


def bench_limits(events: list[tuple[str, str, float]]) -> float:
    """The same stream through ``limits``' moving window (memory storage), three limits each."""
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    items = [parse("120/minute"), parse("1000/hour"), parse("10000/day")]
    limiter = MovingWindowRateLimiter(MemoryStorage())
    hit = limiter.hit
    start = time.perf_counter()
    for tenant, ip, _ts in events:  # limits reads the wall clock; event time cannot be passed in
        for item in items:
            if not hit(item, tenant, ip):
                break
    return len(events) / (time.perf_counter() - start)


def build_store(keys: int) -> RateLimiter:
    """``keys`` distinct IPs of one tenant; 1 in 10 comes back a few times within the hour."""
    lim = RateLimiter([TenantPolicy(tenant_id="t", per_minute=120, per_hour=1000, per_day=10000)])
    rng = random.Random(2)
    t = T0
    decide = lim.decide_batch
    batch = []
    for k in range(1 << 24, (1 << 24) + keys):
        ip = f"{(k >> 24) & 255}.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"
        t += 0.001
        batch.append(("t", ip, t))
        if rng.random() < 0.1:
            batch.extend(("t", ip, t + 60.0 * j + rng.random()) for j in range(1, rng.randint(2, 6)))
        if len(batch) >= 5000:
            decide(sorted(batch, key=lambda e: e[2]))
            batch = []
    decide(sorted(batch, key=lambda e: e[2]))
    return lim


def memory_figures(keys: int) -> dict[str, float]:
    """Bytes per key of a ``keys``-key store, by part (sys.getsizeof, exact) and as RSS growth (real)."""
    gc.collect()
    rss_before = rss_mb()[0]
    lim = build_store(keys)
    gc.collect()
    rss_after, rss_peak = rss_mb()
    store = lim.store
    n = len(store)
    heavy = RateLimiter([TenantPolicy(tenant_id="t", per_minute=None, per_hour=None, per_day=None)])
    for j in range(86400 * 2):  # two requests a second for a day: the worst case for run count
        heavy.decide_batch([("t", "10.0.0.1", T0 + j * 0.5)])
    return {
        "keys": n,
        # the KeyState objects: GC header + array header + words (incl. the array's over-allocation)
        "state": sum(map(sys.getsizeof, store.values())) / n,
        "dict": sys.getsizeof(store) / n,  # the store dict's hash table: its slot per key
        "key": sum(map(sys.getsizeof, store)) / n,  # the "tenant:ip" key strings
        "gc": sum(map(sys.getsizeof, lim._gc.values())) / n,  # eviction hour buckets (8 B a key + lists)
        "rss": (rss_after - rss_before) * 2**20 / n,
        "rss_after": rss_after,
        "rss_peak": rss_peak,
        "heavy": sys.getsizeof(heavy.store["t:10.0.0.1"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=40)
    ap.add_argument("--ips", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="profile the core with pyinstrument")
    ap.add_argument("--memory-only", action="store_true",
                    help="print the memory figures as JSON (the bench runs this in a fresh process)")
    args = ap.parse_args()
    if args.memory_only:
        print(json.dumps(memory_figures(args.keys)))
        return

    events = stream(args.events, args.tenants, args.ips, rate=5000.0)
    if args.profile:
        from pyinstrument import Profiler

        lim = RateLimiter(policies(args.tenants))
        with Profiler() as prof:
            lim.decide_batch(events)
        print(prof.output_text(unicode=True, color=False))
        return
    core, lim = bench_core(events, args.tenants)
    out = lim.decide_batch(events[:0])
    del out
    lib = bench_limits(events)
    print(f"events: {len(events):,} over {args.tenants} tenants, {len(lim.store):,} keys")
    print(f"core decisions/s:            {core:12,.0f}")
    print(f"limits moving window/s:      {lib:12,.0f}")
    print(f"ratio core / limits:         {core / lib:12.1f}×")
    # Memory in a fresh process, so that its RSS growth is the store's alone.
    mem = json.loads(subprocess.run(
        [sys.executable, __file__, "--memory-only", "--keys", str(args.keys)],
        check=True, capture_output=True, text=True).stdout)
    parts = mem["state"] + mem["dict"] + mem["key"]
    print(f"bytes per tracked (tenant, ip) @ {mem['keys']:,} keys (1 in 10 keys with 2-6 requests over minutes):")
    print(f"  key state (goal <= 200):     {mem['state']:8.0f}  (KeyState object: GC header, array header, words)")
    print(f"  + dict slot:                 {mem['dict']:8.0f}  (the store dict's table, per key)")
    print(f"  + key string:                {mem['key']:8.0f}  (\"tenant:ip\" str)")
    print(f"  = state + dict + key:        {parts:8.0f}")
    print(f"  + eviction buckets:          {mem['gc']:8.0f}  (hour lists of keys to check for idleness)")
    print(f"  RSS growth per key:          {mem['rss']:8.0f}  (real memory, incl. allocator rounding)")
    print(f"worst-case key (1 req/0.5 s for 2 days): {mem['heavy']:,} bytes")
    print(f"memory process RSS: {mem['rss_after']:,.0f} MiB (peak {mem['rss_peak']:,.0f} MiB)")

if __name__ == "__main__":
    main()
