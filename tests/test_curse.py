"""Curse of multilinguality: the law and iso-loss scaling when adding languages."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from atlas_bayes import laws
from atlas_bayes.simulation.curse_study import capacity_design, simulate_curse
from atlas_bayes.decisions.curse import compute_optimal_move, iso_loss, paper_multipliers, parameters_for_tokens, term_shares, tokens_for_parameters
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.fitting.law_inputs import build_group_inputs, effective_languages
from conftest import seeded

# The paper's pooled exponents (phi, psi printed; alpha, beta derived from Fig. 5's ratios).
PAPER = {"alpha": 0.45, "beta": 0.147, "phi": 0.11, "psi": -0.04}
TRUE = {"E": 1.2, "A": 400.0, "B": 900.0, **PAPER}


@pytest.mark.parametrize("r, params_x, tokens_x", [(2, 1.18, 1.66), (4, 1.40, 2.74),
                                                   (8, 1.66, 4.54), (16, 1.96, 7.52)])
@pytest.mark.unit
def test_closed_forms_reproduce_the_papers_table(r, params_x, tokens_x):
    m = paper_multipliers(r, **PAPER)
    assert m["N"] == pytest.approx(params_x, rel=0.01)
    assert m["D_tot"] == pytest.approx(tokens_x, rel=0.01)
    assert m["C"] == pytest.approx(m["N"] * m["D_tot"])


def _loss(K, N, D_t, p=TRUE):
    """The law in float64 numpy (laws.log_curse is checked against it below)."""
    return (p["E"] + p["A"] * K ** p["phi"] / N ** p["alpha"]
            + p["B"] * K ** p["psi"] / D_t ** p["beta"])


@pytest.mark.unit
def test_jax_law_matches_the_formula():
    K, N, D_t = np.array([1.0, 8.0, 50.0]), np.array([1e7, 1e9, 8e9]), np.array([1e9, 3e10, 2e11])
    got = np.exp(np.asarray(laws.log_curse(K, N, D_t, *(TRUE[k] for k in
                                                          ("E", "A", "B", "alpha", "beta", "phi", "psi")))))
    assert np.allclose(got, _loss(K, N, D_t), rtol=1e-5)
    # K = 1 is Chinchilla
    assert np.allclose(np.exp(np.asarray(laws.log_curse(1.0, N, D_t, 1.2, 400.0, 900.0, 0.45, 0.147, 0.3, -0.2))),
                       np.exp(np.asarray(laws.log_chinchilla(N, D_t, 1.2, 400.0, 900.0, 0.45, 0.147))), rtol=1e-6)


def _compute_optimal_start(K, C):
    """(N, D_t) minimising the loss at compute C ~ N K D_t, by numerical minimisation."""
    from scipy.optimize import minimize_scalar
    best = minimize_scalar(lambda log_n: _loss(K, np.exp(log_n), C / (np.exp(log_n) * K)),
                           bounds=(np.log(1e3), np.log(C / K)), method="bounded",
                           options={"xatol": 1e-10})
    N = np.exp(best.x)
    return N, C / (N * K)


@pytest.mark.unit
def test_compute_optimal_start_gives_the_papers_closed_forms():
    K, r = 8, 2
    N, D_t = _compute_optimal_start(K, 1e21)
    w_N, _ = term_shares(K, N, D_t, TRUE["A"], TRUE["B"], **PAPER)
    assert w_N == pytest.approx(PAPER["beta"] / (PAPER["alpha"] + PAPER["beta"]), abs=0.01)
    move, paper = compute_optimal_move(r, w_N, **PAPER), paper_multipliers(r, **PAPER)
    for key in ("N", "D_tot", "C"):
        assert move[key] == pytest.approx(paper[key], rel=0.02), key


@pytest.mark.unit
@pytest.mark.parametrize("w_N", [0.2, 0.5, 0.8])
def test_move_keeps_the_loss_and_is_the_cheapest_on_the_iso_loss_curve(w_N):
    """From any start: the loss at (rK, sN, tD_t) equals the start's, and no other point of
    the iso-loss curve (scanned numerically) costs less compute."""
    K, r, N = 4, 3.0, 1e9
    # choose D_t so that the parameter term holds share w_N of the reducible loss
    n_term = TRUE["A"] * K ** PAPER["phi"] / N ** PAPER["alpha"]
    D_t = (TRUE["B"] * K ** PAPER["psi"] / (n_term * (1 - w_N) / w_N)) ** (1 / PAPER["beta"])
    assert term_shares(K, N, D_t, TRUE["A"], TRUE["B"], **PAPER)[0] == pytest.approx(w_N)
    move = compute_optimal_move(r, w_N, **PAPER)
    before = _loss(K, N, D_t)
    assert _loss(r * K, move["N"] * N, move["D_t"] * D_t) == pytest.approx(before, rel=1e-10)

    s = np.geomspace(0.3, 30, 4001)
    t = tokens_for_parameters(r, s, w_N, **PAPER)
    compute = s * r * t
    assert np.nanmin(compute) >= move["C"] * (1 - 1e-6)
    assert s[np.nanargmin(compute)] == pytest.approx(move["N"], rel=0.01)
    # the two one-sided solutions are inverses of each other on the curve
    ok = np.isfinite(t)
    assert np.allclose(parameters_for_tokens(r, t[ok], w_N, **PAPER), s[ok], rtol=1e-6)
    for si, ti in zip(s[ok][::500], t[ok][::500]):
        assert _loss(r * K, si * N, ti * D_t) == pytest.approx(before, rel=1e-10)


@pytest.mark.unit
def test_infeasible_moves_are_nan_not_wrong_numbers():
    """Too small a model cannot be rescued by data (and vice versa): NaN, not a number."""
    w_N = 0.5
    s_floor = (2.0 ** PAPER["phi"] * w_N) ** (1 / PAPER["alpha"])
    assert np.isnan(tokens_for_parameters(2.0, 0.99 * s_floor, w_N, **PAPER))
    assert np.isfinite(tokens_for_parameters(2.0, 1.01 * s_floor, w_N, **PAPER))
    t_floor = (2.0 ** PAPER["psi"] * (1 - w_N)) ** (1 / PAPER["beta"])
    assert np.isnan(parameters_for_tokens(2.0, 0.99 * t_floor, w_N, **PAPER))


@pytest.mark.unit
def test_multipliers_broadcast_over_posterior_draws():
    draws = {k: np.full((2, 50), v) * np.random.default_rng(0).uniform(0.9, 1.1, (2, 50))
             for k, v in PAPER.items()}
    move = compute_optimal_move(2.0, 0.3, **draws)
    assert all(v.shape == (2, 50) for v in move.values())
    assert np.all(np.isfinite(move["C"]))


# ---- the NumPyro model, on simulated capacity studies -------------------------------------

SIM_TRUE = {"E": 1.2, "A": 2000.0, "B": 15.0, **PAPER}
# target_accept 0.95: with beta ~0.15 the data term decays slowly and E, B and beta form a
# curved ridge (measured at 0.9: 3 divergences in 1 of 3 seeds; at 0.95: none)
CURSE_SAMPLER = Sampler(chains=4, warmup=400, draws=400, target_accept=0.95)


@functools.cache
def pooled_fit(seed: int):
    runs = simulate_curse(capacity_design(), SIM_TRUE, seed=seed)
    return fit(runs, "curse", sampler=seeded(CURSE_SAMPLER, seed), warn=False)


@pytest.mark.unit
def test_effective_languages_is_k_for_uniform_mixtures():
    runs = capacity_design(targets=("en",), ks=(1, 2, 8), n_params=(1e8,), tokens_per_param=(20.0,),
                           checkpoints=(1.0,))
    x, _, _ = build_group_inputs(runs.assign(loss=1.0))
    assert np.allclose(x.K, [1, 2, 8])
    skewed = pd.DataFrame({"mix_en": [0.9, 0.5], "mix_fr": [0.1, 0.25], "mix_de": [0.0, 0.25]})
    assert np.allclose(effective_languages(skewed), [1 / 0.82, 1 / 0.375])


@pytest.mark.statistical
def test_pooled_law_recovers_the_truth_at_about_the_nominal_rate():
    """6 simulated studies x 7 parameters: 90% intervals should cover about 38 of 42.

    Measured (seeds 2 to 7): 35 of 42 (83%); misses come in correlated groups (A with alpha,
    B with beta and E), and the Student-t likelihood reads Gaussian noise of sd 0.01 as
    scale ~0.008, so intervals run slightly narrow. Asserted: at least 30 (71%).
    """
    covered, total = 0, 0
    for seed in range(2, 8):
        tree = pooled_fit(seed)
        diag = json.loads(tree.attrs["diagnostics"])
        assert diag["divergences"] == 0 and diag["max_r_hat"] <= 1.02, diag
        for name, value in SIM_TRUE.items():
            draws = tree.posterior[name].isel(language=0).values.ravel()
            low, high = np.quantile(draws, [0.05, 0.95])
            covered += int(low <= value <= high)
            total += 1
    assert covered >= 30, f"{covered}/{total} intervals cover the truth"


@pytest.mark.statistical
def test_iso_loss_intervals_contain_the_true_multipliers():
    tree = pooled_fit(2)
    truth = paper_multipliers(2.0, **PAPER)
    table = iso_loss(tree, 8, 16)
    for name in ("N", "D_tot", "C"):
        assert table.loc[name, "q05"] <= truth[name] <= table.loc[name, "q95"], (name, table)
    # from a given (not compute-optimal) run: intervals contain the true least-compute move
    n, tokens = 3e8, 8 * 1e9
    w_N, _ = term_shares(8, n, tokens / 8, SIM_TRUE["A"], SIM_TRUE["B"], **PAPER)
    truth = compute_optimal_move(2.0, w_N, **PAPER)
    table = iso_loss(tree, 8, 16, n_params=n, n_tokens=tokens)
    for name in ("N", "D_tot", "C"):
        assert table.loc[name, "q05"] <= truth[name] <= table.loc[name, "q95"], (name, table)
    with pytest.raises(ValueError, match="both"):
        iso_loss(tree, 8, 16, n_params=n)


@pytest.mark.statistical
def test_per_language_law_recovers_each_languages_exponents():
    """curse-h: per-language phi and psi differ; each language's interval covers its own.

    The other parameters are the same for every language in this simulation, and the fit
    shares them (`shared`). With them per language too, four languages leave the population
    spreads loose and NUTS diverges in the E-B-beta ridge (measured: 5 divergences at
    target_accept 0.95, 2 at 0.98; non-centred: 17); shared: none, 188 steps per draw.
    """
    phi = {"en": 0.06, "fr": 0.11, "ru": 0.16, "zh": 0.12}
    psi = {"en": -0.08, "fr": -0.04, "ru": 0.0, "zh": -0.05}
    runs = simulate_curse(capacity_design(), {**SIM_TRUE, "phi": phi, "psi": psi}, seed=5)
    tree = fit(runs, "curse-h", sampler=CURSE_SAMPLER, warn=False,
               options={"shared": ["E", "A", "B", "alpha", "beta"]})
    diag = json.loads(tree.attrs["diagnostics"])
    assert diag["divergences"] == 0 and diag["max_r_hat"] <= 1.02, diag
    covered = 0
    for name, truth in (("phi", phi), ("psi", psi)):
        for lang, value in truth.items():
            low, high = np.quantile(tree.posterior[name].sel(language=lang).values, [0.05, 0.95])
            covered += int(low <= value <= high)
    assert covered >= 7, covered
    # and the languages are told apart: en's phi below ru's with high probability
    post = tree.posterior["phi"]
    assert float((post.sel(language="en") < post.sel(language="ru")).mean()) > 0.95


@pytest.mark.unit
def test_a_table_with_one_mixture_size_is_refused():
    runs = simulate_curse(capacity_design(ks=(4,)), SIM_TRUE)
    with pytest.raises(ValueError, match="different numbers of languages"):
        fit(runs, "curse", sampler=CURSE_SAMPLER)


@pytest.mark.e2e
def test_cli_curse_prints_one_json_object(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "capacity.csv"
    simulate_curse(capacity_design(), SIM_TRUE, seed=0).to_csv(path, index=False)
    result = subprocess.run([sys.executable, "-m", "atlas_bayes.cli", "curse", str(path),
                             "--from-k", "8", "--to-k", "16", "--chains", "2", "--draws", "200",
                             "--warmup", "200", "--out", str(tmp_path / "out"), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["law"] == "curse" and out["start"] == "compute-optimal"
    assert set(out["multipliers"]) == {"N", "D_t", "D_tot", "C"}
    assert out["multipliers"]["D_tot"]["q05"] < out["multipliers"]["D_tot"]["median"] < 2.0
    assert (tmp_path / "out" / "iso_loss.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, "-m", "atlas_bayes.cli", "curse", str(path),
                          "--from-k", "8", "--to-k", "16", "--n-params", "1e8"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "both" in bad.stderr and "Traceback" not in bad.stderr
