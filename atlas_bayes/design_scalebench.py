"""ScaleBench pools for retrospective design (Li et al. 2026, "Spend Less, Fit Better").

A task's train table is the candidate pool (finished runs; "running" one reveals its recorded
loss) and its test table the high-cost target region. The protocol (budgets as fractions of
the pool's summed cost, R² on the target region) is described in
../shared/data/scalebench/SOURCE.md. `run_episode` plays one episode with our design (EIG
about the target region's mean log loss, refit with NUTS after each batch) or at random.
Differences from the paper's protocol: our fit is Bayesian (posterior median predictions),
not 64-start least squares; random picks only runs that fit the current checkpoint. The
comparison with V-optimal and the published numbers is still to come (issue 7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.design import Target, choose_batch, posterior_from_tree, validate_candidates
from atlas_bayes.inference import Sampler, fit, predict
from atlas_bayes.optimal import predicted_loss
from atlas_bayes.runs import validate_runs

# task -> (folder, column renames to the run-table names)
TASKS = {
    "chinchilla": ("chinchilla_scaling_law", {"N": "n_params", "D": "n_tokens"}),
    "data_constrained": ("data_constrained_scaling_law",
                         {"params": "n_params", "tokens": "n_tokens"}),
}


def load_task(root, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, target) of a task: candidate tables (cost 6ND) that keep the recorded `loss`."""
    if task not in TASKS:
        raise ValueError(f"unknown ScaleBench task {task!r}; supported: {', '.join(TASKS)}")
    folder, names = TASKS[task]
    path = Path(root) / folder
    tables = []
    for split in ("train", "test"):
        file = path / f"{split}-00000-of-00001.parquet"
        if not file.is_file():
            raise ValueError(f"{file}: not found; expected the ScaleBench snapshot in {root}")
        raw = pd.read_parquet(file).rename(columns=names)
        raw["candidate"] = [f"{task}-{split}-{i}" for i in range(len(raw))]
        tables.append(validate_candidates(raw, source=str(file)))
    return tables[0], tables[1]


def budget(pool: pd.DataFrame, fraction: float) -> float:
    """A budget as a fraction of the pool's summed cost (the paper's checkpoints)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"budget fraction must be in (0, 1], got {fraction}")
    return float(fraction * pool["cost"].sum())


def reveal(pool: pd.DataFrame, chosen, *, language: str = "en") -> pd.DataFrame:
    """The recorded outcomes of the chosen candidates as a validated run table."""
    rows = pool.set_index("candidate").loc[list(chosen)].reset_index()
    table = pd.DataFrame({"run_id": rows["candidate"], "language": language,
                          "n_params": rows["n_params"], "n_tokens": rows["n_tokens"],
                          "loss": rows["loss"], "source": "ScaleBench (Li et al. 2026), revealed"})
    if "unique_tokens" in rows:
        table["unique_tokens"] = rows["unique_tokens"].to_numpy(float)
    return validate_runs(table, source="ScaleBench pool")


def target_r2(predicted, observed) -> float:
    """The paper's metric: R² on the target region, clipped to [-1, 1] (non-finite: -1)."""
    predicted, observed = np.asarray(predicted, float), np.asarray(observed, float)
    if not np.all(np.isfinite(predicted)):
        return -1.0
    r2 = 1.0 - np.sum((observed - predicted) ** 2) / np.sum((observed - observed.mean()) ** 2)
    return float(np.clip(r2, -1.0, 1.0)) if np.isfinite(r2) else -1.0


def region_target(target: pd.DataFrame) -> Target:
    """The mean predicted log loss over the target region's runs, as one design target."""
    N = target["n_params"].to_numpy(float)[None, :]
    D = target["n_tokens"].to_numpy(float)[None, :]
    return Target(f"mean log loss over {len(target)} target runs",
                  lambda p: np.log(predicted_loss(p.draws, N, D)).mean(axis=1),
                  {"kind": "region", "n_runs": int(len(target))})


def initial_design(pool: pd.DataFrame, n_parameters: int = 5, fraction: float = 0.02) -> list:
    """The selection scripts' start: cheapest runs in order until 2.5 P runs or `fraction` of
    the pool's cost (the first run always)."""
    cap, chosen, spent = budget(pool, fraction), [], 0.0
    for row in pool.sort_values("cost").itertuples():
        if chosen and (len(chosen) >= 2.5 * n_parameters or spent + row.cost > cap):
            break
        chosen.append(row.candidate)
        spent += row.cost
    return chosen


def run_episode(pool: pd.DataFrame, target: pd.DataFrame, *, method: str = "eig",
                fractions=(0.01, 0.05, 0.10), law: str = "chinchilla", k: int = 4,
                sampler: Sampler = Sampler(chains=2, warmup=300, draws=300),
                max_draws: int = 256, cost_power: float = 0.4, seed: int = 0) -> pd.DataFrame:
    """One retrospective episode: buy runs from the pool up to each budget fraction, refit,
    and score the target region (R², the paper's metric). `method` "eig" (ours: batches of
    `k`, refit after each) or "random" (uniform among affordable runs, no initial design).

    Returns one row per fraction: runs bought, share of the pool's cost spent, R².
    The fit reported at a fraction uses the longest prefix of bought runs within it.
    """
    if method not in ("eig", "random"):
        raise ValueError(f"method must be 'eig' or 'random', got {method!r}")
    rng = np.random.default_rng(seed)
    cost = pool.set_index("candidate")["cost"]
    bought = [] if method == "random" else initial_design(pool)
    total, rows = float(pool["cost"].sum()), []
    for fraction in sorted(fractions):
        cap = budget(pool, fraction)
        while True:
            remaining = cap - cost[bought].sum()
            rest = pool[~pool["candidate"].isin(bought) & (pool["cost"] <= remaining)]
            if rest.empty:
                break
            if method == "random":
                bought.append(rest["candidate"].iloc[rng.integers(len(rest))])
                continue
            tree = fit(reveal(pool, bought), law, sampler=sampler, warn=False)
            result = choose_batch(posterior_from_tree(tree, max_draws=max_draws), rest,
                                  region_target(target), k=k, budget=remaining,
                                  cost_power=cost_power, seed=seed)
            if result.chosen.empty:
                break
            bought += list(result.chosen["candidate"])
        within = np.cumsum(cost[bought].to_numpy()) <= cap * (1 + 1e-12)
        used = bought[:int(np.argmin(within)) if not within.all() else len(bought)]
        r2 = -1.0
        if used:
            tree = fit(reveal(pool, used), law, sampler=sampler, warn=False)
            mean = predict(tree, reveal(target, target["candidate"]))["log_loss_mean"]
            r2 = target_r2(np.exp(mean.median(("chain", "draw")).values), target["loss"])
        rows.append({"method": method, "fraction": fraction, "n_runs": len(used),
                     "spent": float(cost[used].sum() / total), "r2": r2, "seed": seed})
    return pd.DataFrame(rows)
