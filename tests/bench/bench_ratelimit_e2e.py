"""End-to-end rate-limit benchmark on a private broker: events/s through the agent, decision delay.

Run: ``python tests/bench/bench_ratelimit_e2e.py [--seconds 20] [--rate 10000] [--events 200000] [--warmup 5]``.

1. Delay: a steady ``--rate`` events/s for ``--seconds``, every sixth event of an IP crossing
   its 5/minute limit (a ``throttled`` decision). Event time is the send time, so the delay
   of a decision is its Kafka record timestamp (when the worker produced it) minus its
   ``ts``; the consume-time delay is printed too.
2. Throughput: ``--events`` requests published as fast as possible (a backlog), timed from
   the first send until the worker's status file counts them all.

By default the broker and the worker are fresh: the measured traffic is the first either has
seen, and their first seconds are the slowest (both are printed). Diagnostic options:
``--prewarm S`` first offers the same traffic for another tenant for S seconds, so the delay is
measured on a broker and a worker past their start; ``--restart-worker`` then restarts the
worker (a warm broker, a fresh worker); ``--pin-worker`` puts the worker on one core and the
broker and this process (publisher and taps) on the other, so the harness does not take the
worker's CPU; ``--timeline`` prints the delay second by second (a backlog that builds, or
stalls); ``--sdk-publisher`` publishes through the SDK's `Publisher` instead of the bench's
own generator (`RawRequests`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command  # after the path fix above
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher
from pipeline.settings import Settings
from schemas.commands import Action
from tests.bench._stack import bench_stack, pin_all_threads
from tests.conftest import WorkerProcess, requests_processed, worker_statuses


def event(tenant: str, ip: str, ts: float, n: int) -> dict[str, Any]:
    return {"kind": "request", "event_id": f"{tenant}-{n}", "ts": datetime.fromtimestamp(ts, UTC).isoformat(),
            "tenant_id": tenant, "ip": ip, "method": "GET", "path": "/api/x", "status": 200, "latency_ms": 12.0}


class RawRequests:
    """The bench's load generator: request events written as JSON text straight into one array
    per partition of their ``tenant:ip`` key (the SDK's wire form), sent by an aiokafka producer
    (2 ms linger, acks from all replicas) without the SDK's per-event validation.

    On two cores the generator shares the machine with the broker and the worker. Through the
    SDK's `Publisher` (kafka-python, each event validated and encoded again, a flush every 5 ms
    tick) it took 70-80 % of a core at 10k events/s and made the broker work twice as hard
    (60 % of a core against 26-32 % for the same events in fewer produce requests): the
    measured delay was the harness's. The worker validates every event as it always does; the
    first event's text is checked with the SDK's validator. ``--sdk-publisher`` sends through
    the SDK instead.
    """

    def __init__(self, settings: Settings, *, batch_events: int) -> None:
        from pipeline.sdk import partition_for, validate_event_json

        self.settings = settings
        self.topic = topic_name(settings.topic_prefix, Topic.REQUESTS)
        self.batch_events = batch_events
        self.pending: dict[int, list[str]] = {}
        self.partition_for = partition_for
        self.futures: list[asyncio.Future[Any]] = []
        self.producer: Any = None
        self.parts = 0
        validate_event_json(self.text("check", "10.0.0.1", time.time(), 0))  # the template is a valid event

    async def __aenter__(self) -> RawRequests:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.broker, linger_ms=2, acks="all",
                                         max_batch_size=1 << 20, max_request_size=8 << 20)
        await self.producer.start()
        self.parts = len(await self.producer.partitions_for(self.topic))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.tick()
            await self.producer.flush()
            for f in self.futures:
                await f  # the broker's error, if any
        finally:
            await self.producer.stop()

    @staticmethod
    def text(tenant: str, ip: str, ts: float, n: int) -> str:
        """The JSON text of the request event `event` gives."""
        iso = datetime.fromtimestamp(ts, UTC).isoformat()
        return (f'{{"kind":"request","event_id":"{tenant}-{n}","ts":"{iso}","tenant_id":"{tenant}","ip":"{ip}",'
                f'"method":"GET","path":"/api/x","status":200,"latency_ms":12.0}}')

    def request(self, tenant: str, ip: str, ts: float, n: int) -> None:
        """Queue a request event (sent by the next `tick`)."""
        p = self.partition_for(f"{tenant}:{ip}", self.parts)
        self.pending.setdefault(p, []).append(self.text(tenant, ip, ts, n))

    async def tick(self) -> None:
        """Hand what is queued to the producer, up to `batch_events` events per record."""
        pending, self.pending = self.pending, {}
        k = self.batch_events
        for p, texts in pending.items():
            for i in range(0, len(texts), k):
                value = ("[" + ",".join(texts[i:i + k]) + "]").encode()
                self.futures.append(await self.producer.send(self.topic, value=value, partition=p))
        if len(self.futures) > 10_000:
            done, self.futures = self.futures, []
            for f in done:
                await f


class SdkRequests(Publisher):
    """The SDK's `Publisher` (each event validated and encoded by it, kafka-python) with
    `RawRequests`' calls; a tick flushes (blocking: nothing else runs on the bench's loop)."""

    def request(self, tenant: str, ip: str, ts: float, n: int) -> None:
        self.publish(event(tenant, ip, ts, n))

    async def tick(self) -> None:
        self.flush()

    async def __aenter__(self) -> SdkRequests:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def publisher(settings: Settings, args: argparse.Namespace, batch_events: int) -> RawRequests | SdkRequests:
    """The load generator: `RawRequests`, or the SDK's `Publisher` with ``--sdk-publisher``."""
    if args.sdk_publisher:
        return SdkRequests(settings.broker, prefix=settings.topic_prefix, batch_events=batch_events, linger_ms=1)
    return RawRequests(settings, batch_events=batch_events)


