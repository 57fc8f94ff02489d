"""Which training run to pay for next: expected information gain per FLOP over candidate runs.

A candidate is a run specification (model size, tokens, language/mixture, init) with a cost
C = 6 N D (+ 2 N per evaluated token). Its utility is the expected information gain (EIG),
about all parameters or about one decision quantity, that observing its loss would bring,
estimated from the fitted posterior draws without refitting:

* for each draw j, simulate the run's log loss y_j ~ p(y | theta_j) (the fit's own Student-t
  likelihood, sigma_j per draw);
* reweight the draws by the likelihood of y_j: w_jk ∝ p(y_j | theta_k), the posterior after
  observing y_j, as importance weights on the existing draws.

Estimators (`eig_scores`; M draws, all candidates at once in one compiled call):

* parameters: prior contrastive estimation (PCE, Foster et al. 2020), the nested Monte Carlo
  estimator with the other draws as contrasts,
  EIG ≈ mean_j [log p(y_j|theta_j) - log (1/M) sum_k p(y_j|theta_k)].
  A lower bound in expectation (bias -> 0 as O(1/M) while EIG << log M) that can never exceed
  log M: an outcome cannot be seen to say more than which of M draws made it.
* a scalar quantity q(theta) (the loss at a target scale, N* at a budget, ...): the expected
  reduction of its log variance, 0.5 (log Var q - mean_j log Var_{w_j} q), Var_{w_j} the
  leave-one-out weighted variance (draw j, which made y_j, is left out; small-sample factor
  1/(1 - sum w^2)). Under a Gaussian approximation of q this is its mutual information with
  y (exact for a linear-Gaussian model). Self-normalised weights make it biased where few
  draws carry the weight (effective sample size `ess` is reported); each simulated outcome's
  variance is floored at Var q / M, so no candidate is credited with more than 0.5 log M.
* `method="linear"`: -0.5 log(1 - corr(q, y)^2) over the draws, O(M) per candidate: exact
  for jointly Gaussian (q, y), blind to nonlinearity; a fast screen.

`tests/test_design.py` measures both against the exact linear-Gaussian answer.

Batches (`choose_batch`): greedy with fantasised outcomes. Each draw j keeps its simulated
outcomes of the runs already chosen; the next candidate is scored by the gain of the whole
set minus the gain of the chosen set (its log likelihoods are added to every draw's), so a
second pick is valued given what the first will tell, and duplicates are never picked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import gammaln, logsumexp

from atlas_bayes.design.candidates import validate_candidates
from atlas_bayes.design.posterior import DesignPosterior, require_design_posterior
from atlas_bayes.design.targets import Target


CHUNK = 32                # candidates per vectorised block (memory: CHUNK x draws^2 floats)


def _logpdf(z, nu):
    """log density of the standard Student-t(nu) (normal for nu = inf)."""
    if math.isinf(nu):
        return -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)
    const = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * math.log(nu * math.pi)
    return const - (nu + 1) / 2 * jnp.log1p(z ** 2 / nu)


def _loglik(y_M, mu_M, sigma_M, nu):
    """ll[j, k] = log p(y_j | theta_k) for one candidate."""
    z = (y_M[:, None] - mu_M[None, :]) / sigma_M[None, :]
    return _logpdf(z, nu) - jnp.log(sigma_M)[None, :]


@partial(jax.jit, static_argnames=("nu", "scalar", "chunk", "variance"))
def _total_gain(mu_CxM, y_CxM, sigma_M, q_M, base_MxM, nu, scalar, chunk, variance=False):
    """Gain of (chosen runs + each candidate) and the mean effective sample size."""
    M = sigma_M.shape[0]
    eye = jnp.eye(M, dtype=bool)
    q_MxT = q_M.reshape(M, -1)                 # a vector target: one column per quantity
    q_var = jnp.var(q_MxT, axis=0)

    def one(args):
        mu_M, y_M = args
        ll = base_MxM + _loglik(y_M, mu_M, sigma_M, nu)
        if scalar:
            ll = jnp.where(eye, -jnp.inf, ll)                      # leave the source draw out
            w = jax.nn.softmax(ll, axis=1)
            mean = w @ q_MxT
            var = w @ q_MxT ** 2 - mean ** 2
            w2 = jnp.sum(w ** 2, axis=1)
            var = var / jnp.maximum(1.0 - w2, 1.0 / M)[:, None]
            var = jnp.maximum(var, q_var / M)
            if variance:        # the expected drop in the quantities' summed variance
                gain = jnp.sum(q_var - jnp.mean(var, axis=0))
            else:
                gain = 0.5 * jnp.mean(jnp.log(q_var) - jnp.mean(jnp.log(var), axis=0))
        else:
            w2 = jnp.sum(jax.nn.softmax(ll, axis=1) ** 2, axis=1)
            gain = jnp.mean(jnp.diagonal(ll) - logsumexp(ll, axis=1) + jnp.log(M))
        return gain, jnp.mean(1.0 / w2)

    return jax.lax.map(one, (mu_CxM, y_CxM), batch_size=chunk)


@jax.jit
def _linear_gain(y_CxM, q_M):
    """-0.5 log(1 - corr(q, y)^2) per candidate: the Gaussian mutual information."""
    yc = y_CxM - y_CxM.mean(axis=1, keepdims=True)
    qc = q_M - q_M.mean()
    r = (yc @ qc) / jnp.sqrt(jnp.sum(yc ** 2, axis=1) * jnp.sum(qc ** 2))
    return -0.5 * jnp.log1p(-jnp.minimum(r ** 2, 1 - 1e-12))


def simulate_outcomes(mu_MxC, sigma_M, nu: float, seed: int = 0) -> np.ndarray:
    """One simulated log loss per draw and candidate: y = mu + sigma * t(nu) noise."""
    key = jax.random.PRNGKey(seed)
    shape = np.shape(mu_MxC)
    eps = jax.random.normal(key, shape) if math.isinf(nu) else jax.random.t(key, nu, shape)
    return np.asarray(mu_MxC) + np.asarray(sigma_M)[:, None] * np.asarray(eps)


def eig_scores(mu, sigma, q=None, *, nu: float = 4.0, y=None, chosen=None, seed: int = 0,
               method: str = "reweight", chunk: int = CHUNK, utility: str = "information"):
    """Expected information gain of each candidate (nats) and the mean effective sample size.

    `mu` (draws, candidates): each draw's predicted observation; `sigma` (draws,) the noise
    scale; `q` (draws,) the target quantity, or None for all parameters; `q` (draws, T), T
    quantities (e.g. the loss at each run of a target region): the mean of their gains.
    `y` (draws, candidates): simulated outcomes (default: drawn from the likelihood with
    `seed`).
    `chosen` (draws, draws): the summed log likelihoods log p(y_j,s | theta_k) of runs already
    chosen (their fantasised outcomes); the result is then the gain of chosen + candidate.
    `utility="variance"` (with `q`): the expected drop in the summed variance of the T
    quantities instead of the information (the mean of their log-variance drops): the
    criterion V-optimal and MSPE linearise, here over the posterior draws.
    """
    if utility not in ("information", "variance"):
        raise ValueError(f"utility must be 'information' or 'variance', got {utility!r}")
    mu = np.asarray(mu, dtype=np.float32)
    if mu.ndim != 2:
        raise ValueError(f"mu must be (draws, candidates), got shape {mu.shape}")
    M = mu.shape[0]
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (M,))
    y = simulate_outcomes(mu, sigma, nu, seed) if y is None else np.asarray(y)
    y = y.astype(np.float32)
    if method == "linear":
        if q is None or np.ndim(q) != 1:
            raise ValueError("method='linear' needs a scalar target quantity q (draws,)")
        gain = np.asarray(_linear_gain(y.T, np.asarray(q, dtype=np.float32)))
        return gain, np.full(mu.shape[1], float(M))
    if method != "reweight":
        raise ValueError(f"method must be 'reweight' or 'linear', got {method!r}")
    base = np.zeros((M, M), np.float32) if chosen is None else np.asarray(chosen, np.float32)
    q_arr = np.zeros(M, np.float32) if q is None else \
        (np.asarray(q, dtype=float) - np.mean(q, axis=0)).astype(np.float32)  # float32-safe
    gain, ess = _total_gain(jnp.asarray(mu.T), jnp.asarray(y.T), jnp.asarray(sigma),
                            jnp.asarray(q_arr), jnp.asarray(base), nu=float(nu),
                            scalar=q is not None, chunk=int(chunk),
                            variance=utility == "variance" and q is not None)
    return np.asarray(gain, dtype=float), np.asarray(ess, dtype=float)


def loglik_matrix(y_M, mu_M, sigma_M, nu: float) -> np.ndarray:
    """log p(y_j | theta_k) for one run's simulated outcomes (draws, draws)."""
    return np.asarray(_loglik(jnp.asarray(y_M, jnp.float32), jnp.asarray(mu_M, jnp.float32),
                              jnp.asarray(sigma_M, jnp.float32), float(nu)))


