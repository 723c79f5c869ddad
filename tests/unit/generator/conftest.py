"""Shared fixtures: the "tiny" preset's records and ground truth, generated once per session."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.devstack.generator import ground_truth, iter_records, preset


@pytest.fixture(scope="session")
def tiny_records() -> list[dict[str, Any]]:
    """Every record of the tiny preset."""
    return list(iter_records(preset("tiny")))


@pytest.fixture(scope="session")
def tiny_truth() -> dict[str, Any]:
    """Ground truth of the tiny preset."""
    return ground_truth(preset("tiny"))
