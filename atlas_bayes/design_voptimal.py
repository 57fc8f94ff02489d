"""V-optimal design as ScaleBench's selection scripts define it (Li et al. 2026; protocol in
../shared/data/scalebench/SOURCE.md), the baseline our EIG design is compared with.

* Fit: least squares on the loss (not log loss) with L-BFGS-B inside the law's box bounds,
  `n_starts` starts (log-uniform for parameters with a positive lower bound, else uniform),
  up to 30 earlier best fits reused as warm starts; the best training MSE wins.
* Laplace: sigma² = (b0 + SSR/2) / (a0 + n/2 - 1), a0 = 2, b0 = 2 Var(y over the whole pool)
  (the paper's small leak of unobserved outcomes, kept for fidelity);
  H = JᵀJ / sigma² + diag(1/s²), J taken w.r.t. log theta_j where the lower bound is positive,
  prior sd s_j = (log hi - log lo)/4 there, (hi - lo)/4 otherwise.
* Score of candidate c: sum over target rows t of (j_tᵀ H⁻¹ j_c)² / (sigma² + j_cᵀ H⁻¹ j_c),
  the drop in summed predictive variance on the target, divided by (cost_c / B)^0.3.

Laws are `LSLaw`s: a JAX function of (theta, X) on natural-scale parameters, with bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from atlas_bayes import laws

A0 = 2.0            # sigma² prior shape (the selection scripts')
COST_POWER = 0.3    # V-opt's cost discount exponent
MAX_WARM = 30       # earlier best fits kept as warm starts


@dataclass(frozen=True)
class LSLaw:
    """A law for least squares: `loss(theta, X)` (X: (rows, inputs) array), parameter names,
    box bounds and the input columns X is built from."""
    name: str
    loss: Callable
    params: tuple
    bounds: tuple
    inputs: tuple

    def __post_init__(self):
        if len(self.params) != len(self.bounds):
            raise ValueError(f"law {self.name}: {len(self.params)} parameters, "
                             f"{len(self.bounds)} bounds")

    @property
    def lo(self) -> np.ndarray:
        return np.array([b[0] for b in self.bounds], float)

    @property
    def hi(self) -> np.ndarray:
        return np.array([b[1] for b in self.bounds], float)

    def matrix(self, table) -> np.ndarray:
        """The law's inputs from a candidate table, as a float64 array."""
        missing = [c for c in self.inputs if c not in table]
        if missing:
            raise ValueError(f"law {self.name} needs columns {missing}; got {list(table.columns)}")
        return np.column_stack([table[c].to_numpy(float) for c in self.inputs])


def _chinchilla(theta, X):
    return laws.chinchilla(X[:, 0], X[:, 1], *[theta[i] for i in range(5)])


def _dcsl(theta, X):
    return laws.dcsl(X[:, 0], X[:, 1], X[:, 2], *[theta[i] for i in range(7)])


# Chinchilla bounds: ScaleBench's law file (SOURCE.md). DCSL is our Muennighoff form (separate
# alpha, beta), not one of ScaleBench's ten data-constrained laws; its bounds are ours.
LS_LAWS = {
    "chinchilla": LSLaw("chinchilla", _chinchilla, ("E", "A", "B", "alpha", "beta"),
                        ((0.0, 5.0), (0.0, 1e4), (0.0, 1e4), (0.01, 2.0), (0.01, 2.0)),
                        ("n_params", "n_tokens")),
    "dcsl": LSLaw("dcsl", _dcsl, ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star"),
                  ((0.0, 5.0), (0.0, 1e4), (0.0, 1e4), (0.01, 2.0), (0.01, 2.0),
                   (0.1, 1e3), (0.1, 1e3)),
                  ("n_params", "n_tokens", "unique_tokens")),
}


def ls_law(name: str) -> LSLaw:
    """A least-squares law by name."""
    if name not in LS_LAWS:
        raise ValueError(f"V-optimal supports the laws {', '.join(LS_LAWS)}; got {name!r}")
    return LS_LAWS[name]


def _floor(theta):
    return jnp.maximum(theta, 1e-12)     # A, B, E at a zero bound stay finite, as upstream


_CACHE: dict = {}
BUCKET = 64         # rows are padded to a multiple of this, so jit compiles once per bucket


def _compiled(law: LSLaw):
    """Jitted (mse and gradient, predictions, Jacobian) for a law, compiled once per law and
    row bucket (padded rows carry weight 0 and are cut from the outputs)."""
    if law.name not in _CACHE:
        f = law.loss

        def mse(theta, X, y, w):
            r = f(_floor(theta), X) - y
            return jnp.sum(w * r ** 2) / jnp.sum(w)

        _CACHE[law.name] = (jax.jit(jax.value_and_grad(mse)),
                            jax.jit(lambda t, X: f(_floor(t), X)),
                            jax.jit(jax.jacfwd(lambda t, X: f(_floor(t), X))))
    return _CACHE[law.name]


