"""Sampler geometry of the single-language laws (models/scaling.py `_centre_parameters`).

On the README's first fit (the bundled study's es ATLAS posterior, three model sizes) E, the
N term and alpha trade off along a curved ridge. Sampled as log E, log A_ref, log B_ref,
alpha, beta, NUTS needed 26-44 leapfrog steps per draw at 2 chains x 300+300 and diverged in
2 of seeds 0-3 (46 divergences and R-hat 1.04 at seed 0 at the default 4 x 1000); through the
loss at the centre, its split and the terms' slopes it needs 9-12 and did not diverge.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median

from atlas_bayes.fitting.inference import fit, predict, select_language
from atlas_bayes.fitting.law_inputs import build_inputs
from atlas_bayes.models import scaling
from atlas_bayes.tables.runs import RunTableWarning, read_runs, split_continued
from conftest import SHORT

pytestmark = pytest.mark.statistical

MAX_STEPS_PER_DRAW = 16
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled_study.csv"
NEW_SITES = ["log_L_c", "A_logit_c", "B_logit_c", "log_A_slope_c", "log_B_slope_c"]
OLD_SITES = ["log_E", "log_A_ref", "log_B_ref", "alpha", "beta"]


@pytest.fixture(scope="module")
def es_fit():
    runs = read_runs(BUNDLED)
    with pytest.warns(RunTableWarning, match="left out"):   # the finetune rows
        tree = fit(runs, "atlas", language="es",
                   sampler=SHORT, warn=False)
    return runs, tree


def test_bundled_atlas_fit_is_well_conditioned(es_fit):
    _, tree = es_fit
    diagnostics = json.loads(tree.attrs["diagnostics"])
    assert diagnostics["divergences"] == 0
    assert diagnostics["max_r_hat"] < 1.03
    assert float(np.mean(tree.sample_stats["n_steps"])) < MAX_STEPS_PER_DRAW
    # the natural-scale and former sampled quantities stay in the posterior
    assert set(OLD_SITES + ["E", "A", "B"]) <= set(tree.posterior.data_vars)


def test_fits_saved_with_the_old_latents_still_predict(es_fit):
    """A fit saved before the change of variables holds log_E, log_A_ref, log_B_ref, alpha,
    beta as latents (now deterministic sites) and none of the new sites: predictions must
    use the stored values."""
    runs, tree = es_fit
    rows = select_language(runs, "es").iloc[::9]
    now = predict(tree, rows)["log_loss_mean"].values
    old = tree.copy()
    latents = set(json.loads(tree.attrs["latent_sites"]))
    old["posterior"] = tree.posterior.to_dataset().drop_vars(NEW_SITES)
    old.attrs["latent_sites"] = json.dumps(sorted(latents - set(NEW_SITES) | set(OLD_SITES)))
    np.testing.assert_allclose(predict(old, rows)["log_loss_mean"].values, now, atol=1e-4)


def test_change_of_variables_keeps_the_priors():
    """NUTS on the core parameters alone, in the sampled coordinates, must give back the
    priors on log E, log A_ref, log B_ref, log alpha and log beta (the Jacobian is right)."""
    runs, _ = split_continued(read_runs(BUNDLED))
    x, _, _ = build_inputs(select_language(runs, "es"))

    def core_only(x):
        scaling._core_parameters(x)

    mcmc = MCMC(NUTS(core_only, dense_mass=True, init_strategy=init_to_median()),
                num_warmup=1000, num_samples=6000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), x)
    draws = Predictive(core_only, posterior_samples=mcmc.get_samples(),
                       return_sites=OLD_SITES)(jax.random.PRNGKey(1), x)
    term = (np.log(scaling.TERM_SHARE * x.loss_median), 1.5)
    priors = {"log_E": (np.log(0.5 * x.loss_min), 1.0), "log_A_ref": term, "log_B_ref": term,
              "alpha": scaling.ALPHA_PRIOR, "beta": scaling.ALPHA_PRIOR}
    for name, (loc, scale) in priors.items():
        value = np.asarray(draws[name])
        z = ((np.log(value) if name in ("alpha", "beta") else value) - float(loc)) / float(scale)
        assert abs(z.mean()) < 0.08 and abs(z.std() - 1) < 0.08, (name, z.mean(), z.std())
