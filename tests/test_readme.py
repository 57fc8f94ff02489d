"""The README's commands stay true: every `atlas-bayes` line parses with the real CLI, and the
files and folders it names exist (the fresh-clone run of each command is a release check)."""

import re
import shlex
from pathlib import Path

import pytest

from atlas_bayes.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[list[str]]:
    """Argument lists of each indented `atlas-bayes ...` line (text after `#` dropped)."""
    found = []
    for line in README.splitlines():
        if not line.startswith("    ") or "atlas-bayes " not in line:
            continue
        words = shlex.split(line, comments=True)
        start = next(i for i, w in enumerate(words) if w.endswith("atlas-bayes")) + 1
        stop = next((i for i, w in enumerate(words[start:], start) if w in ("&&", "|", ">")),
                    len(words))
        found.append(words[start:stop])
    return found


def test_the_readme_shows_every_command():
    shown = {words[0] for words in _commands()}
    assert shown == {"fit", "compare", "transfer", "crossover", "optimal", "curse", "design",
                     "loop", "train", "adapt"}


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w)[:40])
def test_readme_command_parses(words):
    try:
        build_parser().parse_args(words)
    except SystemExit as exit:
        pytest.fail(f"README command does not parse (exit {exit.code}): atlas-bayes {' '.join(words)}")


def test_paths_the_readme_names_exist():
    named = set(re.findall(r"`((?:data|docs|notebooks|studies|benchmarks|scripts)/[\w./-]+)`", README))
    named |= set(re.findall(r"\b(data/[\w.-]+\.csv)\b", README))
    assert "data/bundled_study.csv" in named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"
