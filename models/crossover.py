"""Pretraining from scratch vs finetuning a multilingual checkpoint, as one NumPyro model.

Each cell is one (language, model size). Its scratch runs follow L(d) = L0 + B (d/d_end)^-beta
in the current run's tokens d, written like the transfer curves (models/transfer.py) through
the loss at the cell's last scratch checkpoint, the drop across the scratch range and the
irreducible share of the final loss. A finetuned run continues a checkpoint that already
carries D0 effective target tokens but pays a persistent penalty Delta (capacity and
vocabulary spent on other languages):

    L_ft(d) = L0 + Delta + B ((d + D0)/d_end)^-beta.

It starts lower and improves more slowly; the curves cross once, where B [(d/d_end)^-beta -
((d + D0)/d_end)^-beta] = Delta, if and only if Delta > 0 (otherwise finetuning always wins).
Delta (as a share of the final loss) and log D0 are drawn from populations shared by all cells
(non-centred), so a language with thin finetune data borrows the typical values.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from atlas_bayes import laws
from atlas_bayes.models.scaling import student_t
from atlas_bayes.models.transfer import GAP_PRIOR, SHARE_PRIOR


class CrossoverInputs(NamedTuple):
    cell: np.ndarray           # (n,) cell index of each row
    finetune: np.ndarray       # (n,) 1.0 for rows of finetuned runs
    log_d_rel: np.ndarray      # (n,) log(current-run tokens / the cell's d_end)
    log_span: np.ndarray       # (cells,) log d_end - log d_start of the scratch runs
    log_loss_end: np.ndarray   # (cells,) observed log loss at the last scratch checkpoint
    n_cells: int


def crossover_curves(x: CrossoverInputs, log_loss=None, nu=4.0):
    """Scratch and finetune curves of every cell; Student-t likelihood on log loss."""
    delta_mu = numpyro.sample("delta_mu", dist.Normal(0.0, 0.1))
    delta_sd = numpyro.sample("delta_sd", dist.HalfNormal(0.05))
    log_d0_mu = numpyro.sample("log_D0_mu", dist.Normal(0.0, 2.0))
    log_d0_sd = numpyro.sample("log_D0_sd", dist.HalfNormal(1.0))
    with numpyro.plate("cell", x.n_cells):
        log_L_end = numpyro.sample("log_L_end", dist.Normal(x.log_loss_end, 0.5))
        log_gap = numpyro.sample("log_gap", dist.Normal(*GAP_PRIOR))
        logit_s = numpyro.sample("logit_share", dist.Normal(*SHARE_PRIOR))
        delta_z = numpyro.sample("delta_z", dist.Normal(0.0, 1.0))
        log_d0_z = numpyro.sample("log_D0_z", dist.Normal(0.0, 1.0))
    L_end = numpyro.deterministic("L_end", jnp.exp(log_L_end))
    s = jax.nn.sigmoid(logit_s)
    L0 = numpyro.deterministic("L0", s * L_end)
    beta = numpyro.deterministic("beta", jnp.log1p(jnp.exp(log_gap) / (1.0 - s)) / x.log_span)
    B = L_end - L0
    delta = numpyro.deterministic("delta", (delta_mu + delta_sd * delta_z) * L_end)
    D0 = numpyro.deterministic("D0_rel", jnp.exp(log_d0_mu + log_d0_sd * log_d0_z))
    c = x.cell
    d_rel = jnp.exp(x.log_d_rel)
    scratch = laws.scratch_curve(d_rel, L0[c], B[c], beta[c])
    tuned = laws.finetune_curve(d_rel, L0[c], B[c], beta[c], delta[c], D0[c])
    mu = jnp.log(jnp.where(x.finetune > 0, jnp.maximum(tuned, 1e-6), scratch))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.05))
    with numpyro.plate("obs", len(x.cell)):
        numpyro.sample("log_loss", student_t(nu, mu, sigma), obs=log_loss)


class PowerLawInputs(NamedTuple):
    language: np.ndarray       # (m,) language index of each cell with a crossover
    log_N: np.ndarray          # (m,) log n_params minus the reference
    se: np.ndarray             # (m,) sd of the cell's log crossover compute
    n_languages: int
    log_C_mid: float           # mean of the cells' log crossover compute (prior centre)


def crossover_power_law(x: PowerLawInputs, log_C=None):
    """log C_cross = log k_language + gamma (log N - log N_ref) + noise, each cell with its own
    measurement sd; log k ~ N(log_k_mu, log_k_sd) per language, gamma shared.

    The per-language log k are integrated out (each language's cells are jointly normal with
    covariance diag(v) + log_k_sd^2 11'), so NUTS sees four parameters: with two or three
    languages the spread is barely identified and sampling log k directly diverged (measured:
    9 to 1,174 divergences, centred or not). `log_k_draws` draws them afterwards.
    """
    gamma = numpyro.sample("gamma", dist.Normal(1.5, 1.0))
    log_k_mu = numpyro.sample("log_k_mu", dist.Normal(x.log_C_mid, 3.0))
    log_k_sd = numpyro.sample("log_k_sd", dist.HalfNormal(1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    if log_C is not None:
        numpyro.factor("log_C", _marginal(x, log_C, gamma, log_k_mu, log_k_sd, sigma))


def _sums(x, values):
    return jax.ops.segment_sum(values, x.language, num_segments=x.n_languages)


def _marginal(x, log_C, gamma, mu, sd, sigma):
    """Sum over languages of log N(y_l; mu + gamma log N, diag(v) + sd^2 11') (Sherman-Morrison)."""
    v = sigma ** 2 + x.se ** 2
    r = log_C - mu - gamma * x.log_N
    a, b, n = _sums(x, 1.0 / v), _sums(x, r / v), _sums(x, jnp.ones_like(v))
    quad = jnp.sum(r ** 2 / v) - jnp.sum(sd ** 2 * b ** 2 / (1.0 + sd ** 2 * a))
    log_det = jnp.sum(jnp.log(v)) + jnp.sum(jnp.where(n > 0, jnp.log1p(sd ** 2 * a), 0.0))
    return -0.5 * (quad + log_det + len(v) * jnp.log(2.0 * jnp.pi))


def log_k_draws(x: PowerLawInputs, log_C, post: dict, rng) -> np.ndarray:
    """Draws of each language's log k at the reference size from its exact conditional."""
    gamma, mu, sd, sigma = (np.asarray(post[k])[..., None] for k in ("gamma", "log_k_mu", "log_k_sd", "sigma"))
    v = sigma ** 2 + np.asarray(x.se) ** 2
    resid = np.asarray(log_C) - gamma * np.asarray(x.log_N)
    onehot = np.eye(x.n_languages)[x.language]            # (cells, languages)
    precision = 1.0 / sd ** 2 + (1.0 / v) @ onehot
    mean = (mu / sd ** 2 + (resid / v) @ onehot) / precision
    return mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
