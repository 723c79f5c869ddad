"""The edge on the real stack: one rate-limit worker, real HTTP servers in threads, load from a subprocess."""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.settings import Settings
from tenantwatch_edge import Edge
from tests.conftest import ROOT, WorkerProcess, free_port, wait_for
from tests.integration.ratelimit.conftest import make_settings


def _stack(kafka: str, session_dir: Any) -> Iterator[Settings]:
    settings = make_settings(kafka, session_dir)
    ensure_topics(settings)
    worker = WorkerProcess(settings, "ratelimit").start()
    try:
        yield settings
    finally:
        worker.stop()


@pytest.fixture(scope="package")
def stack(kafka: str, session_dir: Any) -> Iterator[Settings]:
    """A rate-limit worker on fresh topics, shared by the edge tests (each uses its own tenants)."""
    yield from _stack(kafka, session_dir)


@pytest.fixture
def private_stack(kafka: str, session_dir: Any) -> Iterator[Settings]:
    """A worker and topics of one test's own: for a test that moves event time ahead, which the
    partitions it touches keep for every later test (tenants do not isolate time)."""
    yield from _stack(kafka, session_dir)


@pytest.fixture
def edge_factory() -> Iterator[Callable[..., Edge]]:
    made: list[Edge] = []

    def make(bootstrap: str, prefix: str, **kw: Any) -> Edge:
        edge = Edge(bootstrap, prefix, **kw)
        made.append(edge)
        return edge

    yield make
    for e in made:
        e.close()


class ServerThread:
    """A real HTTP server (uvicorn for ASGI, wsgiref threading server for WSGI) in a thread."""

    def __init__(self, url: str, stop: Callable[[], None], thread: threading.Thread) -> None:
        self.url, self._stop, self.thread = url, stop, thread

    def close(self) -> None:
        self._stop()
        self.thread.join(timeout=10)


def serve_asgi(app: Any) -> ServerThread:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn started")

    def stop() -> None:
        server.should_exit = True

    return ServerThread(f"http://127.0.0.1:{port}", stop, thread)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_wsgi(app: Any) -> ServerThread:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return ServerThread(f"http://127.0.0.1:{server.server_port}", server.shutdown, thread)


def load(url: str, tenant: str, ip: str, n: int) -> dict[str, Any]:
    """`n` sequential requests from another process (httpx): statuses and rate-limit headers."""
    done = subprocess.run([sys.executable, "-m", "tests.integration.edge.load", url, "--tenant", tenant,
                           "--xff", ip, "--n", str(n)], cwd=ROOT, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out
