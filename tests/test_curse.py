"""Curse of multilinguality: the law and iso-loss scaling when adding languages."""

import numpy as np
import pytest

from atlas_bayes import laws
from atlas_bayes.curse import (compute_optimal_move, paper_multipliers, parameters_for_tokens,
                               term_shares, tokens_for_parameters)

# The paper's pooled exponents (phi, psi printed; alpha, beta derived from Fig. 5's ratios).
PAPER = {"alpha": 0.45, "beta": 0.147, "phi": 0.11, "psi": -0.04}
TRUE = {"E": 1.2, "A": 400.0, "B": 900.0, **PAPER}


@pytest.mark.parametrize("r, params_x, tokens_x", [(2, 1.18, 1.66), (4, 1.40, 2.74),
                                                   (8, 1.66, 4.54), (16, 1.96, 7.52)])
def test_closed_forms_reproduce_the_papers_table(r, params_x, tokens_x):
    m = paper_multipliers(r, **PAPER)
    assert m["N"] == pytest.approx(params_x, rel=0.01)
    assert m["D_tot"] == pytest.approx(tokens_x, rel=0.01)
    assert m["C"] == pytest.approx(m["N"] * m["D_tot"])


def _loss(K, N, D_t, p=TRUE):
    """The law in float64 numpy (laws.log_curse is checked against it below)."""
    return (p["E"] + p["A"] * K ** p["phi"] / N ** p["alpha"]
            + p["B"] * K ** p["psi"] / D_t ** p["beta"])


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


def test_compute_optimal_start_gives_the_papers_closed_forms():
    K, r = 8, 2
    N, D_t = _compute_optimal_start(K, 1e21)
    w_N, _ = term_shares(K, N, D_t, TRUE["A"], TRUE["B"], **PAPER)
    assert w_N == pytest.approx(PAPER["beta"] / (PAPER["alpha"] + PAPER["beta"]), abs=0.01)
    move, paper = compute_optimal_move(r, w_N, **PAPER), paper_multipliers(r, **PAPER)
    for key in ("N", "D_tot", "C"):
        assert move[key] == pytest.approx(paper[key], rel=0.02), key


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


def test_infeasible_moves_are_nan_not_wrong_numbers():
    """Too small a model cannot be rescued by data (and vice versa): NaN, not a number."""
    w_N = 0.5
    s_floor = (2.0 ** PAPER["phi"] * w_N) ** (1 / PAPER["alpha"])
    assert np.isnan(tokens_for_parameters(2.0, 0.99 * s_floor, w_N, **PAPER))
    assert np.isfinite(tokens_for_parameters(2.0, 1.01 * s_floor, w_N, **PAPER))
    t_floor = (2.0 ** PAPER["psi"] * (1 - w_N)) ** (1 / PAPER["beta"])
    assert np.isnan(parameters_for_tokens(2.0, 0.99 * t_floor, w_N, **PAPER))


def test_multipliers_broadcast_over_posterior_draws():
    draws = {k: np.full((2, 50), v) * np.random.default_rng(0).uniform(0.9, 1.1, (2, 50))
             for k, v in PAPER.items()}
    move = compute_optimal_move(2.0, 0.3, **draws)
    assert all(v.shape == (2, 50) for v in move.values())
    assert np.all(np.isfinite(move["C"]))
