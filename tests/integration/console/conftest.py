"""The owner console on the real stack: a worker, a writer serving its read API, the console in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.console.owners import OwnerStore
from pipeline.settings import Settings
from tests.conftest import WorkerProcess, WriterThread, free_port
from tests.integration.ratelimit.conftest import make_settings

CHROMIUM = "/usr/bin/chromium"
IDLE_S = 600.0


@dataclass
class Clock:
    """The console's clock, moved by the test (session expiry without sleeping)."""

    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class ConsoleStack:
    settings: Settings
    url: str
    clock: Clock
    owners: OwnerStore
    totp_secret: str
    client: Any  # the writer's (serialized) chDB client: what the test checks against


class _ServerThread(threading.Thread):
    def __init__(self, app: Any, port: int):
        super().__init__(daemon=True)
        self.app, self.port = app, port
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()

    def run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(timeout=30)


@pytest.fixture(scope="module")
def console_stack(kafka: str, session_dir: Path, chdb_client: Any) -> Iterator[ConsoleStack]:
    from pipeline.adapters.clickhouse.read_api import ReadApiServer, SerializedClient, announcement_path
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter
    from pipeline.cli.trials import keys_per_partition
    from pipeline.console.auth import SessionStore
    from pipeline.console.reads import open_reader
    from pipeline.console.server import make_submit
    from pipeline.console.web import ConsoleConfig, build_app

    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium); `make test` installs it")
    settings = make_settings(kafka, session_dir)
    ensure_topics(settings)
    worker = WorkerProcess(settings, "ratelimit,anomaly").start()
    client = SerializedClient(chdb_client)  # as in the writer process: inserts and reads one at a time
    writer = ClickHouseWriter(bootstrap=settings.broker, prefix=settings.topic_prefix, sink=ClickHouseSink(client),
                              group_id=f"{settings.app_id}-writer", flush_s=0.2)
    read_api = ReadApiServer(client, announce=announcement_path(settings)).start()
    owners = OwnerStore(settings.data_dir / "console" / "owners.json")
    secret = owners.add("alice", "correct horse battery").totp_secret  # the password the tests sign in with
    clock = Clock(time.time())
    reader = open_reader(settings)  # finds the writer's read API through its announcement
    assert reader.mode.startswith("live"), reader.mode
    app = build_app(ConsoleConfig(reader=reader, owners=owners, submit=make_submit(settings, wait_s=120),
                                  partition_keys=keys_per_partition(settings.partitions), clock=clock,
                                  sessions=SessionStore(idle_s=IDLE_S)))
    port = free_port()
    server = _ServerThread(app, port)
    server.start()
    assert server.started.wait(30)
    try:
        with WriterThread(writer):
            yield ConsoleStack(settings, f"http://127.0.0.1:{port}", clock, owners, secret, client)
    finally:
        server.stop()
        read_api.stop()
        worker.stop()


@pytest.fixture(scope="module")
def browser(console_stack: ConsoleStack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
