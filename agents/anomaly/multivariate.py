"""Second opinion: one river HalfSpaceTrees per tenant over its min-max-scaled metrics.

Every metric point updates the tenant's latest value of that metric; the vector of latest
values (min-max scaled online, so HST's unit-cube assumption holds) is scored *before* it
is learnt. The score (0..1, higher = more unusual) is recorded on each anomaly.

Combination rule (documented, deliberately conservative): the univariate rule alone decides
*whether* there is an anomaly; the multivariate score only qualifies it. An anomaly whose
tenant score is ≥ `CORROBORATE_AT` is `corroborated`, else `rule_only`. HST cannot raise
an alert by itself: with a dozen metrics it mostly sees "some metric moved", which the
per-metric rules already say with a reason attached.
"""

from __future__ import annotations

from river import anomaly, preprocessing

from schemas.anomaly import Verdict

__all__ = ["CORROBORATE_AT", "TenantHST", "combine"]

CORROBORATE_AT = 0.7


def combine(hst_score: float | None) -> Verdict:
    """The verdict of an anomaly the univariate rule raised, given the tenant's HST score."""
    if hst_score is not None and hst_score >= CORROBORATE_AT:
        return Verdict.CORROBORATED
    return Verdict.RULE_ONLY


class TenantHST:
    """Online multivariate outlier score of one tenant. Picklable (Faust table value)."""

    def __init__(self, *, n_trees: int = 10, height: int = 6, window_size: int = 128, seed: int = 7) -> None:
        self.scaler = preprocessing.MinMaxScaler()
        self.trees = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
        self.window_size = window_size
        self.latest: dict[str, float] = {}
        self.n = 0

    def score_and_learn(self, metric: str, value: float) -> float | None:
        """Score the tenant's vector with `metric` updated, then learn it. None while warming up."""
        self.latest[metric] = value
        # river's estimators are untyped; these four calls are its documented API.
        self.scaler.learn_one(self.latest)  # type: ignore[no-untyped-call]
        x = self.scaler.transform_one(self.latest)  # type: ignore[no-untyped-call]
        # HST scores 0 until its first reference window is full: report nothing meanwhile.
        score = float(self.trees.score_one(x)) if self.n >= self.window_size else None  # type: ignore[no-untyped-call]
        self.trees.learn_one(x)  # type: ignore[no-untyped-call]
        self.n += 1
        return score