@dataclass
class Design:
    """Scores of every candidate (`scores`: the first pick's gain, gain per FLOP, ESS) and the
    chosen batch (`chosen`: in order, each with its gain given the earlier picks)."""
    scores: pd.DataFrame
    chosen: pd.DataFrame
    target: Target
    budget: float | None
    total_gain: float
    n_draws: int
    stopped: str = ""

    def as_dict(self) -> dict:
        """The design as plain values: target, budget, totals and the chosen runs' records."""
        cols = ["candidate", "model", "n_params", "n_tokens", "language", "mixture", "init",
                "cost", "gain", "gain_per_flop", "cumulative_gain", "ess"]
        return {"target": self.target.name, "target_spec": self.target.spec,
                "budget": self.budget, "n_candidates": int(len(self.scores)),
                "n_draws": self.n_draws, "total_gain": self.total_gain,
                "total_cost": float(self.chosen["cost"].sum()) if len(self.chosen) else 0.0,
                "stopped": self.stopped,
                "chosen": self.chosen[[c for c in cols if c in self.chosen]].to_dict("records")}

    def to_text(self, *, model: str = "", language: str = "") -> str:
        """The chosen runs as the `design` command shows them: a heading (target, `model` and
        `language` of the fit, candidates, draws, budget), one line per run, the totals."""
        heading = (f"Runs chosen to learn {self.target.name} ({model}, {language}; "
                   f"{len(self.scores)} candidates, {self.n_draws} posterior draws"
                   + (f", budget {self.budget:.3g} FLOPs" if self.budget else "") + "):")
        shown = self.chosen[["order", "candidate", "n_params", "n_tokens", "cost", "gain",
                             "cumulative_gain"]]
        total_cost = float(self.chosen["cost"].sum()) if len(self.chosen) else 0.0
        totals = (f"expected gain {self.total_gain:.3g} nats for {total_cost:.3g} FLOPs"
                  + (f" (stopped: {self.stopped})" if self.stopped else ""))
        return "\n".join([heading, shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
                          "", totals])


