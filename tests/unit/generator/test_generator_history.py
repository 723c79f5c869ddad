"""`history_of`: the days before a run, as the owner's history (what the demo backfills)."""

from __future__ import annotations

from datetime import timedelta

from pipeline.devstack.generator import ground_truth, history_of, iter_records, preset


def test_history_is_the_same_tenants_before_the_run_without_incidents() -> None:
    """Same population, ending where the run starts, no scenarios in its ground truth."""
    run = preset("tiny")
    past = history_of(run, 3)
    assert past.start == run.start - timedelta(days=3)
    assert past.end == run.start
    truth, before = ground_truth(run), ground_truth(past)
    assert [t["tenant_id"] for t in before["tenants"]] == [t["tenant_id"] for t in truth["tenants"]]
    assert before["scenarios"] == []


def test_storage_grows_on_across_the_seam() -> None:
    """Storage keeps growing from the history into the run, instead of starting over at the run."""
    run = preset("tiny")

    def storage(config: object) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for rec in iter_records(config):  # type: ignore[arg-type]
            if rec["kind"] == "usage":
                out.setdefault(rec["tenant_id"], []).append(rec["storage_bytes"])
        return out

    before, after = storage(history_of(run, 2)), storage(run.model_copy(update={"days": 1}))
    for tenant, sizes in after.items():
        last, first = before[tenant][-1], sizes[0]
        assert last <= first <= last * 1.001  # one hour's growth (≤ 1 % a day), not two days' undone
