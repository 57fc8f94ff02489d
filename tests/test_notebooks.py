"""Every notebook in notebooks/ runs top to bottom, as NumPyro tests its examples.

The notebooks are jupytext percent-format scripts (`# %%` code cells, `# %% [markdown]` text
cells): readable diffs, and `python notebooks/X.py` runs the whole notebook. Here each runs in
the test's process (`runpy`, as `python notebooks/X.py` would, from the repository root) with
ATLAS_BAYES_QUICK=1 (the notebooks' small sampler settings, conftest.QUICK) and writes into a
temporary folder (ATLAS_BAYES_NOTEBOOK_OUT). In-process, a notebook's fits reuse the programs
compiled by the tests and notebooks before it in the worker (a subprocess compiled its own and
paid the imports: measured ~440 s of worker time for the five as subprocesses).
"""

import runpy
import warnings
from pathlib import Path

import jupytext
import pandas as pd
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
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt
    monkeypatch.setenv("ATLAS_BAYES_QUICK", "1")
    monkeypatch.setenv("ATLAS_BAYES_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(ROOT)                  # restored after the test, as are the variables
    backend = matplotlib.get_backend()
    matplotlib.use("Agg")
    display = ("display.width", "display.max_columns")     # the notebooks set these
    saved = [value for name in display for value in (name, pd.get_option(name))]
    try:
        with warnings.catch_warnings(), pd.option_context(*saved):
            warnings.simplefilter("ignore")                  # the reader sees these, not pytest
            warnings.simplefilter("error", FutureWarning)    # as PYTHONWARNINGS did
            runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")
        matplotlib.use(backend)
    assert any(tmp_path.rglob("*.png")), f"{path.name} wrote no plot into {tmp_path}"
