"""A user law (`models/user.py`) against a run table: its feature arrays, the checks of the law on
the data (errors name the law's file and the problem), and the centred sampling scale.

The scale: a multi-start least-squares fit of log loss in the unconstrained coordinates z
(starts log-uniform in the box, all at once in one compiled Levenberg-Marquardt), and the
Laplace covariance there (JᵀJ / s² plus a unit-logistic-sized prior precision). NUTS then
samples w with z = centre + chol(cov) w: an affine change of variables fixed before sampling,
so the posterior is the law's own and only its geometry changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from atlas_bayes.fitting.law_inputs import InputInfo, Scales
from atlas_bayes.models.user import LawFileError, UserInputs, UserLaw, features_of

N_STARTS = 24          # least-squares starts (log-uniform in the box), plus the box's centre
LM_ITERATIONS = 200
PRIOR_PRECISION = 3.0 / np.pi ** 2     # 1 / variance of the unit logistic (log-uniform theta)
MAX_Z = 6.0            # the centre stays within sigmoid(+-6): 0.25% of the box from a bound
_COMPILED: dict = {}


def where(law: UserLaw) -> str:
    """The law's file (and object) for messages."""
    return law.name


def feature_matrix(law: UserLaw, table: pd.DataFrame, source: str = "the run table") -> np.ndarray:
    """The law's FEATURES as a float64 (rows, features) array; errors name the column and row."""
    missing = [f for f in law.features if f not in table.columns]
    if missing:
        raise LawFileError(f"{where(law)}: FEATURES names column(s) {missing} that {source} lacks "
                         f"(it has {', '.join(map(str, table.columns))})")
    columns = []
    for name in law.features:
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: row {row + 1}, column {name!r}: the law {where(law)} reads "
                             f"it, but it is not a finite number ({table[name].iloc[row]!r})")
        columns.append(values)
    return np.column_stack(columns)


def prepare(runs: pd.DataFrame, law: UserLaw):
    """(inputs, labels, observed log loss, scales) of a one-language run table."""
    targets = runs["language"].unique()
    if len(targets) != 1:
        raise ValueError(f"the run table evaluates {len(targets)} languages "
                         f"({', '.join(map(str, targets[:8]))}); a user law fits one at a time: "
                         "choose one with language=... (CLI: --lang)")
    source = runs.attrs.get("source") or "the run table"
    X = feature_matrix(law, runs, source)
    loss = runs["loss"].to_numpy(float) if "loss" in runs else np.full(len(runs), np.nan)
    labels = [f"{r}@{t:.4g}" for r, t in zip(runs["run_id"], runs["n_tokens"])]
    scales = Scales.of(runs, runs["n_tokens"].to_numpy(float))
    return (UserInputs(np.asarray(X, np.float32)), InputInfo(str(targets[0]), [], labels),
            np.log(loss).astype(np.float32), scales)


