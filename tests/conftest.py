"""Test set-up: CPU only, a private compilation cache, and the shared real data.

The suite compiles hundreds of samplers, many of them the same program; JAX's persistent
cache, in a folder of this test run's own, halves the run (it is opt-in for users:
atlas_bayes/fitting/jax_setup.py says why).
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("ATLAS_BAYES_JAX_CACHE", tempfile.mkdtemp(prefix="atlas-bayes-jax-"))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATLAS_BAYES_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test when it is absent (it is present in CI)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


# Files by measured time (longest first, from `--durations` of a full run). pytest-xdist's
# --dist loadfile hands whole files to workers in collection order, so starting the long
# files first leaves short ones for the end instead of one worker finishing a long file
# while the other waits (measured: ~8 of 26 minutes with one worker idle).
LONGEST_FIRST = ["test_hierarchical.py", "test_notebooks.py", "test_transfer.py",
                 "test_recovery.py", "test_pooling_goldfish.py", "test_crossover.py",
                 "test_curse.py", "test_comparison.py", "test_optimal.py", "test_design.py"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable within a file
