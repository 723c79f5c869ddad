"""Checkpoint epochs: which changelog records belong to state that was made durable as a whole.

The model is quix-streams' (a partition transaction flushed at a checkpoint, its offsets
recorded with it), fitted to Faust's changelogged tables.

- Every input partition number ``p`` (all inputs are co-partitioned, and so are the tables)
  has an *open epoch*. Each changelog record a worker writes for partition ``p`` carries the
  header ``tw-epoch`` = the open epoch of ``p``.
- A checkpoint seals the open epoch of each partition it covers: it writes that epoch's
  state, waits until Kafka has it, then writes one *checkpoint record* per partition to the
  compacted topic ``<app>-checkpoints`` (key ``p``): the sealed epoch, the offset of the last
  record processed of each input partition ``p``, and each input's newest event time. Only
  then are the input offsets committed.
- Recovery reads the checkpoint records before the tables. A changelog record whose epoch is
  newer than its partition's checkpoint was written by work that never completed a
  checkpoint: it is skipped, and its key is rewritten with the recovered value
  (``compensation``, tagged with the committed epoch) so that a later recovery, which may
  see that epoch number reused, still ends on the right value. Records without the header
  (other writers, older versions) are applied as before.
- The runtime then skips input records at or below the checkpoint's offsets (their effects
  are in the recovered state), and restores each input's event time.

So a worker killed at any moment resumes from state that matches what it will re-read: no
input is counted twice, none is lost. This module is the pure part (no I/O); the runtime and
`pipeline.runtime.faust_adapter` do the reading and writing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EPOCH_HEADER", "MAX_CHECKPOINT_BYTES", "Checkpoint", "EpochFence", "decode_checkpoint",
           "encode_checkpoint", "epoch_of"]

EPOCH_HEADER = "tw-epoch"
MAX_CHECKPOINT_BYTES = 64 * 1024  # a checkpoint record is a few hundred bytes; anything larger is not ours
_VERSION = 1
_MAX_EPOCH = 2**62


@dataclass(slots=True)
class Checkpoint:
    """What one partition number's state covers: its sealed epoch, last offsets, newest event times."""

    epoch: int = 0
    offsets: dict[str, int] = field(default_factory=dict)  # input topic -> offset of the last record done
    newest: dict[str, float] = field(default_factory=dict)  # input topic -> newest event time seen (epoch s)


def encode_checkpoint(cp: Checkpoint) -> bytes:
    return json.dumps({"v": _VERSION, "epoch": cp.epoch, "offsets": cp.offsets, "newest": cp.newest},
                      sort_keys=True, separators=(",", ":")).encode()


def decode_checkpoint(raw: bytes | None) -> Checkpoint:
    """The checkpoint in `raw`; ValueError for anything else (size, JSON, version, types)."""
    if raw is None or len(raw) > MAX_CHECKPOINT_BYTES:
        raise ValueError("not a checkpoint record (missing or oversized)")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not a checkpoint record: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        raise ValueError("unknown checkpoint record version")
    epoch, offsets, newest = data.get("epoch"), data.get("offsets"), data.get("newest")
    if type(epoch) is not int or not 0 <= epoch < _MAX_EPOCH:
        raise ValueError("checkpoint epoch must be a non-negative integer")
    if not isinstance(offsets, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= -1 for k, v in offsets.items()):
        raise ValueError("checkpoint offsets must map topics to offsets")
    if not isinstance(newest, dict) or not all(
            isinstance(k, str) and type(v) in (int, float) and math.isfinite(v) for k, v in newest.items()):
        raise ValueError("checkpoint event times must map topics to finite numbers")
    return Checkpoint(epoch, dict(offsets), {k: float(v) for k, v in newest.items()})


def epoch_of(headers: Any) -> int | None:
    """The `tw-epoch` header of a record (a list of (key, value) pairs, or a mapping), or None."""
    if not headers:
        return None
    items: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == EPOCH_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None  # a mangled header: treat as untagged, like a foreign writer's
    return None


class EpochFence:
    """Open and committed epochs per partition number; decides which changelog records to apply."""

    __slots__ = ("_committed", "_open", "checkpoints")

    def __init__(self) -> None:
        self.checkpoints: dict[int, Checkpoint] = {}  # partition -> its last durable checkpoint
        self._committed: dict[int, int] = {}
        self._open: dict[int, int] = {}

    def load(self, partition: int, cp: Checkpoint) -> None:
        """Adopt `partition`'s durable checkpoint (read before its tables recover)."""
        self.checkpoints[partition] = cp
        self._committed[partition] = cp.epoch
        self._open[partition] = cp.epoch + 1

    def committed(self, partition: int) -> int:
        return self._committed.get(partition, 0)

    def open_epoch(self, partition: int) -> int:
        """The epoch changelog records written for `partition` now belong to."""
        epoch = self._open.get(partition)
        if epoch is None:
            epoch = self._open[partition] = self.committed(partition) + 1
        return epoch

    def admits(self, partition: int, headers: Any) -> bool:
        """Apply this changelog record? Untagged ones yes; tagged ones if their epoch is durable."""
        epoch = epoch_of(headers)
        return epoch is None or epoch <= self.committed(partition)

    def header(self, partition: int) -> list[tuple[str, bytes]]:
        """The header of records written for `partition` now (its open epoch)."""
        return self.header_of(partition, self.open_epoch(partition))

    @staticmethod
    def header_of(partition: int, epoch: int) -> list[tuple[str, bytes]]:
        return [(EPOCH_HEADER, str(epoch).encode())]

    def committed_header(self, partition: int) -> list[tuple[str, bytes]]:
        """The header of compensation records: always applied, after what they correct."""
        return self.header_of(partition, self.committed(partition))

    def seal(self, partition: int) -> int:
        """End the open epoch of `partition` (its writes so far are the checkpoint's); returns it."""
        epoch = self.open_epoch(partition)
        self._open[partition] = epoch + 1
        return epoch

    def commit(self, partition: int, cp: Checkpoint) -> None:
        """`cp` (a sealed epoch) is durable: records of that epoch are applied at the next recovery."""
        self.checkpoints[partition] = cp
        self._committed[partition] = max(self.committed(partition), cp.epoch)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions given away: their epochs are the next owner's to read."""
        for p in partitions:
            self.checkpoints.pop(p, None)
            self._committed.pop(p, None)
            self._open.pop(p, None)
