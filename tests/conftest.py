"""Shared fixtures: the real local stack (Kafka broker, chDB, SMTP sink) for a test session."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# A Kafka client thread outliving its test (kafka-python 3 keeps retrying the bootstrap of a client
# whose broker went away) logs into pytest's closed capture stream; logging then prints a traceback
# from that thread, and CPython 3.11 building its caret markers with `ast` while the test thread
# uses `ast` too (pytest's reports, Hypothesis' lambda reprs) raised "AST constructor recursion
# depth mismatch" and aborted a CI run. Such a failed write is dropped instead, as in production.
logging.raiseExceptions = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1, what: str | Callable[[], str] = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    if callable(what):
        what = what()
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or condition} (last value: {last!r})")


def worker_statuses(settings: Settings, pids: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """The status files of the settings' workers (rewritten each second), or of `pids` only (a
    killed worker's file stays behind); a file being rewritten is skipped."""
    import json

    from pipeline.ops.processes import status_dir

    paths = (status_dir(settings).glob("worker-*.json") if pids is None
             else [status_dir(settings) / f"worker-{pid}.json" for pid in pids])
    out = []
    for path in paths:
        try:
            out.append(dict(json.loads(path.read_text())))
        except (ValueError, TypeError, OSError):
            continue
    return out


def events_processed(settings: Settings, topic: str = "requests") -> int:
    """Events of one input the settings' workers have processed, from their status files."""
    return sum(int(s.get("events", {}).get(topic, 0)) for s in worker_statuses(settings))


def wait_processed_and_stored(settings: Settings, source: Any, outputs: Iterable[Any], timeout: float = 300) -> None:
    """Wait until the workers committed all of input topic `source` and the writer all of `outputs` (Topics)."""
    from pipeline.adapters.kafka_admin import caught_up
    from pipeline.runtime.topics import topic_name

    src = topic_name(settings.topic_prefix, source)
    outs = [topic_name(settings.topic_prefix, t) for t in outputs]
    wait_for(lambda: caught_up(settings.broker, settings.app_id, [src]), timeout=timeout,
             what=f"the workers committing every record of {src}")
    wait_for(lambda: caught_up(settings.broker, f"{settings.app_id}-writer", outs), timeout=timeout,
             what="the writer storing every output")


def requests_processed(settings: Settings) -> int:
    """Requests the settings' workers have processed, from their status files (rewritten each second)."""
    return events_processed(settings, "requests")


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tenantwatch")


@pytest.fixture(scope="session")
def kafka(session_dir: Path) -> Iterator[str]:
    """A real single-node Apache Kafka broker on free loopback ports, for the whole session."""
    from pipeline.devstack.kafka import KafkaBroker

    broker = KafkaBroker(
        cache_dir=Settings().cache_dir,
        work_dir=session_dir / "kafka",
        version=Settings().kafka_version,
        port=free_port(),
        controller_port=free_port(),
        partitions=4,
    )
    broker.start(timeout=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def chdb_client(session_dir: Path) -> Any:
    """The session's embedded ClickHouse (chDB allows one data path per process), migrated."""
    from pipeline.adapters.clickhouse.client import connect
    from pipeline.adapters.clickhouse.migrations import migrate

    client = connect(f"chdb://{session_dir / 'clickhouse'}")
    migrate(client)
    return client


@pytest.fixture
def settings_factory(kafka: str, session_dir: Path) -> Callable[..., Settings]:
    """Settings on the session broker with a fresh topic prefix (isolates tests from each other)."""

    def make(**overrides: Any) -> Settings:
        prefix = overrides.pop("topic_prefix", f"t{uuid.uuid4().hex[:8]}")
        data = session_dir / prefix
        return Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=data,
                        clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4, **overrides)

    return make


class WorkerProcess:
    """A `tenantwatch worker` subprocess with the given settings (environment variables)."""

    def __init__(self, settings: Settings, capabilities: str | None = None):
        self.settings = settings
        self.capabilities = capabilities
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.data_dir / "worker.log"

    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update({
            "TW_BROKER": s.broker, "TW_TOPIC_PREFIX": s.topic_prefix, "TW_APP_ID": s.app_id,
            "TW_DATA_DIR": str(s.data_dir), "TW_PARTITIONS": str(s.partitions),
            "TW_SMTP_PORT": str(s.smtp_port), "TW_SESSION_TIMEOUT_S": "10",
        })
        if s.metrics_port is not None:
            env["TW_METRICS_PORT"] = str(s.metrics_port)
        return env

    def start(self) -> WorkerProcess:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pipeline.cli", "worker"]
        if self.capabilities is not None:
            cmd += ["--capabilities", self.capabilities]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(settings: Settings, capabilities: str | None = None) -> WorkerProcess:
        w = WorkerProcess(settings, capabilities).start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


class WriterThread:
    """The ClickHouse writer stage running in a thread of the test process (chDB lives here)."""

    def __init__(self, writer: Any):
        self.writer = writer
        self.thread = threading.Thread(target=writer.run, daemon=True)

    def __enter__(self) -> WriterThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.stop()
        self.thread.join(timeout=60)


@pytest.fixture
def writer_factory(chdb_client: Any) -> Callable[..., WriterThread]:
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter

    def make(settings: Settings, sink: Any = None, **kw: Any) -> WriterThread:
        kw.setdefault("flush_s", 0.2)
        writer = ClickHouseWriter(bootstrap=settings.broker, prefix=settings.topic_prefix,
                                  sink=sink or ClickHouseSink(chdb_client), group_id=f"{settings.app_id}-writer", **kw)
        return WriterThread(writer)

    return make
