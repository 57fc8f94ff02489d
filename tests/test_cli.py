"""The `atlas-bayes` command-line contract, run as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest
import xarray as xr

from atlas_bayes.simulation.simulate import monolingual_design, simulate
from conftest import QUICK, cli_args

pytestmark = pytest.mark.e2e

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31, "lambda": 0.1}
SMALL = cli_args(QUICK)


def cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "atlas_bayes.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600,
                          env=None if env is None else {**os.environ, **env})


TWO_CORES = {"ATLAS_BAYES_CPU_DEVICES": "2"}   # as on a user's 2-core machine (conftest sets 1)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    design = monolingual_design("sw", unique_tokens=3e9, tokens_per_param=(5, 20, 80))
    simulate(design, "atlas", TRUTH, seed=3).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def json_fit(runs_csv):
    out = runs_csv.parent / "fit-out"
    result = cli("fit", runs_csv, "--law", "atlas", "--out", out, "--json", *SMALL, env=TWO_CORES)
    return result, out


def test_fit_json_follows_the_contract(json_fit):
    result, _ = json_fit
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert summary["law"] == "atlas" and summary["n_obs"] == 45
    assert isinstance(summary["seconds"], float)
    assert set(summary["diagnostics"]) >= {"divergences", "max_r_hat", "min_ess_bulk"}
    assert isinstance(summary["diagnostics"]["divergences"], int)
    assert set(summary["parameters"]) >= {"E", "A", "B", "alpha", "beta", "lambda", "R_D_star"}
    for stats in summary["parameters"].values():
        assert set(stats) == {"mean", "median", "q05", "q95", "r_hat", "ess_bulk"}
        assert stats["q05"] <= stats["median"] <= stats["q95"]
    # natural scale: E and A are the law's coefficients, not their logs
    assert summary["parameters"]["E"]["q05"] < TRUTH["E"] * 1.5
    assert summary["parameters"]["A"]["median"] > 10


def test_fit_writes_posterior_plot_and_summary(json_fit):
    _, out = json_fit
    assert (out / "fit.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["law"] == "atlas"
    with xr.open_datatree(out / "posterior.nc", engine="h5netcdf") as tree:
        assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
                "fit_data"} <= set(tree.children)
        assert tree.attrs["law"] == "atlas" and tree.attrs["simulated"] == 1
        assert "E" in tree["posterior"].data_vars and "lambda" in tree["posterior"].data_vars
        assert json.loads(tree.attrs["sampler"])["chain_method"] == "parallel"   # both cores


def test_a_second_process_reads_the_stored_two_core_program_and_draws_the_same(json_fit):
    first, out = json_fit
    again = out.parent / "fit-again"
    result = cli("fit", out.parent / "runs.csv", "--law", "atlas", "--out", again, "--json", *SMALL,
                 env=TWO_CORES)
    assert result.returncode == 0, result.stderr
    with (xr.open_datatree(out / "posterior.nc", engine="h5netcdf") as one,
          xr.open_datatree(again / "posterior.nc", engine="h5netcdf") as two):
        assert (one["posterior"]["E"] == two["posterior"]["E"]).all()


def test_fit_prints_a_readable_summary(runs_csv, tmp_path):
    result = cli("fit", runs_csv, "--law", "chinchilla", "--out", tmp_path, *SMALL)
    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stdout and "SIMULATED" in result.stdout
    assert "wrote" in result.stdout
    # not a terminal: progress as two plain lines instead of a bar
    assert "sampling: 2 chains x (200 warmup + 200 draws)" in result.stderr
    assert "sampling: done in" in result.stderr and "it/s" not in result.stderr


def test_fit_approx_gives_a_one_chain_svi_posterior(runs_csv, tmp_path):
    result = cli("fit", runs_csv, "--law", "chinchilla", "--approx", "svi", "--out", tmp_path,
                 "--json")
    assert result.returncode == 0, result.stderr
    tree = xr.open_datatree(tmp_path / "posterior.nc")
    assert tree.attrs["method"] == "svi" and tree.posterior.sizes["chain"] == 1


def test_fit_options_that_do_not_apply_exit_2(runs_csv, tmp_path):
    result = cli("fit", runs_csv, "--law", "atlas", "--shared", "alpha", "--out", tmp_path)
    assert result.returncode == 2 and "joint laws" in result.stderr, result.stderr
    result = cli("fit", runs_csv, "--law", "atlas", "--transfer-languages", "fr=", "--out", tmp_path)
    assert result.returncode == 2 and "TARGET=LANG" in result.stderr, result.stderr


@pytest.mark.parametrize("content, expected", [
    ("n_params,n_tokens,loss\n1e8,2e9,3.1\n1e8,abc,3.0\n", ["row 2 (line 3)", "'n_tokens'", "'abc'"]),
    ("n_params,n_tokens,loss\n1e8,2e9,-3.1\n", ["row 1 (line 2)", "'loss'", "positive"]),
    ("n_params,n_tokns,loss\n1e8,2e9,3.1\n", ["'n_tokns'", "did you mean 'n_tokens'"]),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = cli("fit", path, "--out", tmp_path / "o")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr
    for fragment in expected:
        assert fragment in result.stderr


def test_missing_file_and_several_languages_exit_2(tmp_path):
    result = cli("fit", tmp_path / "nope.csv")
    assert result.returncode == 2 and "file not found" in result.stderr
    path = tmp_path / "two.csv"
    path.write_text("language,n_params,n_tokens,loss\nen,1e8,2e9,3.1\nfr,1e8,2e9,3.2\n")
    result = cli("fit", path, "--out", tmp_path / "o")
    assert result.returncode == 2 and "--lang" in result.stderr and "Traceback" not in result.stderr


def test_adapt_converts_shared_data(shared_data, tmp_path):
    out = tmp_path / "epoch.csv"
    result = cli("adapt", "epoch_chinchilla", shared_data / "epoch_chinchilla", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "245 rows" in result.stdout
    assert out.read_text().count("\n") == 246
