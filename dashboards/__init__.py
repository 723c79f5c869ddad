"""Grafana dashboards as code: boards in Python, JSON generated into `dashboards/json/`."""

from dashboards.boards import BOARDS
from dashboards.model import Board, Panel, Variable, to_grafana

__all__ = ["BOARDS", "Board", "Panel", "Variable", "to_grafana"]
