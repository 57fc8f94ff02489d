"""Laws defined by users in their own Python files, and the NumPyro model that fits any of them.

A user law is a file `path/to/law.py` (or an object in it, `path/to/law.py:NAME`) with:

* `PARAMS`: {name: (low, high)}, positive bounds, one entry per parameter;
* `FEATURES`: the run-table columns the law reads, e.g. ("n_params", "n_tokens");
* `predict(p, x)`: the loss (natural scale, > 0) from parameter values `p` and feature values
  `x` (dicts of arrays that broadcast elementwise), written with jax.numpy;
* optional `PRIORS`: {name: numpyro distribution over the natural-scale value} replacing the
  default log-uniform prior on the bounds; optional `cost(x)`: a run's cost for design.

`load_user_law(spec)` reads and checks the file (errors name the file and the problem) and
caches it by content; `user_model` fits it. The model samples standard-normal coordinates w,
mapped to each parameter's box through z = centres + spreads @ w (an affine map fixed before
sampling, from a least-squares fit of the data: `atlas_bayes.fitting.user_fit`) and
theta = exp(log low + (log high - log low) sigmoid(z)). The prior (log-uniform, or the
user's) is applied with the map's Jacobian and the normal base measure cancelled, so the
posterior is the law's and NUTS sees a round, centred target.
"""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

RESERVED = ("sigma", "log_loss", "log_loss_mean", "w_user")   # the model's own site names
_LOADED: dict[str, "UserLaw"] = {}    # key (path, name, content hash) -> law


class LawFileError(ValueError):
    """A user law's file or its use on data is wrong; the message names the file (shown as it
    is, without the run table's name in front: `plain`)."""
    plain = True


def is_user_law(spec) -> bool:
    """Whether a law name is a user law's file (`...py` or `...py:NAME`)."""
    text = str(spec)
    return text.endswith(".py") or ".py:" in text


@dataclass(frozen=True)
class UserLaw:
    """A loaded user law: where it came from, its parameters and bounds, features, prediction,
    optional priors and cost. `name` is the canonical spec (absolute path[:NAME]); `key` adds the
    file's content hash (compiled programs and caches are keyed by it)."""
    name: str
    key: str
    params: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray
    features: tuple[str, ...]
    predict: Callable
    priors: dict
    cost: Callable | None
    description: str

    @property
    def log_lo(self) -> np.ndarray:
        return np.log(self.lo)

    @property
    def log_span(self) -> np.ndarray:
        return np.log(self.hi) - np.log(self.lo)

    def theta(self, z):
        """Natural-scale parameters (..., P) from unconstrained z (..., P)."""
        return jnp.exp(jnp.asarray(self.log_lo) + jnp.asarray(self.log_span) * jax.nn.sigmoid(z))

    def z_of(self, theta) -> np.ndarray:
        """Unconstrained z of natural-scale parameters (clipped just inside the box)."""
        s = (np.log(np.asarray(theta, float)) - self.log_lo) / self.log_span
        s = np.clip(s, 1e-6, 1 - 1e-6)
        return np.log(s) - np.log1p(-s)

    def as_dict(self, theta) -> dict:
        """{name: value} of a parameter vector (trailing axis)."""
        return {name: theta[..., i] for i, name in enumerate(self.params)}

    def loss(self, p: dict, x: dict):
        """The law's loss from parameter and feature dicts (the user's `predict`)."""
        return self.predict(p, x)

    def log_prior_z(self, z):
        """log prior density of z (..., P): log-uniform theta (logistic z), or the user's
        priors on theta with the map's Jacobian."""
        log_jac = jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z)     # d sigmoid / dz, stably
        total = jnp.sum(log_jac, axis=-1)                     # log-uniform: logistic z
        if self.priors:
            theta = self.theta(z)
            for i, name in enumerate(self.params):
                if name in self.priors:
                    # density of theta, times d theta / dz = theta log_span s (1 - s)
                    total = total - log_jac[..., i] + (
                        self.priors[name].log_prob(theta[..., i]) + jnp.log(theta[..., i])
                        + math.log(self.log_span[i]) + log_jac[..., i])
        return total


def load_user_law(spec) -> UserLaw:
    """The user law a spec names (`path.py` or `path.py:NAME`), read and checked; cached by the
    file's content. ValueError naming the file and the problem."""
    text = str(spec)
    path_text, _, attr = text.partition(".py:")
    path_text = path_text + ".py" if attr or not text.endswith(".py") else text
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise LawFileError(f"{path}: law file not found (a user law is a .py file defining PARAMS, "
                         "FEATURES and predict(p, x))")
    source = path.read_bytes()
    digest = hashlib.sha256(source + attr.encode()).hexdigest()[:16]
    name = str(path.resolve()) + (f":{attr}" if attr else "")
    key = f"{name}@{digest}"
    if key not in _LOADED:
        _LOADED[key] = _read(path, attr, name, key)
    return _LOADED[key]


def registered(key: str) -> UserLaw:
    """A law loaded in this process, by key (the model's `law` option)."""
    if key not in _LOADED:
        name = key.rsplit("@", 1)[0]
        law = load_user_law(name)
        if law.key != key:
            raise LawFileError(f"{name.split(':')[0]}: the law file changed since the fit was made "
                             "(its content hash differs); refit")
    return _LOADED[key]


