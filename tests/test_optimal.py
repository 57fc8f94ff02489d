"""Compute-optimal allocation: closed form, repetition-aware search, coverage, trajectories,
efficiency tax, the CLI (the optimum on Muennighoff et al.'s repeated-data runs is in
test_real_data.py, on that file's DCSL fit)."""

import functools
import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from atlas_bayes.fitting.inference import fit
from atlas_bayes.fitting.draws import LawDraws, law_draws, predicted_loss
from atlas_bayes.decisions.optimal import allocation, chinchilla_optimum, compute_for_loss, efficiency_tax, optimal, plot_trajectories, trajectories
from atlas_bayes.simulation.simulate import monolingual_design, simulate
from conftest import QUICK, cli_args, seeded

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31, "lambda": 0.1}
U_SIM = 3e9
SMALL = QUICK
# Muennighoff et al. (2023), C4 fit (huggingface/datablations README "Parametric Fit").
MUENNIGHOFF = {"E": np.exp(0.6254804), "A": np.exp(6.255414), "B": np.exp(7.3049974),
               "alpha": 0.3526596, "beta": 0.3526596, "R_D_star": 15.387756,
               "R_N_star": 5.309743}


def random_draws(kind, n=300, seed=0, unique_tokens=np.inf):
    """Parameter sets spread over plausible laws (alpha != beta), as if posterior draws."""
    rng = np.random.default_rng(seed)
    p = {"E": rng.uniform(1, 2, n), "A": np.exp(rng.normal(6, 0.5, n)),
         "B": np.exp(rng.normal(7, 0.5, n)), "alpha": rng.uniform(0.25, 0.5, n),
         "beta": rng.uniform(0.25, 0.5, n), "lambda": rng.uniform(0.02, 0.3, n),
         "R_D_star": rng.uniform(5, 50, n), "R_N_star": rng.uniform(2, 50, n)}
    return LawDraws(kind, p, unique_tokens=unique_tokens)


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["chinchilla", "dcsl", "atlas"])
def test_numerical_search_matches_the_closed_form_without_repetition(kind):
    draws = random_draws(kind)
    searched = allocation(draws, 1e21, solver="numerical")
    N, D = chinchilla_optimum(1e21, *(draws.params[k] for k in ("A", "B", "alpha", "beta")))
    assert np.max(np.abs(searched["N"] / N - 1)) < 1e-4
    assert np.max(np.abs(searched["D"] / D - 1)) < 1e-4
    assert not searched["repeated"].any() and not searched["at_bound"].any()
    auto = allocation(draws, 1e21)
    assert np.array_equal(auto["N"], N)
    # a minimum along the iso-compute line: 1% more or fewer parameters cost loss
    for step in (0.99, 1.01):
        assert np.all(predicted_loss(draws, N * step, D / step) > auto["loss"])


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["atlas", "dcsl"])
def test_repetition_aware_optimum_matches_a_brute_force_search(kind):
    C, U = 1e21, 1e10
    draws = random_draws(kind, n=12, seed=1, unique_tokens=U)
    got = allocation(draws, C)
    assert got["repeated"].mean() > 0.5
    for i in range(draws.n):  # brute force, one draw at a time (the test, not the method)
        one = LawDraws(kind, {k: v[i:i + 1] for k, v in draws.params.items()}, unique_tokens=U)
        n = np.geomspace(1e6, C / 6e6, 400_001)
        loss = predicted_loss(one, n[None, :], C / (6 * n[None, :]))[0]
        # never worse than the dense grid's best point; DCSL's loss can be flat in N once both
        # N' and D' saturate, so compare losses (and N only for ATLAS, whose optimum is sharp)
        assert got["loss"][i] <= loss.min() * (1 + 1e-12)
        if kind == "atlas":
            assert got["N"][i] == pytest.approx(n[np.argmin(loss)], rel=2e-4)


@pytest.mark.unit
def test_repetition_bends_the_atlas_optimum_to_more_parameters_and_fewer_tokens():
    """ATLAS's saturation devalues repeated tokens (and, unlike DCSL, never parameters), so a
    small U moves the optimum to more N and fewer D than Chinchilla; as U grows the optimum
    straightens back to the closed form."""
    truth = LawDraws("atlas", TRUTH)
    C = 1e21
    N_c, D_c = chinchilla_optimum(C, TRUTH["A"], TRUTH["B"], TRUTH["alpha"], TRUTH["beta"])
    sizes = []
    for U in (1e9, 1e10, 3e10, 1e11, 1e12):
        r = allocation(truth, C, unique_tokens=U)
        sizes.append(r["N"][0])
        if U < D_c:
            assert r["N"][0] > N_c * 1.01 and r["D"][0] < D_c / 1.01 and r["D"][0] > U
        else:
            assert r["N"][0] == pytest.approx(N_c, rel=1e-12)
    assert np.all(np.diff(sizes) < 0) or np.allclose(sizes[-2:], N_c)


