"""Anomaly likelihood: a series that always jumps needs a bigger jump; state round-trips exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.anomaly.likelihood import CLIP, Likelihood
from pipeline.runtime.snapshot import SnapshotError


def _feed(lik: Likelihood, scores: list[float]) -> None:
    for s in scores:
        lik.update(s)


def test_the_same_score_is_unusual_for_a_calm_series_only() -> None:
    """A 5σ point after calm scores is unusual; after scores that often reach 5σ it is not."""
    rng = np.random.default_rng(1)
    calm, wild = Likelihood(), Likelihood()
    _feed(calm, [abs(float(x)) for x in rng.normal(0, 1, 1000)])
    _feed(wild, [abs(float(x)) * (6 if i % 5 == 0 else 1) for i, x in enumerate(rng.normal(0, 1, 1000))])
    z_calm, z_wild = calm.z(5.0), wild.z(5.0)
    assert z_calm is not None
    assert z_wild is not None
    assert z_calm > z_wild
    assert z_calm > 1


def test_silent_while_learning() -> None:
    """Before a day of 5-minute points there is no likelihood to gate on."""
    lik = Likelihood()
    _feed(lik, [1.0] * 100)
    assert lik.z(9.0) is None


def test_round_trip_and_refusal() -> None:
    """Decoded from JSON, it answers exactly as the original; a score outside [0, CLIP] is refused."""
    lik = Likelihood()
    _feed(lik, [float(x) for x in np.random.default_rng(2).normal(0, 2, 600)])
    data = json.loads(json.dumps(lik.snapshot()))
    again = Likelihood.restore(data)
    assert again.z(4.0) == lik.z(4.0)
    data["short"] = [CLIP + 1]
    with pytest.raises(SnapshotError):
        Likelihood.restore(data)