def _read(path: Path, attr: str, name: str, key: str) -> UserLaw:
    """Import the file and check what it defines."""
    where = f"{path}" + (f":{attr}" if attr else "")
    module_name = f"atlas_bayes_user_law_{key.rsplit('@', 1)[1]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as err:      # the user's code: any error, said in one line
        sys.modules.pop(module_name, None)
        raise LawFileError(f"{where}: importing the law file failed: {type(err).__name__}: {err}") \
            from None
    source = module
    if attr:
        if not hasattr(module, attr):
            raise LawFileError(f"{where}: the file defines no {attr!r}")
        source = getattr(module, attr)
    missing = [n for n in ("PARAMS", "FEATURES", "predict") if not hasattr(source, n)]
    if missing:
        raise LawFileError(f"{where}: missing {', '.join(missing)}; a law defines PARAMS "
                         "({name: (low, high)}), FEATURES (run-table columns) and predict(p, x)")
    params, lo, hi = _params(source.PARAMS, where)
    features = _features(source.FEATURES, where)
    if not callable(source.predict):
        raise LawFileError(f"{where}: predict must be a function predict(p, x)")
    priors = dict(getattr(source, "PRIORS", None) or {})
    unknown = sorted(set(priors) - set(params))
    if unknown:
        raise LawFileError(f"{where}: PRIORS names {unknown}, which are not in PARAMS {list(params)}")
    for prior_name, prior in priors.items():
        if not isinstance(prior, dist.Distribution):
            raise LawFileError(f"{where}: PRIORS[{prior_name!r}] must be a numpyro distribution, "
                             f"got {type(prior).__name__}")
    cost = getattr(source, "cost", None)
    if cost is not None and not callable(cost):
        raise LawFileError(f"{where}: cost must be a function cost(x)")
    doc = (getattr(source, "__doc__", None) or "").strip().split("\n")[0]
    return UserLaw(name, key, params, lo, hi, features, source.predict, priors, cost,
                   doc or f"user law {where}")


def _params(given, where: str):
    if not isinstance(given, dict) or not given:
        raise LawFileError(f"{where}: PARAMS must be a non-empty dict {{name: (low, high)}}")
    names, lo, hi = [], [], []
    for name, bounds in given.items():
        if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
            raise LawFileError(f"{where}: PARAMS name {name!r} is not a Python identifier")
        if name in RESERVED:
            raise LawFileError(f"{where}: PARAMS name {name!r} is taken by the model "
                             f"({', '.join(RESERVED)}); rename it")
        try:
            a, b = (float(v) for v in bounds)
        except (TypeError, ValueError):
            raise LawFileError(f"{where}: PARAMS[{name!r}] must be (low, high), got {bounds!r}") from None
        if not (0 < a < b < math.inf):
            raise LawFileError(f"{where}: PARAMS[{name!r}] = {bounds!r}: bounds must be positive "
                             "and finite with low < high (write a signed parameter as a "
                             "difference of positive ones, or shift it)")
        names.append(name)
        lo.append(a)
        hi.append(b)
    return tuple(names), np.array(lo), np.array(hi)


def _features(given, where: str) -> tuple[str, ...]:
    if isinstance(given, str) or not all(isinstance(f, str) for f in given or ()) or not given:
        raise LawFileError(f"{where}: FEATURES must be a non-empty tuple of run-table column "
                         f"names, got {given!r}")
    return tuple(given)


class UserInputs(NamedTuple):
    """A user law's data: the feature columns (rows, features), and which rows are real."""
    X: np.ndarray
    obs_mask: np.ndarray | None = None

    def n_rows(self) -> int:
        """Real rows (before padding)."""
        return int(np.shape(self.X)[0]) if self.obs_mask is None else int(np.sum(self.obs_mask))

    def padded(self, y, size):
        """Rows padded to `size(n)` by repeating row 0, masked out of the likelihood (shared
        compiled programs, `atlas_bayes.fitting.compiled`)."""
        n = int(np.shape(self.X)[0])
        index = np.concatenate([np.arange(n), np.zeros(size(n) - n, dtype=int)])
        mask = np.arange(len(index)) < n
        padded = self._replace(X=np.asarray(self.X, np.float32)[index], obs_mask=mask)
        return padded, None if y is None else np.asarray(y, np.float32)[index]


def features_of(law: UserLaw, X) -> dict:
    """{feature: column} of a (rows, features) array."""
    return {name: X[..., j] for j, name in enumerate(law.features)}


def user_model(x: UserInputs, log_loss=None, nu=4.0, predict_mean=False, law: str = "",
               centres=None, spreads=None):
    """Any user law (`law`: its key) on log loss with a Student-t likelihood, sampled through
    standard-normal coordinates (see the module docstring)."""
    from atlas_bayes.models.scaling import student_t
    spec = registered(law)
    P = len(spec.params)
    centres = jnp.zeros(P) if centres is None else jnp.asarray(centres).reshape(P)
    spreads = jnp.eye(P) if spreads is None else jnp.asarray(spreads).reshape(P, P)
    base = dist.Normal(jnp.zeros(P), 1.0).to_event(1)
    w = numpyro.sample("w_user", base)
    z = centres + spreads @ w
    numpyro.factor("user_prior", spec.log_prior_z(z) - base.log_prob(w))
    theta = spec.theta(z)
    p = {name: numpyro.deterministic(name, theta[i]) for i, name in enumerate(spec.params)}
    predicted = spec.predict(p, features_of(spec, x.X))
    mu = jnp.log(jnp.where(predicted > 0, predicted, jnp.nan))
    mu = jnp.broadcast_to(mu, x.X.shape[:1])
    if predict_mean:
        numpyro.deterministic("log_loss_mean", mu)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.1))
    mask = True if x.obs_mask is None else x.obs_mask
    with numpyro.plate("obs", x.X.shape[0]), numpyro.handlers.mask(mask=mask):
        numpyro.sample("log_loss", student_t(nu, mu, sigma), obs=log_loss)