def ip_of(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


TS = re.compile(rb'[{,]"ts":"([^"]+)"')  # a record's own "ts" (not "reset_ts"), in our compact JSON


class DecisionTap(threading.Thread):
    """Consumes a topic (decisions by default) from its end: (record timestamp, consume time, event
    ts) per event; a record may hold a JSON array of events (the SDK's requests)."""

    def __init__(self, settings: Settings, which: Topic = Topic.DECISIONS) -> None:
        from kafka import KafkaConsumer
        from kafka.structs import TopicPartition

        super().__init__(daemon=True)
        self.seen: list[tuple[float, float, float]] = []
        self.stop = threading.Event()
        topic = topic_name(settings.topic_prefix, which)
        # Only the decisions' consume time is read (the requests' record timestamps are the broker's
        # append time): the tap of the requests fetches in large, lazy batches, not one per record.
        lazy = {} if which is Topic.DECISIONS else {"fetch_min_bytes": 1 << 20, "fetch_max_wait_ms": 250}
        self.consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False, **lazy)
        parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(parts)
        self.consumer.seek_to_end(*parts)
        for tp in parts:
            self.consumer.position(tp)

    def run(self) -> None:
        while not self.stop.is_set():
            for messages in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                for m in messages:
                    # every event's (or decision's) own "ts", by pattern: parsing each whole event
                    # took the tap of the requests ~15 % of this process at 10k events/s
                    for text in TS.findall(m.value):
                        self.seen.append((m.timestamp / 1000, now, datetime.fromisoformat(text.decode()).timestamp()))
        self.consumer.close()


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def steady(settings: Settings, args: argparse.Namespace, rate: float, seconds: float, tenant: str = "lat") -> int:
    """Offer `rate` events/s for `seconds`: each IP sends 6, the 6th is over its 5/minute limit."""

    async def offer() -> int:
        async with publisher(settings, args, batch_events=50) as pub:
            n, start = 0, time.time()
            end = start + seconds
            while (now := time.time()) < end:
                due = int((now - start) * rate)
                while n < due:
                    pub.request(tenant, ip_of(n // 6), time.time(), n)
                    n += 1
                await pub.tick()
                await asyncio.sleep(max(0.0, 0.005 - (time.time() - now)))
        return n

    return asyncio.run(offer())


def publish_all(settings: Settings, args: argparse.Namespace, events: list[tuple[str, str, float, int]]) -> None:
    """Publish (tenant, ip, ts, n) requests as fast as the generator goes; returns once all are acknowledged."""

    async def offer() -> None:
        async with publisher(settings, args, batch_events=200) as pub:
            for i, (tenant, ip, ts, n) in enumerate(events, 1):
                pub.request(tenant, ip, ts, n)
                if i % 2000 == 0 and isinstance(pub, RawRequests):  # the SDK's sends itself, flushes at the end
                    await pub.tick()

    asyncio.run(offer())


def stamp_on_arrival(settings: Settings) -> None:
    """Requests get the broker's append time as their timestamp, so the bench can tell the delay
    before an event reached Kafka (the publisher's) from the worker's."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.broker)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name(settings.topic_prefix, Topic.REQUESTS),
                                            configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def set_limits(settings: Settings, tenants: tuple[str, ...]) -> None:
    for tenant in tenants:
        cmd = build_command(settings, action=Action.LIMITS_SET, tenant=tenant, actor="bench",
                            params={"per_minute": 5, "per_hour": 1000, "per_day": 10000})
        record = send_command(settings, cmd, wait_s=180)
        if record is None or record.outcome != "accepted":
            raise SystemExit(f"limits.set not accepted: {record}")


def prepare(settings: Settings, args: argparse.Namespace, worker: WorkerProcess, pinned: bool) -> WorkerProcess:
    """Limits set; the optional pre-warm (and worker restart after it); the worker pinned. Returns the worker."""
    set_limits(settings, ("lat", "warm") if args.prewarm else ("lat",))
    if args.prewarm:
        base = requests_processed(settings)
        warm = steady(settings, args, args.rate, args.prewarm, tenant="warm")
        wait(lambda: requests_processed(settings) >= base + warm, 180, "the pre-warm traffic")
        print(f"pre-warmed with {warm:,} events of another tenant over {args.prewarm:.0f} s")
        if args.restart_worker:
            worker.stop()
            worker = WorkerProcess(settings, "ratelimit").start()
            set_limits(settings, ("lat",))  # answered: the new worker has joined and reads its inputs
            print("worker restarted after the pre-warm (a warm broker, a fresh worker)")
    if pinned:  # every thread it has now; the ones it starts later inherit the core
        assert worker.proc is not None
        pin_all_threads(worker.proc.pid, {1})
        print("worker pinned to core 1; the broker and the bench's publisher and taps to core 0")
    return worker


def timeline(seen: list[tuple[float, float, float]], appended: dict[float, float], first: float) -> None:
    """Per second of event time: decisions, their delay (p50, max) and the worker's part of it."""
    by_second: dict[int, list[tuple[float, float | None]]] = {}
    for r, _, ts in seen:
        a = appended.get(ts)
        by_second.setdefault(int(ts - first), []).append(((r - ts) * 1000, (r - a) * 1000 if a else None))
    print("  second  decisions  delay p50/max ms  appended → decision p50/max ms")
    for sec in sorted(by_second):
        rows = by_second[sec]
        total = sorted(d for d, _ in rows)
        worker = sorted(w for _, w in rows if w is not None)
        w = f"{worker[len(worker) // 2]:8.1f} / {worker[-1]:7.1f}" if worker else "       -"
        print(f"  {sec:6d}  {len(rows):9d}  {total[len(total) // 2]:7.1f} / {total[-1]:7.1f}  {w}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=10_000.0)
    ap.add_argument("--events", type=int, default=200_000)
    # The first ~4 s after traffic starts decide slower (p99 144-232 ms over them, 80-85 ms after,
    # on a quiet machine): both are printed.
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds left out of the steady-state delay")
    ap.add_argument("--prewarm", type=float, default=0.0,
                    help="seconds of the same traffic for another tenant first (a broker and worker past their start)")
    ap.add_argument("--restart-worker", action="store_true",
                    help="with --prewarm: restart the worker after it (a warm broker, a fresh worker)")
    ap.add_argument("--pin-worker", action="store_true",
                    help="the worker on one core, the broker and this process (publisher, taps) on another")
    ap.add_argument("--sdk-publisher", action="store_true",
                    help="publish through the SDK's Publisher (validated per event), not the bench's raw generator")
    ap.add_argument("--timeline", action="store_true",
                    help="print the delay second by second (where stalls are, not only how long)")
    args = ap.parse_args()
    pinned = args.pin_worker and len(os.sched_getaffinity(0)) > 1
    if pinned:  # before the broker starts: it inherits this process's core
        os.sched_setaffinity(0, {0})
    with bench_stack() as (settings, _):
        ensure_topics(settings)
        stamp_on_arrival(settings)
        worker = WorkerProcess(settings, "ratelimit").start()
        try:
            worker = prepare(settings, args, worker, pinned)
            tap = DecisionTap(settings)
            tap.start()
            inputs = DecisionTap(settings, Topic.REQUESTS)  # the part of the delay before the worker
            inputs.start()
            offered = steady(settings, args, args.rate, args.seconds)
            expected = offered // 6
            wait(lambda: len(tap.seen) >= expected, 180, f"{expected} decisions")
            tap.stop.set()
            inputs.stop.set()
            by_record = [(r - ts) * 1000 for r, _, ts in tap.seen]
            by_consume = [(c - ts) * 1000 for _, c, ts in tap.seen]
            print(f"delay at {args.rate:,.0f} events/s offered for {args.seconds:.0f}s: {offered:,} events, "
                  f"{len(tap.seen):,} decisions")
            print(f"  produce → decision record timestamp: p50 {percentile(by_record, 0.5):.1f} ms, "
                  f"p99 {percentile(by_record, 0.99):.1f} ms, max {max(by_record):.1f} ms")
            print(f"  produce → decision consumed:         p50 {percentile(by_consume, 0.5):.1f} ms, "
                  f"p99 {percentile(by_consume, 0.99):.1f} ms")
            # requests carry the broker's append time: how long events took to reach Kafka at all
            into_kafka = [(r - ts) * 1000 for r, _, ts in inputs.seen]
            if len(into_kafka) > 1:
                print(f"  produce → request appended by the broker (no worker): p50 {percentile(into_kafka, 0.5):.1f} "
                      f"ms, p99 {percentile(into_kafka, 0.99):.1f} ms, max {max(into_kafka):.1f} ms")
            # The first seconds include the worker's first batches (lazy imports, first limiter).
            first = min(ts for _, _, ts in tap.seen)
            warm = [(r - ts) * 1000 for r, _, ts in tap.seen if ts >= first + args.warmup]
            if len(warm) > 1:
                print(f"  after a {args.warmup:.0f} s warm-up ({len(warm):,} decisions): p50 "
                      f"{percentile(warm, 0.5):.1f} ms, p99 {percentile(warm, 0.99):.1f} ms, max {max(warm):.1f} ms")
            # Where the first seconds' delay is: before the broker had the request, or in the worker
            # (its decision's timestamp minus the broker's append time of the request it decides on).
            appended = {ts: r for r, _, ts in inputs.seen}
            for label, keep in ((f"first {args.warmup:.0f} s", lambda ts: ts < first + args.warmup),
                                ("after", lambda ts: ts >= first + args.warmup)):
                worker_only = [(r - appended[ts]) * 1000 for r, _, ts in tap.seen if keep(ts) and ts in appended]
                broker_in = [(appended[ts] - ts) * 1000 for _, _, ts in tap.seen if keep(ts) and ts in appended]
                if len(worker_only) > 1:
                    print(f"  {label}: request appended → decision p50 {percentile(worker_only, 0.5):.1f} / p99 "
                          f"{percentile(worker_only, 0.99):.1f} ms; produce → appended p50 "
                          f"{percentile(broker_in, 0.5):.1f} / p99 {percentile(broker_in, 0.99):.1f} ms")
            if args.timeline:
                timeline(tap.seen, appended, first)
            for status in worker_statuses(settings):  # batches wait out each checkpoint's snapshot
                cp = status.get("extra", {}).get("checkpoints", {})
                if cp.get("recent"):
                    print(f"  checkpoint pauses (last {cp['recent']}): p50 {cp['pause_ms_p50']:.1f} ms, "
                          f"max {cp['pause_ms_max']:.1f} ms")
                offsets = status.get("extra", {}).get("offsets", {})
                if offsets:  # the input check's work (re-reads, probes) would show in the delay
                    print("  input offsets: " + ", ".join(f"{k} {v}" for k, v in sorted(offsets.items())))

            base = requests_processed(settings)
            rng = random.Random(7)
            t0 = 1_780_000_000.0
            backlog = [("bulk", ip_of(int(20_000 * rng.random() ** 3)), t0 + i / 10_000, i)
                       for i in range(args.events)]
            start = time.perf_counter()
            publish_all(settings, args, backlog)
            published = time.perf_counter() - start
            wait(lambda: requests_processed(settings) >= base + args.events, 600, "the backlog to be processed")
            took = time.perf_counter() - start
            print(f"throughput: {args.events:,} events in {took:.1f}s = {args.events / took:,.0f} events/s "
                  f"end to end (publishing alone took {published:.1f}s)")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
