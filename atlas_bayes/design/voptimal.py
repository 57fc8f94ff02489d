"""V-optimal design as ScaleBench's selection scripts define it (Li et al. 2026; protocol in
../shared/data/scalebench/SOURCE.md), the baseline our EIG design is compared with.

* Fit: least squares on the loss (not log loss) inside the law's box bounds, `n_starts` starts
  (log-uniform for parameters with a positive lower bound, else uniform), up to 30 earlier
  best fits reused as warm starts; the best training MSE wins. All starts run at once in one
  jitted, batched Levenberg-Marquardt on unconstrained coordinates u, theta = lo + (hi - lo)
  sigmoid(u) (in log theta where the lower bound is positive, as the starts are drawn); the
  best `polish` distinct results are finished with L-BFGS-B in the box, so the answer is a
  bounded optimum as in the selection scripts, which run L-BFGS-B from each start in turn
  (`method="scipy"`). On the data-constrained pool a 64-start batched fit takes 0.2-1 s,
  against 43-52 s for the sequential one (a JAX dispatch per evaluation), and
  reaches the same or a lower MSE from the same starts: L-BFGS-B on the natural scale (A up to
  1e4 beside alpha ~ 0.3) can stop early in the law's flat valleys
  (benchmarks/voptimal_speed.py; optax's L-BFGS vmapped over the starts was only ~3x faster
  than the sequential loop).
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

from atlas_bayes.models import FORMS, form_of
from atlas_bayes.models.user import is_user_law

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


def _ls_law(form) -> LSLaw:
    """A natural form (`models.FORMS`) as a least-squares law on the columns it reads."""
    def loss(theta, X):
        p = {name: theta[i] for i, name in enumerate(form.parameters)}
        U = X[:, 2] if form.uses_unique_tokens else jnp.inf
        return form.loss(X[:, 0], X[:, 1], U, p)

    return LSLaw(form.name, loss, form.parameters, form.bounds, form.inputs)


LS_LAWS = {name: _ls_law(form) for name, form in FORMS.items() if form.bounds is not None}


def ls_law(name: str) -> LSLaw:
    """A least-squares law by name, or a user law's file (its PARAMS box, FEATURES columns)."""
    if is_user_law(name):
        return _user_ls_law(form_of(name).user)
    if name not in LS_LAWS:
        raise ValueError(f"V-optimal supports the laws {', '.join(LS_LAWS)} and user laws' files; "
                         f"got {name!r}")
    return LS_LAWS[name]


def _user_ls_law(law) -> LSLaw:
    """A user law for least squares: theta in PARAMS order, X columns in FEATURES order."""
    def loss(theta, X):
        x = {f: X[:, j] for j, f in enumerate(law.features)}
        return jnp.broadcast_to(law.predict(law.as_dict(theta), x), X.shape[:1])
    return LSLaw(law.key, loss, law.params, tuple(zip(law.lo.tolist(), law.hi.tolist())),
                 law.features)


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


LM_MAX_ITER = 500   # Levenberg-Marquardt iterations at most (all starts stop together)
LM_FTOL = 1e-12     # a start stops when an accepted step lowers its SSR by less than this share
LM_MAX_STEP = 4.0   # largest step per unconstrained coordinate (sigmoid(±4) = 0.018 / 0.982)
EDGE = 1e-9         # starts on a bound move this share of the box (of log theta where lo > 0)


def _box(law: LSLaw):
    """(offset, span, positive): theta = exp(offset + span s) where the lower bound is
    positive, offset + span s otherwise, for s in [0, 1]."""
    lo, hi = law.lo, law.hi
    pos = lo > 0
    offset = np.where(pos, np.log(np.where(pos, lo, 1.0)), lo)
    span = np.where(pos, np.log(np.where(pos, hi, 1.0)) - offset, hi - lo)
    if not np.all(np.isfinite(span) & (span > 0)):
        raise ValueError(f"law {law.name}: the batched fit needs a finite box; "
                         f"use method='scipy'")
    return offset, span, pos


def _to_theta(law: LSLaw, u):
    """Natural-scale parameters from unconstrained u (any leading axes)."""
    offset, span, pos = _box(law)
    z = offset + span * jax.nn.sigmoid(u)
    return jnp.where(pos, jnp.exp(jnp.where(pos, z, 0.0)), z)   # no exp of the linear ones


def _to_u(law: LSLaw, theta) -> np.ndarray:
    """Unconstrained u of theta, points on (or past) a bound moved `EDGE` inside."""
    offset, span, pos = _box(law)
    theta = np.clip(np.asarray(theta, float), law.lo, law.hi)
    z = np.where(pos, np.log(np.where(pos, theta, 1.0)), theta)
    s = np.clip((z - offset) / span, EDGE, 1.0 - EDGE)
    return np.log(s) - np.log1p(-s)


