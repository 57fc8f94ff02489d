"""The law functions against closed forms and the papers' stated properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atlas_bayes import laws

pytestmark = pytest.mark.unit

HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def test_chinchilla_matches_the_formula():
    N, D = np.array([1e8, 7e10]), np.array([2e9, 1.4e12])
    expected = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    np.testing.assert_allclose(laws.chinchilla(N, D, **HOFFMANN), expected, rtol=1e-5)


def test_saturation_is_identity_up_to_one_epoch_and_saturates_after():
    U, lam = 1e9, 0.065
    D = np.array([1e8, 1e9, 2e9, 1e11, 1e14])
    S = np.asarray(laws.saturation(D, U, lam))
    np.testing.assert_allclose(S[:2], D[:2], rtol=1e-6)
    assert np.all(np.diff(S) > 0)
    np.testing.assert_allclose(S[-1], U * (1 + 1 / lam), rtol=1e-4)
    # slope 1 at one epoch: continuous first derivative
    slope = jax.grad(lambda d: laws.saturation(d, 1.0, lam))(1.0 + 1e-4)
    assert slope == pytest.approx(1.0, abs=1e-3)


def test_saturation_with_unknown_unique_tokens_never_saturates():
    D = jnp.array([1e9, 1e12])
    np.testing.assert_allclose(laws.saturation(D, jnp.inf, 0.1), D)
    grad = jax.grad(lambda lam: laws.saturation(1e12, jnp.inf, lam))(0.1)
    assert np.isfinite(grad)


def test_saturation_equals_muennighoff_effective_data():
    """S_lambda(D; U) is Muennighoff's D' with R_D* = 1 / lambda."""
    U, D, R_D_star = 1e9, np.array([1e9, 5e9, 4e10]), 15.387756
    R_D = D / U - 1
    d_prime = U + U * R_D_star * (1 - np.exp(-R_D / R_D_star))
    np.testing.assert_allclose(laws.saturation(D, U, 1 / R_D_star), d_prime, rtol=1e-5)


def test_atlas_reduces_to_chinchilla_without_repetition_or_transfer():
    N, D = np.array([1e8, 1e9]), np.array([1e9, 1e10])
    D_eff = laws.effective_data(D, np.inf, 0.1)
    np.testing.assert_allclose(laws.atlas(N, D_eff, **HOFFMANN), laws.chinchilla(N, D, **HOFFMANN),
                               rtol=1e-5)


def test_effective_data_adds_weighted_transfer_and_other_terms():
    D_t, D_i, D_o = 1e9, np.array([[5e8, 2e8]]), 3e9
    D_eff = laws.effective_data(np.array([D_t]), np.inf, 0.1, D_transfer=D_i,
                                U_transfer=np.full((1, 2), np.inf), tau=np.array([0.3, -0.1]),
                                D_other=np.array([D_o]), U_other=np.inf, tau_other=0.05)
    np.testing.assert_allclose(D_eff, D_t + 0.3 * 5e8 - 0.1 * 2e8 + 0.05 * D_o, rtol=1e-4)


def test_effective_data_stays_positive_under_strong_interference():
    D_eff = laws.effective_data(np.array([1e9]), np.inf, 0.1, D_other=np.array([1e11]),
                                U_other=np.inf, tau_other=-0.5)
    assert 0 < float(D_eff[0]) < 1e8


def test_dcsl_without_repetition_is_chinchilla():
    N, D = np.array([1e8, 2e8]), np.array([1e10, 4e10])  # N below U_N for these D
    loss = laws.dcsl(N, D, np.inf, R_D_star=15.4, R_N_star=5.3, **HOFFMANN)
    np.testing.assert_allclose(loss, laws.chinchilla(N, D, **HOFFMANN), rtol=1e-5)


def test_dcsl_matches_muennighoff_published_law():
    """Muennighoff et al.'s fitted C4 law, written out by hand for an over-sized, repeated run."""
    p = dict(E=np.exp(0.6254804), A=np.exp(6.255414), B=np.exp(7.3049974), alpha=0.3526596,
             beta=0.3526596, R_D_star=15.387756, R_N_star=5.309743)
    N, D, U = 8.7e9, 1.78e11, 4e9
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    U_N = min((U * G) ** (p["beta"] / p["alpha"]) * G, N)
    R_N, R_D = max(N / U_N - 1, 0), D / U - 1
    N_p = U_N + U_N * p["R_N_star"] * (1 - np.exp(-R_N / p["R_N_star"]))
    D_p = U + U * p["R_D_star"] * (1 - np.exp(-R_D / p["R_D_star"]))
    expected = p["E"] + p["A"] / N_p ** p["alpha"] + p["B"] / D_p ** p["beta"]
    assert float(laws.dcsl(N, D, U, **p)) == pytest.approx(expected, rel=1e-4)
    assert U_N < N  # the excess-parameter term is exercised


