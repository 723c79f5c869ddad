"""`python -m pipeline.devstack.generator` writes the events as JSONL and the ground truth as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.devstack.generator.__main__ import main
from schemas.events import EVENT_ADAPTER


def test_cli_writes_jsonl_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny preset lands as one valid event per line plus a ground-truth document."""
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.json"
    assert main(["--preset", "tiny", "--days", "2", "--out", str(out), "--truth", str(truth)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) > 3_000
    EVENT_ADAPTER.validate_json(lines[0])
    EVENT_ADAPTER.validate_json(lines[-1])
    document = json.loads(truth.read_text())
    assert {s["kind"] for s in document["scenarios"]} >= {"abusive_ips", "trial_cohort"}
    assert "events in" in capsys.readouterr().err
