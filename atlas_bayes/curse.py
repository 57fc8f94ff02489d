"""The curse of multilinguality (ATLAS section 5) and iso-loss scaling when adding languages.

The law, with K languages sampled uniformly, N parameters and D_t tokens per language:

    L(K, N, D_t) = L_inf + A K^phi / N^alpha + B K^psi / D_t^beta,    D_tot = K D_t.

Going from K to rK languages at the same loss, with s = N'/N and t = D_t'/D_t, the reducible
loss must stay fixed:  r^phi w_N s^-alpha + r^psi w_D t^-beta = 1, where w_N and w_D are the
two terms' shares of the reducible loss at the starting point. Minimising compute
(C ~ N D_tot, so C'/C = s r t) along that curve gives, from any starting point,

    s = [r^phi w_N (alpha + beta) / beta]^(1/alpha),   t = [r^psi w_D (alpha + beta) / alpha]^(1/beta)

(set the derivative of log s + log t(s) to zero: the N term's share after the move is
beta / (alpha + beta)). From a compute-optimal start (w_N = beta / (alpha + beta)) these are the
paper's closed forms s = r^(phi/alpha), t = r^(psi/beta). Every function takes arrays of
posterior draws and returns arrays of the same shape, so intervals come for free.
"""

from __future__ import annotations

import numpy as np


def term_shares(K, N, D_t, A, B, alpha, beta, phi, psi):
    """(w_N, w_D): the parameter and data terms' shares of the reducible loss at (K, N, D_t)."""
    log_n = np.log(A) + phi * np.log(K) - alpha * np.log(N)
    log_d = np.log(B) + psi * np.log(K) - beta * np.log(D_t)
    w_N = 1.0 / (1.0 + np.exp(log_d - log_n))
    return w_N, 1.0 - w_N


def paper_multipliers(r, alpha, beta, phi, psi) -> dict:
    """The paper's closed forms from a compute-optimal start (ATLAS section 4.2)."""
    r = np.asarray(r, dtype=float)
    return {"N": r ** (phi / alpha), "D_t": r ** (psi / beta),
            "D_tot": r ** (1.0 + psi / beta), "C": r ** (1.0 + phi / alpha + psi / beta)}


def compute_optimal_move(r, w_N, alpha, beta, phi, psi) -> dict:
    """Least-compute multipliers to keep the loss when going from K to rK languages, from a
    start whose parameter term holds share w_N of the reducible loss (any start)."""
    r, w_N = np.asarray(r, dtype=float), np.asarray(w_N, dtype=float)
    s = (r ** phi * w_N * (alpha + beta) / beta) ** (1.0 / alpha)
    t = (r ** psi * (1.0 - w_N) * (alpha + beta) / alpha) ** (1.0 / beta)
    return {"N": s, "D_t": t, "D_tot": r * t, "C": s * r * t}


def tokens_for_parameters(r, s, w_N, alpha, beta, phi, psi) -> np.ndarray:
    """Per-language token multiplier t that keeps the loss when going to rK languages with
    parameters multiplied by s (NaN where no amount of data suffices: s^alpha <= r^phi w_N)."""
    rest = 1.0 - r ** phi * w_N * np.asarray(s, dtype=float) ** -alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rest > 0, (r ** psi * (1.0 - w_N) / rest) ** (1.0 / beta), np.nan)


def parameters_for_tokens(r, t, w_N, alpha, beta, phi, psi) -> np.ndarray:
    """Parameter multiplier s that keeps the loss when going to rK languages with per-language
    tokens multiplied by t (NaN where no model size suffices: t^beta <= r^psi w_D)."""
    rest = 1.0 - r ** psi * (1.0 - w_N) * np.asarray(t, dtype=float) ** -beta
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rest > 0, (r ** phi * w_N / rest) ** (1.0 / alpha), np.nan)

