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

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import gammaln, logsumexp

from atlas_bayes.optimal import LawDraws, allocation, law_draws, predicted_loss

DEFAULT_DRAWS = 512       # posterior draws the estimators use (cost grows as draws^2)
CHUNK = 32                # candidates per vectorised block (memory: CHUNK x draws^2 floats)
CANDIDATE_COLUMNS = ("candidate", "model", "n_params", "n_tokens", "language", "mixture",
                     "init", "cost")


# ---------------------------------------------------------------------------------------------
# Candidates


def flops(n_params, n_tokens, eval_tokens=0.0) -> np.ndarray:
    """Training compute 6 N D plus evaluation, 2 N per evaluated token (forward only)."""
    n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
    return 6.0 * n * d + 2.0 * n * float(eval_tokens)


def shape_sizes(names=None) -> dict[str, float]:
    """Parameters of the trainer's shapes (`trainers.model.SHAPES`; needs the 'train' extra)."""
    try:
        from atlas_bayes.trainers.model import SHAPES
    except ImportError as err:
        raise ValueError(f"trainer shapes need the 'train' extra (pip install -e '.[train]'): {err}") \
            from None
    names = list(SHAPES) if names is None else list(names)
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise ValueError(f"unknown trainer shape(s) {unknown}; choose from {', '.join(SHAPES)}")
    return {n: float(SHAPES[n].n_params()) for n in names}


def candidate_grid(*, n_params=None, shapes=None, tokens=None, tokens_per_param=None,
                   language: str = "und", mixture=None, init: str = "scratch",
                   eval_tokens: float = 0.0, max_cost: float | None = None) -> pd.DataFrame:
    """Every model size x token budget, one row per candidate run with its cost in FLOPs.

    Sizes come from `shapes` (trainer shape names; `model` keeps the name for the plan) or
    `n_params`; budgets from `tokens` (absolute) or `tokens_per_param` (D = ratio x N).
    `mixture` (a language code or a {lang: weight} dict, as the trainer takes it) defaults to
    `language`. Candidates above `max_cost` are left out.
    """
    if (shapes is None) == (n_params is None):
        raise ValueError("give model sizes as either shapes (trainer shape names) or n_params")
    if (tokens is None) == (tokens_per_param is None):
        raise ValueError("give token budgets as either tokens or tokens_per_param")
    if shapes is not None:
        models = list(shape_sizes(shapes).items())
    else:
        models = [("", float(n)) for n in _positive_list(n_params, "n_params")]
    amounts = _positive_list(tokens if tokens is not None else tokens_per_param,
                             "tokens" if tokens is not None else "tokens_per_param")
    rows = []
    for (model, n), amount in itertools.product(models, amounts):
        d = amount if tokens is not None else amount * n
        rows.append({"model": model, "n_params": n, "n_tokens": float(d)})
    grid = pd.DataFrame(rows)
    grid["language"] = str(language)
    grid["mixture"] = json.dumps(mixture if mixture is not None else str(language))
    grid["init"] = str(init)
    grid["cost"] = flops(grid["n_params"], grid["n_tokens"], eval_tokens)
    if max_cost is not None:
        grid = grid[grid["cost"] <= float(max_cost)]
        if grid.empty:
            raise ValueError(f"no candidate costs at most {float(max_cost):.3g} FLOPs")
    grid = grid.reset_index(drop=True)
    grid.insert(0, "candidate", [_candidate_id(r) for r in grid.itertuples()])
    return grid


def _candidate_id(row) -> str:
    size = row.model or f"{row.n_params:.4g}"
    return f"{row.language}-{size}-{row.n_tokens:.4g}"


def _positive_list(values, name: str) -> list[float]:
    values = list(np.atleast_1d(np.asarray(values, dtype=float)))
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be positive finite numbers, got {values}")
    return values


