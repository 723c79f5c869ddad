"""Checkpoint epochs (`pipeline.runtime.state`): a recovered state is exactly the last durable checkpoint's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.runtime.state import (
    EPOCH_HEADER,
    MAX_CHECKPOINT_BYTES,
    Checkpoint,
    EpochFence,
    decode_checkpoint,
    encode_checkpoint,
    epoch_of,
)

# One run of a worker: writes of keys, checkpoints (seal, then commit), and where it is killed.
OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from("abcd"), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.sampled_from("abcd")),
    st.just(("checkpoint",)),
    st.just(("seal only",)),  # killed between sealing an epoch and its checkpoint record
), max_size=30)


class World:
    """A changelog partition, a checkpoint record, and what each run of a worker believed."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int | None, list[tuple[str, bytes]]]] = []
        self.checkpoint: bytes | None = None
        self.expected: dict[str, int] = {}  # the state as of the last durable checkpoint

    def recover(self) -> tuple[EpochFence, dict[str, int]]:
        """What a new worker does: read the checkpoint, apply admitted records, compensate the rest."""
        fence = EpochFence()
        if self.checkpoint is not None:
            fence.load(0, decode_checkpoint(self.checkpoint))
        state: dict[str, int] = {}
        skipped: set[str] = set()
        for key, value, headers in self.log:
            if not fence.admits(0, headers):
                skipped.add(key)
            elif value is None:
                state.pop(key, None)
            else:
                state[key] = value
        self.log += [(k, state.get(k), fence.committed_header(0)) for k in sorted(skipped)]
        return fence, state

    def run(self, fence: EpochFence, state: dict[str, int], ops: list[Any]) -> None:
        for op in ops:
            if op[0] == "write":
                state[op[1]] = op[2]
                self.log.append((op[1], op[2], fence.header(0)))
            elif op[0] == "delete":
                state.pop(op[1], None)
                self.log.append((op[1], None, fence.header(0)))
            elif op[0] == "seal only":
                fence.seal(0)
            else:
                cp = Checkpoint(fence.seal(0))
                self.checkpoint = encode_checkpoint(cp)
                fence.commit(0, cp)
                self.expected = dict(state)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, min_size=1, max_size=5))
def test_every_recovery_ends_on_the_last_durable_checkpoint(runs: list[list[Any]]) -> None:
    """Would fail if a record of an epoch no checkpoint covered survived a restart, or if epoch
    numbers reused by the next run let such a record back in (killed after any operation)."""
    world = World()
    for ops in runs:
        fence, state = world.recover()
        assert state == world.expected
        world.run(fence, state, ops)
    assert world.recover()[1] == world.expected


def test_untagged_records_always_apply_and_a_mangled_header_counts_as_untagged() -> None:
    """Records of other writers (no header) keep Faust's behaviour."""
    fence = EpochFence()
    assert fence.admits(3, None)
    assert fence.admits(3, [("other", b"1")])
    assert fence.admits(3, [(EPOCH_HEADER, b"not a number")])
    assert not fence.admits(3, [(EPOCH_HEADER, b"1")])  # nothing durable yet
    assert epoch_of({EPOCH_HEADER: b"7"}) == 7


@given(st.builds(Checkpoint, st.integers(0, 2**40),
                 st.dictionaries(st.text(max_size=20), st.integers(-1, 2**40), max_size=8),
                 st.dictionaries(st.text(max_size=20), st.floats(allow_nan=False, allow_infinity=False), max_size=8)))
def test_checkpoint_records_round_trip(cp: Checkpoint) -> None:
    """What a worker writes, the next one reads back unchanged."""
    assert decode_checkpoint(encode_checkpoint(cp)) == cp


@pytest.mark.parametrize("raw", [
    None, b"", b"not json", b"[]", b'{"v": 2, "epoch": 1, "offsets": {}, "newest": {}}',
    b'{"v": 1, "epoch": -1, "offsets": {}, "newest": {}}', b'{"v": 1, "epoch": true, "offsets": {}, "newest": {}}',
    b'{"v": 1, "epoch": 1, "offsets": {"t": "1"}, "newest": {}}', b'{"v": 1, "epoch": 1, "offsets": {}, "newest": []}',
    b"[" * 100_000, b"x" * (MAX_CHECKPOINT_BYTES + 1), "\ud800".encode("utf-8", "surrogatepass"),
])
def test_anything_but_a_checkpoint_record_is_refused(raw: bytes | None) -> None:
    """A hostile or broken record on the checkpoint topic is a ValueError, never a crash or a guess."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies; the type is the contract
        decode_checkpoint(raw)
