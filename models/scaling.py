"""The scaling-law family as NumPyro models, side by side: Chinchilla, DCSL, MSL and ATLAS.

Each model is `model(x, log_loss=None, ...)` with `x` a `LawInputs` (arrays only, built once
from a run table by `atlas_bayes.fitting.law_inputs`). All share one parameterisation:

* counts enter divided by reference scales (geometric means of the data), so the
  coefficients `log_A_ref`, `log_B_ref` are the log sizes of the N and D terms *at the
  reference* (the data centre); natural-scale A = A_ref N_ref^alpha and B = B_ref D_ref^beta
  are recorded as deterministic sites, as are log E, alpha and beta. What NUTS samples is
  what the data pin: the loss at the centre (`log_L_c`), its split into E and the two terms
  (`A_logit_c`, `B_logit_c`) and the terms' slopes across the data (`log_A_slope_c`,
  `log_B_slope_c`): a change of variables, Jacobian included, so the priors below are
  unchanged (`_centre_parameters`). With reference scales of 1 (`centre=False`) the model
  samples log E, `log_A_ref`, `log_B_ref`, alpha and beta directly: the naive
  parameterisation used as a baseline;
* weakly informative priors set relative to the observed loss level;
* a Student-t likelihood on log loss (robust to the odd mis-recorded run).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from atlas_bayes import laws

ALPHA_PRIOR = (math.log(0.35), 0.5)     # LogNormal over exponents: 90% in (0.15, 0.80)
TERM_SHARE = 0.25                      # prior centre of each reducible term, as a share of loss
TAU_OTHER_LOG_PRIOR = (math.log(0.05), 1.5)  # LogNormal weight of "other" tokens: 90% in (0.004, 0.6)
TAU_PRIOR = (0.0, 0.5)                 # Normal weight of each transfer language's tokens
# Prior widths (sd, in the coordinate each prior is on), also read by fitting/informed.py.
LOG_E_SD = 1.0                         # log E about log(half the smallest loss)
TERM_SD = 1.5                          # log N (D) term at the data centre
R_STAR_PRIOR = {"R_D_star": (math.log(15.0), 0.75), "R_N_star": (math.log(5.0), 0.75)}   # LogNormal
GAMMA_SD = 0.25                        # Normal(0, sd) family-transfer offset
LAMBDA_PRIOR = (math.log(0.1), 1.0)    # LogNormal
LOG_LOSS_SCALE = 100.0                 # log_L_c is this times log(loss at the centre / median)


def chinchilla(x, log_loss=None, nu=4.0, predict_mean=False):
    """Chinchilla: L = E + A / N^alpha + B / D^beta, D the target-language tokens."""
    p = _core_parameters(x, log_loss)
    mu = laws.log_chinchilla(x.N, x.D, p["E"], p["A_ref"], p["B_ref"], p["alpha"], p["beta"])
    likelihood(mu, x, log_loss, nu, predict_mean)


def dcsl(x, log_loss=None, nu=4.0, predict_mean=False):
    """Data-constrained law (Muennighoff et al.): repeated data and excess parameters decay."""
    p = _core_parameters(x, log_loss)
    R_D_star = numpyro.sample("R_D_star", dist.LogNormal(*R_STAR_PRIOR["R_D_star"]))
    R_N_star = numpyro.sample("R_N_star", dist.LogNormal(*R_STAR_PRIOR["R_N_star"]))
    mu = laws.log_dcsl(x.N, x.D, x.U, p["E"], p["A_ref"], p["B_ref"], p["alpha"], p["beta"],
                       R_D_star, R_N_star)
    likelihood(mu, x, log_loss, nu, predict_mean)


def msl(x, log_loss=None, nu=4.0, predict_mean=False):
    """He et al.'s multilingual law: Chinchilla in total tokens times p_family^(-gamma)."""
    p = _core_parameters(x, log_loss)
    gamma = numpyro.sample("gamma", dist.Normal(0.0, GAMMA_SD))
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
    with priors from the transfer matrix (`atlas_bayes.decisions.transfer.tau_priors`).
    """
    p = _core_parameters(x, log_loss)
    lam = numpyro.sample("lambda", dist.LogNormal(*LAMBDA_PRIOR))
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


def _core_parameters(x, log_loss=None):
    """E, A, B, alpha, beta shared by every law; returns the values the law functions take.

    Centred inputs (the default) sample what the data pin (`_centre_parameters`); the naive
    baseline (`centre=False`) samples log E, the log terms at the reference and the exponents
    directly.
    """
    priors = {"log_E": dist.Normal(jnp.log(0.5 * x.loss_min), LOG_E_SD),
              "log_A_ref": _term_prior(x, x.log_N_mid - x.log_N_ref),
              "log_B_ref": _term_prior(x, x.log_D_mid - x.log_D_ref),
              "log_alpha": dist.Normal(*ALPHA_PRIOR), "log_beta": dist.Normal(*ALPHA_PRIOR)}
    if _centred(x):
        log_E, log_A_ref, log_B_ref, alpha, beta = _centre_parameters(x, priors, log_loss)
    else:
        alpha = numpyro.sample("alpha", dist.LogNormal(*ALPHA_PRIOR))
        beta = numpyro.sample("beta", dist.LogNormal(*ALPHA_PRIOR))
        log_E = numpyro.sample("log_E", priors["log_E"])
        log_A_ref = numpyro.sample("log_A_ref", priors["log_A_ref"])
        log_B_ref = numpyro.sample("log_B_ref", priors["log_B_ref"])
    E = numpyro.deterministic("E", jnp.exp(log_E))
    numpyro.deterministic("A", jnp.exp(log_A_ref + alpha * x.log_N_ref))
    numpyro.deterministic("B", jnp.exp(log_B_ref + beta * x.log_D_ref))
    return {"E": E, "A_ref": jnp.exp(log_A_ref), "B_ref": jnp.exp(log_B_ref),
            "alpha": alpha, "beta": beta}


def _centred(x) -> bool:
    """Whether the inputs are divided by the data's own centre (not the naive baseline)."""
    return bool(x.centred)