def read_candidates(path, *, eval_tokens: float = 0.0) -> pd.DataFrame:
    """Candidates from a CSV or JSONL file: columns n_params and n_tokens (required), and
    model, language, mixture, init, cost, candidate (optional; cost defaults to 6ND)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: candidate file not found")
    try:
        if path.suffix in (".jsonl", ".json"):
            table = pd.read_json(path, lines=path.suffix == ".jsonl")
        elif path.suffix == ".csv":
            table = pd.read_csv(path)
        else:
            raise ValueError(f"{path}: expected a .csv or .jsonl candidate file")
    except ValueError as err:
        raise ValueError(f"{path}: cannot be read as candidates: {err}") from None
    return validate_candidates(table, source=str(path), eval_tokens=eval_tokens)


def validate_candidates(table: pd.DataFrame, *, source: str = "candidates",
                        eval_tokens: float = 0.0) -> pd.DataFrame:
    """Check a candidate table and fill its optional columns; errors name the row and column."""
    table = table.copy().reset_index(drop=True)
    if table.empty:
        raise ValueError(f"{source}: no candidates")
    missing = [c for c in ("n_params", "n_tokens") if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; a candidate needs n_params and "
                         "n_tokens")
    for column in ("n_params", "n_tokens") + (("cost",) if "cost" in table.columns else ()):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: row {row + 1}, column {column!r}: expected a positive "
                             f"number, got {table[column].iloc[row]!r}")
        table[column] = values
    for column, default in (("model", ""), ("language", "und"), ("init", "scratch")):
        values = table[column] if column in table else pd.Series(default, index=table.index)
        table[column] = values.astype(object).fillna(default).astype(str)
    if "mixture" not in table:
        table["mixture"] = table["language"].map(json.dumps)
    else:
        table["mixture"] = [m if isinstance(m, str) and m.strip().startswith(("{", '"'))
                            else json.dumps(m if isinstance(m, (dict, str)) else lang)
                            for m, lang in zip(table["mixture"], table["language"])]
    if "cost" not in table:
        table["cost"] = flops(table["n_params"], table["n_tokens"], eval_tokens)
    if "candidate" not in table:
        table["candidate"] = [_candidate_id(r) for r in table.itertuples()]
    table["candidate"] = table["candidate"].astype(str)
    dupes = table["candidate"][table["candidate"].duplicated()].unique()
    if len(dupes):
        raise ValueError(f"{source}: candidate ids repeat: {list(dupes[:5])}")
    ordered = list(CANDIDATE_COLUMNS) + [c for c in table.columns if c not in CANDIDATE_COLUMNS]
    return table[ordered]


# ---------------------------------------------------------------------------------------------
# The posterior the estimators read


@dataclass
class Posterior:
    """Posterior draws for design: the law (`LawDraws`), the noise scale sigma per draw and
    the Student-t degrees of freedom nu of the likelihood on log loss (inf: normal)."""
    draws: LawDraws
    sigma: np.ndarray
    nu: float = 4.0

    def __post_init__(self):
        self.sigma = np.asarray(self.sigma, dtype=float).ravel()
        if self.sigma.size != self.draws.n or not np.all(self.sigma > 0):
            raise ValueError(f"sigma needs one positive value per draw ({self.draws.n}), got "
                             f"{self.sigma.size} values")

    @property
    def n(self) -> int:
        return self.draws.n

    def log_mean(self, n_params, n_tokens) -> np.ndarray:
        """The law's log loss (draws, candidates) at each candidate's (N, D)."""
        N = np.asarray(n_params, dtype=float)[None, :]
        D = np.asarray(n_tokens, dtype=float)[None, :]
        return np.log(predicted_loss(self.draws, N, D))

    def candidate_log_mean(self, candidates: pd.DataFrame) -> np.ndarray:
        """Each draw's predicted log loss (draws, candidates) of the candidate runs. Other
        posteriors (`design_curves`: crossover and BTS curves) define their own."""
        return self.log_mean(candidates["n_params"], candidates["n_tokens"])


def posterior_from_tree(tree, *, language: str | None = None, unique_tokens: float | None = None,
                        max_draws: int | None = DEFAULT_DRAWS) -> Posterior:
    """A fitted tree's draws for design (evenly thinned to `max_draws`)."""
    draws = law_draws(tree, language)
    post = tree.posterior
    if "sigma" not in post:
        raise ValueError("the fit has no 'sigma' draws; design needs the likelihood's noise scale")
    sigma = post["sigma"]
    if "language" in sigma.dims:
        sigma = sigma.sel(language=draws.language)
    sigma = np.asarray(sigma.values, dtype=float).ravel()
    if max_draws is not None and draws.n > max_draws:
        keep = np.linspace(0, draws.n - 1, int(max_draws)).round().astype(int)
        draws, sigma = draws.thin(max_draws), sigma[keep]
    draws = draws.with_unique_tokens(unique_tokens)
    return Posterior(draws, sigma, float(tree.attrs.get("student_t_nu", 4.0)))


