"""What a joint fit says per language, and how much partial pooling helps languages with few runs.

* `per_language_exponents(tree)`: one row per language of any joint (`*-h`) fit, with the
  posterior median and 90% interval of its exponents and E.
* `pooling_study(runs, sampler=...)`: hold out each language's largest-data run (see
  `split_largest`), fit the joint law with partial pooling and with none (independent copies
  of the single-language priors), predict the held-out runs, and compare the errors grouped by
  how many runs each language had to train on.
* `plot_pooling(exponents, study, path)`: the per-language beta intervals (sorted) next to the
  held-out errors, pooled vs separate.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.fitting.inference import Approximation, Sampler, fit, predict
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.tables.atomic_files import atomic_file

PARAMETERS = ("beta", "alpha", "E")
POOLINGS = ("partial", "none")
PROB = 0.9


def per_language_exponents(tree: xr.DataTree, parameters=PARAMETERS,
                           prob: float = PROB) -> pd.DataFrame:
    """Per language: runs fitted, then median, q05 and q95 (for prob=0.9) of each parameter."""
    tail = (1 - prob) / 2
    names = {"median": 0.5, f"q{100 * tail:02.0f}": tail, f"q{100 * (1 - tail):02.0f}": 1 - tail}
    stacked = tree.posterior.to_dataset()[list(parameters)].stack(sample=("chain", "draw"))
    table = pd.DataFrame({"n_points": points_per_language(tree)})
    for name in parameters:
        values = stacked[name].transpose("language", "sample").values
        quantiles = np.quantile(values, list(names.values()), axis=1)
        for label, row in zip(names, quantiles):
            table[f"{name}_{label}"] = pd.Series(row, index=stacked["language"].values)
    table.index.name = "language"
    return table.reset_index()


def population_summary(tree: xr.DataTree, name: str = "beta", prob: float = PROB) -> dict:
    """A partially pooled parameter's population: median and `prob` interval of its typical
    value exp(mu), and the median spread sd (on the log scale, so ~ relative spread)."""
    tail = (1 - prob) / 2
    typical = np.exp(tree.posterior[f"log_{name}_mu"].values.ravel())
    low, median, high = np.quantile(typical, [tail, 0.5, 1 - tail])
    sd = tree.posterior.get(f"log_{name}_sd")   # absent when the parameter is shared
    spread = 0.0 if sd is None else float(np.median(sd.values))
    return {"median": float(median), "low": float(low), "high": float(high), "log_sd": spread}


def points_per_language(tree: xr.DataTree) -> pd.Series:
    """How many runs of each fitted language the fit saw (0 for a language with none)."""
    languages = list(FitRecord.from_tree(tree, require=("languages",),
                                         purpose="points_per_language").languages)
    seen = pd.Series(tree["fit_data"]["language"].values).value_counts()
    return seen.reindex(languages, fill_value=0).astype(int)


def split_largest(runs: pd.DataFrame, min_points: int = 3,
                  keep: Sequence[int | None] = (None,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the test set is each language's largest-data run (most unique tokens,
    ties: more tokens, then the larger model), for languages with at least `min_points` runs.
    The other runs train, so every language keeps a training run and its parameters.

    `keep` thins the held-out languages' training runs to fewer points: the held-out languages,
    in code order, take the caps of `keep` in turn and keep that many smallest-data runs
    (None: all). E.g. (1, 2, None) leaves every third language one training run.
    """
    runs = runs.reset_index(drop=True)
    counts = runs.groupby("language")["run_id"].transform("size")
    order = runs[counts >= min_points].sort_values(["unique_tokens", "n_tokens", "n_params"])
    test = order.groupby("language").tail(1).index
    rest = order.drop(index=test)
    held = sorted(map(str, rest["language"].unique()))
    caps = dict(zip(held, itertools.cycle(np.inf if k is None else k for k in keep)))
    cap = np.array([caps[lang] for lang in rest["language"].astype(str)])
    trimmed = rest.index[rest.groupby("language").cumcount().to_numpy() >= cap]
    train = runs.drop(index=test.union(trimmed))
    return train.reset_index(drop=True), runs.loc[test].reset_index(drop=True)


def heldout_errors(tree: xr.DataTree, test: pd.DataFrame, prob: float = PROB) -> pd.DataFrame:
    """Per held-out run: the training runs of its language, the error of the posterior median
    prediction (signed and absolute on log loss, absolute on loss in the data's units) and
    whether the `prob` posterior-predictive interval covers the observed loss.
    """
    draws = predict(tree, test)
    mean = draws["log_loss_mean"].stack(sample=("chain", "draw")).values
    noisy = draws["log_loss"].stack(sample=("chain", "draw")).values
    low, high = np.quantile(noisy, [(1 - prob) / 2, (1 + prob) / 2], axis=-1)
    predicted = np.median(mean, axis=-1)
    observed = np.log(test["loss"].to_numpy(float))
    trained = points_per_language(tree)
    return pd.DataFrame({
        "language": test["language"].to_numpy(str),
        "n_train": trained.reindex(test["language"]).to_numpy(int),
        "log_error": predicted - observed,
        "abs_log_error": np.abs(predicted - observed),
        "abs_error": np.abs(np.exp(predicted) - np.exp(observed)),
        "covered": (observed >= low) & (observed <= high),
    })


