"""The tenantwatch boards, in the order they are listed."""

from __future__ import annotations

from dashboards.boards import anomalies, overview, ratelimit, trials
from dashboards.model import Board

__all__ = ["BOARDS"]

BOARDS: tuple[Board, ...] = (overview.BOARD, ratelimit.BOARD, anomalies.BOARD, trials.BOARD)
