"""The one place that reads and writes river's private attributes.

Detector state is saved as plain numbers (never pickled), and river keeps part of what a
model needs to resume in attributes it does not publish: a `stats.Var`'s running mean and sum
of squared deviations, and a `HalfSpaceTrees`' depth-first node lists and first-window flag.
Everything that touches them is here, so a river release that renames one breaks these
functions and `tests/unit/anomaly/test_river_state.py`, not a worker's saved state silently.
"""

from __future__ import annotations

from typing import Any

__all__ = ["first_window", "set_first_window", "set_tree_nodes", "set_var_state", "tree_nodes", "var_state"]


def var_state(var: Any) -> tuple[float, float, float]:
    """(n, mean, sum of squared deviations) of a river `stats.Var`: what `set_var_state` restores."""
    mean = var.mean
    return mean.n, mean._mean, var._S


def set_var_state(var: Any, n: float, mean: float, s: float) -> None:
    """Put a `stats.Var` back in the state `var_state` read (its `mean` object included)."""
    var.mean.n = n
    var.mean._mean = mean
    var._S = s


def tree_nodes(trees: Any) -> list[list[Any]]:
    """A `HalfSpaceTrees`' nodes, one depth-first list per tree (river's own lists, not copies)."""
    return trees._tree_nodes  # type: ignore[no-any-return]


def set_tree_nodes(trees: Any, roots: list[Any], nodes: list[list[Any]]) -> None:
    """Give a `HalfSpaceTrees` its trees (`roots`) and their depth-first node lists together."""
    trees.trees, trees._tree_nodes = roots, nodes


def first_window(trees: Any) -> bool:
    """Whether a `HalfSpaceTrees` is still filling its first reference window."""
    return bool(trees._first_window)


def set_first_window(trees: Any, value: bool) -> None:
    trees._first_window = value
