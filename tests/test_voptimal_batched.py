"""The batched least-squares fit of V-optimal (design_voptimal.fit_least_squares, the default
method) against the selection scripts' sequential L-BFGS-B (method="scipy"), on the same
starts in the same box."""

import numpy as np
import pytest

from atlas_bayes.design import voptimal as vopt

pytestmark = pytest.mark.statistical     # least-squares fits against truth and scipy (~40 s)

TRUTH = np.array([1.69, 406.4, 410.7, 0.34, 0.28])    # Hoffmann et al.'s Chinchilla fit


@pytest.fixture(scope="module")
def chinchilla_data():
    """48 runs simulated from the Chinchilla law, loss noise sd 0.002."""
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(3e9), 48))
    D = N * np.exp(rng.uniform(np.log(2.0), np.log(200.0), 48))
    X = np.column_stack([N, D])
    law = vopt.ls_law("chinchilla")
    y = vopt.predict(law, TRUTH, X) + 0.002 * rng.standard_normal(48)
    return law, X, y


def mse_at(law, theta, X, y):
    return float(np.mean((vopt.predict(law, theta, X) - y) ** 2))


def test_batched_fit_recovers_a_simulated_chinchilla_law(chinchilla_data):
    law, X, y = chinchilla_data
    at_truth = mse_at(law, TRUTH, X, y)
    theta, mse = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(1), n_starts=8)
    _, mse_lm = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(1), n_starts=8,
                                       polish=0)
    _, mse_scipy = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(1),
                                          n_starts=8, method="scipy")
    assert np.all((theta >= law.lo) & (theta <= law.hi))
    assert mse == pytest.approx(mse_at(law, theta, X, y), rel=1e-9)   # the MSE it reports
    # the least-squares optimum fits the noise at least as well as the truth does
    assert mse <= at_truth and mse_lm <= at_truth * (1 + 1e-9)
    assert mse <= mse_scipy * (1 + 1e-6) and mse_lm <= mse_scipy * (1 + 1e-6)
    np.testing.assert_allclose(theta, TRUTH, rtol=0.03)


def test_batched_fit_uses_warm_starts_and_rejects_unknown_methods(chinchilla_data):
    law, X, y = chinchilla_data
    # two starts: the warm one (on a bound, E = 0) and one random
    _, mse = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(2), n_starts=2,
                                    warm=[np.array([0.0, 300.0, 300.0, 0.3, 0.3])], polish=0)
    assert mse <= mse_at(law, TRUTH, X, y)
    with pytest.raises(ValueError, match="method"):
        vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(0), method="adam")


def test_batched_fit_matches_scipy_on_the_data_constrained_pool(shared_data):
    from atlas_bayes.design.scalebench import load_task
    pool, _ = load_task(shared_data / "scalebench", "data_constrained")
    rows = pool.sort_values("cost").head(40)
    law = vopt.ls_law("dcsl")
    X, y = law.matrix(rows), rows["loss"].to_numpy(float)
    fits = {polish: vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(0), n_starts=12,
                                           polish=polish) for polish in (0, 2)}
    theta_s, mse_s = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(0), n_starts=12,
                                            method="scipy")
    for theta, mse in fits.values():
        assert np.all((theta >= law.lo) & (theta <= law.hi))
        assert np.isfinite(mse) and mse <= mse_s * (1 + 1e-3)
    theta, mse = fits[2]
    assert mse == pytest.approx(mse_at(law, theta, X, y), rel=1e-9)
    assert mse < 0.5 * np.var(y)      # a fit, not a start: the variance is ~1.4
