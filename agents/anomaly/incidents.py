"""Scoring detected anomalies against known incidents (pure: no generator, no I/O).

An *incident* is a stretch [start, end) of one tenant with a kind (revenue drop, error spike,
usage spike, abusive IPs). Each kind has the metrics that *should* show it (`RIGHT_METRICS`:
an error spike must be seen on the error rate, not only on latency), and each metric has its
window length (the metric's resolution, `metrics.RESOLUTIONS`).

- an anomaly *belongs* to an incident of its tenant when it starts between one metric window
  before the incident's start and `AFTERMATH` windows after its end (a usage spike ending
  makes users "drop" back: a consequence, not a false alarm), and the window whose point
  confirmed it ends after the incident's start (a window that holds none of the incident
  cannot have seen it); every other anomaly is false;
- an incident is *caught* when an anomaly on one of its right metrics belongs to it; its
  delay runs from the incident's start to the *end* of the window whose point confirmed the
  first such anomaly (when that point can first exist), in hours and in windows of the
  metric that caught it, so it is never 0: one window is the least a point-in-window
  detector can do (the abuse burst that starts at 15:00 and is confirmed by the 15:00–16:00
  point is caught 1 h = 1 window after onset), and an onset in the middle of a window counts
  only its rest;
- false alerts per clean tenant-day count the anomalies of tenants with no incident, over the
  days those tenants were scored (after the warm-up).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from agents.anomaly.metrics import RESOLUTIONS
from schemas.anomaly import Anomaly, MetricName, Severity

__all__ = ["AFTERMATH", "RIGHT_METRICS", "Catch", "Incident", "IncidentReport", "score_incidents"]

_M = MetricName
RIGHT_METRICS: Final[Mapping[str, frozenset[MetricName]]] = {
    "revenue_drop": frozenset({_M.REVENUE}),
    "error_spike": frozenset({_M.ERROR_RATE}),
    "usage_spike": frozenset({_M.STORAGE_BYTES, _M.ACTIVE_USERS}),
    "abusive_ips": frozenset({_M.REQUEST_VOLUME}),
}
AFTERMATH: Final = 2  # metric windows after an incident's end in which its anomalies still belong to it


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    kind: str
    tenant: str
    start: float  # epoch seconds
    end: float


@dataclass(frozen=True, slots=True)
class Catch:
    """How one incident was caught: by which metric, how long after onset."""

    incident: str
    kind: str
    tenant: str
    metric: MetricName
    delay_h: float
    delay_windows: float


@dataclass(slots=True)
class IncidentReport:
    anomalies: int = 0
    true_anomalies: int = 0
    incidents: int = 0
    caught: int = 0
    missed: list[str] = field(default_factory=list)
    catches: list[Catch] = field(default_factory=list)  # per incident, in the order scored
    clean_alerts: int = 0
    clean_tenant_days: float = 0.0
    severity: Counter[str] = field(default_factory=Counter)
    false_by_metric: Counter[str] = field(default_factory=Counter)

    @property
    def delays_h(self) -> dict[str, list[float]]:
        """Kind → hours from onset of each caught incident."""
        return self._by_kind(lambda c: c.delay_h)

    @property
    def delays_windows(self) -> dict[str, list[float]]:
        """Kind → metric windows from onset of each caught incident."""
        return self._by_kind(lambda c: c.delay_windows)

    def _by_kind(self, value: Callable[[Catch], float]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for c in self.catches:
            out.setdefault(c.kind, []).append(value(c))
        return out

    @property
    def precision(self) -> float | None:
        return self.true_anomalies / self.anomalies if self.anomalies else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.incidents if self.incidents else None

    @property
    def false_per_clean_day(self) -> float | None:
        return self.clean_alerts / self.clean_tenant_days if self.clean_tenant_days else None

    def merge(self, other: IncidentReport) -> IncidentReport:
        for name in ("anomalies", "true_anomalies", "incidents", "caught", "clean_alerts", "clean_tenant_days"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.missed += other.missed
        self.catches += other.catches
        self.severity.update(other.severity)
        self.false_by_metric.update(other.false_by_metric)
        return self

    def format_catches(self) -> str:
        """One line per caught incident: its tenant, the metric that caught it and its delay."""
        if not self.catches:
            return "caught: none"
        lines = [f"  {c.incident:15} {c.tenant:16} {c.metric.value:13} after {c.delay_h:5.1f} h"
                 f" = {c.delay_windows:.2f} windows" for c in self.catches]
        return "\n".join(["caught (delay: from onset to the end of the window that confirmed it):", *lines])

    def format(self) -> str:
        def num(v: float | None, spec: str) -> str:
            return "n/a" if v is None else format(v, spec)

        lines = [
            f"anomalies {self.anomalies}, of which true {self.true_anomalies}: precision {num(self.precision, '.2f')}",
            f"incidents {self.incidents}, caught on the right metric {self.caught}: recall {num(self.recall, '.2f')}"
            + (f" (missed: {', '.join(self.missed)})" if self.missed else ""),
            f"false alerts per clean tenant-day {num(self.false_per_clean_day, '.3f')}"
            f" ({self.clean_alerts} over {self.clean_tenant_days:.0f} tenant-days)",
        ]
        delays_h, delays_windows = self.delays_h, self.delays_windows
        for kind in sorted(delays_h):
            hours, wins = delays_h[kind], delays_windows[kind]
            lines.append(f"  delay {kind:13} worst {max(hours):5.1f} h = {max(wins):.2f} windows"
                         f" (mean {sum(hours) / len(hours):.1f} h over {len(hours)})")
        mix = ", ".join(f"{s.value} {self.severity.get(s.value, 0)}" for s in Severity)
        crit = self.severity.get(Severity.CRITICAL.value, 0)
        share = f"{100 * crit / self.anomalies:.0f} %" if self.anomalies else "n/a"
        lines.append(f"severity mix: {mix} (critical {share})")
        if self.false_by_metric:
            lines.append("false alerts by metric: " + ", ".join(f"{m} {n}" for m, n in
                                                                 self.false_by_metric.most_common()))
        return "\n".join(lines)


def _belongs(a: Anomaly, inc: Incident) -> bool:
    res = RESOLUTIONS[a.metric]
    start = a.start_ts.timestamp()
    seen = a.detected_ts.timestamp() + res > inc.start  # its confirming window holds some of the incident
    return a.tenant == inc.tenant and seen and inc.start - res <= start < inc.end + AFTERMATH * res


def score_incidents(anomalies: Iterable[Anomaly], incidents: Sequence[Incident],
                    clean_tenant_days: float) -> IncidentReport:
    """Precision, recall on the right metric, delays and false alerts of one run (latest version per id)."""
    latest: dict[str, Anomaly] = {}
    for a in anomalies:
        latest[a.id] = a
    dirty = {inc.tenant for inc in incidents}
    out = IncidentReport(incidents=len(incidents), clean_tenant_days=clean_tenant_days)
    for a in latest.values():
        out.anomalies += 1
        out.severity[a.severity.value] += 1
        if any(_belongs(a, inc) for inc in incidents):
            out.true_anomalies += 1
        else:
            out.false_by_metric[a.metric.value] += 1
            out.clean_alerts += a.tenant not in dirty
    for inc in incidents:
        hits = sorted((a.detected_ts.timestamp(), a.metric) for a in latest.values()
                      if a.metric in RIGHT_METRICS[inc.kind] and _belongs(a, inc))
        if not hits:
            out.missed.append(inc.id)
            continue
        out.caught += 1
        detected, metric = hits[0]
        delay = detected + RESOLUTIONS[metric] - inc.start  # > 0: see `_belongs`
        out.catches.append(Catch(inc.id, inc.kind, inc.tenant, metric, delay / 3600.0, delay / RESOLUTIONS[metric]))
    return out
