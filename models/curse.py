"""The curse-of-multilinguality law (ATLAS section 5) as one NumPyro model over languages.

    L(K, N, D_t) = E + A K^phi / N^alpha + B K^psi / D_t^beta

K is the number of languages in the training mixture (`LawInputs.K`: exact for uniform
mixtures), D_t the evaluated language's tokens. phi > 0 means each language needs more
capacity as languages are added (the curse); psi < 0 means each language needs fewer of its
own tokens (positive transfer).

`pooling="complete"` is the paper's pooled fit: one set of parameters for every evaluated
language. `pooling="partial"` gives each language its own parameters drawn from population
distributions (as in `models/hierarchical.py`, whose helpers this reuses); `"none"` fits
each language separately in one run. The N, D and K terms are written at each language's own
data centre, where they barely correlate with the exponents.
"""

import jax.numpy as jnp
import numpyro

from atlas_bayes import laws
from atlas_bayes.models.hierarchical import (EXPONENT_SPREAD, LOG_E_SPREAD, TERM_SPREAD,
                                             _shared_sites, centredness, group_centres, group_sums,
                                             per_language_values)
from atlas_bayes.models.scaling import ALPHA_PRIOR, LOG_E_SD, TERM_SD, TERM_SHARE, likelihood

K_EXPONENT_PRIOR, K_EXPONENT_SPREAD = (0.0, 0.3), 0.05
EXPONENTS = ("log_alpha", "log_beta", "phi", "psi")
SHAREABLE = {"E": "log_E", "A": "log_A_c", "B": "log_B_c", "alpha": "log_alpha",
             "beta": "log_beta", "phi": "phi", "psi": "psi"}


def curse(x, log_loss=None, nu=4.0, pooling="complete", centring="auto", centres=None,
          shared=(), predict_mean=False):
    """Curse-of-multilinguality law, pooled over languages or per language (see module).

    `shared` names parameters common to every language under partial pooling (e.g. all but
    phi and psi, to ask only how the curse differs by language)."""
    if x.K is None:
        raise ValueError("the curse law needs K (languages per mixture); build the inputs "
                         "with atlas_bayes.fitting.law_inputs")
    complete = pooling == "complete"
    common = set(SHAREABLE.values()) if complete else _shared_sites(shared, SHAREABLE)
    c = jnp.asarray(centredness(x, centring), dtype=jnp.float32)
    cN, cD, cK = (jnp.asarray(v, dtype=jnp.float32) for v in
                  (group_centres(x) if centres is None else centres))
    if complete:   # one set of parameters: centre every language at the overall centre
        cN, cD, cK = (jnp.full_like(v, _overall(v, x)) for v in (cN, cD, cK))
    term_loc = jnp.log(TERM_SHARE * x.loss_median)
    priors = {
        "log_alpha": (ALPHA_PRIOR, EXPONENT_SPREAD), "log_beta": (ALPHA_PRIOR, EXPONENT_SPREAD),
        "log_E": ((jnp.log(0.5 * x.loss_min), LOG_E_SD), LOG_E_SPREAD),
        "log_A_c": ((term_loc, TERM_SD), TERM_SPREAD), "log_B_c": ((term_loc, TERM_SD), TERM_SPREAD),
        "phi": (K_EXPONENT_PRIOR, K_EXPONENT_SPREAD), "psi": (K_EXPONENT_PRIOR, K_EXPONENT_SPREAD),
    }
    p = per_language_values(priors, pooling, common, c, x.n_groups, EXPONENTS)
    alpha, beta, E, phi, psi = (p[k] for k in ("alpha", "beta", "E", "phi", "psi"))
    with numpyro.plate("language", x.n_groups):
        # coefficients at K = 1 and the shared N, D references
        # (a coefficient shared under partial pooling is one value at the shared reference)
        # (complete pooling keeps them at the overall centre set above)
        at_centre = {name: complete or name not in common for name in ("log_A_c", "log_B_c")}
        log_A = p["log_A_c"] + (alpha * cN - phi * cK if at_centre["log_A_c"] else 0.0)
        log_B = p["log_B_c"] + (beta * cD - psi * cK if at_centre["log_B_c"] else 0.0)
        numpyro.deterministic("A", jnp.exp(log_A + alpha * x.log_N_ref))
        numpyro.deterministic("B", jnp.exp(log_B + beta * x.log_D_ref))
    g = x.group
    mu = laws.log_curse(x.K, x.N, x.D, E[g], jnp.exp(log_A)[g], jnp.exp(log_B)[g],
                        alpha[g], beta[g], phi[g], psi[g])
    likelihood(mu, x, log_loss, nu, predict_mean)


def _overall(v, x):
    """The all-rows centre: the row-weighted mean of the languages' centres."""
    counts = group_sums(x)
    return jnp.sum(v * counts) / jnp.sum(counts)
