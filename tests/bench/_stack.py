"""A private broker and data dir for a benchmark run (free ports, temp dir, always stopped)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.devstack.kafka import KafkaBroker
from pipeline.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bench_stack(partitions: int = 4) -> Iterator[tuple[Settings, Path]]:
    base = Settings()
    with tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        root = Path(tmp)
        broker = KafkaBroker(cache_dir=base.cache_dir, work_dir=root / "kafka", version=base.kafka_version,
                             port=free_port(), controller_port=free_port(), partitions=partitions, heap="2g")
        broker.start(timeout=120)
        try:
            settings = Settings(broker=broker.bootstrap, data_dir=root / "data", partitions=partitions,
                                clickhouse_dsn=f"chdb://{root / 'clickhouse'}", app_id="tw-bench",
                                smtp_port=free_port())
            yield settings, root
        finally:
            broker.stop()


def broker_pid(root: Path) -> int | None:
    """The pid of the broker `bench_stack` started under `root` (None if it is not running)."""
    return KafkaBroker(cache_dir=root, work_dir=root / "kafka").process.pid()  # from its pid file


def pin_all_threads(pid: int, cpus: set[int]) -> None:
    """Pin every thread `pid` has now (threads it starts later inherit their creator's cores)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # a thread that just ended
            continue
