"""Faust table writes from batched iteration (faust-streaming #497).

A Table write picks its changelog partition from the *current event*, a context variable that
Faust sets while iterating a stream one event at a time. Batches from `take_events()` are
filled in a background task, so the variable is unset when our code writes. Every table we
keep is keyed like its source topic (co-partitioned), so the right partition is that of any
event from the same source partition: `in_partition_of(event)` sets it for a block of writes.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event

__all__ = ["in_partition_of"]


@contextmanager
def in_partition_of(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
