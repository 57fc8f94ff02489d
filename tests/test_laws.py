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