def _centre_parameters(x, priors, log_loss=None):
    """log E, log A_ref, log B_ref (the terms at the data centre), alpha and beta, sampled
    through what the data pin: the loss at the centre, its split into E and the two terms,
    and the terms' slopes across the data.

    With few model sizes (the bundled study: three) E, the N term and alpha trade off along
    a curved ridge (E + A_ref (N / N_ref)^-alpha fits three sizes in many ways) whose width
    in log E grows as E shrinks and whose direction turns with alpha; sampled as log E,
    log A_ref, log B_ref, alpha, beta, NUTS diverges in its tails and a chain can stick
    there (on the bundled study: 46 divergences, R-hat 1.04). The data pin
    instead the loss at the centre, L_c = E + A_ref + B_ref, and how much each term changes
    across the data: the N term's secant slope between one sd of log N below and one above
    the centre, A_ref sinh(alpha s_N) / s_N (the tangent slope alpha A_ref when s_N = 0),
    and likewise the D term's. Given those, the curvature decides how L_c splits into E and
    the two terms. So NUTS samples
        log_L_c = 100 log(L_c / median loss),
        A_logit_c = log(A_ref / E),  B_logit_c = log(B_ref / E),
        log_A_slope_c = log(A_ref sinh(alpha s_N) / s_N),  log_B_slope_c (the same in D),
    and E, A_ref, B_ref = L_c softmax(0, A_logit_c, B_logit_c), alpha = asinh(s_N slope_A /
    A_ref) / s_N, beta likewise. Every value is positive by construction, and near either
    end of the ridge (E -> 0 with the exponents at their least, or a term -> 0 with its
    exponent large) the posterior stays smooth in these coordinates (a first version that
    kept alpha, beta and got E as L_c minus the terms through a soft floor diverged where
    E approached zero: 33-65 divergences on the bundled ar target). s_N, s_D are the
    training data's spreads (`Scales`), reused by predictions.

    This is a one-to-one change of variables, so the model is unchanged: the priors still
    apply to log E, log A_ref, log B_ref, log alpha and log beta, with the Jacobian. The map
    (log_L_c, A_logit_c, B_logit_c) -> (log E, log A_ref, log B_ref) has determinant 1/100
    (the softmax of logs has determinant 1 in log space); log alpha depends on the slope
    site only through t = log_A_slope_c - log A_ref, with d log alpha / dt = q / (sqrt(1 +
    q^2) asinh q), q = s_N exp(t), and likewise beta: the Jacobian is block triangular, so
    log |det| = -log 100 + log(d log alpha / dt) + log(d log beta / dt).

    log_L_c is in hundredths of a nat because the data pin the loss at the centre to a
    fraction of a percent (0.06% on Epoch's Chinchilla points): NumPyro regularises the
    dense mass matrix it adapts towards 1e-3 times the identity (a variance of ~1e-5 after
    the last warmup window), which for a coordinate that narrow overstated its spread
    five-fold and forced a small step size (30 leapfrog steps per draw on Epoch's points;
    6.5 with the scaled coordinate).

    Each new site has a narrow base measure that the density cancels: it only places the
    initial value (init_to_median): the loss at the centre at the observed loss (geometric
    mean, when fitting), E and the terms in the ratio of their prior centres, the exponents
    at their prior median. Because of that, drawing these models from the prior by ancestral
    sampling (Predictive without posterior draws) does not give their prior; to run a model
    at given values pass the sites from `core_sites`.
    """
    start = [jnp.exp(priors[k].loc) for k in ("log_E", "log_A_ref", "log_B_ref")]
    L_start = jnp.exp(observed_mean(x, log_loss)) if log_loss is not None else sum(start)
    values = pinned_parameters(priors, L_start, start, x.loss_median, x.log_N_sd, x.log_D_sd)
    return tuple(values[k] for k in ("log_E", "log_A_ref", "log_B_ref", "alpha", "beta"))


