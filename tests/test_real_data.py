"""Every law fitted to the real public data in ../shared/data (read in place, never copied).

* Chinchilla on Epoch AI's reconstruction of Hoffmann et al.'s Figure 4 must reproduce
  Besiroglu et al. (2024): posterior medians inside their 95% bootstrap intervals.
* DCSL and ATLAS (D_t only) on Muennighoff et al.'s 182 repeated-data runs must converge,
  predict the runs well and beat Chinchilla, which ignores repetition.
* Goldfish gives at most 4 runs per language: too few to identify a scaling law, and MSL's
  gamma cannot be learnt from monolingual data. The tests record both facts.

Fits are cached per (data, law), so each is sampled once however many tests read it.
"""

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from atlas_bayes import laws
from atlas_bayes.tables.adapters import load_shared
from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.decisions.optimal import allocation
from atlas_bayes.fitting.draws import law_draws, predicted_loss
from atlas_bayes.fitting.inference import fit
from atlas_bayes.fitting.law_inputs import build_inputs
from atlas_bayes.fitting.plots import predictive_intervals
from atlas_bayes.tables.runs import RunTableWarning
from atlas_bayes.fitting.summary import parameter_table
from conftest import RECOVERY, REPEATED, real_data_fit

SAMPLER = RECOVERY
# On the repeated-data runs the Chinchilla-form posteriors have a long tail towards low E
# (small alpha and A). With warmup=draws=500 and target_accept=0.9, ATLAS hit divergences
# and R-hat up to 1.09 on some seeds (seed 2: 31 divergences); with the settings below it
# converged on all 5 seeds tried (max R-hat <= 1.008, min bulk ESS >= 870).
REPEATED_SAMPLER = REPEATED       # conftest.REPEATED

# Besiroglu et al. (2024), 95% bootstrap intervals of their refit on the 240 Epoch points.
BESIROGLU_95 = {"E": (1.769, 1.871), "A": (285.2, 743.6), "B": (1042.4, 5810.3),
                "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}
# Muennighoff et al. (2023) C4 fit: base law with tied exponents, then the decay constants.
MUENNIGHOFF = {"E": np.exp(0.6254804), "A": np.exp(6.255414), "B": np.exp(7.3049974),
               "alpha": 0.3526596, "beta": 0.3526596, "R_D_star": 15.387756,
               "R_N_star": 5.309743}


def quiet_load(name, shared_data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)  # Goldfish languages outside our metadata
        return load_shared(name, shared_data, **options)


cached_fit = real_data_fit        # conftest: one fit per worker, shared with test_optimal


def epoch_fit(shared_data, drop):
    return cached_fit(shared_data, "epoch_chinchilla", "chinchilla",
                      (("drop_epoch_outliers", drop),))


def datablations_fit(shared_data, law):
    return cached_fit(shared_data, "datablations", law, (("subset", "fit182"),), REPEATED_SAMPLER)


def diagnostics(tree) -> dict:
    return json.loads(tree.attrs["diagnostics"])


def assert_converged(tree):
    diag = diagnostics(tree)
    assert diag["divergences"] == 0, diag
    assert diag["max_r_hat"] <= 1.01, diag
    assert diag["min_ess_bulk"] >= 400, diag


def fit_quality(tree) -> dict:
    """90% predictive coverage, R^2 on loss and median |log error| of the predictive median."""
    observed = np.exp(tree.observed_data["log_loss"].values.astype(float))
    median, low, high = predictive_intervals(tree, 0.9)
    residual = observed - median
    return {
        "coverage": float(np.mean((observed >= low) & (observed <= high))),
        "r2": float(1 - np.sum(residual ** 2) / np.sum((observed - observed.mean()) ** 2)),
        "median_abs_log_error": float(np.median(np.abs(np.log(observed / median)))),
    }


def interval(tree, name, prob):
    draws = tree.posterior[name].values.ravel()
    return tuple(np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2]))


# --- Chinchilla on Epoch AI's 240 (245) points ----------------------------------------------

