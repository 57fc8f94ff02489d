"""Every test in tests/ is marked `unit`, `statistical` or `e2e` (module-level `pytestmark` or
a decorator), so `pytest -m unit` and friends select the whole suite between them.

conftest.py fails an unmarked test when it runs; this reads the files, so a missing mark is
also caught by the quick `pytest -m unit`.
"""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parent
KINDS = {"unit", "statistical", "e2e"}


def _kinds(node) -> set[str]:
    """Marker names in `pytest.mark.X` expressions anywhere under node."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"} & KINDS


def test_every_test_has_a_kind():
    missing, files = [], sorted(TESTS.glob("test_*.py"))
    assert len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text())
        module = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark"
                                                    for t in node.targets):
                module |= _kinds(node.value)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                if not module and not set().union(*map(_kinds, node.decorator_list)):
                    missing.append(f"{path.name}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                missing += [f"{path.name}::{node.name}"] * (not module and not set().union(
                    *map(_kinds, node.decorator_list)))
    assert not missing, f"tests without a unit/statistical/e2e marker: {missing}"


def test_an_unmarked_test_fails_at_set_up(pytester):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_x="def test_unmarked():\n    pass\n")
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts=")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*has none of the markers unit, statistical, e2e*"])