def check_prediction(law: UserLaw, X: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
    """The law's loss at every row for one parameter vector (default: the box's geometric
    centre), float64; ValueError where predict fails or returns the wrong shape."""
    theta = np.sqrt(law.lo * law.hi) if theta is None else theta
    try:
        with jax.enable_x64(True):
            p = {n: jnp.asarray(v) for n, v in zip(law.params, theta)}
            value = np.asarray(law.predict(p, features_of(law, jnp.asarray(X))), float)
    except Exception as err:      # the user's code: said in one line
        raise LawFileError(f"{where(law)}: predict(p, x) failed on the data: "
                         f"{type(err).__name__}: {err}") from None
    if value.shape not in ((), (len(X),)):
        raise LawFileError(f"{where(law)}: predict(p, x) returned shape {value.shape} for {len(X)} "
                         f"rows; expected one loss per row ({len(X)},)")
    return np.broadcast_to(value, (len(X),))


def _residuals(law: UserLaw):
    """Jitted (Z (S, P), X, y, w) -> residuals (S, n) and Jacobians (S, n, P) in z."""
    if law.key not in _COMPILED:
        def residual(z, X, y, w):
            predicted = law.predict(law.as_dict(law.theta(z)), features_of(law, X))
            predicted = jnp.broadcast_to(predicted, y.shape)
            return w * (jnp.log(jnp.where(predicted > 0, predicted, jnp.nan)) - y)

        def both(Z, X, y, w):
            r = jax.vmap(residual, in_axes=(0, None, None, None))(Z, X, y, w)
            J = jax.vmap(jax.jacfwd(residual), in_axes=(0, None, None, None))(Z, X, y, w)
            return r, J
        _COMPILED[law.key] = jax.jit(both)
    return _COMPILED[law.key]


def least_squares(law: UserLaw, X, log_loss, *, seed: int = 0, n_starts: int = N_STARTS):
    """Best least-squares z over the starts: (z, residual sd, Jacobian at z)."""
    from atlas_bayes.fitting.compiled import padded_size
    n = len(log_loss)
    size = padded_size(n)
    index = np.concatenate([np.arange(n), np.zeros(size - n, dtype=int)])
    w = (np.arange(size) < n).astype(float)
    rng = np.random.default_rng(seed)
    Z = np.vstack([np.zeros(len(law.params)),
                   rng.logistic(size=(n_starts, len(law.params)))])
    f = _residuals(law)
    with jax.enable_x64(True):
        Xp, yp, wp = (jnp.asarray(a, jnp.float64) for a in
                      (np.asarray(X, float)[index], np.asarray(log_loss, float)[index], w))

        def evaluate(Z):
            r, J = f(jnp.asarray(Z, jnp.float64), Xp, yp, wp)
            r, J = np.asarray(r), np.asarray(J)
            ssr = np.sum(r * r, axis=1)
            return np.where(np.isfinite(ssr), ssr, np.inf), r, J
        ssr, r, J = evaluate(Z)
        lam = np.full(len(Z), 1e-2)
        done = ~np.isfinite(ssr)
        for _ in range(LM_ITERATIONS):
            J0, r0 = np.nan_to_num(J), np.nan_to_num(r)
            JtJ = np.einsum("snp,snq->spq", J0, J0)
            g = np.einsum("snp,sn->sp", J0, r0)
            d = np.maximum(np.diagonal(JtJ, axis1=1, axis2=2), 1e-12)
            M = JtJ + (lam[:, None] * d)[:, :, None] * np.eye(Z.shape[1])
            step = -np.linalg.solve(M, g[..., None])[..., 0]
            step = np.clip(np.nan_to_num(step), -4.0, 4.0)
            trial = evaluate(Z + step)
            better = (trial[0] < ssr) & ~done
            small = better & (ssr - trial[0] <= 1e-10 * ssr)
            Z = np.where(better[:, None], Z + step, Z)
            ssr = np.where(better, trial[0], ssr)
            r = np.where(better[:, None], trial[1], r)
            J = np.where(better[:, None, None], trial[2], J)
            lam = np.where(better, np.maximum(lam * 0.3, 1e-9), lam * 4.0)
            done = done | small | (lam > 1e8)
            if done.all():
                break
    best = int(np.argmin(ssr))
    if not np.isfinite(ssr[best]):
        at_centre = check_prediction(law, np.asarray(X, float))
        bad = np.flatnonzero(~(np.isfinite(at_centre) & (at_centre > 0)))
        row = f" (row {bad[0] + 1}: {at_centre[bad[0]]!r} at the box's centre)" if len(bad) else ""
        raise LawFileError(f"{where(law)}: predict(p, x) gives a non-positive or non-finite loss "
                           f"at some rows of the data{row} for every parameter value tried "
                           f"({len(Z)} points in the box): the law cannot fit these runs")
    # an optimum on a bound (z -> +-inf) is placed just inside it, where NUTS can move
    Z = np.clip(Z, -MAX_Z, MAX_Z)
    dof = max(n - len(law.params), 1)
    sd = float(np.sqrt(max(ssr[best] / dof, 1e-8)))
    return Z[best], sd, np.asarray(J[best][:n])


def centring(law: UserLaw, inputs: UserInputs, log_loss, seed: int = 0) -> dict:
    """The model options `centres` (z at the least-squares fit) and `spreads` (the Cholesky
    factor of the Laplace covariance there), checked: the law's predictions at the fit must be
    finite and positive at every row."""
    X = np.asarray(inputs.X, float)
    check_prediction(law, X)
    z, sd, J = least_squares(law, X, np.asarray(log_loss, float), seed=seed)
    predicted = check_prediction(law, X, np.asarray(law.theta(z), float))
    bad = ~(np.isfinite(predicted) & (predicted > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LawFileError(f"{where(law)}: predict(p, x) gives {predicted[row]!r} at row {row + 1} "
                         "at the best least-squares fit; the loss must be finite and positive")
    H = J.T @ J / sd ** 2 + PRIOR_PRECISION * np.eye(len(z))
    cov = np.linalg.inv(H)
    cov = 0.5 * (cov + cov.T)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        chol = np.diag(np.sqrt(np.clip(np.diag(cov), 1e-12, None)))
    return {"centres": z.tolist(), "spreads": chol.tolist()}