# Hand-written: vmapped optimistix.LevenbergMarquardt was 1.5-3.3x slower at equal MSE (RESULTS.md)
def _batched(law: LSLaw):
    """Jitted (u starts (S, P), X, y, w) -> (u, MSE (S,), iterations): Levenberg-Marquardt
    on all starts at once. Each start keeps its own damping; a rejected step keeps the
    start where it was. Compiled once per law, start count and row bucket."""
    key = ("batched", law.name)
    if key not in _CACHE:
        f = law.loss

        def residual(u, X, y, sw):
            return sw * (f(_floor(_to_theta(law, u)), X) - y)

        def linearise(U, X, y, sw):
            r = jax.vmap(residual, in_axes=(0, None, None, None))(U, X, y, sw)
            J = jax.vmap(jax.jacfwd(residual), in_axes=(0, None, None, None))(U, X, y, sw)
            J = jnp.where(jnp.isfinite(J), J, 0.0)
            ssr = jnp.sum(r * r, axis=-1)
            ssr = jnp.where(jnp.isfinite(ssr), ssr, jnp.inf)
            return ssr, jnp.einsum("srp,srq->spq", J, J), jnp.einsum("srp,sr->sp", J, r)

        def solve(U, X, y, w):
            sw = jnp.sqrt(w)
            ssr, JtJ, g = linearise(U, X, y, sw)

            def step(state):
                u, ssr, JtJ, g, lam, done, it = state
                d = jnp.diagonal(JtJ, axis1=1, axis2=2)          # Marquardt's scaling
                d = jnp.maximum(d, 1e-16 * jnp.max(d, axis=-1, keepdims=True) + 1e-300)
                M = JtJ + (lam[:, None] * d)[:, :, None] * jnp.eye(d.shape[-1])
                delta = -jnp.linalg.solve(M, g[..., None])[..., 0]
                delta = jnp.clip(jnp.where(jnp.isfinite(delta), delta, 0.0),
                                 -LM_MAX_STEP, LM_MAX_STEP)
                trial = linearise(u + delta, X, y, sw)
                better = (trial[0] < ssr) & ~done

                def keep(new, old):
                    return jnp.where(better.reshape(better.shape + (1,) * (old.ndim - 1)),
                                     new, old)

                small = better & (ssr - trial[0] <= LM_FTOL * ssr)
                done = done | small | (lam > 1e10)
                lam = jnp.where(better, jnp.maximum(lam * 0.3, 1e-12), lam * 4.0)
                return (keep(u + delta, u), keep(trial[0], ssr), keep(trial[1], JtJ),
                        keep(trial[2], g), lam, done, it + 1)

            state = (U, ssr, JtJ, g, jnp.full(U.shape[0], 1e-3), ~jnp.isfinite(ssr), 0)
            u, ssr, _, _, _, _, it = jax.lax.while_loop(
                lambda s: (s[-1] < LM_MAX_ITER) & ~jnp.all(s[5]), step, state)
            return u, ssr / jnp.sum(w), it

        _CACHE[key] = jax.jit(solve)
    return _CACHE[key]


def _starts(law: LSLaw, n_starts: int, rng: np.random.Generator, warm) -> list:
    """Warm starts (the latest `MAX_WARM`, at most all but 16 or half) then random ones."""
    warm = [np.asarray(t, float) for t in list(warm)[-MAX_WARM:]]
    starts = warm[:max(n_starts - 16, n_starts // 2)]
    return starts + list(random_starts(law, n_starts - len(starts), rng))


def _lbfgsb(law: LSLaw, objective, t0):
    return minimize(objective, np.clip(t0, law.lo, law.hi), jac=True, method="L-BFGS-B",
                    bounds=law.bounds, options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})


def fit_least_squares(law: LSLaw, X, y, *, rng: np.random.Generator, n_starts: int = 64,
                      warm=(), method: str = "batched",
                      polish: int = 2) -> tuple[np.ndarray, float]:
    """Best least-squares fit of the loss over `n_starts` starts (warm starts first) in the
    law's box; (theta, MSE).

    method="batched" (default): all starts at once by Levenberg-Marquardt in unconstrained
    coordinates, then L-BFGS-B from the best `polish` distinct results (0: none).
    method="scipy": the selection scripts' loop, L-BFGS-B from every start in turn.
    """
    if method not in ("batched", "scipy"):
        raise ValueError(f"method must be 'batched' or 'scipy', got {method!r}")
    value_grad = _compiled(law)[0]
    Xp, yp, wp = _pad(X, y)
    with jax.enable_x64(True):
        X, y, w = (jnp.asarray(a, jnp.float64) for a in (Xp, yp, wp))
    starts = _starts(law, n_starts, rng, warm)

    def objective(theta):
        with jax.enable_x64(True):
            v, g = value_grad(jnp.asarray(theta, jnp.float64), X, y, w)
        return float(v), np.asarray(g, float)

    best, best_mse = None, np.inf
    if method == "scipy":
        for t0 in starts:
            res = _lbfgsb(law, objective, t0)
            if np.isfinite(res.fun) and res.fun < best_mse:
                best, best_mse = res.x, float(res.fun)
    else:
        with jax.enable_x64(True):
            U = jnp.asarray(np.stack([_to_u(law, t) for t in starts]), jnp.float64)
            u, mse, _ = _batched(law)(U, X, y, w)
            thetas = np.asarray(_to_theta(law, u), float)
        mse = np.asarray(mse, float)
        thetas = np.clip(thetas, law.lo, law.hi)
        chosen = []
        for i in np.argsort(mse):
            if not np.isfinite(mse[i]) or len(chosen) >= max(polish, 1):
                break
            if all(abs(mse[i] - mse[j]) > 1e-9 * mse[j] for j in chosen):   # a new optimum
                chosen.append(i)
        for i in chosen:
            value = objective(thetas[i])[0]
            if np.isfinite(value) and value < best_mse:
                best, best_mse = thetas[i], value
            if polish > 0:
                res = _lbfgsb(law, objective, thetas[i])
                if np.isfinite(res.fun) and res.fun < best_mse:
                    best, best_mse = res.x, float(res.fun)
    if best is None:
        raise ValueError(f"law {law.name}: no least-squares start gave a finite fit")
    return np.asarray(best, float), best_mse


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