def test_msl_scales_by_family_share():
    base = laws.chinchilla(1e9, 1e10, **HOFFMANN)
    assert float(laws.msl(1e9, 1e10, 0.25, gamma=0.1, **HOFFMANN)) == pytest.approx(
        float(base) * 0.25**-0.1, rel=1e-5)


def test_laws_are_jittable_and_vectorise():
    f = jax.jit(jax.vmap(lambda n: laws.log_chinchilla(n, 1e10, **HOFFMANN)))
    assert f(jnp.array([1e8, 1e9])).shape == (2,)


# ---------------------------------------------------------------------------------------------
# Formulas shared by models, decisions, simulators, design and the trainer


@pytest.mark.unit
def test_learning_curve_matches_the_formula_and_tokens_for_loss_inverts_it():
    E, L_end, beta, d_end = 1.8, 2.3, 0.35, 4e9
    d = np.array([1e8, 1e9, 4e9, 3e10])
    expected = E + (L_end - E) * (d / d_end) ** -beta
    loss = laws.learning_curve(np.log(d / d_end), E, L_end - E, beta)
    assert isinstance(loss, np.ndarray) and loss.dtype == np.float64      # numpy in, float64 out
    np.testing.assert_allclose(loss, expected, rtol=1e-13)
    np.testing.assert_allclose(loss[2], L_end, rtol=1e-15)               # L_end at the anchor
    log_u = laws.tokens_for_loss(loss, E, L_end - E, beta)
    np.testing.assert_allclose(np.exp(log_u) * d_end, d, rtol=1e-12)
    np.testing.assert_allclose(laws.learning_curve(log_u, E, L_end - E, beta), loss, rtol=1e-14)
    # never reached at or below the floor; no warnings from the unused branch
    with np.errstate(all="raise"):
        assert np.all(np.isinf(laws.tokens_for_loss(np.array([E, E - 0.1]), E, L_end - E, beta)))


@pytest.mark.unit
def test_curve_formulas_give_jax_inside_jit_and_keep_gradients_finite():
    f = jax.jit(lambda L: laws.tokens_for_loss(L, 1.8, 0.5, 0.35))
    assert np.isinf(f(1.7)) and np.isfinite(jax.grad(lambda L: laws.tokens_for_loss(L, 1.8, 0.5, 0.35))(1.7))
    g = jax.jit(jax.grad(lambda b: laws.learning_curve(jnp.log(2.0), 1.8, 0.5, b)))(0.35)
    assert g == pytest.approx(-0.5 * np.log(2.0) * 2.0 ** -0.35, rel=1e-5)