@pytest.mark.statistical
@pytest.mark.parametrize("drop, n_obs", [(True, 240), (False, 245)])
def test_chinchilla_on_epoch_matches_besiroglu(shared_data, drop, n_obs):
    """Medians inside Besiroglu et al.'s 95% bootstrap intervals, with or without the outliers.

    Measured (seed 0), 240 points: E 1.813, A 484, B 1956, alpha 0.348, beta 0.363
    (95% credible: E 1.784-1.843, A 358-652, B 1341-2915, alpha 0.330-0.366, beta 0.344-0.382);
    245 points: E 1.823, A 488, B 2409, alpha 0.349, beta 0.373. The Student-t likelihood
    keeps the 5 outliers (losses 3.45 to 5.01) from dragging the fit; only B moves noticeably.
    """
    tree = epoch_fit(shared_data, drop)
    assert int(tree.attrs["n_obs"]) == n_obs
    assert_converged(tree)
    medians = parameter_table(tree)["median"]
    outside = {name: (round(float(medians[name]), 4), bounds)
               for name, bounds in BESIROGLU_95.items()
               if not bounds[0] <= medians[name] <= bounds[1]}
    assert not outside, f"posterior medians outside Besiroglu et al.'s 95% intervals: {outside}"
    # Measured coverage of the 90% predictive intervals: 0.896 (240), 0.902 (245).
    assert fit_quality(tree)["coverage"] >= 0.8


@pytest.mark.statistical
def test_outliers_barely_move_the_epoch_fit(shared_data):
    """Measured shifts from 240 to 245 points: E +0.5%, A +1%, alpha +0.1%, beta +2.7%, B +23%."""
    kept, everything = (parameter_table(epoch_fit(shared_data, drop))["median"]
                        for drop in (True, False))
    for name in ("E", "A", "alpha", "beta"):
        assert abs(everything[name] / kept[name] - 1) < 0.05, (name, kept[name], everything[name])
    assert abs(np.log(everything["B"] / kept["B"])) < np.log(1.5)  # B is the loosest (SE 62%)


# --- Muennighoff et al.'s 182 repeated-data runs ----------------------------------------------

