"""design.target_summary: a scalar target's median and 90% interval over posterior draws."""

import numpy as np
import pytest

from atlas_bayes import design
from atlas_bayes.fitting.draws import LawDraws, predicted_loss

pytestmark = pytest.mark.unit


def posterior(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    p = {"E": rng.uniform(1.3, 1.5, n), "A": np.exp(rng.normal(6, 0.3, n)),
         "B": np.exp(rng.normal(7.4, 0.3, n)), "alpha": rng.uniform(0.3, 0.38, n),
         "beta": rng.uniform(0.28, 0.34, n)}
    return design.Posterior(LawDraws("chinchilla", p), np.full(n, 0.01), 4.0)


def test_the_summary_is_the_central_interval_of_the_targets_draws():
    post = posterior()
    target = design.parse_target("loss@N=1e9,D=2e10")
    s = design.target_summary(post, target)
    q = np.log(predicted_loss(post.draws, np.array([1e9]), np.array([2e10]))).ravel()
    assert s["lo"] < s["median"] < s["hi"] and s["width"] == pytest.approx(s["hi"] - s["lo"])
    assert s["median"] == pytest.approx(np.median(q))
    assert np.mean((q >= s["lo"]) & (q <= s["hi"])) == pytest.approx(0.9, abs=0.01)
    wider = design.target_summary(post, target, prob=0.98)
    assert wider["width"] > s["width"]


def test_parameters_have_no_single_interval():
    with pytest.raises(ValueError, match="no single interval"):
        design.target_summary(posterior(100), design.parameters_target())