def greedy_batch(mu, sigma, q, cost, *, nu: float = 4.0, k: int = 1, budget: float | None = None,
                 cost_power: float = 1.0, seed: int = 0, method: str = "reweight",
                 utility: str = "information"):
    """Greedy picks on arrays (`eig_scores`'s `mu`, `sigma`, `q`; `cost` per candidate).

    Returns (picks, first): picks is a list of {index, gain (given the earlier picks),
    cumulative_gain, ess}; first is (gain, ess) of every candidate alone. Each pick maximises
    gain / (cost / median cost)^cost_power among unchosen candidates that fit the budget.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if method == "linear" and k > 1:
        raise ValueError("method='linear' scores single runs only; use 'reweight' for k > 1")
    mu = np.asarray(mu, dtype=np.float32)
    cost = np.asarray(cost, dtype=float)
    M = mu.shape[0]
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (M,))
    y = simulate_outcomes(mu, sigma, nu, seed).astype(np.float32)
    scale = cost / np.median(cost)
    base = np.zeros((M, M), np.float32)
    remaining = np.inf if budget is None else float(budget)
    taken = np.zeros(mu.shape[1], dtype=bool)
    current, picks, first, stopped = 0.0, [], None, ""
    for _ in range(k):
        total, ess = eig_scores(mu, sigma, q, nu=nu, y=y, chosen=base, method=method,
                                utility=utility)
        gain = total - current
        if first is None:
            first = (gain, ess)
        value = np.where(taken | (cost > remaining), -np.inf, gain / scale ** float(cost_power))
        if not np.isfinite(value).any():
            stopped = "budget spent" if np.isfinite(remaining) else "no candidates left"
            break
        c = int(np.argmax(value))
        picks.append({"index": c, "gain": float(gain[c]), "cumulative_gain": float(total[c]),
                      "ess": float(ess[c])})
        taken[c], current, remaining = True, float(total[c]), remaining - cost[c]
        base = base + loglik_matrix(y[:, c], mu[:, c], sigma, nu)
    return picks, first, stopped


def choose_batch(posterior: DesignPosterior, candidates: pd.DataFrame, target: Target, *,
                 k: int = 1, budget: float | None = None, cost_power: float = 1.0, seed: int = 0,
                 method: str = "reweight") -> Design:
    """Greedily choose up to `k` runs maximising gain / cost^cost_power within `budget` FLOPs.

    `posterior` is any `DesignPosterior` (a law's, a crossover cell's, a BTS pair's) and
    `candidates` runs it can predict. `cost_power=1` ranks by information per FLOP, 0 by
    information alone. Every pick is scored given the fantasised outcomes of the earlier ones
    (see the module docstring).
    """
    require_design_posterior(posterior, "choose_batch")
    candidates = validate_candidates(candidates)
    mu = posterior.candidate_log_mean(candidates)
    if not np.all(np.isfinite(mu)):
        raise ValueError("the law's prediction is not finite at some candidates")
    q = None if target.is_parameters else np.asarray(target.values(posterior), dtype=float)
    if q is not None and not np.all(np.isfinite(q)):
        raise ValueError(f"target {target.name}: its draws are not finite")
    if q is not None and not np.all(np.ptp(q, axis=0) > 0):   # np.var of equal floats: ~1e-29
        raise ValueError(f"target {target.name} has the same value ({q.flat[0]:.6g}) in every "
                         "posterior draw, so no outcome can change it and no run can be scored (for "
                         "crossover targets: no draw has a crossover in the searched range). "
                         "Reweighting draws cannot create values the posterior does not hold: "
                         "refit with data or a model that leaves the quantity uncertain")
    picks, (gain, ess), stopped = greedy_batch(
        mu, posterior.sigma, q, candidates["cost"].to_numpy(float), nu=posterior.nu, k=k,
        budget=budget, cost_power=cost_power, seed=seed, method=method)
    scores = candidates.copy()
    scores["gain"], scores["ess"] = gain, ess
    scores["gain_per_flop"] = scores["gain"] / scores["cost"]
    chosen = candidates.iloc[[p["index"] for p in picks]].copy()
    for name in ("gain", "cumulative_gain", "ess"):
        chosen[name] = [p[name] for p in picks]
    chosen["gain_per_flop"] = chosen["gain"] / chosen["cost"]
    chosen.insert(0, "order", np.arange(1, len(chosen) + 1))
    total = picks[-1]["cumulative_gain"] if picks else 0.0
    return Design(scores, chosen.reset_index(drop=True), target, budget, total, posterior.n,
                  stopped)


def reweight(posterior: DesignPosterior, n_params: float, n_tokens: float, loss: float,
             **run) -> np.ndarray:
    """Normalised weights of the draws after observing `loss` from one run of N = `n_params`
    parameters and D = `n_tokens` tokens; `run` gives any other column the posterior's
    `candidate_log_mean` reads (a crossover run's `init`, a BTS continuation's `extends`)."""
    require_design_posterior(posterior, "reweight")
    one = pd.DataFrame({"n_params": [float(n_params)], "n_tokens": [float(n_tokens)],
                        **{name: [value] for name, value in run.items()}})
    mu = posterior.candidate_log_mean(one)[:, 0]
    ll = np.asarray(_logpdf((np.log(loss) - mu) / posterior.sigma, posterior.nu)) \
        - np.log(posterior.sigma)
    w = np.exp(ll - ll.max())
    return w / w.sum()