def _pad(X, y=None):
    """X (and y) padded to the row bucket by repeating the first row; weights 1 / 0."""
    X = np.asarray(X, float)
    n = len(X)
    size = -(-max(n, 1) // BUCKET) * BUCKET
    Xp = np.concatenate([X, np.repeat(X[:1], size - n, axis=0)])
    w = np.concatenate([np.ones(n), np.zeros(size - n)])
    yp = None if y is None else np.concatenate([np.asarray(y, float), np.zeros(size - n)])
    return Xp, yp, w


def random_starts(law: LSLaw, n: int, rng: np.random.Generator) -> np.ndarray:
    """Starts in the box: log-uniform where the lower bound is positive, else uniform."""
    lo, hi = law.lo, law.hi
    pos = lo > 0
    u = rng.uniform(size=(n, lo.size))
    log_lo = np.log(np.where(pos, lo, 1.0))
    log_part = np.exp(log_lo + u * (np.log(np.where(pos, hi, 1.0)) - log_lo))
    return np.where(pos, log_part, lo + u * (hi - lo))


def fit_least_squares(law: LSLaw, X, y, *, rng: np.random.Generator, n_starts: int = 64,
                      warm=()) -> tuple[np.ndarray, float]:
    """Best of `n_starts` L-BFGS-B fits of the loss (warm starts first); (theta, MSE)."""
    value_grad = _compiled(law)[0]
    Xp, yp, wp = _pad(X, y)
    with jax.enable_x64(True):
        X, y, w = (jnp.asarray(a, jnp.float64) for a in (Xp, yp, wp))
    warm = [np.asarray(t, float) for t in list(warm)[-MAX_WARM:]]
    starts = warm[:max(n_starts - 16, n_starts // 2)]
    starts += list(random_starts(law, n_starts - len(starts), rng))

    def objective(theta):
        with jax.enable_x64(True):
            v, g = value_grad(jnp.asarray(theta, jnp.float64), X, y, w)
        return float(v), np.asarray(g, float)

    best, best_mse = None, np.inf
    for t0 in starts:
        res = minimize(objective, np.clip(t0, law.lo, law.hi), jac=True, method="L-BFGS-B",
                       bounds=law.bounds, options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})
        if np.isfinite(res.fun) and res.fun < best_mse:
            best, best_mse = res.x, float(res.fun)
    if best is None:
        raise ValueError(f"law {law.name}: no least-squares start gave a finite fit")
    return best, best_mse


def predict(law: LSLaw, theta, X) -> np.ndarray:
    """The law's loss at each row of X."""
    n, (Xp, _, _) = len(X), _pad(X)
    with jax.enable_x64(True):
        return np.asarray(_compiled(law)[1](jnp.asarray(theta, jnp.float64),
                                            jnp.asarray(Xp, jnp.float64)))[:n]


def _scaled_jacobian(law: LSLaw, theta, X) -> np.ndarray:
    """d loss / d log theta_j (positive lower bound) or d theta_j (otherwise)."""
    n, (Xp, _, _) = len(X), _pad(X)
    with jax.enable_x64(True):
        J = np.asarray(_compiled(law)[2](jnp.asarray(theta, jnp.float64),
                                         jnp.asarray(Xp, jnp.float64)))[:n]
    return J * np.where(law.lo > 0, theta, 1.0)[None, :]


def prior_sd(law: LSLaw) -> np.ndarray:
    """The Laplace prior's sd per parameter (a quarter of the box, in log where positive)."""
    lo, hi = law.lo, law.hi
    return np.where(lo > 0, (np.log(hi) - np.log(np.where(lo > 0, lo, 1.0))) / 4, (hi - lo) / 4)


def sigma2(mse: float, n: int, b0: float) -> float:
    """The selection scripts' noise variance: (b0 + SSR/2) / (a0 + n/2 - 1)."""
    return (b0 + n * mse / 2.0) / (A0 + n / 2.0 - 1.0)


def laplace_cov(law: LSLaw, theta, X_obs, noise: float) -> np.ndarray:
    """H⁻¹, H = JᵀJ/sigma² + diag(1/s²), eigenvalues floored at 1e-10 of the largest (as
    the selection scripts do)."""
    J = _scaled_jacobian(law, theta, X_obs)
    H = J.T @ J / noise + np.diag(1.0 / prior_sd(law) ** 2)
    w, V = np.linalg.eigh(H)
    return (V / np.maximum(w, max(1e-10 * w[-1], 1e-30))[None, :]) @ V.T


def voptimal_scores(law: LSLaw, theta, X_obs, X_cand, X_target, noise: float) -> np.ndarray:
    """Drop in summed predictive variance over the target rows from observing each candidate."""
    cov = laplace_cov(law, theta, X_obs, noise)
    Jc, Jt = _scaled_jacobian(law, theta, X_cand), _scaled_jacobian(law, theta, X_target)
    own = np.einsum("cp,pq,cq->c", Jc, cov, Jc)
    cross = Jt @ cov @ Jc.T                                     # (targets, candidates)
    return (cross ** 2).sum(axis=0) / (noise + own)


def pick(scores, cost, total_cost: float, cost_power: float = COST_POWER) -> int:
    """Index of the best score / (cost / total)^cost_power."""
    utility = np.asarray(scores, float) / np.maximum(
        (np.asarray(cost, float) / total_cost) ** cost_power, 1e-300)
    utility = np.where(np.isfinite(utility), utility, -np.inf)
    return int(np.argmax(utility))
