"""Test set-up: CPU only, a private compilation cache, and the shared real data.

The suite compiles hundreds of samplers, many of them the same program; JAX's persistent
cache, in a folder of this test run's own, halves the run (it is opt-in for users:
atlas_bayes/jax_setup.py says why).
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
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
