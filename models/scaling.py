"""The scaling-law family as NumPyro models, side by side: Chinchilla, DCSL, MSL and ATLAS.

Each model is `model(x, log_loss=None, ...)` with `x` a `LawInputs` (arrays only, built once
from a run table by `atlas_bayes.law_inputs`). All share one parameterisation:

* counts enter divided by reference scales (geometric means of the data), so the sampled
  coefficients `log_A_ref`, `log_B_ref` are the log sizes of the N and D terms *at the
  reference*, nearly uncorrelated with the exponents; natural-scale A = A_ref N_ref^alpha and
  B = B_ref D_ref^beta are recorded as deterministic sites. With reference scales of 1
  (`centre=False`) the same model is the naive parameterisation used as a baseline;
* weakly informative priors set relative to the observed loss level;
* a Student-t likelihood on log loss (robust to the odd mis-recorded run).
"""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from atlas_bayes import laws

ALPHA_PRIOR = (jnp.log(0.35), 0.5)     # LogNormal over exponents: 90% in (0.15, 0.80)
TERM_SHARE = 0.25                      # prior centre of each reducible term, as a share of loss
TAU_OTHER_LOG_PRIOR = (jnp.log(0.05), 1.5)  # LogNormal weight of "other" tokens: 90% in (0.004, 0.6)
TAU_PRIOR = (0.0, 0.5)                 # Normal weight of each transfer language's tokens


def chinchilla(x, log_loss=None, nu=4.0, predict_mean=False):
    """Chinchilla: L = E + A / N^alpha + B / D^beta, D the target-language tokens."""
    p = _core_parameters(x)
    mu = laws.log_chinchilla(x.N, x.D, p["E"], p["A_ref"], p["B_ref"], p["alpha"], p["beta"])
    likelihood(mu, x, log_loss, nu, predict_mean)


def dcsl(x, log_loss=None, nu=4.0, predict_mean=False):
    """Data-constrained law (Muennighoff et al.): repeated data and excess parameters decay."""
    p = _core_parameters(x)
    R_D_star = numpyro.sample("R_D_star", dist.LogNormal(jnp.log(15.0), 0.75))
    R_N_star = numpyro.sample("R_N_star", dist.LogNormal(jnp.log(5.0), 0.75))
    mu = laws.log_dcsl(x.N, x.D, x.U, p["E"], p["A_ref"], p["B_ref"], p["alpha"], p["beta"],
                       R_D_star, R_N_star)
    likelihood(mu, x, log_loss, nu, predict_mean)


def msl(x, log_loss=None, nu=4.0, predict_mean=False):
    """He et al.'s multilingual law: Chinchilla in total tokens times p_family^(-gamma)."""
    p = _core_parameters(x)
    gamma = numpyro.sample("gamma", dist.Normal(0.0, 0.25))
    mu = laws.log_msl(x.N, x.D_total, x.p_family, p["E"], p["A_ref"], p["B_ref"],
                      p["alpha"], p["beta"], gamma)
    likelihood(mu, x, log_loss, nu, predict_mean)


