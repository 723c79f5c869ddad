"""Private attributes of our dependencies are touched in two adapter modules only.

`pipeline/runtime/faust_adapter.py` holds every use of Faust's, mode's and aiokafka's private
attributes, `agents/anomaly/river_state.py` river's; each has tests that fail on a release
that renames what it uses. Anywhere else, ``obj._name`` on an object that is not ``self`` or
``cls`` must name an attribute our own code defines: a new private access elsewhere fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("agents", "pipeline", "schemas")
ADAPTERS = {"pipeline/runtime/faust_adapter.py", "agents/anomaly/river_state.py"}
# Private names our classes use too, which on a dependency's object are its internals: on
# anything but `self` they are flagged even though our own code defines them.
DEPENDENCY_NAMES = {"_consumer", "_producer", "_client", "_thread", "_queue", "_read_offset", "_committed_offset"}


def _private(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_") and not name.startswith("__")


def own_names(trees: Iterable[ast.AST]) -> set[str]:
    """Private names our code defines: functions, classes, module names, `self._x` attributes, slots."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
                if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
                    names.update(c.value for c in ast.walk(node.value)
                                 if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return names


def foreign_private_uses(tree: ast.AST, own: set[str]) -> list[str]:
    """``obj._x`` (or ``getattr(obj, "_x")``) on an object other than self/cls, `_x` not ours."""
    found: list[str] = []
    for node in ast.walk(tree):
        name: object = None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            name = node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1 and \
                isinstance(node.args[1], ast.Constant):
            if isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"):
                continue
            name = node.args[1].value
        if _private(name) and (name not in own or name in DEPENDENCY_NAMES):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_dependency_internals_are_used_in_the_adapter_modules_only() -> None:
    files = {str(p.relative_to(ROOT)): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    trees = {rel: ast.parse(p.read_text(), filename=rel) for rel, p in files.items()}
    assert set(ADAPTERS) <= set(trees), "an adapter module moved: update ADAPTERS"
    own = own_names(trees.values())
    offenders = {rel: uses for rel, tree in sorted(trees.items())
                 if rel not in ADAPTERS and (uses := foreign_private_uses(tree, own))}
    assert offenders == {}, f"private attributes of a dependency outside its adapter module: {offenders}"


def test_the_check_catches_the_forms_it_is_meant_to() -> None:
    """The rule itself: a private access on another object is caught, ours and self's are not."""
    own = own_names([ast.parse("class A:\n    def __init__(self):\n        self._mine = 1\n")])
    code = ast.parse(
        "a = app._consumer\n"               # a dependency's internals, though we name a `_consumer` too
        "b = getattr(app, '_leader_x')\n"   # through getattr
        "c = t._first_window\n"             # not defined by our code
        "d = other._mine\n"                 # our own attribute on another instance: fine
        "e = self._anything\n"              # self: fine
        "f = obj.__class__\n"               # dunder: fine
    )
    own |= {"_consumer"}
    assert foreign_private_uses(code, own) == [
        "line 1: app._consumer", "line 2: getattr(app, '_leader_x')", "line 3: t._first_window"]
