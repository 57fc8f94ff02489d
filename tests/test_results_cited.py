"""Every file benchmarks/RESULTS.md cites is in the repository: results that are cited must be
committed (under benchmarks/results/), or the page gives the command that regenerates them."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
# a repository path: one of these top folders, not inside another path (../shared/data/...)
CITED = re.compile(r"(?<![\w./~-])((?:benchmarks|studies|data|atlas_bayes)/[\w.*/<>-]*)")


def cited_paths(text: str) -> list[str]:
    paths = {m.group(1).rstrip(".,:;") for m in CITED.finditer(text)}
    return sorted(p for p in paths if "<" not in p)     # placeholders such as <date>


def exists(path: str) -> bool:
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


def test_the_pattern_finds_repository_paths_only():
    text = ("see `benchmarks/fit_speed.py`, data/bundled_study.csv. Protocol: "
            "../shared/data/scalebench/SOURCE.md, rows in benchmarks/results/<date>/")
    assert cited_paths(text) == ["benchmarks/fit_speed.py", "data/bundled_study.csv"]


def test_every_path_results_cites_exists():
    paths = cited_paths(RESULTS.read_text())
    assert "benchmarks/design_scalebench.py" in paths         # the pattern reads the page
    missing = [p for p in paths if not exists(p)]
    assert not missing, f"benchmarks/RESULTS.md cites files not in the repository: {missing}"
