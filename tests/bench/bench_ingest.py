"""Ingest benchmark: preload request events, then measure in one run

1. the raw ceiling: aiokafka consuming the same records and parsing them with the same codec;
2. the worker's end-to-end rate: a `tenantwatch worker` process (all capabilities) plus the
   ClickHouse writer, until the worker has committed every record and ClickHouse holds every
   event;
3. their ratio.

    python tests/bench/bench_ingest.py [--events 500000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.adapters.clickhouse.client import connect  # noqa: E402
from pipeline.adapters.clickhouse.migrations import migrate  # noqa: E402
from pipeline.adapters.clickhouse.sinks import ClickHouseSink  # noqa: E402
from pipeline.adapters.clickhouse.writer import ClickHouseWriter  # noqa: E402
from pipeline.adapters.kafka_admin import committed_offsets, end_offsets, ensure_topics  # noqa: E402
from pipeline.runtime.codec import RowCodec  # noqa: E402
from pipeline.runtime.topics import Topic, topic_name  # noqa: E402
from pipeline.sdk import Publisher  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from schemas.events import RequestEvent  # noqa: E402
from tests.bench._stack import bench_stack  # noqa: E402


def preload(settings: Settings, n: int, batch: int, live_rate: float | None = None) -> float:
    """Publish the first n request events of the generator's `bench` preset through the SDK.

    Realistic key reuse matters: per-(tenant, IP) state is written once per key per batch,
    so a stream where every event has a new IP measures the changelog, not the pipeline.

    The preset replays hours of a small deployment (~15 events per simulated second), so
    per-minute rollups and hourly anomaly metrics come every few events. `live_rate`
    re-stamps the same events (order, tenants, IPs kept) at that many per second of event
    time, as a busy deployment produces them live.
    """
    from datetime import UTC, datetime
    from itertools import islice

    from pipeline.devstack.generator import iter_records, preset

    requests = (r for r in iter_records(preset("bench")) if r["kind"] == "request")
    started = time.perf_counter()
    with Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=batch) as pub:
        t0: float | None = None
        for i, record in enumerate(islice(requests, n)):
            if live_rate is not None:
                if t0 is None:
                    t0 = datetime.fromisoformat(record["ts"]).timestamp()
                record["ts"] = datetime.fromtimestamp(t0 + i / live_rate, UTC).isoformat()
            pub.publish(record)
    return time.perf_counter() - started


async def raw_ceiling(settings: Settings, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    codec = RowCodec(RequestEvent)  # the worker's decoder of requests (rows, not models)
    consumer = AIOKafkaConsumer(topic_name(settings.topic_prefix, Topic.REQUESTS), bootstrap_servers=settings.broker,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batches.values():
                for msg in messages:
                    good, _ = codec.decode(msg.value)
                    seen += len(good)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


def end_to_end(settings: Settings, n: int, capabilities: str | None,
               loglevel: str = "warn") -> tuple[float, float, dict[str, float]]:
    client = connect(settings.dsn)
    migrate(client)
    writer = ClickHouseWriter(bootstrap=settings.broker, prefix=settings.topic_prefix, sink=ClickHouseSink(client),
                              group_id="tw-bench-writer", batch_rows=50_000, flush_s=1.0, buffer_max_rows=400_000)
    env = dict(os.environ, TW_BROKER=settings.broker, TW_DATA_DIR=str(settings.data_dir),
               TW_APP_ID=settings.app_id, TW_PARTITIONS=str(settings.partitions), TW_SMTP_PORT=str(settings.smtp_port))
    cmd = [sys.executable, "-m", "pipeline.cli", "worker", "--loglevel", loglevel]
    if capabilities is not None:
        cmd += ["--capabilities", capabilities]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.data_dir / "worker.log", "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if os.environ.get("TW_BENCH_PROFILE"):  # py-spy stacks of the worker (raw format), for tuning
        seconds = os.environ.get("TW_BENCH_PROFILE_S", "25")
        subprocess.Popen(["py-spy", "record", "-o", os.environ["TW_BENCH_PROFILE"], "-d", seconds, "-f", "raw",
                          "--threads", "-p", str(worker.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    requests = topic_name(settings.topic_prefix, Topic.REQUESTS)
    ends = dict(end_offsets(settings.broker, [requests]).items())
    worker_done = writer_done = None
    extra: dict[str, float] = {}
    progress = _Progress(settings.data_dir / "status" / f"worker-{worker.pid}.json", n, started)
    total = sum(ends.values())
    try:
        while worker_done is None or writer_done is None:
            time.sleep(0.25)
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited early; see {settings.data_dir / 'worker.log'}")
            progress.poll()
            if worker_done is None:
                got = committed_offsets(settings.broker, settings.app_id)
                if sum(min(got.get(k, 0), v) for k, v in ends.items()) >= total:
                    worker_done = time.perf_counter() - started
            if writer_done is None and writer.stats.rows_inserted.get("requests", 0) >= n:
                writer_done = time.perf_counter() - started
        extra["worker_cpu_s"] = _cpu_seconds(worker.pid)
        extra["worker_peak_mib"] = _peak_rss_mib(worker.pid)
        # The status file is written each second: the last events may be committed before it says so.
        deadline = time.perf_counter() + 3
        while progress.all_seen is None and time.perf_counter() < deadline:
            time.sleep(0.1)
            progress.poll(latest=worker_done)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        writer.stop()
        thread.join(timeout=60)
        log.close()
    rows = client.query("SELECT count() FROM requests FINAL").result_rows[0][0]
    assert rows == n, f"ClickHouse holds {rows} of {n} events"
    # The second stage's output: one complete row per tenant-minute (late parts apart).
    stored, cells, late_rows, late_requests = client.query(
        "SELECT count(), uniqExact(tenant_id, minute), countIf(late), sumIf(requests, late) FROM rl_rollups FINAL"
    ).result_rows[0]
    extra.update(rollup_rows=stored, tenant_minutes=cells, late_rows=late_rows, late_requests=late_requests)
    extra.update(progress.figures(max(worker_done, writer_done)))
    return worker_done, writer_done, extra


class _Progress:
    """When the worker processed its first and its last events, from its status file."""

    def __init__(self, status: Path, n: int, started: float):
        self.status, self.n, self.started = status, n, started
        self.first_seen: tuple[float, int] | None = None  # (seconds since start, events by then)
        self.all_seen: float | None = None

    def poll(self, latest: float | None = None) -> None:
        if self.all_seen is not None:
            return
        seen = _events_processed(self.status)
        now = time.perf_counter() - self.started
        if self.first_seen is None and seen > 0:
            self.first_seen = (now, seen)
        if seen >= self.n:
            self.all_seen = now if latest is None else min(now, latest)

    def figures(self, done: float) -> dict[str, float]:
        """Start-up, processing rate after it, and the end-to-end rate after it (all done at `done`)."""
        first, last = self.first_seen, self.all_seen
        if first is None or last is None or last <= first[0]:
            return {}
        return {"startup_s": first[0], "steady_rate": (self.n - first[1]) / (last - first[0]),
                "steady_e2e": (self.n - first[1]) / (done - first[0])}


def _events_processed(status: Path) -> int:
    """Request events the worker has processed, from its status file (0 before the first one)."""
    try:
        return int(json.loads(status.read_text())["events"].get("requests", 0))
    except (OSError, ValueError, KeyError):
        return 0


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: contention-proof cost (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process so far, in MiB (Linux /proc VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per Kafka record (SDK packing)")
    parser.add_argument("--capabilities", default=None, help="worker capabilities (default: all)")
    parser.add_argument("--keep-log", type=Path, default=None, help="copy the worker's log here")
    parser.add_argument("--loglevel", default="warn", help="the worker's log level")
    parser.add_argument("--live-rate", type=float, default=None,
                        help="re-stamp the events at this many per second of event time (default: as generated)")
    args = parser.parse_args()
    with bench_stack() as (settings, _root):
        ensure_topics(settings)
        t_pre = preload(settings, args.events, args.batch, args.live_rate)
        density = "as generated" if args.live_rate is None else f"re-stamped at {args.live_rate:,.0f}/s of event time"
        print(f"preloaded {args.events:,} request events ({density}) in {t_pre:.1f}s "
              f"({args.events / t_pre:,.0f}/s via the SDK)")
        t_raw = asyncio.run(raw_ceiling(settings, args.events))
        raw_rate = args.events / t_raw
        print(f"raw ceiling (aiokafka consume + parse): {raw_rate:,.0f} events/s")
        try:
            t_worker, t_e2e, extra = end_to_end(settings, args.events, args.capabilities, args.loglevel)
        finally:
            if args.keep_log is not None:
                shutil.copyfile(settings.data_dir / "worker.log", args.keep_log)
        worker_rate = args.events / t_worker
        e2e_rate = args.events / max(t_e2e, t_worker)
        print(f"worker CPU: {extra['worker_cpu_s']:.1f}s, {extra['worker_cpu_s'] / args.events * 1e6:.1f} µs per event "
              f"(start-up included); peak memory {extra['worker_peak_mib']:,.0f} MiB")
        if "steady_rate" in extra:
            print(f"worker start-up (to its first events processed, ±1 s): {extra['startup_s']:.1f}s; "
                  f"processing rate after it: {extra['steady_rate']:,.0f} events/s")
        print(f"worker committed all events in {t_worker:.1f}s (incl. start-up): {worker_rate:,.0f} events/s")
        print(f"end to end into ClickHouse (worker + writer): {e2e_rate:,.0f} events/s")
        print(f"ratio end-to-end / raw ceiling: {e2e_rate / raw_rate:.1%} (goal ≥ 25%)")
        if extra["tenant_minutes"]:
            print(f"rollup rows: {extra['rollup_rows']:,} for {extra['tenant_minutes']:,} tenant-minutes "
                  f"({extra['rollup_rows'] / extra['tenant_minutes']:.2f} per tenant-minute); "
                  f"late: {extra['late_rows']:,} rows, {extra['late_requests']:,} requests")
        else:  # (at live density the input spans seconds of event time: no minute closed before the stop)
            print("rollup rows: no tenant-minute closed when the worker was stopped")
        if "steady_rate" in extra:
            print(f"end to end after start-up: {extra['steady_e2e']:,.0f} events/s, "
                  f"{extra['steady_e2e'] / raw_rate:.1%} of the raw ceiling (a running worker's rate)")
            print(f"ratio processing rate / raw ceiling: {extra['steady_rate'] / raw_rate:.1%} "
                  "(without the cold start, and before commits and ClickHouse)")


if __name__ == "__main__":
    main()
