"""Cross-lingual transfer as NumPyro models: learning curves per run, and the transfer matrix.

`learning_curves` fits every run's curve L(d) = E + B d^-beta (d: tokens seen, at one model
size) in one vectorised model, so the bilingual transfer score, a function of two curves
(atlas_bayes/decisions/bts.py), gets a posterior. Each curve is written through quantities the data
pin: the loss at the first and last checkpoints of its own token range (L_start > L_end) and
the share `s` of L_end that is irreducible (E = s L_end). beta then follows exactly: the
curve through both anchors with that E. Only s (the curvature: how much further the loss
can fall) is weakly identified; extrapolations past the range inherit its uncertainty,
interpolations barely do.

`transfer_matrix` models the log transfer efficiency g(s->t) = log(1 + tau) = log(2 d_mono /
d_bi) of every ordered pair as

    g = mu + a_source + b_target + gamma . (same script, same family, same genus) + e_pair,

with a ~ N(0, sd_source), b ~ N(0, sd_target), mu ~ N(0, 0.5), gamma ~ N(0, 0.3), and the
residuals of A->B and B->A bivariate normal (sd_pair, correlation rho: the paper finds the two
directions nearly uncorrelated). Measured values enter with their own standard error. Given
the four variance parameters everything is linear and Gaussian, so the model is written
collapsed: NUTS samples (sd_source, sd_target, sd_pair, rho) against the exact marginal
likelihood, and `coefficient_draws` / `pair_residuals` then draw mu, gamma, the effects and
every pair's residual from their exact conditionals. Uncollapsed, the same model needs centred
effects for well-measured languages and non-centred ones for sparse ones, and still diverges on
small designs (8-34 divergences on 6 languages).

`transfer_interaction` adds what the additive model cannot represent: a low-rank source x
target interaction (latent language factors, sizes shrunk towards zero), a pair term shared
by A->B and B->A, and per-target, heavy-tailed (Student-t) directional noise. On the paper's
measured matrix they bring the held-out error of random cells and of new sources below the
paper's random forest's, not that of new targets (benchmarks/RESULTS.md, "Issue 20"). The
pair term is integrated out (bivariate Gaussian given each measurement's scale-mixture
weight); the rest is sampled.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from atlas_bayes import laws
from atlas_bayes.models.scaling import student_t

GAP_PRIOR = (math.log(0.2), 1.5)   # log of L_start / L_end - 1: the drop across a curve's range
SHARE_PRIOR = (0.0, 1.5)          # logit of E / L_end
EFFECT_SD = 0.3                   # half-normal scale of the source, target and pair spreads
MEAN_PRIOR = (0.0, 0.5)           # population mean of g
COVARIATE_SD = 0.3


class CurveInputs(NamedTuple):
    """Arrays for `learning_curves` (one row per checkpoint)."""
    curve: np.ndarray          # (n,) curve index of each row
    log_d_rel: np.ndarray      # (n,) log tokens minus the curve's last anchor (log d_end)
    log_span: np.ndarray       # (n_curves,) log d_end - log d_start
    log_loss_end: np.ndarray   # (n_curves,) observed log loss at the last checkpoint (prior centre)
    n_curves: int


def learning_curves(x: CurveInputs, log_loss=None, nu=4.0):
    """Independent curves L(d) = E + (L_end - E) (d / d_end)^-beta, one shared noise scale.

    The likelihood is Student-t on log loss: learning curves have spikes.
    """
    with numpyro.plate("curve", x.n_curves):
        log_L_end = numpyro.sample("log_L_end", dist.Normal(x.log_loss_end, 0.5))
        log_gap = numpyro.sample("log_gap", dist.Normal(*GAP_PRIOR))
        logit_s = numpyro.sample("logit_share", dist.Normal(*SHARE_PRIOR))
    L_end = numpyro.deterministic("L_end", jnp.exp(log_L_end))
    s = jax.nn.sigmoid(logit_s)
    E = numpyro.deterministic("E", s * L_end)
    beta = numpyro.deterministic("beta", jnp.log1p(jnp.exp(log_gap) / (1.0 - s)) / x.log_span)
    c = x.curve
    mu = jnp.log(laws.learning_curve(x.log_d_rel, E[c], (L_end - E)[c], beta[c]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.05))
    with numpyro.plate("obs", len(x.curve)):
        numpyro.sample("log_loss", student_t(nu, mu, sigma), obs=log_loss)


class MatrixInputs(NamedTuple):
    """Arrays for `transfer_matrix`: every ordered pair (source != target) of n languages.

    Measurements are ordered: `n_single` pairs measured in one direction only, then the
    pairs measured in both directions as consecutive (A->B, B->A) rows.
    """
    design: np.ndarray         # (p, 1 + k + 2n) per ordered pair: 1, covariates, one-hot source, one-hot target
    source: np.ndarray         # (p,) source index of each ordered pair
    target: np.ndarray         # (p,) target index
    reverse: np.ndarray        # (p,) index of the pair in the other direction
    measured: np.ndarray       # (m,) ordered-pair index of each measurement
    se: np.ndarray             # (m,) its standard error
    n_single: int
    n_languages: int
    n_covariates: int
    real: np.ndarray | None = None     # (m,) False for padding rows (`padded`); None: none
    rank: int = 0              # interaction factors (`transfer_interaction`); 0: additive model

    def padded(self, y, size):
        """Inputs and measurements with the singles and the two-way pairs each padded to
        `size(count)` (shared compiled programs, atlas_bayes.fitting.compiled). A padding row
        has a zero design row, y = 0 and unit variance, independent of the parameters, so it
        adds nothing to the marginal likelihood."""
        n1, pairs = self.n_single, (len(self.measured) - self.n_single) // 2
        s1, s2 = size(n1), size(pairs)

        def rows(values, fill, dtype):      # real singles, padding, real pairs, padding
            values = np.asarray(values, dtype)
            return np.concatenate([values[:n1], np.full(s1 - n1, fill, dtype), values[n1:],
                                   np.full(2 * (s2 - pairs), fill, dtype)])
        design = np.vstack([self.design, np.zeros((1, self.design.shape[1]))])   # the zero row
        padded = self._replace(design=design, measured=rows(self.measured, len(self.design), int),
                               se=rows(self.se, 1.0, float), n_single=s1,
                               real=rows(np.ones(len(self.measured)), False, bool))
        return padded, None if y is None else rows(y, 0.0, np.float32)

    def real_rows(self, size) -> np.ndarray:
        """Where this fit's measurements sit among `padded(y, size)`'s rows."""
        n1, pairs = self.n_single, (len(self.measured) - self.n_single) // 2
        return np.r_[np.arange(n1), size(n1) + np.arange(2 * pairs)]


def transfer_matrix(x: MatrixInputs, y=None):
    """Collapsed transfer-matrix model: the variance parameters against the marginal likelihood
    of the measured g (`y`, ordered as `x.measured`)."""
    sd_source = numpyro.sample("sd_source", dist.HalfNormal(EFFECT_SD))
    sd_target = numpyro.sample("sd_target", dist.HalfNormal(EFFECT_SD))
    sd_pair = numpyro.sample("sd_pair", dist.HalfNormal(EFFECT_SD))
    rho = numpyro.deterministic("rho", 2.0 * numpyro.sample("rho_01", dist.Beta(2.0, 2.0)) - 1.0)
    if y is not None:
        numpyro.factor("g_measured", _collapsed(x, y, sd_source, sd_target, sd_pair, rho)[0])


def prior_sd(x: MatrixInputs, sd_source, sd_target):
    """Prior sd of each coefficient: mu, gamma (k), source effects (n), target effects (n)."""
    n, k = x.n_languages, x.n_covariates
    return jnp.concatenate([jnp.array([MEAN_PRIOR[1]]), jnp.full(k, COVARIATE_SD),
                            jnp.full(n, sd_source), jnp.full(n, sd_target)])


def _covariance(x: MatrixInputs, sd_pair, rho):
    """The additive model's measurement covariance: variances (m,) and the two-way pairs'
    covariances (pairs,); padding rows get unit variance and no covariance."""
    real = True if x.real is None else x.real
    var = jnp.where(real, sd_pair ** 2 + x.se ** 2, 1.0)
    return var, jnp.where(True if x.real is None else x.real[x.n_single::2], rho * sd_pair ** 2, 0.0)


def _whiten(x: MatrixInputs, values, var, cross):
    """L^-1 values for the measurement covariance R = L L^T (block diagonal: singles with
    variance `var`, and the 2x2 blocks of pairs measured both ways, covariance `cross`), and
    log det R. `values` is (m,) or (m, q)."""
    n1 = x.n_single
    shape = (-1,) + (1,) * (values.ndim - 1)
    single = values[:n1] / jnp.sqrt(var[:n1]).reshape(shape)
    a, b = values[n1::2], values[n1 + 1::2]
    va, vb = var[n1::2], var[n1 + 1::2]
    l11 = jnp.sqrt(va)
    l21 = cross / l11
    l22 = jnp.sqrt(vb - l21 ** 2)
    first = a / l11.reshape(shape)
    second = (b - l21.reshape(shape) * first) / l22.reshape(shape)
    paired = jnp.stack([first, second], axis=1).reshape((-1,) + values.shape[1:])
    log_det = jnp.sum(jnp.log(var[:n1])) + 2.0 * jnp.sum(jnp.log(l11) + jnp.log(l22))
    return jnp.concatenate([single, paired]), log_det


def _collapsed(x: MatrixInputs, y, sd_source, sd_target, sd_pair, rho):
    """Log marginal likelihood of y under the additive model, and the pieces of the
    coefficients' conditional (`_marginal`)."""
    return _marginal(x, y, prior_sd(x, sd_source, sd_target), *_covariance(x, sd_pair, rho))


