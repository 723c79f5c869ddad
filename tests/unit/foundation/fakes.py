"""A stand-in for the parts of a Faust app the runtime touches, for tests of its pure logic."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


async def _nothing(*_: Any, **__: Any) -> None:
    return None


def fake_app(**overrides: Any) -> Any:
    """A namespace with what `Runtime.__init__` wires (timers, signals, producer); `overrides` win."""
    timers: list[Any] = []
    app = SimpleNamespace(
        timers=timers,
        timer=lambda interval: (lambda fn: timers.append(fn) or fn),
        on_rebalance_complete=SimpleNamespace(connect=lambda fn: fn),
        _consumer_wait_empty=_nothing,
        producer=SimpleNamespace(flush=_nothing, buffer=None),
        topic=lambda *a, **k: object(),
        agent=lambda *a, **k: (lambda fn: fn),
        # Owns nothing: the runtime judges no partition's offsets (`pipeline.runtime.offsets`).
        consumer=SimpleNamespace(_new_offset=lambda tp: None, assignment=set, _committed_offset={}),
    )
    for key, value in overrides.items():
        setattr(app, key, value)
    return app
