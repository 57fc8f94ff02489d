"""Importing the library leaves matplotlib alone: no module imports pyplot or selects a
backend when imported (a user's Jupyter backend stays theirs); plotting functions import
pyplot when they are called."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

PACKAGES = ("atlas_bayes.decisions", "atlas_bayes.fitting", "atlas_bayes.design")

SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys
    for package in {packages!r}:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__, package + "."):
            importlib.import_module(info.name)
    assert "matplotlib.pyplot" not in sys.modules, "an import loaded matplotlib.pyplot"
    if "matplotlib" in sys.modules:
        import matplotlib
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
    print("ok")
""")


def test_importing_the_layers_loads_no_pyplot_and_keeps_the_backend():
    env = {**os.environ, "MPLBACKEND": "svg", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(packages=PACKAGES)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
