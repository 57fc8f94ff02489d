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


def _whiten(x: MatrixInputs, values, sd_pair, rho):
    """L^-1 values for the measurement covariance R = L L^T (block diagonal: singles and the
    2x2 blocks of pairs measured both ways), and log det R. `values` is (m,) or (m, q)."""
    real = True if x.real is None else x.real
    var = jnp.where(real, sd_pair ** 2 + x.se ** 2, 1.0)
    n1 = x.n_single
    single = values[:n1] / jnp.sqrt(var[:n1]).reshape((-1,) + (1,) * (values.ndim - 1))
    a, b = values[n1::2], values[n1 + 1::2]
    va, vb = var[n1::2], var[n1 + 1::2]
    l11 = jnp.sqrt(va)
    l21 = jnp.where(True if x.real is None else x.real[n1::2], rho * sd_pair ** 2, 0.0) / l11
    l22 = jnp.sqrt(vb - l21 ** 2)
    shape = (-1,) + (1,) * (values.ndim - 1)
    first = a / l11.reshape(shape)
    second = (b - l21.reshape(shape) * first) / l22.reshape(shape)
    paired = jnp.stack([first, second], axis=1).reshape((-1,) + values.shape[1:])
    log_det = jnp.sum(jnp.log(var[:n1])) + 2.0 * jnp.sum(jnp.log(l11) + jnp.log(l22))
    return jnp.concatenate([single, paired]), log_det


def _collapsed(x: MatrixInputs, y, sd_source, sd_target, sd_pair, rho):
    """Log marginal likelihood of y, and the pieces of the coefficients' conditional.

    y = X beta + e, beta ~ N(0, S^2) (S = prior_sd), e ~ N(0, R). Whitened by R: with
    M = I + S X~' X~ S = L_M L_M', log p(y) = -1/2 (y~'y~ - |L_M^-1 S X~' y~|^2 + log det R
    + 2 sum log diag L_M + m log 2 pi), and beta | y ~ N(S M^-1 S X~' y~, S M^-1 S).
    """
    X = jnp.asarray(x.design)[x.measured]
    y_w, log_det_R = _whiten(x, jnp.asarray(y), sd_pair, rho)
    X_w, _ = _whiten(x, X, sd_pair, rho)
    S = prior_sd(x, sd_source, sd_target)
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
    error; unmeasured directions add nothing. The two directions are drawn jointly (exact,
    precision form), vectorised over draws (leading axes of `g_fixed`, shape (..., p)).
    """
    g_fixed = np.asarray(g_fixed, dtype=float)
    sd_pair = np.asarray(sd_pair, dtype=float)[..., None]
    rho = np.clip(np.asarray(rho, dtype=float), -0.999, 0.999)[..., None]
    p = g_fixed.shape[-1]
    weight = np.zeros(p)                       # precision of each pair's measurement
    value = np.zeros(p)
    weight[x.measured], value[x.measured] = 1.0 / np.asarray(x.se) ** 2, y
    a = np.flatnonzero(np.arange(p) < np.asarray(x.reverse))   # each unordered pair once
    b = np.asarray(x.reverse)[a]
    h_a = (value[a] - g_fixed[..., a]) * weight[a]          # W r, per direction
    h_b = (value[b] - g_fixed[..., b]) * weight[b]
    # prior precision: inv(var [[1, rho], [rho, 1]]) = [[1, -rho], [-rho, 1]] / (var (1 - rho^2))
    scale = 1.0 / (sd_pair ** 2 * (1.0 - rho ** 2))
    P_aa, P_bb, P_ab = scale + weight[a], scale + weight[b], -rho * scale
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
