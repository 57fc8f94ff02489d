"""Pretrain from scratch vs finetune: the crossover posterior, the power law, the command.

Truth: `simulate_crossover` with known curves (the finetune's penalty and head start scale
with model size, so the crossover grows with N); one language (ja) whose finetune never loses.
"""

import functools
import json
import warnings

import numpy as np
import pytest

from atlas_bayes.cli import main
from atlas_bayes.decisions.crossover import crossover_summary, crossover_tokens, fit_crossover, fit_power_law, predict_crossover, summarise_draws
from atlas_bayes.simulation.crossover_study import simulate_crossover, true_crossover
from atlas_bayes.tables.runs import RunTableError, validate_runs, write_runs
from conftest import MAX_R_HAT, RECOVERY, REPO, seeded

TRUTH = {"sw": dict(E=1.5, A=300., alpha=0.34, B=1.2, beta=0.3, delta=0.04, D0=2e10, eta=0.3, zeta=0.3),
         "fr": dict(E=1.3, A=300., alpha=0.34, B=1.0, beta=0.28, delta=0.06, D0=5e10, eta=0.3, zeta=0.3),
         "ja": dict(E=1.6, A=300., alpha=0.34, B=1.1, beta=0.32, delta=-0.01, D0=3e10)}
SIZES = [2e8, 6e8, 2e9]
SAMPLER = RECOVERY


@functools.cache
def fitted():
    runs = validate_runs(simulate_crossover(TRUTH, SIZES, seed=0))
    return fit_crossover(runs, sampler=SAMPLER, warn=False)


@pytest.mark.unit
def test_crossover_tokens_solve_the_curve_equation():
    """Against a brute-force scan of the two truth curves; no crossover when Delta <= 0."""
    from atlas_bayes.simulation.crossover_study import true_curves
    for lang in ("sw", "fr"):
        for n in SIZES:
            d = np.geomspace(1e8, 1e13, 200001)
            scratch, tuned = true_curves(TRUTH[lang], n, d)
            brute = d[np.argmax(scratch < tuned)]
            assert true_crossover(TRUTH[lang], n) == pytest.approx(brute, rel=1e-4)
    assert np.isinf(true_crossover(TRUTH["ja"], 6e8))
    post = {"L0": np.array([2.0]), "L_end": np.array([2.5]), "beta": np.array([0.3]),
            "delta": np.array([1e-9]), "D0_rel": np.array([0.5])}
    assert np.isinf(crossover_tokens(post, 1e9))          # beyond the searched range


@pytest.mark.statistical
def test_crossover_intervals_cover_the_truth_and_no_crossover_is_reported():
    tree = fitted()
    diag = json.loads(tree.attrs["diagnostics"])
    assert diag["divergences"] == 0 and diag["max_r_hat"] <= 1.01, diag
    covered = []
    for lang in ("sw", "fr"):
        for n in SIZES:
            s = crossover_summary(tree, lang, n)
            assert s["p_no_crossover"] < 0.05
            covered.append(s["tokens"]["q_lo"] <= true_crossover(TRUTH[lang], n) <= s["tokens"]["q_hi"])
            assert s["compute"]["median"] == pytest.approx(6 * n * s["tokens"]["median"])
    assert sum(covered) >= 5, covered
    for n in SIZES:
        s = crossover_summary(tree, "ja", n)
        assert s["p_no_crossover"] > 0.5, s
        assert not np.isfinite(s["tokens"]["q_hi"]) and "never catches up" in s["recommendation"]


@pytest.mark.unit
def test_summary_counts_draws_without_crossover_and_the_budget():
    draws = np.r_[np.full(80, 1e10), np.full(20, np.inf)]
    s = summarise_draws(draws, 1e9, budget=5e9, prob=0.9)
    assert s["p_no_crossover"] == pytest.approx(0.2)
    assert s["p_no_crossover_within_budget"] == 1.0
    assert s["tokens"]["q_lo"] == 1e10 and np.isinf(s["tokens"]["q_hi"])
    assert "20%" in s["recommendation"]
    s = summarise_draws(np.geomspace(1e10, 1e11, 101), 1e9)
    assert s["recommendation"].startswith("finetune below 1.12e+10 tokens, pretrain from scratch above 8.91e+10")