def _marginal(x: MatrixInputs, y, S, var, cross):
    """Log marginal likelihood of y = X beta + e, beta ~ N(0, S^2), e ~ N(0, R) (R from `var`
    and `cross`, `_whiten`), and the pieces of the coefficients' conditional.

    Whitened by R: with M = I + S X~' X~ S = L_M L_M', log p(y) = -1/2 (y~'y~ - |L_M^-1 S X~'
    y~|^2 + log det R + 2 sum log diag L_M + m log 2 pi), and beta | y ~ N(S M^-1 S X~' y~,
    S M^-1 S).
    """
    X = jnp.asarray(x.design)[x.measured]
    y_w, log_det_R = _whiten(x, jnp.asarray(y), var, cross)
    X_w, _ = _whiten(x, X, var, cross)
    XS = X_w * S
    M = jnp.eye(S.shape[0]) + XS.T @ XS
    L = jnp.linalg.cholesky(M)
    u = jax.scipy.linalg.solve_triangular(L, XS.T @ y_w, lower=True)
    log_ml = -0.5 * (y_w @ y_w - u @ u + log_det_R + 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
                     + _count(x, y_w) * jnp.log(2.0 * jnp.pi))
    return log_ml, L, u, S


def _count(x: MatrixInputs, y):
    return y.shape[0] if x.real is None else jnp.sum(x.real)


