"""The scaling laws as pure, jit-able JAX functions.

Every law returns the *log* loss (the models' likelihood lives on log loss) and has a
natural-scale twin that returns the loss itself. Parameters are natural scale (E, A, B,
alpha, beta, ...). These functions are the single definition used by the NumPyro models,
the simulator, decisions and plots.

Token and parameter counts may be given in any unit as long as the law's coefficients are
expressed in the same unit; the models pass counts divided by a reference scale so that
float32 stays accurate.

Besides the laws, the formulas that decisions, simulators, design and the trainer evaluate
live here too, once: learning curves and their inverse, the crossover study's scratch and
finetune curves, the curse law's terms, the Chinchilla compute optimum and UNIMAX. Those
functions work on both JAX and numpy arrays (`_xp`): inside a model or `jax.jit` they use
jax.numpy; called with numpy arrays or Python numbers they use numpy, so float64 callers get
float64 results without `jax.enable_x64`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import softplus
from jax.scipy.special import logsumexp


def log_chinchilla(N, D, E, A, B, alpha, beta):
    """log L for Chinchilla: L = E + A / N^alpha + B / D^beta."""
    return _log_sum3(jnp.log(E), jnp.log(A) - alpha * jnp.log(N), jnp.log(B) - beta * jnp.log(D))


def chinchilla(N, D, E, A, B, alpha, beta):
    """Chinchilla loss L = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022)."""
    return jnp.exp(log_chinchilla(N, D, E, A, B, alpha, beta))


def saturation(D, U, lam):
    """ATLAS repetition saturation S_lambda(D; U).

    Equal to D up to one epoch (D <= U); beyond it, U * (1 + (1 - exp(-lam (D/U - 1))) / lam),
    which saturates at U (1 + 1/lam). U = inf means "never repeated" and returns D.
    Identical to Muennighoff's effective data D' with R_D* = 1 / lam.
    """
    D, U = jnp.asarray(D), jnp.asarray(U)
    finite = jnp.isfinite(U)
    U_safe = jnp.where(finite, U, 1.0)
    # Only the branch with D > U is evaluated on repeated data; clamp so the unused branch
    # never produces inf/nan gradients.
    extra_epochs = jnp.maximum(D / U_safe - 1.0, 0.0)
    repeated = U_safe * (1.0 + -jnp.expm1(-lam * extra_epochs) / lam)
    return jnp.where(finite & (D > U_safe), repeated, D)


def effective_data(D_t, U_t, lam, D_transfer=None, U_transfer=None, tau=None,
                   D_other=None, U_other=None, tau_other=None, floor=1e-3):
    """ATLAS effective data exposure for a target language.

    D_eff = S(D_t; U_t) + sum_i tau_i S(D_i; U_i) + tau_other S(D_other; U_other).
    `D_transfer`, `U_transfer` have a trailing axis over the transfer languages K_t and
    `tau` has that length. Negative tau (interference) can push D_eff towards zero; a smooth
    floor at `floor * S(D_t; U_t)` keeps the law finite without a hard clip.
    """
    S_t = saturation(D_t, U_t, lam)
    ratio = jnp.ones_like(S_t)
    if D_transfer is not None:
        lam_i = jnp.expand_dims(lam, -1) if jnp.ndim(lam) > 0 else lam  # per-row lambda
        S_i = saturation(D_transfer, U_transfer, lam_i)
        ratio = ratio + jnp.sum(tau * S_i, axis=-1) / S_t
    if D_other is not None:
        ratio = ratio + tau_other * saturation(D_other, U_other, lam) / S_t
    sharpness = 50.0
    ratio = floor + softplus(sharpness * (ratio - floor)) / sharpness
    return S_t * ratio


def log_atlas(N, D_eff, E, A, B, alpha, beta):
    """log L for ATLAS: Chinchilla's form evaluated on the effective data D_eff."""
    return log_chinchilla(N, D_eff, E, A, B, alpha, beta)


def atlas(N, D_eff, E, A, B, alpha, beta):
    """ATLAS loss L = E + A / N^alpha + B / D_eff^beta (Longpre et al. 2025, Eq. 1)."""
    return jnp.exp(log_atlas(N, D_eff, E, A, B, alpha, beta))


def dcsl_effective(N, D, U, A, B, alpha, beta, R_D_star, R_N_star):
    """Muennighoff et al.'s effective parameters N' and effective data D'.

    U is the unique-token budget (inf when the data is never repeated). A run shorter than one
    epoch has U_D = D. U_N, the compute-optimal size for U_D tokens, caps the parameters that
    count fully; the excess decays like repeated data with constant R_N*.
    """
    U_D = jnp.minimum(U, D)
    R_D = D / U_D - 1.0
    D_prime = U_D * (1.0 + R_D_star * -jnp.expm1(-R_D / R_D_star))
    U_N = jnp.minimum(chinchilla_params_for_tokens(U_D, A, B, alpha, beta), N)
    R_N = jnp.maximum(N / U_N - 1.0, 0.0)
    N_prime = U_N * (1.0 + R_N_star * -jnp.expm1(-R_N / R_N_star))
    return N_prime, D_prime