@pytest.mark.statistical
def test_power_law_predicts_an_unseen_size():
    tree = fitted()
    with pytest.warns(UserWarning, match="left out of the power law.*ja@"):
        law = fit_power_law(tree, sampler=seeded(RECOVERY, 0, target_accept=0.95),
                            warn=False)
    diag = json.loads(law.attrs["diagnostics"])
    assert diag["divergences"] == 0 and diag["max_r_hat"] <= 1.01, diag
    assert set(law.posterior["language"].values) == {"fr", "sw"}
    # truth: d_x grows like N^0.5 here, so C_x = 6 N d_x like N^1.5
    low, high = law.posterior["gamma"].quantile([0.05, 0.95]).to_numpy()
    assert low < 1.5 < high
    for lang in ("sw", "fr"):
        draws = predict_crossover(law, lang, 5e9)
        lo, hi = np.quantile(draws, [0.05, 0.95])
        assert lo <= true_crossover(TRUTH[lang], 5e9) <= hi
    unseen = predict_crossover(law, "de", 5e9)        # a new language: k from the population
    assert np.quantile(unseen, 0.95) / np.quantile(unseen, 0.05) > np.quantile(draws, 0.95) / np.quantile(draws, 0.05)


@pytest.mark.unit
def test_bad_tables_are_refused_with_reasons():
    runs = simulate_crossover({"sw": TRUTH["sw"]}, [6e8], seed=1)
    with pytest.raises(ValueError, match="need column 'init_tokens'"):
        fit_crossover(validate_runs(runs.drop(columns="init_tokens")), sampler=SAMPLER)
    with pytest.warns(UserWarning, match="only scratch or only finetuned runs.*sw@6e\\+08"):
        with pytest.raises(ValueError, match="no \\(language, model size\\) has both"):
            fit_crossover(validate_runs(runs[runs["init"] == "scratch"]), sampler=SAMPLER)
    bad = runs.copy()
    bad.loc[bad.index[-1], "init_tokens"] = 1e13
    with pytest.raises(RunTableError, match="column 'init_tokens'.*not below n_tokens"):
        validate_runs(bad)


@pytest.mark.e2e
def test_crossover_command_measured_cell_and_power_law(tmp_path):
    write_runs(simulate_crossover(TRUTH, SIZES, seed=2), tmp_path / "runs.csv")
    small = ["--chains", "2", "--warmup", "200", "--draws", "300"]   # 300: p within budget
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["crossover", str(tmp_path / "runs.csv"), "--lang", "fr", "--n-params", "6e8",
                     "--budget", "1e10", "--out", str(tmp_path / "a"), "--json", *small]) == 0
        assert main(["crossover", str(tmp_path / "runs.csv"), "--lang", "sw", "--n-params", "5e9",
                     "--out", str(tmp_path / "b"), "--json", *small]) == 0
    measured = json.loads((tmp_path / "a" / "crossover.json").read_text())
    assert measured["source"] == "measured cell" and measured["p_no_crossover_within_budget"] > 0.9
    assert (tmp_path / "a" / "crossover.png").exists()
    predicted = json.loads((tmp_path / "b" / "crossover.json").read_text())
    assert predicted["source"].startswith("power law") and set(predicted["k"]) == {"fr", "sw"}
    assert (tmp_path / "b" / "power_law.nc").exists()
    assert main(["crossover", str(tmp_path / "runs.csv"), "--lang", "sw", "--out",
                 str(tmp_path / "c"), *small]) == 2          # several sizes: --n-params needed


@pytest.mark.statistical
def test_a_stuck_chain_is_rerun_and_the_fit_converges():
    """Issue 18: the bundled study's es and pt cells at t1 (studies/bundled/analyse.sh), 2 chains
    x (500 + 500), seed 1: chain 0 repeats a third of its draws (its step size suits only part
    of the posterior; R-hat 1.32 before). It is rerun from a fresh key, and the fit says so."""
    from atlas_bayes.fitting.inference import Sampler
    from atlas_bayes.fitting.stuck import RestartedChainWarning
    from atlas_bayes.tables.runs import read_runs
    runs = read_runs(REPO / "data" / "bundled_study.csv")
    runs = runs[runs["run_id"].str.fullmatch(r"mono-(es|pt)-t1-D\d+M|ft-(es|pt)-t1-D\d+M-from-ml8-t1-D32M")]
    with pytest.warns(RestartedChainWarning, match="chain\\(s\\) 0 \\(1x\\) of 2"):
        tree = fit_crossover(runs, sampler=Sampler(chains=2, warmup=500, draws=500, seed=1))
    diag = json.loads(tree.attrs["diagnostics"])
    assert diag["restarted_chains"] == [0], ("seed 1 no longer sticks here: pick a seed that "
                                             "does (benchmarks/RESULTS.md, issue 18)", diag)
    assert diag["max_r_hat"] <= MAX_R_HAT and diag["divergences"] == 0, diag
    assert list(np.unique(tree.sample_stats["restarts"].values[0])) == [1]
    assert (tree.sample_stats["restarts"].values[1] == 0).all()