def atlas(x, log_loss=None, nu=4.0, transfer=True, other=True, tau_prior=None,
          predict_mean=False):
    """ATLAS: Chinchilla on the effective data of Eq. 2, with repetition saturation.

    `transfer` adds one weight tau per transfer language (the columns of x.D_transfer);
    `other` adds tau_other for the rest of the mixture. Both are skipped when the inputs
    carry no such tokens (monolingual data). `tau_prior` = {"loc": [...], "scale": [...]}
    per transfer language (scale 0: the default prior) replaces tau's Normal(0, 0.5), e.g.
    with priors from the transfer matrix (`atlas_bayes.transfer.tau_priors`).
    """
    p = _core_parameters(x)
    lam = numpyro.sample("lambda", dist.LogNormal(jnp.log(0.1), 1.0))
    numpyro.deterministic("R_D_star", 1.0 / lam)
    terms = {}
    if transfer and x.D_transfer.shape[-1] > 0:
        loc, scale = tau_prior_arrays(tau_prior, (x.D_transfer.shape[-1],))
        with numpyro.plate("transfer_language", x.D_transfer.shape[-1]):
            tau = numpyro.sample("tau", dist.Normal(loc, scale))
        terms.update(D_transfer=x.D_transfer, U_transfer=x.U_transfer, tau=tau)
    if other and x.has_other:
        # non-negative: the "other" bucket can hold 100x the target's tokens, and a negative
        # aggregate weight would drive D_eff to its floor (a spurious mode with a flat law)
        tau_other = numpyro.sample("tau_other", dist.LogNormal(*TAU_OTHER_LOG_PRIOR))
        terms.update(D_other=x.D_other, U_other=x.U_other, tau_other=tau_other)
    D_eff = laws.effective_data(x.D, x.U, lam, **terms)
    mu = laws.log_atlas(x.N, D_eff, p["E"], p["A_ref"], p["B_ref"], p["alpha"], p["beta"])
    likelihood(mu, x, log_loss, nu, predict_mean)


def tau_prior_arrays(tau_prior, shape):
    """(loc, scale) of tau per transfer slot: the given prior where its scale is positive,
    else the default Normal(TAU_PRIOR)."""
    loc, scale = jnp.full(shape, TAU_PRIOR[0]), jnp.full(shape, TAU_PRIOR[1])
    if tau_prior is None:
        return loc, scale
    given_loc = jnp.asarray(tau_prior["loc"], dtype=jnp.float32).reshape(shape)
    given_scale = jnp.asarray(tau_prior["scale"], dtype=jnp.float32).reshape(shape)
    has = given_scale > 0
    return jnp.where(has, given_loc, loc), jnp.where(has, given_scale, scale)


def _core_parameters(x):
    """E, A, B, alpha, beta shared by every law; returns the values the law functions take."""
    alpha = numpyro.sample("alpha", dist.LogNormal(*ALPHA_PRIOR))
    beta = numpyro.sample("beta", dist.LogNormal(*ALPHA_PRIOR))
    log_E = numpyro.sample("log_E", dist.Normal(jnp.log(0.5 * x.loss_min), 1.0))
    log_A_ref = numpyro.sample("log_A_ref", _term_prior(x, x.log_N_mid - x.log_N_ref))
    log_B_ref = numpyro.sample("log_B_ref", _term_prior(x, x.log_D_mid - x.log_D_ref))
    E = numpyro.deterministic("E", jnp.exp(log_E))
    numpyro.deterministic("A", jnp.exp(log_A_ref + alpha * x.log_N_ref))
    numpyro.deterministic("B", jnp.exp(log_B_ref + beta * x.log_D_ref))
    return {"E": E, "A_ref": jnp.exp(log_A_ref), "B_ref": jnp.exp(log_B_ref),
            "alpha": alpha, "beta": beta}


def _term_prior(x, offset):
    """Prior on the log N (or D) term at the reference scale.

    Centred at a quarter of the median loss at the data's typical scale; `offset` is how far
    the reference sits from that scale (zero when centred, ~20 nats in the naive baseline).
    """
    loc = jnp.log(TERM_SHARE * x.loss_median) + jnp.exp(ALPHA_PRIOR[0]) * offset
    return dist.Normal(loc, 1.5 + 0.5 * jnp.abs(offset))


def likelihood(mu, x, log_loss, nu, predict_mean=False):
    """Student-t on log loss; `predict_mean` also records the law's mean (for predictions)."""
    if predict_mean:
        numpyro.deterministic("log_loss_mean", mu)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.1))
    with numpyro.plate("obs", x.N.shape[0]):
        numpyro.sample("log_loss", dist.StudentT(nu, mu, sigma), obs=log_loss)