def log_dcsl(N, D, U, E, A, B, alpha, beta, R_D_star, R_N_star):
    """log L for the data-constrained law: L = E + A / N'^alpha + B / D'^beta."""
    N_prime, D_prime = dcsl_effective(N, D, U, A, B, alpha, beta, R_D_star, R_N_star)
    return log_chinchilla(N_prime, D_prime, E, A, B, alpha, beta)


def dcsl(N, D, U, E, A, B, alpha, beta, R_D_star, R_N_star):
    """Data-constrained scaling law loss (Muennighoff et al. 2023)."""
    return jnp.exp(log_dcsl(N, D, U, E, A, B, alpha, beta, R_D_star, R_N_star))


def log_msl(N, D, p_family, E, A, B, alpha, beta, gamma):
    """log L for He et al.'s multilingual law: L = (E + A/N^alpha + B/D^beta) p^(-gamma)."""
    return log_chinchilla(N, D, E, A, B, alpha, beta) - gamma * jnp.log(p_family)


def msl(N, D, p_family, E, A, B, alpha, beta, gamma):
    """He et al. (2024) multilingual loss; p_family is the family's sampling ratio."""
    return jnp.exp(log_msl(N, D, p_family, E, A, B, alpha, beta, gamma))


def log_curse(K, N, D_t, E, A, B, alpha, beta, phi, psi):
    """log L for the curse of multilinguality (ATLAS section 5), K languages sampled uniformly:
    L = E + A K^phi / N^alpha + B K^psi / D_t^beta, D_t the tokens per language."""
    K = jnp.asarray(K)  # jax.numpy throughout, numpy inputs included
    return _log_sum3(jnp.log(E), *log_curse_terms(K, N, D_t, A, B, alpha, beta, phi, psi))


def log_curse_terms(K, N, D_t, A, B, alpha, beta, phi, psi):
    """The curse law's two reducible terms, as logs:
    (log A K^phi / N^alpha, log B K^psi / D_t^beta)."""
    xp = _xp(K, N, D_t, A, B, alpha, beta, phi, psi)
    return (xp.log(A) + phi * xp.log(K) - alpha * xp.log(N),
            xp.log(B) + psi * xp.log(K) - beta * xp.log(D_t))


def curse(K, N, D_t, E, A, B, alpha, beta, phi, psi):
    """The curse law, natural scale: L = E + A K^phi / N^alpha + B K^psi / D_t^beta."""
    xp = _xp(K, N, D_t, E, A, B, alpha, beta, phi, psi)
    log_n, log_d = log_curse_terms(K, N, D_t, A, B, alpha, beta, phi, psi)
    return E + xp.exp(log_n) + xp.exp(log_d)


def _log_sum3(a, b, c):
    a, b, c = jnp.broadcast_arrays(a, b, c)
    return logsumexp(jnp.stack([a, b, c]), axis=0)


# ---------------------------------------------------------------------------------------------
# Monolingual natural-scale forms: what decisions evaluate from a fitted law's draws. Each takes
# N, D, U (unique tokens; inf: never repeated) and a dict of natural-scale parameters.


def chinchilla_form(N, D, U, p):
    """Chinchilla at (N, D); U is ignored (the law does not model repetition)."""
    return chinchilla(N, D, p["E"], p["A"], p["B"], p["alpha"], p["beta"])


def atlas_form(N, D, U, p):
    """ATLAS trained on the target language alone: Chinchilla on the saturated data S(D; U)."""
    return atlas(N, saturation(D, U, p["lambda"]), p["E"], p["A"], p["B"], p["alpha"], p["beta"])


def dcsl_form(N, D, U, p):
    """The data-constrained law at (N, D, U)."""
    return dcsl(N, D, U, p["E"], p["A"], p["B"], p["alpha"], p["beta"], p["R_D_star"], p["R_N_star"])


# ---------------------------------------------------------------------------------------------
# Formulas that work on numpy and JAX arrays alike (see the module docstring).


def _xp(*values):
    """jax.numpy when any value is a JAX array (a tracer inside jit included), else numpy."""
    return jnp if any(isinstance(v, jax.Array) for v in values) else np


