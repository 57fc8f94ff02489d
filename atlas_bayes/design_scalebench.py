"""ScaleBench pools for retrospective design (Li et al. 2026, "Spend Less, Fit Better").

A task's train table is the candidate pool (finished runs; "running" one reveals its recorded
loss) and its test table the high-cost target region. The protocol (budgets as fractions of
the pool's summed cost, R² on the target region) is described in
../shared/data/scalebench/SOURCE.md. This module only reads pools and reveals runs; the
retrospective loop and the comparison with random, V-optimal and the published numbers are
still to come (issue 7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.design import validate_candidates
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