def coefficient_draws(x: MatrixInputs, y, hyper: dict, key) -> np.ndarray:
    """Draws of (mu, gamma, source effects, target effects), one per draw of the variance
    parameters in `hyper` (arrays with leading (chain, draw) axes), from the exact conditional."""
    def one(key, sd_source, sd_target, sd_pair, rho):
        _, L, u, S = _collapsed(x, jnp.asarray(y), sd_source, sd_target, sd_pair, rho)
        z = jax.random.normal(key, u.shape)
        return S * jax.scipy.linalg.solve_triangular(L.T, u + z, lower=False)
    shape = np.shape(hyper["sd_source"])
    keys = jax.random.split(key, int(np.prod(shape)))
    flat = [jnp.asarray(hyper[k]).reshape(-1) for k in ("sd_source", "sd_target", "sd_pair", "rho")]
    beta = jax.jit(jax.vmap(one))(keys, *flat)
    return np.asarray(beta).reshape(shape + (beta.shape[-1],))


def pair_residuals(x: MatrixInputs, y, g_fixed, sd_pair, rho, rng) -> np.ndarray:
    """Draws of every ordered pair's residual from their conditional given the rest.

    For pair (a, b) = (s->t, t->s) the prior is N(0, sd_pair^2 [[1, rho], [rho, 1]]) and each
    measured direction adds a Gaussian observation of fixed + residual with its standard
    error; unmeasured directions add nothing (`bivariate_residuals`).
    """
    var = np.asarray(sd_pair, dtype=float)[..., None] ** 2
    rho = np.clip(np.asarray(rho, dtype=float), -0.999, 0.999)[..., None]
    var = np.broadcast_to(var, np.shape(g_fixed))
    return bivariate_residuals(x, y, g_fixed, var, rho * var[..., :1], rng)