@pytest.mark.unit
def test_scratch_and_finetune_curves_match_the_crossover_models_formulas():
    L0, B, beta, delta, D0 = 1.6, 0.4, 0.3, 0.05, 0.7
    u = np.array([0.1, 1.0, 20.0])
    np.testing.assert_allclose(laws.scratch_curve(u, L0, B, beta), [1.6 + 0.4 * 0.1 ** -0.3, 2.0,
                                                                   1.6 + 0.4 * 20 ** -0.3], rtol=1e-15)
    np.testing.assert_allclose(laws.finetune_curve(u, L0, B, beta, delta, D0),
                               1.65 + 0.4 * (u + 0.7) ** -0.3, rtol=1e-15)
    # the scratch curve is the learning curve with floor L0 and L_end = L0 + B at u = 1
    np.testing.assert_allclose(laws.scratch_curve(u, L0, B, beta),
                               laws.learning_curve(np.log(u), L0, B, beta), rtol=1e-14)
    # no head start and no penalty: finetuning is training from scratch
    np.testing.assert_allclose(laws.finetune_curve(u, L0, B, beta, 0.0, 0.0),
                               laws.scratch_curve(u, L0, B, beta), rtol=1e-15)


@pytest.mark.unit
def test_curse_natural_scale_matches_the_formula_and_its_log():
    p = dict(E=1.5, A=300.0, B=400.0, alpha=0.34, beta=0.28, phi=0.2, psi=0.1)
    K, N, D_t = np.array([1.0, 4.0, 16.0]), np.array([1e8, 1e9, 3e9]), np.array([2e9, 1e10, 5e10])
    expected = 1.5 + 300.0 * K ** 0.2 / N ** 0.34 + 400.0 * K ** 0.1 / D_t ** 0.28
    loss = laws.curse(K, N, D_t, **p)
    assert loss.dtype == np.float64
    np.testing.assert_allclose(loss, expected, rtol=1e-13)
    np.testing.assert_allclose(np.exp(laws.log_curse(K, N, D_t, **p)), expected, rtol=1e-5)
    log_n, log_d = laws.log_curse_terms(K, N, D_t, p["A"], p["B"], p["alpha"], p["beta"],
                                        p["phi"], p["psi"])
    np.testing.assert_allclose(np.exp(log_n), 300.0 * K ** 0.2 / N ** 0.34, rtol=1e-13)
    np.testing.assert_allclose(np.exp(log_d), 400.0 * K ** 0.1 / D_t ** 0.28, rtol=1e-13)
    # one language: the curse law is Chinchilla on that language's tokens
    np.testing.assert_allclose(laws.curse(1.0, N, D_t, **p),
                               laws.chinchilla(N, D_t, 1.5, 300.0, 400.0, 0.34, 0.28), rtol=1e-5)


