"""The pure parts of the trial agent's wiring: partition views over a table, time parameters."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from agents.trials import TrialBook
from agents.trials.agent import parse_time
from agents.trials.machine import Trial
from agents.trials.tableview import PartitionView
from pipeline.cli.trials import keys_per_partition
from tests.unit.trials.trial_helpers import DAY, T0, billing_factory


def view(table: dict[str, Any], p: int) -> PartitionView[Trial]:
    return PartitionView(table, "tw.billing", p, Trial.from_dict, Trial.to_dict)


def test_staged_writes_reach_the_table_only_on_commit_and_stay_in_their_partition():
    """A book over a view writes nothing until commit; another partition's view does not see its keys."""
    table: dict[str, Any] = {}
    billing = billing_factory()
    book = TrialBook(trials=view(table, 1))
    book.apply(billing("trial_started", "acme", T0))
    assert table == {}
    assert book.trials["acme"].tenant_id == "acme"
    assert isinstance(book.trials, PartitionView)
    assert book.trials.commit() == 1
    assert table["acme"]["p"] == 1
    assert list(view(table, 1)) == ["acme"]
    assert list(view(table, 2)) == []


def test_rebuilt_book_fires_the_same_timers_as_the_original():
    """After a restart, a book rebuilt from the committed table fires what the first one would have."""
    table: dict[str, Any] = {}
    billing = billing_factory()
    first = TrialBook(trials=view(table, 0))
    first.apply(billing("trial_started", "acme", T0))
    first.advance(T0)
    assert isinstance(first.trials, PartitionView)
    first.trials.commit()
    again = TrialBook(trials=view(table, 0))
    again.rebuild_index()
    rebuilt = [(n.id, n.kind, n.ts) for n in again.advance(T0 + 14 * DAY).notifications]
    original = [(n.id, n.kind, n.ts) for n in first.advance(T0 + 14 * DAY).notifications]
    assert [kind for _, kind, _ in rebuilt] == ["trial_7day", "trial_1day", "trial_expired"], "the welcome was done"
    assert rebuilt == original


def test_discarded_writes_are_forgotten():
    """A failed batch's staged writes never reach the table."""
    table: dict[str, Any] = {}
    v = view(table, 0)
    TrialBook(trials=v).apply(billing_factory()("trial_started", "acme", T0))
    v.discard()
    assert v.commit() == 0
    assert table == {}


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-03-02T00:00:00Z", T0), ("2026-03-02T01:00:00+01:00", T0), ("2026-03-02T00:00:00", T0), (T0, T0),
])
def test_parse_time_accepts_iso_and_epoch(value: Any, expected: float):
    """ISO 8601 (naive = UTC) and epoch seconds give the same instant."""
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", [None, True, "next tuesday", float("nan")])
def test_parse_time_refuses_what_is_not_a_time(value: Any):
    """Missing, boolean, free text and NaN are refused with a ValueError."""
    with pytest.raises(ValueError, match=r"time|Invalid isoformat"):
        parse_time(value)


def test_expiry_command_keys_cover_every_partition_as_the_sdk_partitions():
    """One key per partition, each landing where Kafka's partitioner (as the SDK) puts it."""
    keys = keys_per_partition(6, prefix="x")
    assert sorted(keys) == list(range(6))
    assert all((aiokafka_murmur2(k.encode()) & 0x7FFFFFFF) % 6 == p for p, k in keys.items())


@pytest.mark.parametrize("stored", [
    "x", [1, 2], {"p": 1}, {"p": 1, "v": "not a trial"}, {"p": 1, "v": {"tenant_id": 3}}, {"p": "1", "v": {}},
])
def test_a_stored_value_we_did_not_write_reads_as_absent(stored: Any) -> None:
    """Would fail if a hostile table value (from its changelog) crashed a lookup instead of reading as absent."""
    table: dict[str, Any] = {"acme": stored}
    trials = view(table, 1)
    assert "acme" not in trials
    assert trials.get("acme") is None
    assert trials.owner("acme") in (None, 1)
    TrialBook(trials=trials).rebuild_index()  # a rebuild after a rebalance skips it too