@pytest.mark.unit
def test_reproduces_muennighoffs_published_optimum():
    """Their README: at the compute of 8.67B parameters x 178B tokens with 25B unique tokens,
    the DCSL optimum is '227B tokens, 9.1 epochs, 6.8B parameters' (their grid search)."""
    draws = LawDraws("dcsl", MUENNIGHOFF, unique_tokens=25e9)
    r = allocation(draws, 6 * 8.67e9 * 178e9)
    assert r["D"][0] == pytest.approx(227e9, rel=0.01)
    assert r["D"][0] / 25e9 == pytest.approx(9.1, abs=0.05)
    assert r["N"][0] == pytest.approx(6.8e9, rel=0.01)
    assert r["N"][0] < r["chinchilla_N"][0]  # "many epochs, fewer params"


@functools.cache
def simulated_fit(seed: int):
    runs = simulate(monolingual_design("sw", unique_tokens=U_SIM), "atlas-dt", TRUTH, seed=seed)
    sampler = seeded(SMALL, seed)
    return fit(runs, "atlas-dt", sampler=sampler, warn=False)


@pytest.mark.statistical
def test_intervals_cover_the_true_optimum():
    """Four simulated studies (45 runs each, data repeated up to ~35 epochs), budgets inside
    and 10x beyond the largest run. The truth's optimum repeats data at both budgets; the 90%
    intervals of N* (equivalently D* = C/6N*) and of the predicted loss at the optimum must
    cover it in at least 12 of the 16 (seed, budget, quantity) cases (nominal: 14.4)."""
    truth = LawDraws("atlas", TRUTH, unique_tokens=U_SIM)
    hits = []
    for seed in range(4):
        tree = simulated_fit(seed)
        for C in (1e19, 1e20):
            true = allocation(truth, C)
            assert true["repeated"][0]
            table = optimal(tree, C).table()
            for name in ("N", "loss"):
                hits.append(table.loc[name, "q05"] <= true[name][0] <= table.loc[name, "q95"])
            # D* is the same interval mapped through C/6N (up to quantile interpolation)
            assert table.loc["D", "q05"] == pytest.approx(C / (6 * table.loc["N", "q95"]), rel=1e-3)
    assert sum(hits) >= 12, hits


@pytest.mark.statistical
def test_unique_tokens_come_from_the_fit_data_and_can_be_overridden():
    tree = simulated_fit(0)
    draws = law_draws(tree)
    assert draws.unique_tokens == U_SIM and draws.language == "sw"
    assert "fit data" in draws.unique_tokens_source
    free = optimal(tree, 1e20, unique_tokens=np.inf)
    limited = optimal(tree, 1e20)
    assert free.result["repeated"].mean() == 0
    assert np.median(limited.result["N"]) > np.median(free.result["N"])
    assert json.dumps(limited.as_dict())  # plain JSON


@pytest.mark.statistical
def test_trajectories_and_plot(tmp_path):
    tree = simulated_fit(0)
    budgets = np.geomspace(1e17, 1e22, 8)
    table = trajectories({"sw, 3B unique": (tree, "sw"), "sw, unlimited": (tree, "sw")},
                         budgets, unique_tokens={"sw, unlimited": np.inf},
                         max_draws=200)
    assert len(table) == 16
    for _, rows in table.groupby("label"):
        assert np.all(np.diff(rows["N_median"]) > 0) and np.all(np.diff(rows["D_median"]) > 0)
        assert np.all((rows["N_lo"] <= rows["N_median"]) & (rows["N_median"] <= rows["N_hi"]))
    big = table[table["compute"] == budgets[-1]].set_index("label")
    assert big.loc["sw, 3B unique", "N_median"] > big.loc["sw, unlimited", "N_median"]
    assert big.loc["sw, 3B unique", "p_repeated"] == 1.0
    plot_trajectories(table, tmp_path / "trajectory.png")
    assert (tmp_path / "trajectory.png").stat().st_size > 10_000