@pytest.mark.unit
@pytest.mark.parametrize("compute", [1e19, 3e21, 5.76e23])
def test_chinchilla_optimum_minimises_the_loss_along_the_iso_compute_line(compute):
    p = dict(A=406.4, B=410.7, alpha=0.34, beta=0.28)
    N, D = laws.chinchilla_optimum(compute, **p)
    assert N * D * 6 == pytest.approx(compute, rel=1e-12)
    grid = np.geomspace(1e6, compute / 6e6, 400001)                       # brute force, 6 N D = C
    loss = 1.69 + p["A"] / grid ** p["alpha"] + p["B"] / (compute / (6 * grid)) ** p["beta"]
    assert N == pytest.approx(grid[np.argmin(loss)], rel=1e-4)
    # the closed-form G of the hand derivation: N* = G (C/6)^(beta/(alpha+beta))
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    assert np.exp(laws.chinchilla_log_G(**p)) == pytest.approx(G, rel=1e-13)
    assert N == pytest.approx(G * (compute / 6) ** (p["beta"] / (p["alpha"] + p["beta"])), rel=1e-13)
    # the optimum's loss, its inverse, and the model size for the optimum's tokens
    best = laws.chinchilla_optimal_loss(compute, 1.69, **p)
    assert best == pytest.approx(1.69 + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"], rel=1e-13)
    assert best == pytest.approx(loss.min(), rel=1e-9)
    assert laws.chinchilla_compute_for_loss(best, 1.69, **p) == pytest.approx(compute, rel=1e-11)
    assert laws.chinchilla_params_for_tokens(D, **p) == pytest.approx(N, rel=1e-12)


@pytest.mark.unit
def test_chinchilla_optimum_is_float64_for_numpy_and_traceable_under_jit():
    A, B = np.array([406.4, 300.0]), np.array([410.7, 500.0])
    N, D = laws.chinchilla_optimum(np.array([1e21, 1e22]), A, B, 0.34, 0.28)
    assert N.dtype == np.float64 and D.dtype == np.float64
    Nj, _ = jax.jit(laws.chinchilla_optimum)(jnp.array([1e21, 1e22]), A, B, 0.34, 0.28)
    np.testing.assert_allclose(Nj, N, rtol=1e-4)
    assert np.isinf(laws.chinchilla_compute_for_loss(np.array([1.69, 1.5]), 1.69, 406.4, 410.7,
                                                     0.34, 0.28)).all()


def _unimax_by_water_filling(sizes, budget, max_epochs):
    """The paper's definition, computed another way: every language gets min(its cap, level),
    one common level spending the budget (all caps when they cannot)."""
    caps = max_epochs * np.asarray(sizes, float)
    if caps.sum() <= budget:
        return caps
    lo, hi = 0.0, float(budget)
    for _ in range(200):
        level = 0.5 * (lo + hi)
        lo, hi = (level, hi) if np.minimum(caps, level).sum() < budget else (lo, level)
    return np.minimum(caps, 0.5 * (lo + hi))


@pytest.mark.unit
@pytest.mark.parametrize("sizes, budget, max_epochs", [
    ([200.0, 5.0, 10.0], 100.0, 2.0),               # two capped, the rest to the largest
    ([100.0, 100.0, 100.0], 30.0, 1.0),              # nothing capped: uniform
    ([1.0, 3.0], 100.0, 4.0),                        # everything capped: less than the budget
    ([3e9, 1e7, 5e11, 2e8, 2e8, 7e10], 1e12, 4.0),   # ties in size
])
def test_unimax_caps_at_max_epochs_and_spreads_the_rest_uniformly(sizes, budget, max_epochs):
    alloc = laws.unimax(sizes, budget, max_epochs)
    caps = max_epochs * np.asarray(sizes)
    np.testing.assert_allclose(alloc, _unimax_by_water_filling(sizes, budget, max_epochs), rtol=1e-9)
    assert np.all(alloc <= caps * (1 + 1e-12))
    assert alloc.sum() == pytest.approx(min(budget, caps.sum()), rel=1e-12)
    uncapped = alloc < caps * (1 - 1e-12)
    if uncapped.any():                                # one common share, above every capped one
        assert np.ptp(alloc[uncapped]) <= 1e-9 * alloc[uncapped].max()
        assert np.all(alloc[~uncapped] <= alloc[uncapped].min() * (1 + 1e-12))


@pytest.mark.unit
def test_unimax_is_what_the_trainer_and_the_paper_design_use():
    from atlas_bayes.simulation.paper_design import unimax_shares
    from atlas_bayes.trainers import sampling
    sizes = {"big": 200.0, "small": 5.0, "mid": 10.0}
    expected = laws.unimax(list(sizes.values()), 100.0, 2.0)
    assert list(sampling.unimax_allocation(sizes, 100.0, 2.0).values()) == list(expected)
    shares = unimax_shares(sizes, 100.0, 2.0)
    np.testing.assert_array_equal(list(shares.values()), expected / expected.sum())


@pytest.mark.unit
def test_whole_student_t_draws_follow_the_student_t_and_keep_its_density():
    import jax
    import numpyro.distributions as dist
    from scipy import stats

    from atlas_bayes.models.scaling import WholeStudentT, student_t
    noise = student_t(4.0, 0.5, 0.2)
    assert isinstance(noise, WholeStudentT) and not isinstance(student_t(3.5, 0.5, 0.2), WholeStudentT)
    draws = np.asarray(noise.sample(jax.random.PRNGKey(0), (20000,)))
    assert stats.kstest(draws, stats.t(df=4, loc=0.5, scale=0.2).cdf).pvalue > 0.01
    x = np.linspace(-1.0, 2.0, 7)
    np.testing.assert_allclose(noise.log_prob(x), dist.StudentT(4.0, 0.5, 0.2).log_prob(x), rtol=1e-6)