def summarise_errors(points: pd.DataFrame, max_group: int = 4) -> pd.DataFrame:
    """Mean errors and coverage by training runs per language (`max_group` and more pooled)."""
    group = points["n_train"].clip(upper=max_group).map(
        lambda n: f"{n}+" if n == max_group else str(n))
    return (points.assign(n_train=group)
            .groupby(["n_train", "pooling"], sort=True)
            .agg(n_languages=("language", "size"), mean_abs_log_error=("abs_log_error", "mean"),
                 median_abs_log_error=("abs_log_error", "median"),
                 mean_log_error=("log_error", "mean"),
                 mean_abs_error=("abs_error", "mean"), coverage=("covered", "mean"))
            .reset_index())


def pooling_study(runs: pd.DataFrame, *, sampler: Sampler | Approximation,
                  law: str = "chinchilla-h", min_points: int = 3,
                  keep: Sequence[int | None] = (None,), prob: float = PROB,
                  nu: float = 4.0, options: dict | None = None) -> pd.DataFrame:
    """Held-out error of partial pooling vs no pooling (separate fits), by training runs.

    Rule: for every language with at least `min_points` runs, its largest-data run is held
    out (`split_largest`, with `keep`); both fits see the same training runs. The table's
    attrs hold each fit's seconds and diagnostics, and the per-run errors (`attrs["points"]`).
    `nu` and `options` (model options besides pooling, e.g. centring) go to `fit`.
    """
    train, test = split_largest(runs, min_points, keep)
    points, seconds, diagnostics = [], {}, {}
    for pooling in POOLINGS:
        model_options = {**(options or {}), "pooling": pooling}
        tree = fit(train, law, sampler=sampler, nu=nu, options=model_options, warn=False)
        points.append(heldout_errors(tree, test, prob).assign(pooling=pooling))
        record = FitRecord.from_tree(tree)
        seconds[pooling] = record.seconds
        diagnostics[pooling] = record.diagnostics.as_dict()
    points = pd.concat(points, ignore_index=True)
    table = summarise_errors(points)
    table.attrs.update(seconds=seconds, diagnostics=diagnostics, law=law, min_points=min_points,
                       keep=list(keep), n_train=len(train), n_test=len(test),
                       points=points.to_dict(orient="records"))
    return table


def plot_pooling(exponents: pd.DataFrame, study: pd.DataFrame, path: str | Path | None = None,
                 parameter: str = "beta", separate: pd.DataFrame | None = None):
    """Left: each language's `parameter` interval, sorted by median (`separate`: another fit's
    intervals, e.g. without pooling, drawn behind in grey); right: held-out |log error| by
    training runs, pooled vs separate. Returns the figure (saved when `path` is given).
    """
    import matplotlib.pyplot as plt

    rows = exponents.sort_values(f"{parameter}_median").reset_index(drop=True)
    fig, (forest, bars) = plt.subplots(
        1, 2, figsize=(12, max(6, 0.09 * len(rows))), width_ratios=(2, 1), constrained_layout=True)
    y = np.arange(len(rows))
    low, high = (c for c in rows.columns if c.startswith(f"{parameter}_q"))
    if separate is not None:
        behind = separate.set_index("language").reindex(rows["language"])
        forest.hlines(y, behind[low], behind[high], color="lightgrey", linewidth=2,
                      label="no pooling")
    forest.hlines(y, rows[low], rows[high], color="steelblue", linewidth=1, label="partial pooling")
    forest.plot(rows[f"{parameter}_median"], y, "o", color="black", markersize=2)
    forest.set_yticks(y, rows["language"], fontsize=min(8, max(3, 500 / len(rows))))
    forest.set(ylim=(-1, len(rows)), xlabel=f"{parameter} (median, {low}-{high})",
               title=f"per-language {parameter}, {len(rows)} languages")
    forest.legend(fontsize=8, loc="lower right")

    wide = study.pivot(index="n_train", columns="pooling",
                       values=["mean_abs_log_error", "coverage"])
    poolings = wide["coverage"].columns
    width = 0.8 / len(poolings)
    for i, pooling in enumerate(poolings):
        x = np.arange(len(wide)) + (i - (len(poolings) - 1) / 2) * width
        label = {"partial": "partial pooling", "none": "separate (no pooling)"}.get(pooling, pooling)
        drawn = bars.bar(x, wide["mean_abs_log_error", pooling], width, label=label)
        bars.bar_label(drawn, [f"{c:.0%}" for c in wide["coverage", pooling]], fontsize=7)
    bars.set_xticks(np.arange(len(wide)), wide.index)
    bars.set(xlabel="training runs of the language", ylabel="mean |log loss error| (held out)",
             title=f"held-out error (labels: {PROB:.0%} coverage)")
    bars.legend(fontsize=8)
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=150)
    return fig
