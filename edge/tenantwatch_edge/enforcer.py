"""The edge: decisions cache + its feed + the request-event sink, shared by every front end.

    edge = Edge("kafka:9092", prefix="tw")
    verdict = edge.check("acme", "203.0.113.9")     # in memory, no network hop
    edge.record(time.time(), "acme", "203.0.113.9", "GET", "/api", 200, 12.5, 512)

While the feed is not live (not caught up yet, or the broker stopped answering), ``check``
answers "allowed" and counts it under ``fallback_allowed``: an outage of the pipeline must
not take the upstream app down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tenantwatch_edge.decisions import ALLOW, DecisionCache, Verdict
from tenantwatch_edge.feed import DecisionFeed
from tenantwatch_edge.sink import EventSink

__all__ = ["Edge"]

log = logging.getLogger(__name__)


class Edge:
    """Enforce one pipeline's decisions (topic prefix ``prefix`` on ``bootstrap``) and report requests to it."""

    def __init__(self, bootstrap: str, prefix: str = "tw", *, capacity: int = 10_000, stale_after_s: float = 15.0,
                 options: Mapping[str, Any] | None = None, start: bool = True) -> None:
        self.cache = DecisionCache()
        self.feed = DecisionFeed(self.cache, bootstrap, prefix, options=options, stale_after_s=stale_after_s)
        self.sink = EventSink(bootstrap, f"{prefix}.requests", capacity=capacity, options=options)
        self.counts = {"checked": 0, "refused": 0, "fallback_allowed": 0}
        if start:
            self.start()

    def start(self) -> Edge:
        self.feed.start()
        self.sink.start()
        return self

    def close(self) -> None:
        """Flush queued events (up to 5 s) and stop; threads still connecting to a missing broker are
        daemons, left to stop at their next step rather than waited for."""
        connected = self.feed.ready.is_set()
        self.sink.close(timeout=5.0 if connected else 0.5)
        self.feed.close(timeout=1.0)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the cache has caught up with the decisions topic (True) or ``timeout`` passed."""
        return self.feed.ready.wait(timeout)

    def check(self, tenant: str, ip: str) -> Verdict:
        """The verdict for a request of ``ip`` (canonical) to ``tenant``."""
        c = self.counts
        c["checked"] += 1
        if not self.feed.live:
            c["fallback_allowed"] += 1
            return ALLOW
        v = self.cache.lookup(tenant, ip)
        if v.enforced:
            c["refused"] += 1
        return v

    def record(  # noqa: PLR0917  # called per request: positional arguments are the cheap ones
        self, ts: float, tenant: str, ip: str, method: str, path: str, status: int, latency_ms: float, size: int,
    ) -> None:
        """Publish one served request (in the background; dropped and counted if it cannot be)."""
        self.sink.offer(ts, tenant, ip, method, path, status, latency_ms, size)

    def stats(self) -> dict[str, Any]:
        """Counters of the edge, its cache, feed and sink (for a status endpoint or a log line)."""
        return {**self.counts, "live": self.feed.live, "refused_keys": len(self.cache), "event_time": self.cache.now,
                "decisions_applied": self.cache.applied, "decisions_rejected": self.cache.rejected,
                "feed": dict(self.feed.counts), "events": dict(self.sink.counts)}
