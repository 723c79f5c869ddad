"""Default rule per metric, and a small runtime-editable rule book.

Defaults (σ is the baseline's robust σ, floored by the metric kind's own noise, `kinds`;
counts are in points of the metric stream). Revenue and the error rate were 2.5σ and 2σ
while σ was the bare robust σ; with the kind-aware σ those thresholds raised 0.1 false
alerts per clean tenant-day in `tenantwatch eval scenarios`, at 3σ 0.01 with the same recall:

| metric               | direction | threshold | confirm | why                                           |
|----------------------|-----------|-----------|---------|-----------------------------------------------|
| revenue              | down      | 3σ        | 2 of 3  | money lost hurts; ≥ 20 % down; sustained (*) |
| request_volume       | up        | 3σ        | 2 of 3  | usage spike (per issue)                       |
| active_users         | down      | 3σ        | 3 of 4  | sudden loss of users; slow to confirm         |
| error_rate           | up        | 3σ        | 2 of 3  | binomial σ (kinds); ≥ 25 % relative rise      |
| latency_p95          | up        | 3σ        | 3 of 5  | p95 is noisy: a lasting rise, not a blip      |
| storage_bytes        | up        | 4σ        | 1 of 1  | snapshots are smooth: one jump is real        |
| cancellations        | up        | 3σ        | 1 of 1  | churn: rare counts, each burst matters        |
| active_user_decline  | up        | 3σ        | 2 of 3  | churn: the decline ratio rising               |
| top_ip_share         | up        | 3σ        | 2 of 3  | API abuse: traffic concentrating on few IPs   |
| client_error_ratio   | up        | 3σ        | 2 of 3  | API abuse: 4xx storms (scanning, bad keys)    |
| error_events         | up        | 3σ        | 2 of 3  | the app's own error reports piling up         |

How soon a revenue drop can be told: a 6 h window of a small tenant holds one to four
charges. Revenue points carry their charge count, and the detector pools the charges of a run
of windows against what each was expected to hold (exact Poisson tail, `detector`): the run
confirms once it is beyond 3σ, i.e. once about 6.6 expected charges are missing (e^-6.6, one
stretch in 700). So a drop to nothing is confirmed after two windows at 3.3+ charges a
window, three at 2.2-3.3, four at 1.7-2.2 (`eval scenarios`: worst 3, mean 2.0; the quick
run's tenant with 1.9 a window, 4), a busier tenant's in one or two: the delay is the data's,
not a smoothing, the window's phase (the scenarios' drops start on a window boundary) or a
ramp (they are instant). Within two windows for every tenant would mean alerting on two empty
windows where 2.3 charges are usual, which happens by chance once in 100 such stretches:
about 0.04 false alerts a day for a tenant of that size, near the whole 0.05 budget. Measured
(single runs): confirming two windows without a charge at 2.25σ (e^-4.4, the bar that tells a
2.2-charge tenant's drop in two windows) brings every drop of `eval scenarios` within two
windows, but adds false revenue alerts wherever two quiet windows come by chance (measured
before the weekly profile's shrinkage, `baseline.SlotProfile.shrunk`): false
alerts per clean tenant-day 0.006 → 0.011 there, 0.042 → 0.083 in the quick run (its tenant
of 1.9 still takes four), 0.018 → 0.028 in `--preset demo` (precision 0.62 → 0.50); the pooled
test at 2.25σ instead of 3σ: precision 0.91 → 0.74; at 2.6σ: no drop caught sooner, precision
0.82.

How soon an error spike can be told: in its first hour whenever that hour holds a few failures
(`eval scenarios`: 5 of 6 spikes). The night-time one takes two: its first hour had 1 failure
in 8 requests where 0.46 % fail, which happens in 4.1 % of such hours (1.7σ, exact binomial
tail). The false-alert goal allows at most 0.05 / 24 = 0.2 % per hourly window even if the
error rate spent it all (2.9σ): one failure in 8 is 20 times too common to page on, and the
hour's other signal adds nothing (its p95 latency, 71 ms of 8 requests where 38 ms is usual, is
1.2σ). Alone, an hour of 8 requests confirms with 4 failures (5.3σ), which a 25 % spike gives
one time in nine.

Every rule waits `warmup` points (two days of hourly points by default: enough for the
level and a first daily profile; revenue 16 six-hour points = 4 days, cancellations 14 days)
spanning at least `warmup_s` (two days, whatever the resolution; a stream seeded from
history has both already), resolves an episode after `resolve_after` (6) in-band
points, then stays quiet for `cooldown` points (12) *and* `cooldown_s` seconds (1 hour);
revenue's points are 6 hours long, so it resolves and cools down after 4 (a day), else one
false alarm would hide a real drop for three days.
Severity is not part of the rule: see `severity.py`.

(*) `sustained`: the mean score of the last M points counts too. Revenue windows are sums of
a few independent charges, so three windows each a little low are strong evidence together
(points without a charge count: a small tenant's revenue falling to 0 is 2.5σ per window in
√ space, 4σ over three; with the count, the pooled charges above are the exact word). Streams whose
residuals run in streaks (usage, latency) would raise false alarms with it, so it is off there.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from schemas.anomaly import Direction, MetricName, Rule
from schemas.commands import ParamValue

__all__ = ["DEFAULT_RULES", "RuleBook", "default_rule", "edit_rule"]

_M = MetricName
_UP, _DOWN = Direction.UP, Direction.DOWN

_TWO_DAYS = 2 * 86_400.0
DEFAULT_RULES: Mapping[MetricName, Rule] = {
    r.metric: r.model_copy(update={"warmup_s": _TWO_DAYS})
    for r in (
        Rule(metric=_M.REVENUE, direction=_DOWN, threshold_sigma=3.0, min_pct=20.0, confirm_n=2, confirm_m=3,
             warmup=16, sustained=True, resolve_after=4, cooldown=4),
        Rule(metric=_M.REQUEST_VOLUME, direction=_UP, threshold_sigma=3.0, confirm_n=2, confirm_m=3),
        Rule(metric=_M.ACTIVE_USERS, direction=_DOWN, threshold_sigma=3.0, confirm_n=3, confirm_m=4),
        Rule(metric=_M.ERROR_RATE, direction=_UP, threshold_sigma=3.0, min_pct=25.0, confirm_n=2, confirm_m=3),
        Rule(metric=_M.LATENCY_P95, direction=_UP, threshold_sigma=3.0, confirm_n=3, confirm_m=5),
        Rule(metric=_M.STORAGE_BYTES, direction=_UP, threshold_sigma=4.0),
        Rule(metric=_M.CANCELLATIONS, direction=_UP, threshold_sigma=3.0, warmup=14),
        Rule(metric=_M.ACTIVE_USER_DECLINE, direction=_UP, threshold_sigma=3.0, confirm_n=2, confirm_m=3),
        Rule(metric=_M.TOP_IP_SHARE, direction=_UP, threshold_sigma=3.0, confirm_n=2, confirm_m=3),
        Rule(metric=_M.CLIENT_ERROR_RATIO, direction=_UP, threshold_sigma=3.0, confirm_n=2, confirm_m=3),
        Rule(metric=_M.ERROR_EVENTS, direction=_UP, threshold_sigma=3.0, min_pct=25.0, confirm_n=2, confirm_m=3),
    )
}


def default_rule(metric: MetricName) -> Rule:
    return DEFAULT_RULES[metric]


def edit_rule(base: Rule, params: Mapping[str, ParamValue]) -> Rule | str:
    """`base` with a `rule.set` command's params applied, or the reason they are refused."""
    if "metric" in params and params["metric"] != base.metric.value:
        return "a rule edit cannot change the metric"
    try:
        return Rule.model_validate({**base.model_dump(), **params})
    except ValidationError as exc:
        return f"invalid rule: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"


class RuleBook:
    """Rules in force: per-tenant overrides over the defaults. Picklable; edited by `rule.set`."""

    def __init__(self) -> None:
        self._overrides: dict[tuple[str, MetricName], Rule] = {}

    def get(self, tenant: str, metric: MetricName) -> Rule:
        return self._overrides.get((tenant, metric)) or DEFAULT_RULES[metric]

    def set(self, tenant: str, rule: Rule) -> None:
        self._overrides[(tenant, rule.metric)] = rule

    def reset(self, tenant: str, metric: MetricName) -> None:
        self._overrides.pop((tenant, metric), None)