# ---------------------------------------------------------------------------------------------
# What the user wants to learn


@dataclass(frozen=True)
class Target:
    """A quantity to learn about: `values(posterior)` gives one number per draw (or a row of
    T numbers per draw: T quantities, scored by their mean gain); `values=None` means all of
    the law's parameters (nested Monte Carlo on the likelihood)."""
    name: str
    values: Callable[[Posterior], np.ndarray] | None = None
    spec: dict = field(default_factory=dict)

    @property
    def is_parameters(self) -> bool:
        return self.values is None


def parameters_target() -> Target:
    """Every parameter of the law at once."""
    return Target("params", None, {"kind": "params"})


def loss_target(n_params: float, n_tokens: float) -> Target:
    """The log loss the law predicts at (N, D), e.g. a large run nobody can afford to try."""
    n, d = _positive_list(n_params, "N")[0], _positive_list(n_tokens, "D")[0]
    return Target(f"loss@N={n:.3g},D={d:.3g}",
                  lambda p: np.log(predicted_loss(p.draws, np.array([n]), np.array([d]))).ravel(),
                  {"kind": "loss", "n_params": n, "n_tokens": d})


def optimal_size_target(compute: float) -> Target:
    """log N*, the compute-optimal model size at budget C (`atlas_bayes.optimal.allocation`)."""
    c = _positive_list(compute, "C")[0]
    return Target(f"nstar@C={c:.3g}", lambda p: np.log(allocation(p.draws, c)["N"]),
                  {"kind": "nstar", "compute": c})


TARGET_FORMS = ("'params', 'loss@N=1e9,D=2e10', 'nstar@C=1e21', 'crossover:sw@2e9' or "
                "'bts:en->sw[@N]'")


def parse_target(text: str) -> Target:
    """A target from its text form: params, loss@N=..,D=.., nstar@C=.., crossover:LANG@N or
    bts:SRC->TGT[@N] (the last two read curve fits: `atlas_bayes.design_curves`)."""
    text = str(text).strip()
    if text == "params":
        return parameters_target()
    if text.startswith(("crossover:", "bts:")):
        from atlas_bayes.design_curves import parse_curve_target
        return parse_curve_target(text)
    kind, _, rest = text.partition("@")
    fields = {}
    for part in filter(None, rest.split(",")):
        name, eq, value = part.partition("=")
        try:
            fields[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise ValueError(f"target {text!r}: cannot read {part!r}; expected NAME=NUMBER "
                             f"(forms: {TARGET_FORMS})")
    if kind == "loss" and set(fields) == {"N", "D"}:
        return loss_target(fields["N"], fields["D"])
    if kind == "nstar" and set(fields) == {"C"}:
        return optimal_size_target(fields["C"])
    raise ValueError(f"unknown target {text!r}; expected {TARGET_FORMS}")


# ---------------------------------------------------------------------------------------------
# The estimators (pure arrays; candidates on the leading axis, draws on the last)


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


@partial(jax.jit, static_argnames=("nu", "scalar", "chunk"))
def _total_gain(mu_CxM, y_CxM, sigma_M, q_M, base_MxM, nu, scalar, chunk):
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
               method: str = "reweight", chunk: int = CHUNK):
    """Expected information gain of each candidate (nats) and the mean effective sample size.

    `mu` (draws, candidates): each draw's predicted observation; `sigma` (draws,) the noise
    scale; `q` (draws,) the target quantity, or None for all parameters; `q` (draws, T), T
    quantities (e.g. the loss at each run of a target region): the mean of their gains.
    `y` (draws, candidates): simulated outcomes (default: drawn from the likelihood with
    `seed`).
    `chosen` (draws, draws): the summed log likelihoods log p(y_j,s | theta_k) of runs already
    chosen (their fantasised outcomes); the result is then the gain of chosen + candidate.
    """
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
                            scalar=q is not None, chunk=int(chunk))
    return np.asarray(gain, dtype=float), np.asarray(ess, dtype=float)


