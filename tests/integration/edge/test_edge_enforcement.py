"""The edge enforcing the pipeline's decisions: FastAPI on uvicorn, Flask on a WSGI server, a broker outage.

Requests come from a separate process (httpx) through a trusted proxy address (X-Forwarded-For
names the client); the edge publishes them to the real broker, a real rate-limit worker
decides, and the edge's cache follows the decisions topic.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask

from pipeline.sdk import partition_for
from pipeline.settings import Settings
from schemas.commands import Action
from tenantwatch_edge import Edge, EdgeMiddleware, EdgeWSGI
from tenantwatch_edge.decisions import ALLOWED, BANNED, THROTTLED
from tests.conftest import free_port, wait_for
from tests.integration.edge.conftest import load, serve_asgi, serve_wsgi
from tests.integration.ratelimit.conftest import admin, publish, requests, tenant_name, ticks

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROXY = ["127.0.0.1/32"]  # the load process connects from loopback: our "proxy"


def fastapi_app(edge: Edge) -> FastAPI:
    app = FastAPI()

    @app.get("/api/items")
    def items() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(EdgeMiddleware, edge=edge, trusted_proxies=PROXY)
    return app


def flask_app(edge: Edge) -> Flask:
    app = Flask(__name__)

    @app.get("/api/items")
    def items() -> dict[str, bool]:
        return {"ok": True}

    app.wsgi_app = EdgeWSGI(app.wsgi_app, edge=edge, trusted_proxies=PROXY)  # type: ignore[method-assign]
    return app


def state_of(edge: Edge, tenant: str, ip: str) -> int:
    return edge.cache.lookup(tenant, ip).state


def test_fastapi_serves_exactly_the_allowed_count(stack: Settings, edge_factory: Any) -> None:
    """5/minute: the 5th request uses the quota up; from that announcement on, every request is a 429.

    Exact when the announcement reaches the edge before the IP's next request: here the load
    waits for it (the condition, not a time) between the 5th request and the rest.
    """
    tenant = tenant_name("edge")
    assert admin(stack, Action.LIMITS_SET, tenant, per_minute=5, violation_threshold=1000).outcome == "accepted"
    edge = edge_factory(stack.broker, stack.topic_prefix)
    assert edge.wait_ready(60)
    wait_for(lambda: edge.cache.lookup(tenant, "192.0.2.1").policy, timeout=60, what="the tenant's policy")
    server = serve_asgi(fastapi_app(edge))
    try:
        url = f"{server.url}/api/items"
        first = load(url, tenant, "192.0.2.66", 5)  # the 5th uses up 5/minute in the pipeline
        assert first["statuses"] == [200] * 5, "nothing was decided about this IP before these requests"
        assert all(h["ratelimit-policy"] == '"minute";q=5;w=60, "hour";q=1000;w=3600, "day";q=10000;w=86400'
                   for h in first["headers"])
        wait_for(lambda: state_of(edge, tenant, "192.0.2.66") == THROTTLED, timeout=60,
                 what="the used-up quota at the edge")
        assert edge.cache.lookup(tenant, "192.0.2.66").reason == "exhausted:minute"
        after = load(url, tenant, "192.0.2.66", 10)
        assert after["statuses"] == [429] * 10
        retry = int(after["headers"][0]["retry-after"])
        assert 1 <= retry <= 60
        assert after["headers"][0]["ratelimit"] == f'"minute";r=0;t={retry}'
        assert (first["statuses"] + after["statuses"]).count(200) == 5, "exactly the allowed count"
        # the refused requests still count in the pipeline: the 6th crosses, and its throttle follows
        wait_for(lambda: edge.cache.lookup(tenant, "192.0.2.66").reason == "limit:minute", timeout=60,
                 what="the throttle decision at the edge")
        assert load(url, tenant, "192.0.2.66", 1)["statuses"] == [429]
        assert load(url, tenant, "192.0.2.10", 3)["statuses"] == [200] * 3, "another IP of the tenant is served"
        wait_for(lambda: edge.sink.counts["sent"] >= 19, timeout=30, what="every request published")
        assert edge.sink.counts["dropped_full"] + edge.sink.counts["dropped_unavailable"] == 0
    finally:
        server.close()


def test_flask_refuses_a_banned_ip_until_the_ban_ends_in_event_time(private_stack: Settings, edge_factory: Any) -> None:
    """An auto ban (60 s) holds while event time moves inside it and lifts when the pipeline's time passes it."""
    tenant = tenant_name("ban")
    assert admin(private_stack, Action.LIMITS_SET, tenant, per_minute=2, violation_threshold=1, ban_base_s=60,
                 ban_max_s=60).outcome == "accepted"
    edge = edge_factory(private_stack.broker, private_stack.topic_prefix)
    assert edge.wait_ready(60)
    server = serve_wsgi(flask_app(edge))
    try:
        url = f"{server.url}/api/items"
        started = time.time()
        assert load(url, tenant, "192.0.2.66", 3)["statuses"] == [200] * 3  # the 3rd: violation → ban
        wait_for(lambda: state_of(edge, tenant, "192.0.2.66") == BANNED, timeout=60, what="the ban at the edge")
        banned = load(url, tenant, "192.0.2.66", 3)
        assert banned["statuses"] == [429] * 3
        assert 1 <= int(banned["headers"][0]["retry-after"]) <= 60
        # Event time of the abuser's partition moves 30 s on (a witness IP there banned then, by
        # events another app published): the edge's clock follows, and the 60 s ban still holds.
        at30 = datetime.fromtimestamp(started, UTC) + timedelta(seconds=30)
        home = partition_for(f"{tenant}:192.0.2.66", private_stack.partitions)
        witness = next(ip for ip in (f"198.51.100.{i}" for i in range(1, 255))
                       if partition_for(f"{tenant}:{ip}", private_stack.partitions) == home)
        publish(private_stack, requests(tenant, witness, 3, start=at30, step_s=0.001))
        wait_for(lambda: state_of(edge, tenant, witness) == BANNED, timeout=60, what="the witness's ban")
        assert edge.cache.clocks[home] >= at30.timestamp()
        left = edge.cache.lookup(tenant, "192.0.2.66").reset_s
        assert left is not None
        assert 0 < left <= 31, "the ban's end is 60 s after it began, 30 s of it gone in event time"
        assert load(url, tenant, "192.0.2.66", 1)["statuses"] == [429]
        # Time passes the ban's end on every partition: the pipeline ends it, the edge serves again.
        publish(private_stack, ticks(tenant, datetime.fromtimestamp(started, UTC) + timedelta(seconds=600)))
        wait_for(lambda: state_of(edge, tenant, "192.0.2.66") == ALLOWED, timeout=60, what="the ban's end")
        assert load(url, tenant, "192.0.2.66", 1)["statuses"] == [200]
    finally:
        server.close()


def test_broker_outage_neither_blocks_nor_fails_requests(edge_factory: Any) -> None:
    """No broker at all: every request is served (fallback counted) and every event dropped (counted)."""
    edge = edge_factory(f"127.0.0.1:{free_port()}", "nowhere", capacity=20)
    server = serve_asgi(fastapi_app(edge))
    try:
        got = load(f"{server.url}/api/items", "acme", "192.0.2.1", 60)
        assert got["statuses"] == [200] * 60
        assert edge.counts["fallback_allowed"] == 60
        assert not edge.feed.live
        c = edge.sink.counts
        # Every event was either queued (at most `capacity`, later dropped as unavailable) or
        # dropped at once because the queue was full: none waited for a broker.
        assert c["offered"] + c["dropped_full"] == 60
        assert c["offered"] - c["dropped_unavailable"] <= 20
        assert c["sent"] == 0
    finally:
        server.close()
