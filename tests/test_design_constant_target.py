"""A target that is the same in every draw cannot be designed for, and says so.

np.var of equal floats is not always 0 (here ~1e-29), so the old `var > 0` check let such a
target through and every gain came out NaN with nothing chosen and no word why. This is what a
crossover target gives when no posterior draw has a crossover (the bundled study's es cell).
"""

import numpy as np
import pandas as pd
import pytest

from atlas_bayes import design
from atlas_bayes.fitting.draws import LawDraws

pytestmark = pytest.mark.unit


def posterior(n=64, seed=0):
    rng = np.random.default_rng(seed)
    params = {"E": 1.5 + 0.05 * rng.standard_normal(n), "A": np.full(n, 400.0),
              "B": np.full(n, 1500.0), "alpha": 0.34 + 0.01 * rng.standard_normal(n),
              "beta": np.full(n, 0.3)}
    return design.Posterior(LawDraws("chinchilla", params), np.full(n, 0.02))


def test_a_target_equal_in_every_draw_is_refused_with_the_reason():
    post = posterior()
    constant = np.full(post.n, np.log(3.3554432e11))        # a censored crossover, every draw
    assert np.var(constant) > 0 and np.ptp(constant) == 0    # why var > 0 was not enough
    target = design.Target("constant", lambda p: constant, {"kind": "test"})
    candidates = pd.DataFrame({"n_params": [1e8, 3e8], "n_tokens": [2e9, 6e9]})
    with pytest.raises(ValueError, match="same value .* in every posterior draw"):
        design.choose_batch(post, candidates, target, k=1)


def test_a_target_that_varies_is_still_scored():
    post = posterior()
    candidates = pd.DataFrame({"n_params": [1e8, 3e8], "n_tokens": [2e9, 6e9]})
    result = design.choose_batch(post, candidates, design.loss_target(2e9, 4e10), k=1)
    assert len(result.chosen) == 1 and np.all(np.isfinite(result.scores["gain"]))