def pinned_parameters(priors, L_start, start, median, log_N_sd, log_D_sd,
                      names=("log_E", "log_A_ref", "log_B_ref"), log_D_shift=0.0) -> dict:
    """Sample the data-pinned sites (`_centre_parameters`) and return log E, the log N and D
    terms at the centre (named `names`), log alpha, log beta, alpha and beta.

    Elementwise: inside a plate every argument may hold one value per member (the joint
    models call it once for all languages). `priors` maps `names` and "log_alpha",
    "log_beta" to distributions, applied through the Jacobian; `start` (E, N term, D term)
    and `L_start` only place the initial values. `log_D_shift`: how far the data's typical
    effective data lie above the centre's own tokens (log scale; transfer languages add to
    it): the sites then pin the D term there, where the data see it, and the D term at the
    centre is that times exp(beta shift). A shear of unit Jacobian, so the model is the same.
    """
    E0, A0, B0 = start
    total = E0 + A0 + B0
    bases = {
        "log_L_c": dist.Normal(LOG_LOSS_SCALE * jnp.log(L_start / median), 1.0),
        "A_logit_c": dist.Normal(jnp.log(A0 / E0), 0.1),
        "B_logit_c": dist.Normal(jnp.log(B0 / E0), 0.1),
        "log_A_slope_c": dist.Normal(jnp.log(L_start * A0 / total) + ALPHA_PRIOR[0], 0.1),
        "log_B_slope_c": dist.Normal(jnp.log(L_start * B0 / total) + ALPHA_PRIOR[0], 0.1),
    }
    z = {name: numpyro.sample(name, base) for name, base in bases.items()}
    log_L = jnp.log(median) + z["log_L_c"] / LOG_LOSS_SCALE
    lse = jnp.logaddexp(jnp.logaddexp(0.0, z["A_logit_c"]), z["B_logit_c"])
    E_name, A_name, B_name = names
    log_E = numpyro.deterministic(E_name, log_L - lse)
    log_A = numpyro.deterministic(A_name, log_L + z["A_logit_c"] - lse)
    log_B_seen = log_L + z["B_logit_c"] - lse
    log_alpha, dlog_alpha = _exponent(z["log_A_slope_c"] - log_A, log_N_sd)
    log_beta, dlog_beta = _exponent(z["log_B_slope_c"] - log_B_seen, log_D_sd)
    log_B = numpyro.deterministic(B_name, log_B_seen + jnp.exp(log_beta) * log_D_shift)
    values = {E_name: log_E, A_name: log_A, B_name: log_B,
              "log_alpha": log_alpha, "log_beta": log_beta}
    log_jacobian = -jnp.log(LOG_LOSS_SCALE) + dlog_alpha + dlog_beta
    numpyro.factor("core_prior",
                   sum(priors[k].log_prob(v) for k, v in values.items()) + log_jacobian
                   - sum(bases[k].log_prob(v) for k, v in z.items()))
    values["alpha"] = numpyro.deterministic("alpha", jnp.exp(log_alpha))
    values["beta"] = numpyro.deterministic("beta", jnp.exp(log_beta))
    return values


def _exponent(log_ratio, spread):
    """log of the exponent a whose secant slope ratio sinh(a s) / s equals exp(log_ratio)
    (the slope over the term), and log d(log a)/d(log_ratio). At s = 0: a = exp(log_ratio)."""
    # written with jnp.where, not `if`: the spread is an argument of the compiled sampler
    positive = spread > 0
    s = jnp.where(positive, spread, 1.0)
    # a = asinh(q) / s with q = s exp(log_ratio); clipped where float32 would over/underflow
    log_q = jnp.clip(log_ratio + jnp.log(s), -80.0, 80.0)
    log_asinh = jnp.log(jnp.arcsinh(jnp.exp(log_q)))
    # d log a / d log q = q / (sqrt(1 + q^2) asinh(q))
    log_d = log_q - 0.5 * jnp.logaddexp(0.0, 2.0 * log_q) - log_asinh
    return (jnp.where(positive, log_asinh - jnp.log(s), log_ratio),
            jnp.where(positive, log_d, jnp.zeros_like(log_d)))