@pytest.mark.unit
def test_efficiency_tax_matches_the_closed_form():
    """Regime B = regime A with both reducible terms m times larger: at equal loss it needs
    m^(1/gamma) times the compute, gamma = alpha beta / (alpha + beta)."""
    a = random_draws("chinchilla", n=200, seed=2)
    m = 1.2
    b = LawDraws("chinchilla", {**a.params, "A": a.params["A"] * m, "B": a.params["B"] * m})
    gamma = a.params["alpha"] * a.params["beta"] / (a.params["alpha"] + a.params["beta"])
    tax = efficiency_tax(a, b, compute=1e21)
    assert np.allclose(tax["ratio_draws"], m ** (1 / gamma), rtol=1e-9)
    assert tax["p_tax"] == 1.0 and tax["p_unreachable_b"] == 0.0
    same = efficiency_tax(a, a, target_loss=2.5)
    finite = np.isfinite(same["ratio_draws"])
    assert np.allclose(same["ratio_draws"][finite], 1.0)
    # a target below a draw's irreducible loss E is unreachable: counted, never hidden
    assert same["p_unreachable_a"] == pytest.approx(np.mean(a.params["E"] >= 2.5))


@pytest.mark.unit
def test_efficiency_tax_with_repetition_inverts_the_optimal_loss():
    draws = LawDraws("atlas", TRUTH, unique_tokens=U_SIM)
    loss = allocation(draws, 1e20)["loss"]
    assert compute_for_loss(draws, loss)[0] == pytest.approx(1e20, rel=1e-6)
    unlimited = draws.with_unique_tokens(np.inf)
    tax = efficiency_tax(unlimited, draws, compute=1e20)
    assert tax["ratio_draws"][0] > 1  # repeating data costs compute for the same loss
    # ATLAS saturates: a loss below E + B / (U (1 + 1/lambda))^beta is never reached
    floor = TRUTH["E"] + TRUTH["B"] / (U_SIM * (1 + 1 / TRUTH["lambda"])) ** TRUTH["beta"]
    assert np.isinf(compute_for_loss(draws, floor * 0.999)[0])


@pytest.mark.statistical
def test_clear_errors_for_bad_inputs():
    tree = simulated_fit(0)
    with pytest.raises(ValueError, match="too small"):
        optimal(tree, 1e9)
    with pytest.raises(ValueError, match="language 'fr' was not fitted; fitted: sw"):
        optimal(tree, 1e20, language="fr")
    with pytest.raises(ValueError, match="positive number of tokens"):
        optimal(tree, 1e20, unique_tokens=-5)
    with pytest.raises(ValueError, match="positive number of FLOPs"):
        optimal(tree, float("nan"))
    with pytest.raises(ValueError, match="exactly one of compute"):
        efficiency_tax(tree, tree)
    curse = xr.DataTree()
    curse.attrs["law"] = "curse"
    with pytest.raises(ValueError, match="iso_loss"):
        law_draws(curse)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "atlas_bayes.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_cli_optimal_json_and_errors(tmp_path):
    path = tmp_path / "runs.csv"
    simulate(monolingual_design("sw", unique_tokens=U_SIM), "atlas-dt", TRUTH, seed=5).to_csv(
        path, index=False)
    out = tmp_path / "out"
    result = cli("optimal", path, "--lang", "sw", "--compute", "1e20", "--law", "atlas-dt",
                 "--out", out, "--json", *cli_args(SMALL))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["law"] == "atlas-dt" and summary["language"] == "sw"
    assert summary["compute"] == 1e20 and summary["unique_tokens"] == U_SIM
    alloc = summary["allocation"]
    assert set(alloc) >= {"N", "D", "loss", "tokens_per_param", "epochs"}
    assert alloc["N"]["q05"] <= alloc["N"]["median"] <= alloc["N"]["q95"]
    assert 0 <= summary["p_repeated"] <= 1 and summary["trajectory"]
    for name in ("posterior.nc", "optimal.json", "trajectory.png"):
        assert (out / name).is_file(), name
    # a saved posterior is reused without refitting; --unique-tokens overrides the data's U
    # (SMALL's short chains may miss R-hat 1.01, and a flagged saved fit is refused without
    # --accept-unconverged: tests/test_verdict.py)
    again = cli("optimal", out / "posterior.nc", "--compute", "1e20", "--unique-tokens", "1e15",
                "--out", tmp_path / "again", "--json", "--accept-unconverged")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["p_repeated"] == 0.0
    missing = cli("optimal", out / "posterior.nc", "--lang", "fr", "--compute", "1e20",
                  "--accept-unconverged")
    assert missing.returncode == 2 and "'fr' was not fitted" in missing.stderr
    small = cli("optimal", path, "--lang", "sw", "--compute", "1e6")
    assert small.returncode == 2 and "too small" in small.stderr
    assert "Traceback" not in missing.stderr + small.stderr