def loglik_matrix(y_M, mu_M, sigma_M, nu: float) -> np.ndarray:
    """log p(y_j | theta_k) for one run's simulated outcomes (draws, draws)."""
    return np.asarray(_loglik(jnp.asarray(y_M, jnp.float32), jnp.asarray(mu_M, jnp.float32),
                              jnp.asarray(sigma_M, jnp.float32), float(nu)))


# ---------------------------------------------------------------------------------------------
# Scoring candidates and choosing a batch


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
        cols = ["candidate", "model", "n_params", "n_tokens", "language", "mixture", "init",
                "cost", "gain", "gain_per_flop", "cumulative_gain", "ess"]
        return {"target": self.target.name, "target_spec": self.target.spec,
                "budget": self.budget, "n_candidates": int(len(self.scores)),
                "n_draws": self.n_draws, "total_gain": self.total_gain,
                "total_cost": float(self.chosen["cost"].sum()) if len(self.chosen) else 0.0,
                "stopped": self.stopped,
                "chosen": self.chosen[[c for c in cols if c in self.chosen]].to_dict("records")}


def greedy_batch(mu, sigma, q, cost, *, nu: float = 4.0, k: int = 1, budget: float | None = None,
                 cost_power: float = 1.0, seed: int = 0, method: str = "reweight"):
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
        total, ess = eig_scores(mu, sigma, q, nu=nu, y=y, chosen=base, method=method)
        gain = total - current
        if first is None:
            first = (gain, ess)
        utility = np.where(taken | (cost > remaining), -np.inf, gain / scale ** float(cost_power))
        if not np.isfinite(utility).any():
            stopped = "budget spent" if np.isfinite(remaining) else "no candidates left"
            break
        c = int(np.argmax(utility))
        picks.append({"index": c, "gain": float(gain[c]), "cumulative_gain": float(total[c]),
                      "ess": float(ess[c])})
        taken[c], current, remaining = True, float(total[c]), remaining - cost[c]
        base = base + loglik_matrix(y[:, c], mu[:, c], sigma, nu)
    return picks, first, stopped


def choose_batch(posterior: Posterior, candidates: pd.DataFrame, target: Target, *, k: int = 1,
                 budget: float | None = None, cost_power: float = 1.0, seed: int = 0,
                 method: str = "reweight") -> Design:
    """Greedily choose up to `k` runs maximising gain / cost^cost_power within `budget` FLOPs.

    `cost_power=1` ranks by information per FLOP, 0 by information alone. Every pick is
    scored given the fantasised outcomes of the earlier ones (see the module docstring).
    """
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


# ---------------------------------------------------------------------------------------------
# The posterior after an outcome (importance reweighting of the draws)


def reweight(posterior: Posterior, n_params: float, n_tokens: float, loss: float) -> np.ndarray:
    """Normalised weights of the draws after observing `loss` at (N, D)."""
    mu = posterior.log_mean([n_params], [n_tokens])[:, 0]
    ll = np.asarray(_logpdf((np.log(loss) - mu) / posterior.sigma, posterior.nu)) \
        - np.log(posterior.sigma)
    w = np.exp(ll - ll.max())
    return w / w.sum()


