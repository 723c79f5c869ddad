"""The decisions feed: a background consumer that keeps a :class:`DecisionCache` current.

It reads every partition of ``<prefix>.decisions`` and ``<prefix>.ratelimit-policies`` from
the beginning (both are compacted and keyed, so that is every live key's decision and every
tenant's limits: a restarted edge rebuilds the cache before it calls itself ``ready``), then
follows them. No consumer group: every edge process holds the whole cache.

``live`` is what the enforcer asks before trusting the cache: the feed caught up once, and
the broker answered within ``stale_after_s``. An edge that cannot reach its broker answers
"allowed" (and counts it) rather than enforcing decisions it can no longer see end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from tenantwatch_edge.broker import reachable
from tenantwatch_edge.decisions import DecisionCache

__all__ = ["DecisionFeed"]

log = logging.getLogger(__name__)


class DecisionFeed:
    """Feeds ``cache`` from the decisions and policies topics of ``prefix`` on ``bootstrap``."""

    def __init__(self, cache: DecisionCache, bootstrap: str, prefix: str, *, options: Mapping[str, Any] | None = None,
                 stale_after_s: float = 15.0, probe_s: float = 2.0) -> None:
        self.cache, self.bootstrap = cache, bootstrap
        self.decisions, self.policies = f"{prefix}.decisions", f"{prefix}.ratelimit-policies"
        self.options = dict(options or {})
        self.stale_after_s, self.probe_s = stale_after_s, probe_s
        self.ready = threading.Event()  # caught up with the topics' ends once
        self._last_ok = float("-inf")  # monotonic time the broker last answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenantwatch-edge-feed", daemon=True)
        self.counts = {"records": 0, "reconnects": 0}

    @property
    def live(self) -> bool:
        return self.ready.is_set() and time.monotonic() - self._last_ok < self.stale_after_s

    def start(self) -> DecisionFeed:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # broker gone or topics missing: say so once, retry
                log.warning("decisions feed: %s: %s; retrying", type(exc).__name__, str(exc)[:200])
                self.counts["reconnects"] += 1
                self._stop.wait(1.0)

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        if not reachable(self.bootstrap):  # (a consumer that fails to bootstrap leaves a thread behind)
            raise ConnectionError(f"no broker answers at {self.bootstrap}")
        return KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=5000, fetch_max_wait_ms=50, client_id="tenantwatch-edge-feed",
                             **self.options)

    def _follow(self) -> None:
        from kafka.structs import TopicPartition

        consumer = self._consumer()
        try:
            tps = []
            for topic in (self.decisions, self.policies):
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    raise LookupError(f"topic {topic} does not exist (yet)")
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            self._last_ok = time.monotonic()
            probe_at = self._last_ok + self.probe_s
            apply = {self.decisions: self.cache.apply_decision, self.policies: self.cache.apply_policy}
            while not self._stop.is_set():
                for tp, records in consumer.poll(timeout_ms=100, max_records=5000).items():
                    on = apply[tp.topic]
                    for r in records:
                        on(r.key, r.value, tp.partition)
                    self.counts["records"] += len(records)
                if not self.ready.is_set() and all(consumer.position(tp) >= end for tp, end in ends.items()):
                    self.ready.set()
                    log.info("decisions feed caught up: %d refused key(s)", len(self.cache))
                now = time.monotonic()
                if now >= probe_at:  # an empty poll does not tell a quiet topic from a lost broker
                    consumer.end_offsets(tps[:1])
                    self._last_ok = now
                    probe_at = now + self.probe_s
        finally:
            consumer.close()
