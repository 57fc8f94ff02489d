"""The scaling laws as pure, jit-able JAX functions.

Every law returns the *log* loss (the models' likelihood lives on log loss) and has a
natural-scale twin that returns the loss itself. Parameters are natural scale (E, A, B,
alpha, beta, ...). These functions are the single definition used by the NumPyro models,
the simulator, decisions and plots.

Token and parameter counts may be given in any unit as long as the law's coefficients are
expressed in the same unit; the models pass counts divided by a reference scale so that
float32 stays accurate.
"""

import jax.numpy as jnp
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
    log_G = (jnp.log(alpha) + jnp.log(A) - jnp.log(beta) - jnp.log(B)) / (alpha + beta)
    log_U_N = (beta / alpha) * (jnp.log(U_D) + log_G) + log_G
    U_N = jnp.minimum(jnp.exp(log_U_N), N)
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
    return _log_sum3(jnp.log(E), jnp.log(A) + phi * jnp.log(K) - alpha * jnp.log(N),
                     jnp.log(B) + psi * jnp.log(K) - beta * jnp.log(D_t))


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
