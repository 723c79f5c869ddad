"""One colour per state, for every board and the static report.

Grafana picks series colours by position, so the same decision state came out green on one
panel and yellow on the next. Every panel that shows states gets fixed colours from here (as
field overrides in the Grafana JSON, and as matplotlib colours in the report).

A name means the same thing wherever it appears (``failed`` is a failed mail, ``critical`` a
severity), so one flat mapping serves all panels; the groups below only keep it readable.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["COLOURS", "DECISION_STATES", "FALLBACK", "colour_of"]

# Colour-blind-safe hues (Okabe-Ito) where a group needs several that must stay apart.
_GREEN, _ORANGE, _RED, _PURPLE = "#009E73", "#E69F00", "#D55E00", "#882255"
_BLUE, _SKY, _YELLOW, _GREY = "#0072B2", "#56B4E9", "#F0E442", "#8C8C8C"

DECISION_STATES: Final = ("allowed", "throttled", "blocked", "banned")

_GROUPS: Final[dict[str, dict[str, str]]] = {
    "decision state": {"allowed": _GREEN, "throttled": _ORANGE, "blocked": _RED, "banned": _PURPLE},
    "severity": {"critical": _RED, "high": _ORANGE, "medium": _YELLOW, "low": _SKY},
    "anomaly status": {"active": _RED, "acknowledged": _ORANGE, "resolved": _GREEN, "false_positive": _GREY},
    "mail outcome": {"sent": _GREEN, "queued": _GREY, "failed": _RED, "bounced": _PURPLE},
    "event kind": {"requests": _BLUE, "billing": _GREEN, "errors": _RED, "usage": _PURPLE},
}


def _merge(groups: dict[str, dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for group in groups.values():
        for name, colour in group.items():
            if merged.setdefault(name, colour) != colour:
                raise ValueError(f"{name!r} has two colours in the palette")
    return merged


COLOURS: Final = MappingProxyType(_merge(_GROUPS))
FALLBACK: Final = _GREY


def colour_of(name: str) -> str | None:
    """The fixed colour of a state name, or None when the name has none (e.g. a tenant id)."""
    return COLOURS.get(name)
