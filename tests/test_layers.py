"""The package's layers import one way, and no module outgrows a screenful of screens.

The order (docs/architecture.md): laws, data -> tables, models -> fitting, trainers ->
decisions -> simulation -> design -> cli. A module may import its own layer and the layers
before it; function-level imports count too.
"""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"atlas_bayes": REPO / "atlas_bayes", "atlas_bayes.models": REPO / "models",
           "atlas_bayes.trainers": REPO / "trainers", "atlas_bayes.data": REPO / "data"}
RANK = {"laws": 0, "data": 0, "tables": 1, "models": 1, "fitting": 2, "trainers": 2,
        "decisions": 3, "simulation": 4, "design": 5, "cli": 6}
MAX_LINES = 600


def modules():
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package,) + tuple(p for p in parts if p != "__init__"))
            yield name, path


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def imported(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("atlas_bayes"):
            if node.module == "atlas_bayes":
                yield from (f"atlas_bayes.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("atlas_bayes"))


def test_imports_point_down_the_layers():
    wrong = []
    for name, path in modules():
        own = layer(name)
        if own is None:           # atlas_bayes/__init__.py: version and the JAX set-up only
            continue
        for target in imported(path):
            other = layer(target)
            if other is not None and RANK[other] > RANK[own]:
                wrong.append(f"{path.relative_to(REPO)} ({own}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_every_layer_states_what_it_may_import():
    for name, path in modules():
        if path.name == "__init__.py" and layer(name) and name.count(".") == 1:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "May import" in doc or "may import" in doc, f"{path}: no import rule"


def test_modules_stay_small():
    long = [f"{path.relative_to(REPO)}: {n} lines" for _, path in modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)