def bivariate_residuals(x, y, g_fixed, var, shared, rng, mix=None) -> np.ndarray:
    """Draws of every ordered pair's residual given the measurements (`x.measured`, `x.se`, `y`).

    The residuals of a pair (a, b) = (s->t, t->s) are a priori N(0, [[var_a, c], [c, var_b]])
    (`var`: (..., p); `shared` = c: (..., 1) or (..., p), read at a); each measured direction
    adds a Gaussian observation of fixed + residual. The two directions are drawn jointly
    (exact, precision form), vectorised over the leading axes of `g_fixed` (..., p). `mix`
    (..., pairs): a Student-t pair's scale-mixture weight, dividing its whole covariance.
    """
    g_fixed = np.asarray(g_fixed, dtype=float)
    p = g_fixed.shape[-1]
    real = np.ones(len(x.measured), bool) if getattr(x, "real", None) is None else np.asarray(x.real)
    weight, value = np.zeros(p), np.zeros(p)   # precision and value of each pair's measurement
    weight[x.measured[real]] = 1.0 / np.asarray(x.se)[real] ** 2
    value[x.measured[real]] = np.asarray(y)[real]
    reverse = _reverse(x.source, x.target, x.n_languages)
    a = np.flatnonzero(np.arange(p) < reverse)          # each unordered pair once
    b = reverse[a]
    shared = np.broadcast_to(shared, g_fixed.shape)[..., a]
    h_a = (value[a] - g_fixed[..., a]) * weight[a]      # W r, per direction
    h_b = (value[b] - g_fixed[..., b]) * weight[b]
    v_a, v_b = var[..., a], var[..., b]
    if mix is not None:      # covariance / w: prior and measurement
        v_a, v_b, shared = v_a / mix, v_b / mix, shared / mix
        h_a, h_b = h_a * mix, h_b * mix
    w_a, w_b = (weight[a], weight[b]) if mix is None else (weight[a] * mix, weight[b] * mix)
    det_prior = v_a * v_b - shared ** 2
    P_aa, P_bb = v_b / det_prior + w_a, v_a / det_prior + w_b
    P_ab = -shared / det_prior
    det = P_aa * P_bb - P_ab ** 2
    C_aa, C_bb, C_ab = P_bb / det, P_aa / det, -P_ab / det     # posterior covariance
    l_aa = np.sqrt(C_aa)
    l_ba = C_ab / l_aa
    l_bb = np.sqrt(np.maximum(C_bb - l_ba ** 2, 0.0))
    z_a = rng.standard_normal(g_fixed[..., a].shape)
    z_b = rng.standard_normal(g_fixed[..., a].shape)
    out = np.empty_like(g_fixed)
    out[..., a] = C_aa * h_a + C_ab * h_b + l_aa * z_a
    out[..., b] = C_ab * h_a + C_bb * h_b + l_ba * z_a + l_bb * z_b
    return out


def _reverse(source, target, n) -> np.ndarray:
    """Index of each ordered pair's reverse, for pairs listed by (target, source) without the diagonal."""
    index = np.full((n, n), -1)
    index[np.asarray(target), np.asarray(source)] = np.arange(len(source))
    return index[np.asarray(source), np.asarray(target)]


FACTOR_SD = 0.3                   # half-normal scale of the first interaction factor's size
NOISE_PRIOR = (math.log(0.05), 1.0)   # log of the typical directional residual sd (g scale)
NU = 4.0                          # the directional noise's Student-t degrees of freedom (as the curves')
NOISE_SPREAD_SD = 0.5             # half-normal scale of the targets' spread in log residual sd


def interaction_scales(scale_first, shrink):
    """Sizes of the interaction factors, largest first: the first, then each a share of the last."""
    return scale_first * jnp.concatenate([jnp.ones(1), jnp.cumprod(shrink)])


def interaction(x: MatrixInputs, u, v, sizes):
    """sum_k size_k u[target, k] v[source, k] for every ordered pair."""
    return jnp.sum((u * sizes)[jnp.asarray(x.target)] * v[jnp.asarray(x.source)], axis=-1)


def interaction_mean(x: MatrixInputs, p: dict):
    """mu + a_source + b_target + gamma . covariates + the interaction, every ordered pair."""
    k = x.n_covariates
    covariates = jnp.asarray(x.design)[:len(x.source), 1:1 + k]     # (padding adds a row)
    return (p["mu"] + p["source_effect"][jnp.asarray(x.source)] + p["target_effect"][jnp.asarray(x.target)]
            + covariates @ p["gamma"] + interaction(x, p["u"], p["v"], p["factor_sizes"]))


