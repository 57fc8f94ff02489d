"""Candidate runs for design: grids from trainer shapes or sizes x token budgets, files, checks,
and each run's cost C = 6 N D (+ 2 N per evaluated token).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd


CANDIDATE_COLUMNS = ("candidate", "model", "n_params", "n_tokens", "language", "mixture",
                     "init", "cost")


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
    cost_given = "cost" in table
    if "cost" not in table:
        table["cost"] = flops(table["n_params"], table["n_tokens"], eval_tokens)
    if "candidate" not in table:
        ids = pd.Series([_candidate_id(r) for r in table.itertuples()])
        repeated = ids.duplicated(keep=False)     # e.g. rows that differ in a user law's column
        table["candidate"] = ids.where(~repeated, ids + "-row" + (ids.index + 1).astype(str))
    table["candidate"] = table["candidate"].astype(str)
    dupes = table["candidate"][table["candidate"].duplicated()].unique()
    if len(dupes):
        raise ValueError(f"{source}: candidate ids repeat: {list(dupes[:5])}")
    ordered = list(CANDIDATE_COLUMNS) + [c for c in table.columns if c not in CANDIDATE_COLUMNS]
    table = table[ordered]
    table.attrs["cost_given"] = cost_given
    return table


def law_costs(law, table: pd.DataFrame, eval_tokens: float = 0.0) -> pd.DataFrame:
    """Candidates costed by a user law (`models.user.UserLaw`): its `cost(x)` on its FEATURES
    columns, unless the table gave its own costs; errors name the law's file."""
    missing = [f for f in law.features if f not in table.columns]
    if missing:
        raise ValueError(f"{law.name}: the law reads column(s) {missing}, which the candidates "
                         "lack; give them in a candidate file (--candidates)")
    if law.cost is None or table.attrs.get("cost_given"):
        return table
    x = {f: table[f].to_numpy(float) for f in law.features}
    try:
        cost = np.broadcast_to(np.asarray(law.cost(x), dtype=float), (len(table),))
    except Exception as err:       # the user's code: said in one line
        raise ValueError(f"{law.name}: cost(x) failed on the candidates: {type(err).__name__}: "
                         f"{err}") from None
    bad = ~(np.isfinite(cost) & (cost > 0))
    if bad.any():
        raise ValueError(f"{law.name}: cost(x) gives {cost[bad][0]!r} for candidate "
                         f"{table['candidate'].iloc[int(np.flatnonzero(bad)[0])]!r}; costs must "
                         "be positive and finite")
    table = table.copy()
    table["cost"] = cost + 2.0 * table["n_params"].to_numpy(float) * float(eval_tokens)
    return table
