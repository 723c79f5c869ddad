"""Anomaly agent end to end: metric points/s through a real worker on a private broker.

Preloads hourly points (tenants × metrics × hours, daily cycle + noise, a few spikes) on the
metrics topic, then starts `tenantwatch worker --capabilities anomaly` and times it until its
consumer group has committed every metrics record. Reports start-up (to the first commit)
and the steady rate after it; the output topics' record counts show the work was done.

    python tests/bench/bench_anomaly_e2e.py [--tenants 200] [--hours 240]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402

from pipeline.adapters.kafka_admin import committed_offsets, end_offsets, ensure_topics  # noqa: E402
from pipeline.runtime.codec import encode_batch  # noqa: E402
from pipeline.runtime.topics import Topic, topic_name  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from schemas.anomaly import MetricName, MetricPoint  # noqa: E402
from tests.bench._stack import bench_stack  # noqa: E402

T0 = datetime(2026, 1, 5, tzinfo=UTC)
METRICS = (MetricName.REQUEST_VOLUME, MetricName.ERROR_RATE, MetricName.LATENCY_P95, MetricName.REVENUE,
           MetricName.ACTIVE_USERS)


def preload(settings: Settings, tenants: int, hours: int) -> int:
    """Publish tenants × len(METRICS) × hours points, one JSON-array record per tenant-day."""
    rng = random.Random(1)
    producer = KafkaProducer(bootstrap_servers=settings.broker, linger_ms=20, max_request_size=8 << 20)
    name = topic_name(settings.topic_prefix, Topic.METRICS)
    n = 0
    # A third of the tenants get one 3-hour spike (×4) after three days of warm-up.
    spikes = {t: rng.randrange(72, hours - 3) for t in range(tenants) if rng.random() < 1 / 3 and hours > 75}
    for day in range(0, hours, 24):
        for t in range(tenants):
            tenant = f"tenant{t:04d}"
            batch = []
            for h in range(day, min(day + 24, hours)):
                cycle = 1 + 0.3 * math.sin(2 * math.pi * (h % 24) / 24)
                spike = 4.0 if t in spikes and spikes[t] <= h < spikes[t] + 3 else 1.0
                for i, metric in enumerate(METRICS):
                    value = (10.0 ** (i % 3)) * cycle * rng.gauss(1, 0.05) * spike
                    batch.append(MetricPoint(tenant=tenant, metric=metric, ts=T0 + timedelta(hours=h),
                                             value=max(value, 0.0)))
            producer.send(name, key=tenant.encode(), value=encode_batch(batch))
            n += len(batch)
    producer.flush()
    producer.close()
    return n


def run_worker(settings: Settings, n: int) -> tuple[float, float | None, float | None]:
    env = dict(os.environ, TW_BROKER=settings.broker, TW_DATA_DIR=str(settings.data_dir), TW_APP_ID=settings.app_id,
               TW_PARTITIONS=str(settings.partitions), TW_SMTP_PORT=str(settings.smtp_port))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = topic_name(settings.topic_prefix, Topic.METRICS)
    ends = end_offsets(settings.broker, [metrics])
    total = sum(ends.values())
    with open(settings.data_dir / "worker.log", "wb") as log:
        started = time.perf_counter()
        worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", "--capabilities", "anomaly"],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        first: tuple[float, float] | None = None
        try:
            while True:
                time.sleep(0.25)
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited early; see {settings.data_dir / 'worker.log'}")
                try:
                    got = committed_offsets(settings.broker, settings.app_id)
                except KafkaError:  # the group coordinator appears with the group's first join
                    continue
                done = sum(min(got.get(k, 0), v) for k, v in ends.items())
                if first is None and done > 0:
                    first = (time.perf_counter() - started, done / total * n)
                if done >= total:
                    elapsed = time.perf_counter() - started
                    break
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    if first is None or elapsed <= first[0]:
        return elapsed, None, None
    return elapsed, first[0], (n - first[1]) / (elapsed - first[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--hours", type=int, default=240)
    args = parser.parse_args()
    with bench_stack() as (settings, _):
        ensure_topics(settings)
        t = time.perf_counter()
        n = preload(settings, args.tenants, args.hours)
        print(f"preloaded {n:,} metric points ({args.tenants} tenants × {len(METRICS)} metrics × {args.hours} h)"
              f" in {time.perf_counter() - t:.1f}s")
        elapsed, startup, steady = run_worker(settings, n)
        print(f"worker consumed every point in {elapsed:.1f}s incl. start-up: {n / elapsed:,.0f} points/s")
        if startup is not None and steady is not None:
            print(f"start-up to first commit {startup:.1f}s; steady rate after it: {steady:,.0f} points/s")
        outputs = end_offsets(settings.broker, [topic_name(settings.topic_prefix, x)
                                                for x in (Topic.BASELINES, Topic.ANOMALIES, Topic.NOTIFICATIONS)])
        per_topic: dict[str, int] = {}
        for (topic, _p), offset in outputs.items():
            per_topic[topic.split(".", 1)[1]] = per_topic.get(topic.split(".", 1)[1], 0) + offset
        print(f"output Kafka records (each a JSON array: one per tenant per batch): {per_topic}")


if __name__ == "__main__":
    main()