def weighted_interval(values, weights=None, prob: float = 0.9) -> tuple[float, float]:
    """Central `prob` interval of weighted draws."""
    values = np.asarray(values, dtype=float)
    weights = np.full(values.size, 1.0 / values.size) if weights is None else np.asarray(weights)
    order = np.argsort(values)
    cdf = np.cumsum(weights[order]) / np.sum(weights)
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    return float(values[order][np.searchsorted(cdf, lo)]), \
        float(values[order][min(np.searchsorted(cdf, hi), values.size - 1)])


def target_summary(posterior: Posterior, target: Target, prob: float = 0.9) -> dict:
    """A scalar target's median and central `prob` interval over the posterior's draws:
    {median, lo, hi, width} in the target's own units (log loss, log N*, ...)."""
    if target.is_parameters:
        raise ValueError("target 'params' has no single interval; summarise each parameter")
    q = np.asarray(target.values(posterior), dtype=float)
    if q.ndim != 1:
        raise ValueError(f"target {target.name} holds {q.shape[1]} quantities per draw, so it "
                         "has no single interval; summarise each quantity")
    lo, hi = weighted_interval(q, prob=prob)
    return {"median": float(np.median(q)), "lo": lo, "hi": hi, "width": hi - lo}


# ---------------------------------------------------------------------------------------------
# Outputs: the trainer's plan and the utility plot


def plan_configs(chosen: pd.DataFrame, *, prefix: str = "design", base: dict | None = None) -> list[dict]:
    """One trainer config per chosen run (`trainers.train.RunConfig` fields): needs candidates
    with trainer shape names in `model`. `base` adds fields (seq_len, batch_size, corpus...)."""
    if chosen.empty:
        raise ValueError("no runs were chosen, so there is no plan to write")
    unnamed = chosen["candidate"][chosen["model"].astype(str) == ""].tolist()
    if unnamed:
        raise ValueError(f"the trainer plan needs trainer shape names, but candidates {unnamed[:3]} "
                         "give only n_params: build the grid from shapes (CLI: --shapes)")
    configs = []
    for row in chosen.itertuples():
        mixture = json.loads(row.mixture)
        config = {**(base or {}), "run_id": f"{prefix}-{row.candidate}",
                  "tokens": int(round(row.n_tokens)), "model": row.model, "mixture": mixture,
                  "notes": f"atlas-bayes design: pick {row.order}, expected gain "
                           f"{row.gain:.3g} nats, cost {row.cost:.3g} FLOPs"}
        if row.init != "scratch":
            config["init"] = row.init
        if row.language != "und":
            config.setdefault("eval_languages", [row.language])
        configs.append(config)
    return configs


def write_plan(configs: list[dict], path) -> Path:
    """The plan as JSONL, one config per line (`atlas-bayes train --plan`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(c) + "\n" for c in configs))
    return path


def plot_design(design: Design, path, *, data: pd.DataFrame | None = None):
    """Gain per FLOP over the candidate grid (N vs D), chosen runs numbered, fitted runs grey."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    s = design.scores
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if data is not None and len(data):
        ax.scatter(data["n_params"], data["n_tokens"], c="0.7", s=12, marker="x",
                   label="fitted runs")
    g = s["gain_per_flop"].clip(lower=np.finfo(float).tiny)
    points = ax.scatter(s["n_params"], s["n_tokens"], c=g, cmap="viridis", s=40,
                        norm=LogNorm(vmin=max(g.max() * 1e-6, g.min()), vmax=g.max()))
    fig.colorbar(points, ax=ax, label="expected gain per FLOP (nats / FLOP)")
    for row in design.chosen.itertuples():
        ax.scatter(row.n_params, row.n_tokens, s=220, facecolors="none", edgecolors="red", lw=1.5)
        ax.annotate(str(row.order), (row.n_params, row.n_tokens), color="red",
                    xytext=(6, 6), textcoords="offset points", weight="bold")
    spec = design.target.spec
    if spec.get("kind") == "loss":
        ax.scatter(spec["n_params"], spec["n_tokens"], marker="*", s=250, c="orange",
                   edgecolors="k", label="target")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="tokens D",
           title=f"Information about {design.target.name} per FLOP")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
