"""Test set-up: CPU only, a private compilation cache, and the shared real data.

The suite compiles hundreds of samplers, many of them the same program; JAX's persistent
cache, in a folder of this test run's own, halves the run (it is opt-in for users:
atlas_bayes/fitting/jax_setup.py says why).
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ATLAS_BAYES_JAX_CACHE", tempfile.mkdtemp(prefix="atlas-bayes-jax-"))

import pytest  # noqa: E402

pytest_plugins = ["pytester"]          # tests/test_suite_markers.py runs a small suite

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATLAS_BAYES_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test when it is absent (it is present in CI)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


# Every test says what kind it is (pyproject.toml registers the three): `pytest -m unit` is the
# quick set, `-m statistical` the fits checked against truth or real data, `-m e2e` the
# commands, notebooks, trainer and loop. A test with none of them fails at set-up, naming the
# rule (tests/test_suite_markers.py checks the same statically, within `-m unit`).
KINDS = ("unit", "statistical", "e2e")


def pytest_runtest_setup(item):
    if not any(item.get_closest_marker(kind) for kind in KINDS):
        pytest.fail(f"{item.nodeid} has none of the markers {', '.join(KINDS)}: mark it "
                    "(module-level `pytestmark = pytest.mark.unit`, or per test)", pytrace=False)
