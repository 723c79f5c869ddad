"""river's private state, read and written only through `agents.anomaly.river_state`: these
fail loudly on a river release that renames what the detector's saved state relies on."""

from __future__ import annotations

import math

from river import anomaly, stats

from agents.anomaly.river_state import (
    first_window,
    set_first_window,
    set_tree_nodes,
    set_var_state,
    tree_nodes,
    var_state,
)


def test_a_var_restored_from_its_state_goes_on_as_the_original() -> None:
    values = [3.0, 1.5, 8.25, -2.0, 4.0, 4.5]
    original = stats.Var(ddof=1)
    for x in values[:4]:
        original.update(x)
    n, mean, s = var_state(original)
    assert (n, mean) == (4, sum(values[:4]) / 4)
    assert math.isclose(s, sum((x - mean) ** 2 for x in values[:4]))
    copy = stats.Var(ddof=1)
    set_var_state(copy, n, mean, s)
    assert copy.get() == original.get()
    assert copy.mean.get() == original.mean.get()
    for x in values[4:]:
        original.update(x)
        copy.update(x)
    original.revert(values[0])
    copy.revert(values[0])
    assert copy.get() == original.get()


def test_half_space_trees_expose_their_node_lists_and_first_window() -> None:
    trees = anomaly.HalfSpaceTrees(n_trees=3, height=4, window_size=5, seed=7)
    trees.learn_one({"x": 0.5})
    nodes = tree_nodes(trees)
    assert len(nodes) == 3
    assert all(len(tree) == 2 ** 5 - 1 for tree in nodes)  # every node of a full tree of height 4
    assert [tree[0] for tree in nodes] == list(trees.trees)  # depth-first: the root first
    assert first_window(trees)
    for i in range(5):
        trees.learn_one({"x": i / 5})
    assert not first_window(trees)  # the first reference window is full
    scored = trees.score_one({"x": 0.3})
    assert 0.0 <= scored <= 1.0
    set_first_window(trees, True)
    assert first_window(trees)
    assert trees.score_one({"x": 0.3}) == 0  # river scores nothing while the first window fills
    set_first_window(trees, False)
    set_tree_nodes(trees, list(trees.trees), nodes)
    assert tree_nodes(trees) is nodes
    assert trees.score_one({"x": 0.3}) == scored
