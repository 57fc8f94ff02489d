"""Every notebook in notebooks/ runs top to bottom, as NumPyro tests its examples.

The notebooks are jupytext percent-format scripts (`# %%` code cells, `# %% [markdown]` text
cells): readable diffs, and `python notebooks/X.py` runs the whole notebook. Here each runs in
its own process with ATLAS_BAYES_QUICK=1 (small sampler settings) and writes into a temporary
folder (ATLAS_BAYES_NOTEBOOK_OUT).
"""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))


@pytest.mark.unit
def test_the_five_guides_are_there():
    assert [p.stem.split("_")[0] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.unit
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_as_a_notebook(path):
    """jupytext opens it as a notebook that starts with a title and mixes text and code."""
    notebook = jupytext.read(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and notebook.cells[0].source.lstrip().startswith("# ")
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3


@pytest.mark.e2e
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    env = {**os.environ, "ATLAS_BAYES_QUICK": "1", "ATLAS_BAYES_NOTEBOOK_OUT": str(tmp_path),
           "MPLBACKEND": "Agg", "PYTHONWARNINGS": "error::FutureWarning"}
    done = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    assert any(tmp_path.rglob("*.png")), f"{path.name} wrote no plot into {tmp_path}"
