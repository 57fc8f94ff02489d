"""fit(): the DataTree it returns, saving and loading, LOO, warnings, and the bundled example."""

import json
from importlib import resources

import arviz as az
import numpy as np
import pandas as pd
import pytest

from atlas_bayes.fitting import jax_setup
from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.fitting.files import parse_transfer_languages, read_source, read_tau_prior
from atlas_bayes.fitting.inference import Sampler, fit, load, save
from atlas_bayes.tables.runs import RunTableWarning, read_runs
from atlas_bayes.fitting.summary import format_summary
from atlas_bayes.simulation.simulate import example_study, monolingual_design, simulate
from conftest import SHORT

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}


@pytest.fixture(scope="module")
def two_languages():
    design = pd.concat([monolingual_design("en"), monolingual_design("fr", tokens_per_param=(10, 40))])
    return simulate(design, "chinchilla", TRUTH, seed=5)


@pytest.fixture(scope="module")
def tree(two_languages):
    return fit(two_languages, "chinchilla", language="fr", sampler=SHORT, warn=False)


@pytest.mark.statistical
def test_tree_has_every_group_and_natural_scale_parameters(tree):
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
            "sample_stats", "fit_data"} <= set(tree.children)
    for name in ("E", "A", "B", "alpha", "beta", "sigma"):
        assert tree.posterior[name].dims == ("chain", "draw")
    # A, B are the natural coefficients: the sampled terms at the reference scales are
    # A / N_ref^alpha and B / D_ref^beta
    post = tree.posterior
    np.testing.assert_allclose(np.log(post["A"]) - post["alpha"] * tree.attrs["log_N_ref"],
                               post["log_A_ref"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.log(post["B"]) - post["beta"] * tree.attrs["log_D_ref"],
                               post["log_B_ref"], rtol=1e-4, atol=1e-3)
    assert tree.posterior_predictive["log_loss"].shape == (2, 300, 30)
    assert tree.attrs["target_language"] == "fr"
    assert set(tree["fit_data"]["language"].values) == {"fr"}


@pytest.mark.statistical
def test_loo_works_on_the_pointwise_log_likelihood(tree):
    loo = az.loo(tree, pointwise=True)
    assert np.isfinite(loo.elpd) and loo.pareto_k.shape == (30,)


@pytest.mark.statistical
def test_save_and_load_round_trip(tree, tmp_path):
    path = save(tree, tmp_path / "fit.nc")
    back = load(path)
    assert back.attrs["law"] == "chinchilla" and back.attrs["data_hash"] == tree.attrs["data_hash"]
    np.testing.assert_allclose(back.posterior["alpha"].values, tree.posterior["alpha"].values)
    np.testing.assert_allclose(back["fit_data"]["n_tokens"].values, tree["fit_data"]["n_tokens"].values)


@pytest.mark.unit
def test_several_languages_need_a_choice(two_languages):
    with pytest.raises(ValueError, match="language=.*--lang"):
        fit(two_languages, "chinchilla", sampler=SHORT)
    with pytest.raises(ValueError, match="no rows evaluate language 'de'"):
        fit(two_languages, "chinchilla", language="de", sampler=SHORT)


@pytest.mark.unit
def test_transfer_languages_and_tau_priors_from_text_and_files(tmp_path):
    """What `fit --transfer-languages` and `--tau-prior` become (the CLI names the option)."""
    assert parse_transfer_languages(None) is None and parse_transfer_languages("") is None
    assert parse_transfer_languages("en,es") == ["en", "es"]
    assert parse_transfer_languages("fr=en, es; sw=en;") == {"fr": ["en", "es"], "sw": ["en"]}
    with pytest.raises(ValueError, match=r"^expected TARGET=LANG\[,LANG\] in 'fr='$"):
        parse_transfer_languages("fr=")
    with pytest.raises(ValueError, match="TARGET=LANG.*'=en'"):
        parse_transfer_languages("sw=en;=en")
    path = tmp_path / "tau_priors.json"
    path.write_text(json.dumps({"sw": {"en": [0.3, 0.1]}}))
    assert read_tau_prior(path) == {"sw": {"en": [0.3, 0.1]}}
    path.write_text("[0.3, 0.1]")
    with pytest.raises(ValueError, match="expected a JSON object of tau priors"):
        read_tau_prior(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="^cannot be read as JSON: "):
        read_tau_prior(path)
    with pytest.raises(ValueError, match="^cannot be read as JSON: "):
        read_tau_prior(tmp_path / "missing.json")


@pytest.mark.unit
def test_a_source_is_a_saved_fit_or_a_run_table(two_languages, tmp_path):
    path = tmp_path / "runs.csv"
    two_languages.to_csv(path, index=False)
    assert isinstance(read_source(path), pd.DataFrame) and len(read_source(str(path))) == len(two_languages)
    with pytest.raises(ValueError, match="^nope/posterior.nc: file not found$"):
        read_source("nope/posterior.nc")


@pytest.mark.unit
def test_unknown_law_lists_the_choices(two_languages):
    with pytest.raises(ValueError, match="choose one of .*atlas"):
        fit(two_languages, "kaplan", language="en", sampler=SHORT)


@pytest.mark.statistical
def test_too_short_a_run_warns_in_words(two_languages):
    with pytest.warns(ConvergenceWarning, match="R-hat|ESS"):
        tree = fit(two_languages, "chinchilla", language="en",
                   sampler=Sampler(chains=2, warmup=10, draws=10))
    assert json.loads(tree.attrs["diagnostics"])["max_r_hat"] > 1.01


@pytest.mark.unit
def test_bundled_example_is_the_simulator_output():
    """data/example_runs.csv is exactly what example_study() makes (so it can be regenerated)."""
    with resources.as_file(resources.files("atlas_bayes.data") / "example_runs.csv") as path:
        shipped = read_runs(path)
    made = example_study()
    assert len(shipped) == len(made) == 81
    np.testing.assert_allclose(shipped["loss"], made["loss"], rtol=1e-6)
    assert shipped["source"].str.startswith("simulated").all()


@pytest.mark.unit
def test_dcsl_without_unique_tokens_is_refused():
    """Without unique tokens DCSL would quietly be Chinchilla with prior-only decay constants."""
    runs = simulate(monolingual_design("en"), "chinchilla",
                    {"E": 1.2, "A": 350.0, "B": 1800.0, "alpha": 0.33, "beta": 0.34})
    with pytest.raises(ValueError, match="'dcsl' needs unique tokens.*'unique_tokens'"):
        fit(runs, "dcsl")


@pytest.mark.statistical
@pytest.mark.skipif(jax_setup.memory_maps() is None, reason="memory maps are counted on Linux only")
def test_compiled_samplers_are_released_before_the_map_limit(two_languages, monkeypatch):
    """Each fit leaves a compiled sampler holding hundreds of memory maps; near the process
    limit a fit first drops them (else XLA segfaults after ~70 fits in one process)."""
    tiny = Sampler(chains=1, warmup=10, draws=10)
    assert jax_setup.release_compiled_if_crowded(fraction=0.0)   # start from a clean process
    fit(two_languages, "chinchilla", language="fr", sampler=tiny, warn=False)
    held, limit = jax_setup.memory_maps()
    assert not jax_setup.release_compiled_if_crowded()      # far below half the limit
    monkeypatch.setattr(jax_setup, "MAP_FRACTION", (held - 1) / limit)
    assert jax_setup.release_compiled_if_crowded()
    assert jax_setup.memory_maps()[0] < held - 300


@pytest.mark.statistical
def test_finetune_rows_are_left_out_of_law_fits_by_name(two_languages):
    """A finetune's n_tokens include its checkpoint's tokens: a law would misread them."""
    fr = two_languages[two_languages["language"] == "fr"]
    tuned = fr[fr["run_id"] == fr["run_id"].iloc[-1]].assign(
        run_id="ft-fr", init="finetune:ml8", init_tokens=fr["n_tokens"].min() / 2)
    runs = pd.concat([fr, tuned], ignore_index=True)
    with pytest.warns(RunTableWarning, match=r"left out \d+ row\(s\) of 1 run\(s\).*ft-fr"):
        tree = fit(runs, "chinchilla", sampler=SHORT, warn=False)
    assert tree.attrs["n_obs"] == len(fr) and "ft-fr" not in set(tree["fit_data"]["run_id"].values)
    assert json.loads(tree.attrs["left_out_runs"]) == ["ft-fr"]
    assert "left out (continued from a checkpoint): ft-fr" in format_summary(tree)


@pytest.mark.statistical
def test_one_chain_says_convergence_was_not_checked(two_languages):
    """R-hat compares chains: with one it is undefined, and the warning says so in words
    (not a NaN R-hat, and no numpy All-NaN warning)."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = fit(two_languages, "chinchilla", language="en", sampler=Sampler(chains=1, warmup=50, draws=50))
    messages = [str(w.message) for w in caught]
    assert any("one chain: R-hat compares chains" in m for m in messages), messages
    assert not any("All-NaN" in m or "R-hat above" in m for m in messages), messages
    assert np.isnan(json.loads(tree.attrs["diagnostics"])["max_r_hat"])


@pytest.mark.unit
def test_a_joint_fit_saved_before_the_pinned_parameterisation_still_predicts():
    """tests/data/atlas_h_before_pinned.*: an atlas-h posterior written by the model that
    sampled log E, log terms and exponents non-centred (commit f9697a6), with its predictions."""
    import json
    from pathlib import Path

    import pandas as pd

    from atlas_bayes.fitting.inference import load, predict
    folder = Path(__file__).parent / "data"
    saved = json.loads((folder / "atlas_h_before_pinned.json").read_text())
    tree = load(folder / "atlas_h_before_pinned.nc")
    got = predict(tree, pd.DataFrame(saved["rows"]))["log_loss_mean"].values
    np.testing.assert_allclose(got, np.asarray(saved["log_loss_mean"]), rtol=1e-5)


@pytest.mark.unit
def test_the_compilation_cache_is_on_by_default_in_the_users_cache_folder(tmp_path):
    """On unless ATLAS_BAYES_JAX_CACHE=0; in $XDG_CACHE_HOME/atlas_bayes/jax by default."""
    import os
    import subprocess
    import sys
    code = ("import jax, atlas_bayes.fitting.jax_setup; "
            "print(jax.config.jax_compilation_cache_dir)")
    env = {k: v for k, v in os.environ.items() if k != "ATLAS_BAYES_JAX_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    for setting, expect in ((None, str(tmp_path / "atlas_bayes" / "jax")), ("0", "None")):
        run_env = env if setting is None else {**env, "ATLAS_BAYES_JAX_CACHE": setting}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expect, (setting, out)
