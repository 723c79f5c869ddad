"""The README's one-line setups run as written (against an address where no broker listens: fail open)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask

from agents.ratelimit.core import STATES as CORE_STATES
from tenantwatch_edge import Edge, EdgeMiddleware, EdgeWSGI
from tenantwatch_edge.decisions import STATES
from tests.conftest import free_port

README = Path(__file__).resolve().parents[3] / "README.md"


def setup_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Enforcement at the edge"):text.index("## Commands")]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    return [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")]


def edges_of(obj: Any) -> Edge:
    return obj.edge  # type: ignore[no-any-return]


@pytest.mark.parametrize("line", setup_lines())
def test_readme_setup_line_serves_requests(line: str) -> None:
    """Each README line wires the edge; with no broker every request is served and counted as a fallback."""
    broker = f"127.0.0.1:{free_port()}"
    fastapi, flask = FastAPI(), Flask(__name__)
    fastapi.get("/api/items")(lambda: {"ok": True})
    flask.get("/api/items")(lambda: {"ok": True})
    app = fastapi if "add_middleware" in line else flask
    scope: dict[str, Any] = {"app": app, "EdgeMiddleware": EdgeMiddleware, "EdgeWSGI": EdgeWSGI,
                             "get_wsgi_application": lambda: flask.wsgi_app}
    exec(line.replace("kafka:9092", broker), scope)  # noqa: S102  # the README's own text, nothing else
    headers = {"X-Tenant-Id": "acme"}
    if "add_middleware" in line:
        async def get() -> int:
            transport = httpx.ASGITransport(app=fastapi, client=("192.0.2.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return (await client.get("/api/items", headers=headers)).status_code

        assert asyncio.run(get()) == 200
        middleware = fastapi.middleware_stack
        while not isinstance(middleware, EdgeMiddleware):
            middleware = middleware.app
        edge = edges_of(middleware)
    else:
        wrapped = scope.get("application") or flask.wsgi_app
        flask.wsgi_app = wrapped
        assert flask.test_client().get("/api/items", headers=headers).status_code == 200
        edge = edges_of(wrapped)
    try:
        assert edge.counts["fallback_allowed"] == 1
    finally:
        edge.close()


def test_edge_states_are_the_rate_limiters() -> None:
    """The edge's copy of the decision states (it cannot import agents/) matches the rate limiter's."""
    assert STATES == CORE_STATES