def core_sites(x, E, A, B, alpha, beta) -> dict:
    """The sampled sites of `_core_parameters` (and log E, log A_ref, log B_ref) that give
    natural-scale E, A, B, alpha, beta on inputs `x`: to run a model at given values."""
    log_A_ref = np.log(A) - alpha * x.log_N_ref
    log_B_ref = np.log(B) - beta * x.log_D_ref
    sites = {"alpha": alpha, "beta": beta, "log_E": np.log(E), "log_A_ref": log_A_ref,
             "log_B_ref": log_B_ref}
    if _centred(x):
        sites.update(pinned_sites(np.log(E), log_A_ref, log_B_ref, alpha, beta, x.loss_median,
                                  x.log_N_sd, x.log_D_sd))
    return sites


def pinned_sites(log_E, log_A, log_B, alpha, beta, median, log_N_sd, log_D_sd,
                 log_D_shift=0.0) -> dict:
    """The data-pinned sites (`pinned_parameters`) that give these values (numpy,
    elementwise): log E, the log terms at the centre, and the exponents."""
    log_B = log_B - beta * np.asarray(log_D_shift)
    log_L = np.logaddexp(np.logaddexp(log_E, log_A), log_B)
    return {"log_L_c": LOG_LOSS_SCALE * (log_L - np.log(median)),
            "A_logit_c": log_A - log_E, "B_logit_c": log_B - log_E,
            "log_A_slope_c": log_A + _log_secant(alpha, log_N_sd),
            "log_B_slope_c": log_B + _log_secant(beta, log_D_sd)}


def _log_secant(exponent, spread):
    """log(sinh(exponent * spread) / spread), the secant slope ratio; log(exponent) at 0."""
    exponent, spread = np.asarray(exponent, dtype=float), np.asarray(spread, dtype=float)
    s = np.where(spread > 0, spread, 1.0)
    return np.where(spread > 0, np.log(np.sinh(exponent * s) / s), np.log(exponent))


def _term_prior(x, offset):
    """Prior on the log N (or D) term at the reference scale.

    Centred at a quarter of the median loss at the data's typical scale; `offset` is how far
    the reference sits from that scale (zero when centred, ~20 nats in the naive baseline).
    """
    loc = jnp.log(TERM_SHARE * x.loss_median) + jnp.exp(ALPHA_PRIOR[0]) * offset
    return dist.Normal(loc, TERM_SD + 0.5 * jnp.abs(offset))


class WholeStudentT(dist.StudentT):
    """Student-t with whole-number degrees of freedom `k`, drawn as a normal over the root of
    a chi-square made of `k` squared normals: NumPyro's draws use jax's gamma sampler, a
    rejection loop that took seconds to compile in every predictive (the density is
    NumPyro's)."""

    def __init__(self, k: int, loc, scale):
        self.k = k
        super().__init__(float(k), loc, scale)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        key_z, key_chi = jax.random.split(key)
        chi2 = jnp.sum(jnp.square(jax.random.normal(key_chi, (self.k,) + shape)), axis=0)
        return self.loc + self.scale * jax.random.normal(key_z, shape) * jnp.sqrt(self.k / chi2)


def student_t(nu, loc, scale) -> dist.Distribution:
    """The models' Student-t noise: `WholeStudentT` where `nu` is a small whole Python number
    (an array keeps NumPyro's draws)."""
    if isinstance(nu, (int, float)) and float(nu).is_integer() and 1 <= nu <= 30:
        return WholeStudentT(int(nu), loc, scale)
    return dist.StudentT(nu, loc, scale)


def likelihood(mu, x, log_loss, nu, predict_mean=False):
    """Student-t on log loss; `predict_mean` also records the law's mean (for predictions)."""
    if predict_mean:
        numpyro.deterministic("log_loss_mean", mu)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.1))
    mask = True if x.obs_mask is None else x.obs_mask     # padded rows (atlas_bayes.fitting.compiled)
    with numpyro.plate("obs", x.N.shape[0]), numpyro.handlers.mask(mask=mask):
        numpyro.sample("log_loss", student_t(nu, mu, sigma), obs=log_loss)


def observed_mean(x, log_loss):
    """Mean observed log loss over the real rows (padded copies left out)."""
    if x.obs_mask is None:
        return jnp.mean(log_loss)
    return jnp.sum(jnp.where(x.obs_mask, log_loss, 0.0)) / jnp.sum(x.obs_mask)
