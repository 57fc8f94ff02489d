"""ScaleBench pools for retrospective design (Li et al. 2026, "Spend Less, Fit Better").

A task's train table is the candidate pool (finished runs; "running" one reveals its recorded
loss) and its test table the high-cost target region. The protocol (budgets as fractions of
the pool's summed cost, R² on the target region) is described in
../shared/data/scalebench/SOURCE.md. `run_episode` plays one episode with our design (EIG
about each target run's log loss, `eig_runs`, or about the region's mean log loss, `eig`;
refit with NUTS after each batch), V-optimal (the paper's baseline, `design_voptimal`) or at
random. `eig_runs` is the better of the two on both tasks (benchmarks/RESULTS.md): R² scores
the region's shape, which its mean does not pin down.

Why EIG needs a trust region (measured on the chinchilla task, benchmarks/RESULTS.md): the
Chinchilla law fitted to the pool's runs with at least one token per parameter has residuals
of ~0.005 in log loss there, but 0.05-0.30 (10-60 sigma) for runs with D/N < 0.8 (large
models on a few hundred million tokens). Those runs sit at the edge of the design space, where
the posterior predictive is widest, so EIG ranks them first, and one of them (N = 6.8e9,
D = 2.5e8, loss 5.0) bends the fit (beta 0.45 -> 0.74): target R² 0.72 without it, -0.40 with
it, on the same other 23 runs. EIG trusts the law everywhere; the fix is to buy only runs
shaped like the target (`shape_trust_region`: tokens per parameter within the target
region's range, widened by a factor), where the law must hold anyway.

Differences from the paper's protocol: our fit is Bayesian (posterior median predictions),
not 64-start least squares (V-optimal keeps the least-squares fit); every method buys only
runs that fit the current checkpoint, so the fit at a checkpoint is the last one made.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from atlas_bayes.design import voptimal as vopt
from atlas_bayes.design.posterior import Posterior, posterior_from_tree
from atlas_bayes.design.targets import Target
from atlas_bayes.design.eig import greedy_batch
from atlas_bayes.design.candidates import validate_candidates
from atlas_bayes.fitting.inference import Sampler, fit, predict
from atlas_bayes.fitting.draws import predicted_loss_at
from atlas_bayes.models import get_law
from atlas_bayes.tables.runs import RunTableWarning, validate_runs

class Task(NamedTuple):
    """A ScaleBench task: its folder, column renames to the run-table names, the law we fit by
    default (None: pass one, e.g. a law file under benchmarks/scalebench_laws/), the task's cost
    of a run (a function of the raw table; None: 6 N D), its budget checkpoints and whether it
    splits into groups (each with its own pool, budget and fit; R² over all groups' targets).
    A task without a token count gets n_tokens = 1 (the run table needs the column; its laws
    read their own columns). `loss_shift` is added to the task's loss (pool and target) where
    it is not positive (vocab's unigram-normalised loss): our laws predict a positive loss, and
    the target R² is unchanged by a shift of both sides; a law file for the task predicts the
    shifted loss. A task with `outputs` (several loss columns per run: domain_mixture) is read
    one row per (run, output) (`one_row_per_output`); its `shares` columns must be proportions
    summing to 1."""
    folder: str
    columns: dict
    law: str | None
    cost: Callable[[pd.DataFrame], np.ndarray] | None = None
    fractions: tuple = (0.01, 0.05, 0.10)
    grouped: bool = False
    loss_shift: float = 0.0
    outputs: tuple = ()
    shares: tuple = ()


def _six_nd(n, d):
    return lambda t: 6.0 * t[n].to_numpy(float) * t[d].to_numpy(float)


TASKS = {
    "chinchilla": Task("chinchilla_scaling_law", {"N": "n_params", "D": "n_tokens"}, "chinchilla"),
    "data_constrained": Task("data_constrained_scaling_law",
                             {"params": "n_params", "tokens": "n_tokens"}, "dcsl"),
    "farseer": Task("farseer_scaling_law", {"N": "n_params", "D": "n_tokens"}, None),
    "moe": Task("moe_scaling_law", {"dense_parameter_count": "n_params",
                                    "loss_validation": "loss"}, None,
                lambda t: t["n_params"].to_numpy(float) * t["num_experts"].to_numpy(float)),
    "parallel": Task("parallel_scaling_law", {"num_params": "n_params"}, None,
                     lambda t: t["n_params"].to_numpy(float), grouped=True),
    "sparsity": Task("sparsity_scaling_law", {"N_active": "n_params"}, None,
                     lambda t: (6.0 * t["N_dense"] * t["D1"] + 6.0 * t["n_params"] * t["D2"])
                     .to_numpy(float), (0.20, 0.35, 0.50), grouped=True),
    "vocab": Task("vocab_scaling_law", {"non_vocab_parameters": "n_params",
                                        "num_characters": "n_tokens",
                                        "unigram_normalized_loss": "loss"}, None,
                  lambda t: t["n_params"].to_numpy(float) * t["n_tokens"].to_numpy(float),
                  loss_shift=6.0),
    "domain_mixture": Task("domain_mixture_scaling_law", {}, None,
                           lambda t: np.ones(len(t)), (0.20, 0.35, 0.50), grouped=True,
                           outputs=tuple(f"loss_domain_{i}" for i in range(1, 6)),
                           shares=tuple(f"proportion_domain_{i}" for i in range(1, 6))),
    "lr_bsz": Task("lr_bsz_scaling_law", {"non_embedding_param_size": "n_params",
                                          "data_size": "n_tokens", "lm_loss": "loss"}, None),
}
METHODS = ("eig", "eig_runs", "var_runs", "voptimal", "random")


def load_task(root, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, target) of a task: candidate tables (with the task's cost) that keep the recorded
    `loss` and every input column (a `group` column where the task splits into groups)."""
    if task not in TASKS:
        raise ValueError(f"unknown ScaleBench task {task!r}; supported: {', '.join(TASKS)}")
    spec = TASKS[task]
    path = Path(root) / spec.folder
    tables = []
    for split in ("train", "test"):
        file = path / f"{split}-00000-of-00001.parquet"
        if not file.is_file():
            raise ValueError(f"{file}: not found; expected the ScaleBench snapshot in {root}")
        raw = pd.read_parquet(file).rename(columns=spec.columns)
        raw["candidate"] = [f"{task}-{split}-{i}" for i in range(len(raw))]
        for column in ("n_params", "n_tokens"):
            if column not in raw:
                raw[column] = 1.0
        if spec.loss_shift:
            raw["loss"] = raw["loss"] + spec.loss_shift
        if spec.cost is not None:
            raw["cost"] = spec.cost(raw)
        if spec.outputs:
            raw = one_row_per_output(raw, spec.outputs, spec.shares, str(file))
        if not spec.grouped:
            raw = raw.drop(columns="group", errors="ignore")
        tables.append(validate_candidates(raw, source=str(file)))
    return tables[0], tables[1]


def one_row_per_output(raw: pd.DataFrame, outputs, shares=(), source: str = "the table"):
    """A multi-output task's runs, one row per (run, output): the run's columns, `output` (1..K,
    which of the `outputs` columns), `loss` (that column's value), `run` (the run's candidate id:
    its rows are bought together) and `cost` (the run's, split evenly over its K rows). The
    authors fit all outputs at once on one residual vector and score R² on all of them
    concatenated; this is the same vector. Checks: every output column present, finite and
    positive; the `shares` columns proportions in [0, 1] summing to 1 (1e-6). ValueError naming
    the file, row and column."""
    missing = [c for c in tuple(outputs) + tuple(shares) if c not in raw.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing} (has {', '.join(raw.columns)})")
    for column in tuple(outputs) + tuple(shares):
        values = pd.to_numeric(raw[column], errors="coerce").to_numpy(float)
        low = 0.0 if column in shares else np.nextafter(0.0, 1.0)
        bad = ~(np.isfinite(values) & (values >= low) & (values <= (1.0 if column in shares
                                                                   else np.inf)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            kind = "a proportion in [0, 1]" if column in shares else "a positive finite loss"
            value = raw[column].iloc[row]
            raise ValueError(f"{source}: row {row + 1}, column {column!r}: expected {kind}, got "
                             f"{value.item() if hasattr(value, 'item') else value!r}")
    if shares:
        total = raw[list(shares)].to_numpy(float).sum(axis=1)
        bad = np.abs(total - 1.0) > 1e-6
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: row {row + 1}, columns {', '.join(shares)}: the "
                             f"proportions sum to {total[row]:.6g}, not 1")
    rows = []
    for k, column in enumerate(outputs, 1):
        part = raw.drop(columns=list(outputs)).assign(
            loss=raw[column].to_numpy(float), output=float(k), run=raw["candidate"],
            candidate=raw["candidate"] + f"-{k}", cost=raw["cost"].to_numpy(float) / len(outputs))
        rows.append(part)
    long = pd.concat(rows, ignore_index=True)
    order = np.argsort(np.arange(len(long)) % len(raw), kind="stable")   # a run's rows together
    return long.iloc[order].reset_index(drop=True)


def budget(pool: pd.DataFrame, fraction: float) -> float:
    """A budget as a fraction of the pool's summed cost (the paper's checkpoints)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"budget fraction must be in (0, 1], got {fraction}")
    return float(fraction * pool["cost"].sum())


def reveal(pool: pd.DataFrame, chosen, *, language: str = "en") -> pd.DataFrame:
    """The recorded outcomes of the chosen candidates as a validated run table (with the
    pool's other numeric columns, which a user law may read)."""
    rows = pool.set_index("candidate").loc[list(chosen)].reset_index()
    table = pd.DataFrame({"run_id": rows["candidate"], "language": language,
                          "n_params": rows["n_params"], "n_tokens": rows["n_tokens"],
                          "loss": rows["loss"], "source": "ScaleBench (Li et al. 2026), revealed"})
    if "unique_tokens" in rows:
        table["unique_tokens"] = rows["unique_tokens"].to_numpy(float)
    extra = [c for c in rows.columns if c not in table.columns and c not in _CANDIDATE_ONLY
             and pd.api.types.is_numeric_dtype(rows[c])]
    table = pd.concat([table, rows[extra].reset_index(drop=True)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)       # the task's own columns
        return validate_runs(table, source="ScaleBench pool")


_CANDIDATE_ONLY = ("model", "mixture", "init", "cost", "candidate", "run")


def target_r2(predicted, observed) -> float:
    """The paper's metric: R² on the target region, clipped to [-1, 1] (non-finite: -1)."""
    predicted, observed = np.asarray(predicted, float), np.asarray(observed, float)
    if not np.all(np.isfinite(predicted)):
        return -1.0
    r2 = 1.0 - np.sum((observed - predicted) ** 2) / np.sum((observed - observed.mean()) ** 2)
    return float(np.clip(r2, -1.0, 1.0)) if np.isfinite(r2) else -1.0


def log_mean(posterior: Posterior, table: pd.DataFrame) -> np.ndarray:
    """The law's log loss (draws, rows) at each row: its (N, D) and, where the table has the
    column, its own `unique_tokens` (the fitted draws carry only one U), or a user law's
    FEATURES columns."""
    return np.log(predicted_loss_at(posterior.draws, table))


def region_target(target: pd.DataFrame, per_run: bool = False) -> Target:
    """The target region as a design target: its mean predicted log loss (one quantity), or
    with `per_run` each run's log loss (the mean of their gains: the region's shape counts,
    which R² scores, not only its level)."""
    if per_run:
        return Target(f"log loss of each of {len(target)} target runs",
                      lambda p: log_mean(p, target),
                      {"kind": "region_runs", "n_runs": int(len(target))})
    return Target(f"mean log loss over {len(target)} target runs",
                  lambda p: log_mean(p, target).mean(axis=1),
                  {"kind": "region", "n_runs": int(len(target))})


def shape_trust_region(pool: pd.DataFrame, target: pd.DataFrame, widen: float | None = 2.0):
    """Mask of pool runs whose tokens per parameter lie within the target region's range,
    widened by `widen` each way (None: every run). See the module docstring for why."""
    if widen is None:
        return np.ones(len(pool), dtype=bool)
    if not widen >= 1:
        raise ValueError(f"trust-region widening must be >= 1 (or None), got {widen}")
    shape = target["n_tokens"] / target["n_params"]
    ratio = (pool["n_tokens"] / pool["n_params"]).to_numpy(float)
    return (ratio >= shape.min() / widen) & (ratio <= shape.max() * widen)


def initial_design(pool: pd.DataFrame, n_parameters: int = 5, fraction: float = 0.02) -> list:
    """The selection scripts' start: cheapest runs in order until 2.5 P runs (2.5 P / K runs
    of K outputs each) or `fraction` of the pool's cost (the first run always)."""
    cap, chosen, spent = budget(pool, fraction), [], 0.0
    runs = _runs(pool)
    most = 2.5 * n_parameters / max(len(rows) for rows in runs["rows"])
    cap *= 1 + 1e-9 if "run" in pool else 1      # a run's cost summed from its rows' shares
    for row in runs.sort_values("cost").itertuples():
        if chosen and (len(chosen) >= most or spent + row.cost > cap):
            break
        chosen.append(row.rows)
        spent += row.cost
    return [c for rows in chosen for c in rows]


def _runs(pool: pd.DataFrame) -> pd.DataFrame:
    """The pool's runs in order: their cost and candidate rows (one each, or a multi-output
    run's K rows, `one_row_per_output`), indexed by the run."""
    if "run" not in pool:
        return pd.DataFrame({"cost": pool["cost"].to_numpy(float),
                             "rows": [[c] for c in pool["candidate"]]},
                            index=pool["candidate"].to_numpy())
    grouped = pool.groupby("run", sort=False)
    return pd.DataFrame({"cost": grouped["cost"].sum(), "rows": grouped["candidate"].apply(list)})


def _greedy_runs(mu, sigma, q, runs, cost, *, nu, k, budget, cost_power, seed, utility):
    """Greedy picks of up to `k` runs of several rows each (a multi-output run's outputs are
    observed together): each run scored by the joint gain of its rows' simulated outcomes over
    the posterior draws (`eig_scores` with the run's other rows and the earlier picks as
    `chosen`), per (cost / median cost)^cost_power. `runs`: the columns of `mu` of each run;
    `cost`: each run's. Returns the picked runs' positions."""
    from atlas_bayes.design.eig import eig_scores, loglik_matrix, simulate_outcomes
    mu = np.asarray(mu, np.float32)
    M = mu.shape[0]
    sigma = np.broadcast_to(np.asarray(sigma, np.float32), (M,))
    y = simulate_outcomes(mu, sigma, nu, seed).astype(np.float32)
    ll = [loglik_matrix(y[:, j], mu[:, j], sigma, nu) for j in range(mu.shape[1])]
    scale = np.asarray(cost, float) / np.median(cost)
    base, picks, left = np.zeros((M, M), np.float32), [], float(budget)
    for _ in range(k):
        value = np.full(len(runs), -np.inf)
        for i, cols in enumerate(runs):
            if i in picks or cost[i] > left * (1 + 1e-9):
                continue
            chosen = base + sum((ll[j] for j in cols[1:]), np.zeros((M, M), np.float32))
            gain, _ = eig_scores(mu[:, cols[:1]], sigma, q, nu=nu, y=y[:, cols[:1]],
                                 chosen=chosen, utility=utility)
            value[i] = gain[0] / scale[i] ** cost_power
        if not np.isfinite(value).any():
            break
        best = int(np.argmax(value))
        picks.append(best)
        left -= cost[best]
        base = base + sum(ll[j] for j in runs[best])
    return picks


def _eig_batch(pool, target, rest, bought, law, sampler, max_draws, k, remaining,
               cost_power, seed, per_run, variance=False) -> list:
    """Refit on the bought runs and greedily choose up to k of `rest` by EIG about the target
    (the cheapest run of `rest` where the law cannot be fitted to the runs yet)."""
    try:
        tree = fit(reveal(pool, bought), law, sampler=sampler, warn=False)
    except ValueError:
        return _runs(rest).sort_values("cost")["rows"].iloc[0]
    post = posterior_from_tree(tree, max_draws=max_draws)
    q = np.asarray(region_target(target, per_run).values(post), dtype=float)
    if variance:                   # the summed variance of the target runs' loss (not log)
        q = np.exp(q)
    if "run" in rest:              # multi-output runs: each scored on all its rows at once
        runs = _runs(rest)
        position = pd.Series(np.arange(len(rest)), index=rest["candidate"].to_numpy())
        picks = _greedy_runs(log_mean(post, rest), post.sigma, q,
                             [position[rows].to_numpy() for rows in runs["rows"]],
                             runs["cost"].to_numpy(float), nu=post.nu, k=k, budget=remaining,
                             cost_power=cost_power, seed=seed,
                             utility="variance" if variance else "information")
        return [c for i in picks for c in runs["rows"].iloc[i]]
    picks, _, _ = greedy_batch(log_mean(post, rest), post.sigma, q, rest["cost"].to_numpy(float),
                               nu=post.nu, k=k, budget=remaining, cost_power=cost_power,
                               seed=seed, utility="variance" if variance else "information")
    return list(rest["candidate"].iloc[[p["index"] for p in picks]])


class _LeastSquares:
    """V-optimal's state: the least-squares fit of the bought runs (refit when they change)."""

    def __init__(self, pool, target, law, n_starts, seed):
        self.law, self.n_starts = vopt.ls_law(law), n_starts
        self.pool = pool.set_index("candidate")
        self.X_target = self.law.matrix(target)
        self.b0 = 2.0 * float(np.var(pool["loss"]))           # the paper's (pool-wide) scale
        self.rng, self.warm, self.key, self.theta, self.mse = \
            np.random.default_rng(seed), [], None, None, None

    def fit(self, bought):
        if self.key != tuple(bought):
            rows = self.pool.loc[list(bought)]
            self.theta, self.mse = vopt.fit_least_squares(
                self.law, self.law.matrix(rows), rows["loss"].to_numpy(float), rng=self.rng,
                n_starts=self.n_starts, warm=self.warm)
            self.warm, self.key = (self.warm + [self.theta])[-vopt.MAX_WARM:], tuple(bought)
        return self.theta

    def pick(self, bought, rest, total_cost) -> list:
        """The next run's candidate rows. A multi-output run scores the sum of its rows' drops
        (exact when its outputs' parameters are disjoint, as in domain_mixture's SL2)."""
        theta = self.fit(bought)
        noise = vopt.sigma2(self.mse, len(bought), self.b0)
        X_obs = self.law.matrix(self.pool.loc[list(bought)])
        scores = vopt.voptimal_scores(self.law, theta, X_obs, self.law.matrix(rest),
                                      self.X_target, noise)
        if "run" not in rest:
            return [rest["candidate"].iloc[vopt.pick(scores, rest["cost"], total_cost)]]
        runs = _runs(rest)
        per_run = pd.Series(np.asarray(scores, float), index=rest.index).groupby(
            rest["run"].to_numpy(), sort=False).sum()[runs.index]
        return runs["rows"].iloc[vopt.pick(per_run.to_numpy(), runs["cost"], total_cost)]



def run_episode(pool: pd.DataFrame, target: pd.DataFrame, *, method: str = "eig",
                fractions=(0.01, 0.05, 0.10), law: str = "chinchilla", k: int = 4,
                sampler: Sampler = Sampler(chains=2, warmup=300, draws=300),
                max_draws: int = 256, cost_power: float = 0.4, trust: float | None = 2.0,
                ls_starts: int = 64, seed: int = 0, first_k: int | None = None) -> pd.DataFrame:
    """One retrospective episode: buy runs from the pool up to each budget fraction, refit,
    and score the target region (R², the paper's metric).

    `method`: "eig" (ours: batches of `k` (of `first_k` up to the first budget, where a few
    runs are all there is: moe at 1%, seeds 1 and 8, R² 0.60 and 0.73 one run per refit
    against -0.97 and 0.13 in batches of 4) by EIG / cost^cost_power about the region's mean
    log loss, among runs inside `shape_trust_region(widen=trust)`, NUTS refit after each
    batch), "eig_runs" (the same, EIG about each target run's log loss), "var_runs" (the same,
    the expected drop in the target runs' summed loss variance: MSPE's criterion over posterior
    draws instead of a linearisation), "voptimal" (the paper's
    V-opt: one run at a time, least-squares refit with `ls_starts` starts after each, its
    own cost power 0.3, R² from the least-squares fit) or "random" (uniform among affordable
    runs, no initial design). EIG and V-opt start with `initial_design`. `law`: a registry law
    or a user law's file (`path.py[:NAME]`).

    A pool with a `group` column is played once per group (each with its own budget and fit);
    R² is taken over every group's target rows together, leaving out a group whose fit failed
    or predicts non-finite losses (as the paper's scripts do; -1 when every group did).
    Returns one row per fraction: runs bought, share of the pool's cost spent (the mean over
    groups), R² of the method's own fit (`r2`: the posterior median of the law's mean for EIG
    and random, least squares for V-opt) and of the protocol's fit of the same runs (`r2_ls`:
    least squares, best of `ls_starts` starts, for every method). The fit reported at a
    fraction uses the longest prefix of bought runs within it.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    groups = list(dict.fromkeys(pool["group"])) if "group" in pool else [None]
    played = []
    for g in groups:
        mine = (pool, target) if g is None else (pool[pool["group"] == g].reset_index(drop=True),
                                                 target[target["group"] == g].reset_index(drop=True))
        played.append(_play(*mine, method=method, fractions=fractions, law=law, k=k,
                            sampler=sampler, max_draws=max_draws, cost_power=cost_power,
                            trust=trust, ls_starts=ls_starts, seed=seed, first_k=first_k))
    rows = []
    for i, fraction in enumerate(sorted(fractions)):
        scores = {}
        for name, key in (("r2", "predicted"), ("r2_ls", "predicted_ls")):
            parts = [(p[i][key], t) for p, (_, t) in zip(played, _split(pool, target, groups))
                     if p[i][key] is not None and np.all(np.isfinite(p[i][key]))]
            scores[name] = -1.0 if not parts else target_r2(
                np.concatenate([a for a, _ in parts]), np.concatenate([t["loss"] for _, t in parts]))
        rows.append({"method": method, "fraction": fraction,
                     "n_runs": int(sum(p[i]["n_runs"] for p in played)),
                     "spent": float(np.mean([p[i]["spent"] for p in played])), **scores,
                     "seed": seed})
    return pd.DataFrame(rows)


def _split(pool, target, groups):
    """Each group's (pool, target)."""
    for g in groups:
        yield (pool, target) if g is None else (pool[pool["group"] == g],
                                                target[target["group"] == g])


def _play(pool, target, *, method, fractions, law, k, sampler, max_draws, cost_power, trust,
          ls_starts, seed, first_k=None) -> list[dict]:
    """One group's episode: per fraction, runs bought, share spent and the target predictions
    (None where nothing could be fitted)."""
    rng = np.random.default_rng(seed)
    cost = pool.set_index("candidate")["cost"]
    total = float(pool["cost"].sum())
    bought = [] if method == "random" else initial_design(pool, len(get_law(law).parameters))
    allowed = shape_trust_region(pool, target, trust) if method not in ("voptimal", "random") else \
        np.ones(len(pool), dtype=bool)
    ls = _LeastSquares(pool, target, law, ls_starts, seed) if method == "voptimal" else None
    sampler = replace(sampler, seed=seed)
    rows = []
    for fraction in sorted(fractions):
        cap = budget(pool, fraction)
        size = first_k if first_k and fraction == min(fractions) else k
        while True:
            remaining = cap - cost[bought].sum()
            rest = pool[allowed & ~pool["candidate"].isin(bought) & (pool["cost"] <= remaining)]
            if "run" in pool:          # multi-output runs: affordable and untouched as a whole
                runs = _runs(pool[allowed & ~pool["candidate"].isin(bought)])
                rest = pool[pool["run"].isin(runs.index[runs["cost"] <= remaining * (1 + 1e-9)])]
            if rest.empty:
                break
            if method == "random":
                runs = _runs(rest)
                bought += runs["rows"].iloc[rng.integers(len(runs))]
            elif method == "voptimal":
                bought += ls.pick(bought, rest, total)
            else:
                batch = _eig_batch(pool, target, rest, bought, law, sampler, max_draws, size,
                                   remaining, cost_power, seed, method != "eig",
                                   method == "var_runs")
                if not batch:
                    break
                bought += batch
        within = np.cumsum(cost[bought].to_numpy()) <= cap * (1 + 1e-12)
        used = bought[:int(np.argmin(within)) if not within.all() else len(bought)]
        runs_used = len(set(pool.set_index("candidate").loc[used, "run"])) if "run" in pool \
            else len(used)
        rows.append({"n_runs": runs_used, "spent": float(cost[used].sum() / total),
                     "predicted": _predict(pool, target, used, law, sampler, ls),
                     "predicted_ls": _predict_ls(pool, target, used, law, ls_starts, seed)})
    return rows


def _predict_ls(pool, target, used, law, n_starts, seed) -> np.ndarray | None:
    """The target's loss from the protocol's fit of the `used` runs: least squares in the law's
    box, best of `n_starts` starts (`voptimal.fit_least_squares`); None without runs."""
    if not used:
        return None
    try:
        ls = vopt.ls_law(law)
    except ValueError:          # a law without a least-squares box
        return None
    rows = pool.set_index("candidate").loc[list(used)]
    theta, _ = vopt.fit_least_squares(ls, ls.matrix(rows), rows["loss"].to_numpy(float),
                                      rng=np.random.default_rng(seed), n_starts=n_starts)
    return vopt.predict(ls, theta, ls.matrix(target))


def _predict(pool, target, used, law, sampler, ls) -> np.ndarray | None:
    """The target's predicted loss from a fit of the `used` runs (least squares for V-opt, the
    posterior median of the law's mean otherwise); None where no fit is possible."""
    if not used:
        return None
    try:
        if ls is not None:
            return vopt.predict(ls.law, ls.fit(used), ls.X_target)
        tree = fit(reveal(pool, used), law, sampler=sampler, warn=False)
        mean = predict(tree, reveal(target, target["candidate"]))["log_loss_mean"]
        return np.exp(mean.median(("chain", "draw")).values)
    except ValueError:        # e.g. a law that cannot fit so few runs
        return None
