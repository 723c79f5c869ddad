"""A partition's view of a Faust table, with writes staged until the batch's outputs are safe.

Values are stored as `{"p": partition, "v": <json>}` so that one table shared by all of a
worker's partitions can be scanned per partition (index rebuilds after a rebalance) without
re-deriving Kafka's key partitioner. Writes go to a staging dict; `commit()` writes each
changed key once (what a changelog wants) under `partition_event`, so timers and admin
commands, which run outside stream iteration, can write too. Used by the trial and the
notification agents; pure enough to test with a plain dict as the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, ItemsView, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from pipeline.runtime.faust_adapter import in_partition_of

__all__ = ["PartitionEvent", "PartitionView"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class _Message:
    __slots__ = ("partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class PartitionEvent:
    """Stands in for a Faust event of `topic[partition]`: all a table write reads from it."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


class _Items(ItemsView[str, T]):
    """(key, value) pairs that skip a key whose stored value is refused (one decode per key)."""

    def __iter__(self) -> Iterator[tuple[str, T]]:
        view: MutableMapping[str, T] = self._mapping  # type: ignore[attr-defined]  # set by ItemsView
        for key in view:
            try:
                yield key, view[key]
            except KeyError:  # refused (and logged) by __getitem__
                continue


class PartitionView(MutableMapping[str, T], Generic[T]):
    """The keys of one source partition in a shared table; staged writes, explicit commit."""

    def __init__(
        self,
        table: MutableMapping[str, Any],
        topic: str,
        partition: int,
        decode: Callable[[Any], T],
        encode: Callable[[T], Any],
    ) -> None:
        self.table, self.topic, self.partition = table, topic, partition
        self._decode, self._encode = decode, encode
        self._staged: dict[str, T | None] = {}  # None: deleted

    def __getitem__(self, key: str) -> T:
        if key in self._staged:
            value = self._staged[key]
            if value is None:
                raise KeyError(key)
            return value
        stored = self.table.get(key)
        if not isinstance(stored, dict) or "v" not in stored:
            raise KeyError(key)
        try:
            return self._decode(stored["v"])
        except Exception as exc:  # a changelog record we did not write: the key reads as absent
            log.warning("refused the stored value of %r: %s", key, f"{type(exc).__name__}: {exc}"[:300])
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: T) -> None:
        self._staged[key] = value

    def __delitem__(self, key: str) -> None:
        self[key]  # KeyError when absent, as a mapping should
        self._staged[key] = None

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for key, stored in list(self.table.items()):
            if isinstance(stored, dict) and stored.get("p") == self.partition:
                seen.add(key)
                if self._staged.get(key, True) is not None:
                    yield key
        for key, value in list(self._staged.items()):
            if key not in seen and value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> ItemsView[str, T]:
        return _Items(self)

    def owner(self, key: str) -> int | None:
        """The partition a stored key belongs to (None when not stored)."""
        stored = self.table.get(key)
        p = stored.get("p") if isinstance(stored, dict) else None
        return p if type(p) is int else None

    @property
    def dirty(self) -> int:
        return len(self._staged)

    def discard(self) -> None:
        """Forget staged writes (the batch failed; it will be redelivered)."""
        self._staged.clear()

    def commit(self) -> int:
        """Write every staged key once into the table, on this partition's changelog."""
        if not self._staged:
            return 0
        staged, self._staged = self._staged, {}
        anchor = PartitionEvent(self.topic, self.partition)
        with in_partition_of(anchor):
            for key, value in staged.items():
                if value is None:
                    self.table.pop(key, None)
                else:
                    self.table[key] = {"p": self.partition, "v": self._encode(value)}
        return len(staged)