def transfer_interaction(x: MatrixInputs, y=None):
    """Transfer matrix with a low-rank source x target interaction and per-target noise:

        g = mu + a_source + b_target + gamma . covariates + sum_k size_k u_target,k v_source,k
            + c_pair + e,

    a ~ N(0, sd_source), b ~ sd_target t_NU (a few targets, zh and ps in the paper's matrix,
    sit far below the rest), and the factors u, v (`x.rank` of them, N(0, 1)) are centred over
    the languages,
    so that none stands in for mu or the effects; the factor sizes shrink
    (`interaction_scales`). c_pair ~ N(0, sd_pair) is shared by A->B and B->A (related pairs
    help both ways; integrated out, `pair_log_density`); e is Student-t (`NU` degrees of
    freedom, as a normal scale mixture: one weight `mix` per measurement) with scale
    sigma_target, log-normal around a shared typical value. A padding row's weight is a free
    draw from its prior.
    """
    n, k, r = x.n_languages, x.n_covariates, x.rank
    p = {"mu": numpyro.sample("mu", dist.Normal(*MEAN_PRIOR)),
         "gamma": numpyro.sample("gamma", dist.Normal(0.0, COVARIATE_SD).expand([k]).to_event(1))}
    sd_source = numpyro.sample("sd_source", dist.HalfNormal(EFFECT_SD))
    sd_target = numpyro.sample("sd_target", dist.HalfNormal(EFFECT_SD))
    sd_pair = numpyro.sample("sd_pair", dist.HalfNormal(EFFECT_SD))
    scale_first = numpyro.sample("factor_scale", dist.HalfNormal(FACTOR_SD))
    shrink = numpyro.sample("factor_shrink", dist.Beta(2.0, 2.0).expand([r - 1]).to_event(1))
    p["factor_sizes"] = numpyro.deterministic("factor_sizes", interaction_scales(scale_first, shrink))
    noise_mean = numpyro.sample("log_noise_mean", dist.Normal(*NOISE_PRIOR))
    noise_spread = numpyro.sample("log_noise_spread", dist.HalfNormal(NOISE_SPREAD_SD))
    with numpyro.plate("language", n, dim=-1):
        z_source = numpyro.sample("z_source", dist.Normal(0.0, 1.0))
        z_target = numpyro.sample("z_target", dist.StudentT(NU, 0.0, 1.0))
        z_noise = numpyro.sample("z_noise", dist.Normal(0.0, 1.0))
        u = numpyro.sample("u_raw", dist.Normal(0.0, 1.0).expand([n, r]).to_event(1))
        v = numpyro.sample("v_raw", dist.Normal(0.0, 1.0).expand([n, r]).to_event(1))
    p["u"] = numpyro.deterministic("u", u - u.mean(axis=0))
    p["v"] = numpyro.deterministic("v", v - v.mean(axis=0))
    p["source_effect"] = numpyro.deterministic("source_effect", sd_source * (z_source - z_source.mean()))
    p["target_effect"] = numpyro.deterministic("target_effect", sd_target * (z_target - z_target.mean()))
    sigma = numpyro.deterministic("sigma_target", jnp.exp(noise_mean + noise_spread * z_noise))
    with numpyro.plate("measurement", len(x.measured), dim=-1):
        mix = numpyro.sample("mix", dist.Gamma(NU / 2, NU / 2))
    if y is not None:
        var = sigma[jnp.asarray(x.target)[_pairs(x)]] ** 2 / mix + jnp.asarray(x.se) ** 2 + sd_pair ** 2
        numpyro.factor("g_measured", pair_log_density(x, y, interaction_mean(x, p), var, sd_pair ** 2))


def pair_log_density(x: MatrixInputs, y, mean, var, shared):
    """Gaussian log density of the measurements given the structured part `mean` (every pair)
    and their variances (m,): singles independent, two-way pairs bivariate with covariance
    `shared` (the pair term). Padding rows count nothing."""
    real = jnp.ones(len(x.measured), bool) if x.real is None else jnp.asarray(x.real)
    resid = jnp.where(real, jnp.asarray(y) - mean[_pairs(x)], 0.0)
    var = jnp.where(real, var, 1.0)
    n1, shared = x.n_single, jnp.where(real[x.n_single::2], shared, 0.0)
    single = -0.5 * (resid[:n1] ** 2 / var[:n1] + jnp.log(2 * jnp.pi * var[:n1]))
    a, b, va, vb = resid[n1::2], resid[n1 + 1::2], var[n1::2], var[n1 + 1::2]
    det = va * vb - shared ** 2
    quad = (vb * a ** 2 + va * b ** 2 - 2 * shared * a * b) / det
    both = -0.5 * (quad + jnp.log(det)) - jnp.log(2 * jnp.pi)
    return jnp.sum(jnp.where(real[:n1], single, 0.0)) + jnp.sum(jnp.where(real[n1::2], both, 0.0))


def _pairs(x: MatrixInputs):
    """Ordered-pair index of each measurement (padding rows: the last pair, never used)."""
    return jnp.minimum(jnp.asarray(x.measured), len(x.source) - 1)