def chinchilla_log_G(A, B, alpha, beta):
    """log G, G = (alpha A / (beta B))^(1/(alpha+beta)): Chinchilla's compute-optimal model size
    is N* = G (C/6)^(beta/(alpha+beta)) and its tokens D* = (C/6)^(alpha/(alpha+beta)) / G."""
    xp = _xp(A, B, alpha, beta)
    return (xp.log(alpha) + xp.log(A) - xp.log(beta) - xp.log(B)) / (alpha + beta)


def chinchilla_optimum(compute, A, B, alpha, beta):
    """Chinchilla's loss-minimising (N*, D*) at compute C = 6 N D (Hoffmann et al. 2022)."""
    xp = _xp(compute, A, B, alpha, beta)
    compute = xp.asarray(compute)
    N = xp.exp(chinchilla_log_G(A, B, alpha, beta) + beta / (alpha + beta) * xp.log(compute / 6.0))
    return N, compute / (6.0 * N)


def chinchilla_params_for_tokens(D, A, B, alpha, beta):
    """The model size whose Chinchilla compute optimum trains on D tokens:
    N = G^(1 + beta/alpha) D^(beta/alpha) (Muennighoff et al.'s U_N for D = U_D); C = 6 N D."""
    xp = _xp(D, A, B, alpha, beta)
    log_G = chinchilla_log_G(A, B, alpha, beta)
    return xp.exp((beta / alpha) * (xp.log(D) + log_G) + log_G)


def _chinchilla_frontier(A, B, alpha, beta):
    """(K, gamma) of the compute-optimal loss L*(C) = E + K (C/6)^-gamma."""
    xp = _xp(A, B, alpha, beta)
    log_G = chinchilla_log_G(A, B, alpha, beta)
    gamma = alpha * beta / (alpha + beta)
    return A * xp.exp(-alpha * log_G) + B * xp.exp(beta * log_G), gamma


def chinchilla_optimal_loss(compute, E, A, B, alpha, beta):
    """Chinchilla's loss at its compute optimum: L*(C) = E + K (C/6)^(-alpha beta/(alpha+beta)),
    K = A G^-alpha + B G^beta (equal to `chinchilla` at `chinchilla_optimum(C)`)."""
    K, gamma = _chinchilla_frontier(A, B, alpha, beta)
    return E + K * (compute / 6.0) ** -gamma


def chinchilla_compute_for_loss(loss, E, A, B, alpha, beta):
    """The compute whose Chinchilla optimum reaches `loss` (inverts `chinchilla_optimal_loss`);
    +inf where loss <= E."""
    xp = _xp(loss, E, A, B, alpha, beta)
    K, gamma = _chinchilla_frontier(A, B, alpha, beta)
    gap = loss - E
    reach = gap > 0
    return xp.where(reach, 6.0 * (xp.where(reach, gap, 1.0) / K) ** (-1.0 / gamma), xp.inf)


def learning_curve(log_u, E, R, beta):
    """Loss on a learning curve L(d) = E + R (d / d_end)^-beta, given log_u = log(d / d_end):
    floor E, reducible loss R = L_end - E at the curve's anchor d_end (transfer model, BTS)."""
    xp = _xp(log_u, E, R, beta)
    return E + R * xp.exp(-beta * log_u)


def tokens_for_loss(loss, E, R, beta):
    """Inverse of `learning_curve`: log(d / d_end) at which the curve reaches `loss`; +inf where
    it never does (loss at or below the floor E)."""
    xp = _xp(loss, E, R, beta)
    ratio = (loss - E) / R
    reach = ratio > 0
    return xp.where(reach, -xp.log(xp.where(reach, ratio, 1.0)) / beta, xp.inf)


def scratch_curve(u, L0, B, beta):
    """Pretraining from scratch (the crossover study): L(u) = L0 + B u^-beta, u = d / d_end the
    current run's tokens over the cell's anchor."""
    return L0 + B * u ** -beta


def finetune_curve(u, L0, B, beta, delta, D0):
    """Finetuning a multilingual checkpoint that already carries D0 (in units of d_end) effective
    target tokens, at a persistent penalty delta: L(u) = L0 + delta + B (u + D0)^-beta."""
    return L0 + delta + B * (u + D0) ** -beta


def unimax(sizes, budget, max_epochs):
    """UNIMAX token allocation (Chung et al. 2023, Alg. 1), in the order of `sizes` (unique tokens
    per language): visit languages from the smallest corpus up (ties keep the given order);
    each gets the budget left split evenly over the languages left, capped at `max_epochs` x
    its size. When every language hits its cap the allocations sum to less than the budget.
    Plain Python (a loop over a few languages), not for jit."""
    sizes = [float(s) for s in sizes]
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    remaining, allocation = float(budget), np.zeros(len(sizes))
    for rank, i in enumerate(order):
        allocation[i] = min(remaining / (len(order) - rank), max_epochs * sizes[i])
        remaining -= allocation[i]
    return allocation