@pytest.mark.unit
def test_dcsl_law_reproduces_muennighoff_r2(shared_data):
    """Our DCSL law with Muennighoff's published constants gives their R^2 on the 182 runs.

    They report 0.7722 for the final law and 0.4452 without decay; this checks the law
    itself (effective data D', effective parameters N', U_N), independent of any sampling.
    """
    runs = quiet_load("datablations", shared_data, subset="fit182")
    N, D, U, loss = (runs[c].to_numpy(float) for c in ("n_params", "n_tokens", "unique_tokens", "loss"))
    p = MUENNIGHOFF

    def r2(predicted):
        predicted = np.asarray(predicted, dtype=float)
        return 1 - np.sum((loss - predicted) ** 2) / np.sum((loss - loss.mean()) ** 2)

    decayed = laws.dcsl(N, D, U, p["E"], p["A"], p["B"], p["alpha"], p["beta"],
                        p["R_D_star"], p["R_N_star"])
    plain = laws.chinchilla(N, D, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    assert r2(decayed) == pytest.approx(0.7722, abs=2e-3)
    assert r2(plain) == pytest.approx(0.4452, abs=2e-3)


@pytest.mark.statistical
@pytest.mark.parametrize("law", ["dcsl", "atlas-dt"])
def test_repetition_laws_fit_the_repeated_data(shared_data, law):
    """Converged, calibrated and accurate on the 182 runs (1 to 500 epochs).

    Measured (seed 0): 90% predictive coverage 0.91 (DCSL) and 0.89 (ATLAS); R^2 on loss of
    the predictive median 0.940 (DCSL) and 0.936 (ATLAS). The threshold 0.90 sits below that with room for
    sampling noise, and far above the 0.77 of Muennighoff's own two-stage fit (base law frozen
    from single-epoch runs, exponents tied): a joint fit of all parameters to these runs
    should do at least as well in sample.
    """
    tree = datablations_fit(shared_data, law)
    assert int(tree.attrs["n_obs"]) == 182
    assert_converged(tree)
    quality = fit_quality(tree)
    assert quality["coverage"] >= 0.8, quality
    assert quality["r2"] >= 0.90, quality


@pytest.mark.statistical
def test_repetition_constants_are_finite_and_positive(shared_data):
    """R_D* (DCSL and ATLAS, where R_D* = 1/lambda) and R_N* (DCSL) posterior intervals.

    Measured (seed 0, 99% intervals): DCSL R_D* median 46 (29 to 83), R_N* median 47
    (14 to 208); ATLAS R_D* median 30 (23 to 42). Muennighoff's R_D* = 15.4 and R_N* = 5.3
    lie OUTSIDE these intervals, so that is not asserted. Their values come from a two-stage
    fit: E, A, B and one tied exponent (0.353) frozen from single-epoch runs, then only the
    decay constants fitted (Huber on log loss, L-BFGS from a grid over 0 to 20). Here all
    parameters are fitted jointly, with free exponents (DCSL: alpha 0.42, beta 0.40, E 2.13)
    and a Student-t likelihood. Even with their base law frozen, the decay constants are
    barely identified: their Huber objective on these runs is flat along a ridge where R_D*
    rises as R_N* falls (0.015826 at (15.4, 5.3), 0.015813 at (40, 2.5), 0.015805 at
    (95, 1.7); measured with our law, which reproduces their R^2, see
    test_dcsl_law_reproduces_muennighoff_r2). R_N*'s posterior also sits far above its prior
    (99% prior range 0.7 to 35): once the base law is free, these runs show little penalty
    for excess parameters.
    """
    dcsl, atlas = datablations_fit(shared_data, "dcsl"), datablations_fit(shared_data, "atlas-dt")
    for tree, name in ((dcsl, "R_D_star"), (dcsl, "R_N_star"), (atlas, "R_D_star")):
        low, high = interval(tree, name, 0.99)
        assert np.isfinite([low, high]).all() and 0 < low < high, (tree.attrs["law"], name, low, high)
    # Both laws agree that repeated data decays: R_D* is well inside (1, 500 epochs).
    for tree in (dcsl, atlas):
        low, high = interval(tree, "R_D_star", 0.99)
        assert 1 < low and high < 500, (tree.attrs["law"], low, high)


@pytest.mark.statistical
def test_repetition_laws_beat_chinchilla_on_repeated_data(shared_data):
    """ATLAS and DCSL predict the repeated-data runs better than Chinchilla.

    Measured (seed 0): R^2 0.940 (DCSL), 0.936 (ATLAS), 0.907 (Chinchilla); median |log error|
    0.027, 0.022, 0.032; 90% coverage 0.91, 0.89, 0.87. Chinchilla also needs a wider noise
    scale (sigma 0.048 vs 0.038 and 0.035).
    """
    chinchilla = datablations_fit(shared_data, "chinchilla")
    # Chinchilla is misspecified here (it treats the 500th epoch like fresh data); its posterior
    # has a long low-E tail where NUTS now and then diverges (measured: 0 or 1 divergences,
    # max R-hat 1.003 to 1.016 over 5 seeds), which does not affect the comparison of fit.
    diag = diagnostics(chinchilla)
    assert diag["max_r_hat"] <= 1.05 and diag["divergences"] <= 10, diag
    baseline = fit_quality(chinchilla)
    for law in ("dcsl", "atlas-dt"):
        better = fit_quality(datablations_fit(shared_data, law))
        assert better["r2"] > baseline["r2"] + 0.01, (law, better, baseline)
        assert better["median_abs_log_error"] < baseline["median_abs_log_error"], (law, better, baseline)


# --- the repetition-aware optimum on the same fit (Muennighoff et al.'s setting) ------------

@pytest.mark.statistical
def test_datablations_repetition_aware_optimum(shared_data):
    """DCSL fitted to Muennighoff et al.'s 182 C4 runs, then their setting: 25B unique tokens
    and the compute of 8.67B parameters x 178B tokens (9.3e21 FLOPs). Qualitative properties:
    (i) the optimum repeats the data many times (their 9.1 epochs; ours > 4 with 95%
    posterior probability), and beats spending the compute on a bigger model over one epoch;
    (ii) up to ~4 epochs repetition is nearly free: at the budget whose Chinchilla optimum
    is 4 epochs the optimal loss rises under 0.5% over unique data, 40 epochs at least 5x more.
    (The direction of the bend is not asserted: see benchmarks/optimal_datablations.py.)"""
    # the DCSL fit checked above (4 chains x 1000 + 1000 draws; moved here from test_optimal.py,
    # which sampled its own 2 x 250 + 250, so the suite fits these runs once)
    tree = datablations_fit(shared_data, "dcsl")
    U, C = 25e9, 6 * 8.67e9 * 178e9
    draws = law_draws(tree, unique_tokens=U)
    r = allocation(draws, C)
    assert np.mean(r["D"] / U > 4) >= 0.95
    one_epoch = predicted_loss(draws, C / (6 * U), np.full(draws.n, U))
    assert np.mean(r["loss"] < one_epoch) >= 0.95

    p = draws.params
    rise = {}
    for epochs in (4, 40):
        # the budget at which each draw's Chinchilla optimum trains `epochs` epochs on U
        budget = _budget_for_tokens(p, epochs * U)
        limited = allocation(draws, budget)["loss"]
        free = allocation(draws.with_unique_tokens(np.inf), budget)["loss"]
        rise[epochs] = limited / free - 1
    assert np.mean(rise[4] < 0.005) >= 0.9, np.quantile(rise[4], [0.05, 0.5, 0.95])
    assert np.median(rise[40]) > 5 * np.median(rise[4])


def _budget_for_tokens(p, D):
    """Per draw, the compute whose Chinchilla optimum trains on D tokens."""
    log_G = (np.log(p["alpha"] * p["A"]) - np.log(p["beta"] * p["B"])) / (p["alpha"] + p["beta"])
    # D* = G^-1 (C/6)^(alpha/(alpha+beta))  =>  C = 6 (D G)^((alpha+beta)/alpha)
    return 6 * np.exp((np.log(D) + log_G) * (p["alpha"] + p["beta"]) / p["alpha"])


# --- Goldfish: one language, four runs ------------------------------------------------------

def goldfish_language(runs) -> str:
    """The language with the most runs, none scored by a proxy model, widest token range."""
    proxy = runs["notes"].str.contains("proxy_model=1", regex=False)
    per_language = runs.assign(proxy=proxy).groupby("language").agg(
        n=("loss", "size"), proxy=("proxy", "any"), top=("n_tokens", "max"))
    candidates = per_language[(per_language["n"] == per_language["n"].max()) & ~per_language["proxy"]]
    return str(candidates.sort_values(["top"], ascending=False).index[0])


@functools.cache
def goldfish_fits(shared_data: Path):
    runs = quiet_load("goldfish", shared_data)
    language = goldfish_language(runs)
    fits, caught = {}, {}
    for law in ("chinchilla", "msl"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", ConvergenceWarning)
            fits[law] = fit(runs, law, language=language, sampler=SAMPLER, warn=True)
        caught[law] = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
    return runs, language, fits, caught


@pytest.mark.statistical
def test_goldfish_language_choice(shared_data):
    runs, language, _, _ = goldfish_fits(shared_data)
    # Goldfish has at most 4 sizes per language (5mb, 10mb, 100mb, and 1000mb or full).
    # Measured: 143 languages have 4 runs; Irish (gle_Latn) has the largest token count.
    chosen = runs[runs["language"] == language]
    assert len(chosen) == runs.groupby("language").size().max() == 4
    assert chosen["n_params"].nunique() == 2  # ~39M (5mb, 10mb) and 124.8M parameters


@pytest.mark.statistical
@pytest.mark.parametrize("law", ["chinchilla", "msl"])
def test_goldfish_four_runs_cannot_identify_a_law(shared_data, law):
    """Four runs, two model sizes, six or seven parameters: the sampler cannot converge.

    Measured (seeds 0, 1, 2): max R-hat 1.024 to 1.19, min bulk ESS 16 to 149, no
    divergences; the 90% interval of A spans four orders of magnitude. The fit warns about
    it, as a user would see, rather than returning confident intervals.
    """
    _, _, fits, caught = goldfish_fits(shared_data)
    diag = diagnostics(fits[law])
    assert diag["max_r_hat"] > 1.01 or diag["min_ess_bulk"] < 400, diag
    assert caught[law], "expected a ConvergenceWarning"
    assert any("R-hat above" in m or "bulk ESS below" in m for m in caught[law]), caught[law]


@pytest.mark.statistical
def test_goldfish_msl_gamma_is_prior_only(shared_data):
    """Monolingual data has p_family = 1, so log p_family = 0 and gamma leaves the likelihood.

    gamma's posterior is its prior Normal(0, 0.25): measured sd 0.22 to 0.25, median ~0.01.
    """
    runs, language, fits, _ = goldfish_fits(shared_data)
    inputs, _, _ = build_inputs(runs[runs["language"] == language].reset_index(drop=True))
    assert np.all(inputs.p_family == 1.0)
    gamma = fits["msl"].posterior["gamma"].values.ravel()
    assert gamma.std() > 0.15
    assert abs(np.median(gamma)) < 0.1
