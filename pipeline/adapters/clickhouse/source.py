"""The writer's Kafka side: reading result topics with kafka-python, committing, recovering.

Two ways to own partitions:

- ``manual`` (the default with chDB, where exactly one writer may run): the writer assigns
  itself every partition of its topics and re-reads the topics' metadata every
  ``refresh_s`` to pick up topics and partitions created later. No group membership, so no
  rebalance can refuse a commit or strand the consumer; offsets are still committed under
  the group id (generation -1), so a restart resumes where the last commit left off.
- ``group`` (a ClickHouse server, any number of writers): a consumer-group member. kafka-python
  3.0.x was seen to stay in "rebalance in progress" for good after refused commits: every
  commit refused locally, the group Empty on the broker, the consumer fetching on. A watchdog
  recreates the consumer after ``max_refused_commits`` refusals in a row, or after
  ``stuck_s`` without an assignment; what was read since the last commit is read again and
  replaces itself in ClickHouse (deterministic ids).

A consumer can also go silent in either mode: after a broker restart, kafka-python 3.0.12 was
seen logging "No node available for metadata refresh" for good, never reconnecting, while
records waited. After ``silent_s`` without a record (and not paused), the writer asks the broker
for its partitions' end offsets through the consumer: a consumer that cannot answer, or that
has records waiting past its positions, is recreated.

Broker outages of any length are waited out: connecting retries with back-off, and a commit
that cannot reach the broker keeps its offsets for the next try. Only errors no waiting can
fix (authorization, for one) reach the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

__all__ = ["Assignment", "ResultSource"]

log = logging.getLogger(__name__)

Assignment = Literal["manual", "group"]


class ResultSource:
    """kafka-python consumer of `topics` with commit, pause and self-healing; see the module doc."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: Iterable[str],
        assignment: Assignment = "manual",
        refresh_s: float = 10.0,
        max_refused_commits: int = 3,
        stuck_s: float = 60.0,
        silent_s: float = 30.0,
        reconnect_max_s: float = 30.0,
        consumer_config: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = sorted(topics)
        self.assignment = assignment
        self.refresh_s = refresh_s
        self.max_refused_commits = max_refused_commits
        self.stuck_s = stuck_s
        self.silent_s = silent_s
        self.reconnect_max_s = reconnect_max_s
        self.consumer_config = dict(consumer_config or {})
        self.clock = clock
        self.consumer: Any = None
        self.paused = False
        # figures for status and tests
        self.reconnects = 0
        self.refused_commits = 0
        self.connect_failures = 0
        self._refused_in_a_row = 0
        self._next_connect = 0.0
        self._connect_backoff = 0.0
        self._next_refresh = 0.0
        self._unassigned_since: float | None = None
        self._heard: float = clock()  # when the consumer last gave records (or was probed fine)

    # -- connection ----------------------------------------------------------------------
    def _connect(self) -> bool:
        if self.clock() < self._next_connect:
            return False
        from kafka.errors import KafkaError

        from pipeline.adapters.kafka_clients import SafeConsumer

        try:
            self.consumer = SafeConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=5000,
                fetch_max_bytes=64 << 20,
                max_partition_fetch_bytes=16 << 20,
                # New topics must be picked up soon (the 5-minute default left a writer that
                # started before a topic existed idle until the refresh).
                metadata_max_age_ms=int(self.refresh_s * 1000),
                **self.consumer_config,
            )
        except KafkaError as exc:
            self.connect_failures += 1
            self._connect_backoff = min(self.reconnect_max_s, max(0.5, self._connect_backoff * 2))
            self._next_connect = self.clock() + self._connect_backoff
            log.warning("writer cannot reach Kafka at %s (%s); retrying in %.1fs",
                        self.bootstrap, exc, self._connect_backoff)
            return False
        self._connect_backoff = 0.0
        self.paused = False
        self._unassigned_since = self._heard = self.clock()
        if self.assignment == "group":
            self.consumer.subscribe(topics=self.topics)
        else:
            self._next_refresh = 0.0
            self._refresh_assignment()
        return True

    def _refresh_assignment(self) -> None:
        """Manual mode: own every partition the metadata lists for our topics."""
        from kafka.structs import TopicPartition

        now = self.clock()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        from kafka.errors import KafkaError

        try:
            wanted = {TopicPartition(t, p) for t in self.topics for p in (self.consumer.partitions_for_topic(t) or ())}
        except KafkaError as exc:  # a consumer built during an outage has no metadata to fall back on
            log.warning("writer cannot list its partitions yet (%s); retrying in %.0fs", type(exc).__name__,
                        self.refresh_s)
            return
        if wanted and wanted != set(self.consumer.assignment()):
            added = wanted - set(self.consumer.assignment())
            self.consumer.assign(sorted(wanted))
            if self.paused:  # a newly assigned partition obeys the current back-pressure too
                self.consumer.pause(*added)
            log.info("writer reads %d partitions of %d topics", len(wanted), len({tp.topic for tp in wanted}))

    def reconnect(self, reason: str) -> None:
        """Drop the consumer (without committing) and build a new one on the next poll."""
        log.warning("writer consumer restarts: %s; records since the last commit will be re-read", reason)
        self.close()
        self.reconnects += 1
        self._refused_in_a_row = 0

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False, timeout_ms=5000)
            except Exception as exc:  # closing must not keep a stopping writer from stopping
                log.warning("closing the writer's consumer failed: %s", exc)
            self.consumer = None

    # -- reading -------------------------------------------------------------------------
    def poll(self, timeout_ms: int, max_records: int, paused: bool) -> dict[Any, list[Any]]:
        """Records by partition ({} while disconnected); `paused` applies back-pressure."""
        if self.consumer is None and not self._connect():
            time.sleep(min(timeout_ms / 1000, max(0.0, self._next_connect - self.clock())))
            return {}
        consumer = self.consumer
        if self.assignment == "manual":
            self._refresh_assignment()
        if paused and not self.paused:
            consumer.pause(*consumer.assignment())
            self.paused = True
        elif not paused and self.paused:
            consumer.resume(*consumer.paused())
            self.paused = False
        batches: dict[Any, list[Any]] = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        if batches or self.paused:
            self._heard = self.clock()
        else:
            self._watch_silence()
        self._watch_assignment()
        return batches

    def _watch_silence(self) -> None:
        """Recreate a consumer that gave no record for `silent_s` and cannot show it is caught up."""
        now = self.clock()
        if self.consumer is None or now - self._heard < self.silent_s:
            return
        self._heard = now  # probe at most once per `silent_s`
        from kafka.errors import KafkaError

        parts = list(self.consumer.assignment())
        if not parts:
            return  # `_watch_assignment`'s case
        try:
            ends = self.consumer.end_offsets(parts, timeout_ms=5000)
            behind = [tp for tp in parts if ends.get(tp, 0) > self.consumer.position(tp, timeout_ms=5000)]
        except KafkaError as exc:
            self.reconnect(f"no record for {self.silent_s:.0f}s and the broker unreachable through this consumer "
                           f"({type(exc).__name__})")
            return
        if behind:
            self.reconnect(f"no record for {self.silent_s:.0f}s while {len(behind)} partition(s) have records waiting")

    def _watch_assignment(self) -> None:
        if self.consumer is None:
            return
        if self.consumer.assignment():
            self._unassigned_since = None
            return
        now = self.clock()
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif self.assignment == "group" and now - self._unassigned_since >= self.stuck_s:
            self.reconnect(f"no partitions assigned for {now - self._unassigned_since:.0f}s")

    # -- committing ----------------------------------------------------------------------
    def commit(self, offsets: dict[Any, int]) -> bool:
        """Commit `offsets` (next offset to read, per partition). True when the broker took them.

        False leaves the decision to the caller: in manual mode the offsets stay valid and are
        retried with the next commit; in group mode the partitions may belong to someone else
        now, so they are dropped (the rows are stored; whoever reads them next replaces them).
        """
        if not offsets or self.consumer is None:
            return not offsets
        from kafka.errors import (
            CommitFailedError,
            IllegalGenerationError,
            KafkaError,
            RebalanceInProgressError,
            UnknownMemberIdError,
        )
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        except KafkaError as exc:
            rebalanced = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)
            if not (exc.retriable or isinstance(exc, rebalanced)):
                raise  # authorization and the like: no waiting fixes a misconfiguration
            self.refused_commits += 1
            self._refused_in_a_row += 1
            log.warning("offset commit refused (%r); %d in a row", exc, self._refused_in_a_row)
            if self.assignment == "group" and self._refused_in_a_row >= self.max_refused_commits:
                self.reconnect(f"{self._refused_in_a_row} offset commits refused in a row")
            return False
        self._refused_in_a_row = 0
        return True

    def lag(self) -> dict[Any, int] | None:
        """End offset − position per assigned partition; None when the broker cannot tell now."""
        if self.consumer is None:
            return None
        from kafka.errors import KafkaError

        assigned = list(self.consumer.assignment())
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=5000) if assigned else {}
            return {tp: ends.get(tp, 0) - self.consumer.position(tp, timeout_ms=5000) for tp in assigned}
        except KafkaError as exc:
            log.info("consumer lag unknown for now: %s", exc)
            return None
