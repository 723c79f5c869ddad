"""Workarounds for two Faust behaviours that would otherwise cost us data.

Table writes from batched iteration (faust-streaming #497). A Table write picks its changelog
partition from the *current event*, a context variable that Faust sets while iterating a
stream one event at a time. Batches from `take_events()` are filled in a background task, so
the variable is unset when our code writes. Every table we keep is keyed like its source topic
(co-partitioned), so the right partition is that of any event from the same source partition:
`in_partition_of(event)` sets it for a block of writes.

Events dropped when flow resumes. `FlowControlEvent.resume()` (mode) empties every stream
queue, and Faust calls it at the end of table recovery (`Recovery.on_recovery_completed`)
while flow is *already* active: recovery resumed it to read the changelogs, the source
partitions are resumed and seeked before this call, and the fetcher keeps filling the queues
in between. Records fetched from the seeked position and still queued are thrown away
without being processed or acknowledged; the fetch position is already past them, so this
worker never sees them again, and once later records of the partition are acknowledged the
commit moves past them too (`Consumer._new_offset` fills the hole as a "gap", or lets one
missing offset at the head through). Under CPU load the kill -9 trials test lost 1-9 mails
this way in half of its runs. `keep_live_events_on_resume(app)` makes `resume()`
empty the queues only when flow was suspended (after a revocation, what is queued belongs to
the old assignment and is fetched again); a resume while flowing leaves live events alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event
from mode.utils.queues import FlowControlEvent

__all__ = ["ResumeKeepsLiveEvents", "in_partition_of", "keep_live_events_on_resume"]


@contextmanager
def in_partition_of(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class ResumeKeepsLiveEvents(FlowControlEvent):
    """A flow-control event whose `resume()` clears the queues only when flow was suspended."""

    def resume(self) -> None:
        if self.is_active():
            return  # already flowing: what the queues hold is live and its offsets are read
        super().resume()


def keep_live_events_on_resume(app: Any) -> None:
    """Give `app.flow_control` the `ResumeKeepsLiveEvents` behaviour (idempotent).

    Swaps the class of the existing object so the queues already registered with it stay
    registered; call before the first rebalance completes (an agent's start is early enough).
    """
    flow = app.flow_control
    if not isinstance(flow, ResumeKeepsLiveEvents):
        flow.__class__ = ResumeKeepsLiveEvents
