"""Test set-up: CPU only, fixed seeds, and the location of the shared real data."""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
