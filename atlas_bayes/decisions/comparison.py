"""Compare laws the paper's way (held-out R² per split) and by PSIS-LOO, with uncertainty.

`held_out_table` follows the ATLAS paper's protocol (its §2 and Table 1): for each split of
`splits.py`, fit each law to the training rows and score its predictions of the held-out
rows. Single-language laws are fitted once per target language, as in the paper; joint
(`*-h`) laws once to all training rows. On top of the paper's R² it reports the R²'s
posterior interval and whether the posterior-predictive intervals cover the held-out losses.

`loo_table` fits each law to all rows and compares them by PSIS-LOO (`arviz_stats.loo`,
`arviz_stats.compare`). `plot_held_out` and `plot_loo` draw the two tables.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import arviz_base as azb
import arviz_stats as azs
import jax
import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.fitting.inference import Approximation, Sampler, fit, predict
from atlas_bayes.fitting.record import LAW, FitRecord
from atlas_bayes.models import get_law
from atlas_bayes.models.user import is_user_law
from atlas_bayes.tables.splits import SPLITS, split_runs
from atlas_bayes.tables.atomic_files import atomic_file

HELD_OUT_COLUMNS = ["law", "split", "language", "n_train", "n_test", "r2", "r2_log", "r2_q05",
                    "r2_q95", "r2_pooled", "coverage_50", "coverage_90", "width_90", "converged",
                    "seconds", "error"]
LOO_COLUMNS = ["law", "rank", "elpd", "se", "elpd_diff", "dse", "weight", "p_loo", "n_bad_k"]
ALL = "all"            # the language of a (law, split)'s overall row
BAD_PARETO_K = 0.7     # Pareto k above this: the PSIS estimate of that point is unreliable

Progress = Callable[[str], None] | None


# --- scores -------------------------------------------------------------------------------

def r2_score(observed, predicted) -> np.ndarray | float:
    """1 - SS_res / SS_tot of `predicted` against `observed` (last axis: observations).

    `predicted` may carry leading axes (e.g. one row per posterior draw); the result keeps
    them. NaN when the observations do not vary (fewer than two distinct values).
    """
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    total = np.sum((observed - observed.mean()) ** 2)
    residual = np.sum((observed - predicted) ** 2, axis=-1)
    if total <= 0:
        return np.full(np.shape(residual), np.nan) if np.ndim(residual) else float("nan")
    return 1.0 - residual / total


def coverage(observed, draws, prob: float) -> float:
    """Fraction of `observed` inside the central `prob` interval of `draws` (draws, obs)."""
    low, high = _interval(draws, prob)
    observed = np.asarray(observed, dtype=float)
    return float(np.mean((observed >= low) & (observed <= high)))


def relative_width(draws, prob: float) -> float:
    """Mean width of the central `prob` interval of `draws` (draws, obs), over its median."""
    low, high = _interval(draws, prob)
    return float(np.mean((high - low) / np.median(draws, axis=0)))


def _interval(draws, prob: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - prob) / 2.0
    return np.quantile(np.asarray(draws, dtype=float), [tail, 1.0 - tail], axis=0)


@dataclass
class HeldOut:
    """Held-out losses of one language and a fit's draws for them, in loss units (draws, obs)."""
    observed: np.ndarray
    mean: np.ndarray          # the law's mean (no noise), one row per posterior draw
    predictive: np.ndarray    # posterior predictive (with noise)

    @property
    def point(self) -> np.ndarray:
        """The posterior-median mean prediction of each held-out row."""
        return np.median(self.mean, axis=0)


def scores(held: HeldOut) -> dict:
    """The table's columns for one language's held-out rows."""
    r2_draws = r2_score(held.observed, held.mean)
    r2 = r2_score(held.observed, held.point)
    return {"n_test": len(held.observed), "r2": r2,
            "r2_log": r2_score(np.log(held.observed), np.log(held.point)),
            **_r2_interval(r2_draws), "r2_pooled": r2, **_calibration([held])}


def pooled_scores(helds: list[HeldOut]) -> dict:
    """The overall row: R² averaged over languages (the paper's way), the rest pooled.

    The per-draw R² of each language are averaged draw by draw; draw i of separate
    per-language fits are independent, so pairing them samples the joint posterior.
    """
    per_language = [scores(h) for h in helds]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # draws where no language has an R²
        r2_draws = np.nanmean([r2_score(h.observed, h.mean) for h in helds], axis=0)
    observed = np.concatenate([h.observed for h in helds])
    point = np.concatenate([h.point for h in helds])
    return {"n_test": len(observed), "r2": _nanmean([s["r2"] for s in per_language]),
            "r2_log": _nanmean([s["r2_log"] for s in per_language]), **_r2_interval(r2_draws),
            "r2_pooled": r2_score(observed, point), **_calibration(helds)}


def _r2_interval(r2_draws: np.ndarray) -> dict:
    if not np.isfinite(r2_draws).any():
        return {"r2_q05": math.nan, "r2_q95": math.nan}
    q05, q95 = np.nanquantile(r2_draws, [0.05, 0.95])
    return {"r2_q05": float(q05), "r2_q95": float(q95)}


def _calibration(helds: list[HeldOut]) -> dict:
    """Coverage of the 50% and 90% predictive intervals and the 90% width, over all rows."""
    observed = np.concatenate([h.observed for h in helds])
    draws = np.concatenate([h.predictive for h in helds], axis=1)
    return {"coverage_50": coverage(observed, draws, 0.5),
            "coverage_90": coverage(observed, draws, 0.9),
            "width_90": relative_width(draws, 0.9)}


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


# --- held-out table -----------------------------------------------------------------------

@dataclass
class _Fit:
    """One fit of a law and its predictions of held-out rows, by language."""
    n_train: int = 0
    seconds: float = 0.0
    converged: bool | None = None
    error: str | None = None
    held: dict[str, HeldOut] = field(default_factory=dict)
    languages: list[str] = field(default_factory=list)   # the targets it was asked for


def held_out_table(runs: pd.DataFrame, laws: Iterable[str], splits: Iterable[str] = SPLITS, *,
                   sampler: Sampler | Approximation = Sampler(), languages=None, seed: int = 0,
                   progress: Progress = None) -> pd.DataFrame:
    """Held-out scores of each law on each split: one row per (law, split, language).

    For each split (`split_runs(runs, split, seed=seed)`) single-language laws are fitted
    to the training rows of each evaluated language that has held-out rows (`languages`
    restricts these targets), joint `*-h` laws once to all training rows; `predict` then
    gives the law's mean and posterior-predictive draws for the held-out rows.

    Columns: n_train (rows the fit saw; for a joint law all training rows), n_test; `r2`:
    R² of the held-out **loss** against the posterior-median mean prediction (the paper
    does not say whether its R² is on loss or log loss; `r2_log` is on log loss);
    `r2_q05`/`r2_q95`: the 90% interval of R² computed for each posterior draw of the mean
    function (single draws scatter more than their median, so `r2` may sit near or above
    `r2_q95`); `coverage_50`/`coverage_90`: fraction of held-out losses inside the central
    50%/90% posterior-predictive intervals; `width_90`: mean width of the 90% interval
    relative to its median; `converged`: every fit passed the diagnostics (R-hat, ESS,
    divergences; their warnings are collected here, not raised); `seconds`: fitting and
    predicting; `error`: why the law could not be fitted or scored (metrics are then NaN).

    The row with language "all" gives the paper's number: `r2` (and `r2_log`) is the mean
    over languages of the per-language R² (a language whose held-out losses do not vary,
    e.g. a single row, has no R² and is left out of the mean); `r2_pooled` is R² over all
    held-out rows at once; coverage and width are pooled over all held-out rows. When a
    language's fit failed, the overall metrics are NaN (the average would cover other
    languages than other laws'). A split that cannot be built gives one error row per law.
    """
    laws, splits = law_names(laws), split_names(splits)
    languages = evaluated_languages(runs, languages)
    rows = []
    for split in splits:
        try:
            train, test = split_runs(runs, split, seed=seed, languages=languages)
        except ValueError as err:
            _say(progress, f"{split}: {err}")
            rows += [_error_row(law, split, str(err)) for law in laws]
            continue
        targets = [lang for lang in languages if lang in set(test["language"].astype(str))]
        if not targets:
            message = f"split {split!r} holds out no rows of {', '.join(languages)}"
            _say(progress, f"{split}: {message}")
            rows += [_error_row(law, split, message) for law in laws]
            continue
        for law in laws:
            fits = _fit_split(train, test, law, targets, sampler, seed,
                              lambda line: _say(progress, f"{split} {law} {line}"))
            rows += _rows(law, split, fits)
    return pd.DataFrame(rows, columns=HELD_OUT_COLUMNS)


def _fit_split(train, test, law, targets, sampler, seed, progress) -> list[_Fit]:
    """Fits of `law` for one split: one joint fit, or one per target language."""
    if get_law(law).hierarchical:
        return [_fit_predict(train, test, law, None, targets, sampler, seed, progress)]
    return [_fit_predict(train, test, law, lang, [lang], sampler, seed, progress)
            for lang in targets]


def _fit_predict(train, test, law, language, targets, sampler, seed, progress) -> _Fit:
    """Fit `law` to `language`'s training rows (all when None); predict `targets`' test rows."""
    result = _Fit(languages=targets)
    start = time.perf_counter()
    try:
        tree, messages = fit_quietly(train, law, language=language, sampler=sampler)
        result.n_train, result.converged = FitRecord.from_tree(tree).n_obs, not messages
        for lang in targets:
            result.held[lang] = predict_rows(tree, test[test["language"].astype(str) == lang],
                                             seed=seed)
    except ValueError as err:
        result.error = str(err)
    result.seconds = time.perf_counter() - start
    progress(_fit_line(language, result))
    return result


def fit_quietly(runs: pd.DataFrame, law: str, **kw) -> tuple[xr.DataTree, list[str]]:
    """`fit`, with its convergence warnings returned as messages instead of raised.

    Other warnings pass through. JAX's in-memory caches are cleared first: every fit and
    prediction compiles new programs that are never reused in this process, and keeping
    them costs about 100 MB per fit (a five-split table of 8 languages ran out of memory).
    The on-disk compilation cache is unaffected.
    """
    jax.clear_caches()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        tree = fit(runs, law, **kw)
    messages = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return tree, messages


def predict_rows(tree: xr.DataTree, rows: pd.DataFrame, seed: int = 0) -> HeldOut:
    """A fit's draws for `rows` (with their `loss`), ready for `scores` (e.g. in-sample R²)."""
    rows = rows.reset_index(drop=True)
    draws = predict(tree, rows, seed=seed)
    return HeldOut(rows["loss"].to_numpy(float), _flat_draws(draws["log_loss_mean"]),
                   _flat_draws(draws["log_loss"]))


def _flat_draws(log_values: xr.DataArray) -> np.ndarray:
    """(chain, draw, obs) log-loss draws -> (sample, obs) losses."""
    values = np.exp(np.asarray(log_values, dtype=float))
    return values.reshape(-1, values.shape[-1])


def _fit_line(language, result: _Fit) -> str:
    """One progress line for a fit."""
    who = language if language is not None else f"joint ({', '.join(result.languages)})"
    if result.error:
        return f"{who}: error: {result.error}"
    n_test = sum(len(h.observed) for h in result.held.values())
    r2 = _nanmean([scores(h)["r2"] for h in result.held.values()])
    flag = "" if result.converged else ", not converged"
    return (f"{who}: {result.n_train} training rows, {n_test} held out, R² {r2:.3f}, "
            f"{result.seconds:.1f} s{flag}")


def _rows(law: str, split: str, fits: list[_Fit]) -> list[dict]:
    """Per-language rows of a (law, split) and its overall row."""
    rows = []
    for f in fits:
        for lang in f.languages:
            base = {"law": law, "split": split, "language": lang, "n_train": f.n_train,
                    "converged": f.converged, "seconds": f.seconds, "error": f.error}
            rows.append(base | (scores(f.held[lang]) if lang in f.held else {}))
    failed = [f"{', '.join(f.languages)}: {f.error}" for f in fits if f.error]
    overall = {"law": law, "split": split, "language": ALL,
               "n_train": sum(f.n_train for f in fits),
               "converged": all(f.converged for f in fits) if not failed else None,
               "seconds": sum(f.seconds for f in fits),
               "error": "; ".join(failed) if failed else None}
    if not failed:
        overall |= pooled_scores([f.held[lang] for f in fits for lang in f.languages])
    return rows + [overall]


def _error_row(law: str, split: str, message: str) -> dict:
    return {"law": law, "split": split, "language": ALL, "error": message}


def _say(progress: Progress, line: str) -> None:
    if progress is not None:
        progress(line)


# --- names --------------------------------------------------------------------------------

def law_names(laws: Iterable[str] | str) -> list[str]:
    """The laws as given (lower case; a user law's file as given), repeats of a law dropped;
    ValueError for unknown names."""
    laws = names(laws)
    chosen = {}
    for name in laws:
        chosen.setdefault(get_law(name).name, name if is_user_law(name) else name.lower())
    if not chosen:
        raise ValueError("no laws given")
    return list(chosen.values())


def split_names(splits: Iterable[str] | str) -> list[str]:
    """The splits, checked against SPLITS (ValueError naming the choices)."""
    splits = list(dict.fromkeys(names(splits)))
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"unknown split {', '.join(map(repr, unknown)) or '(none)'}; expected "
                         f"one or more of {', '.join(SPLITS)}")
    return splits


def evaluated_languages(runs: pd.DataFrame, languages=None) -> list[str]:
    """The table's evaluated languages (first-seen order), or `languages` after checking them."""
    present = list(dict.fromkeys(runs["language"].astype(str)))
    if languages is None:
        return present
    languages = list(dict.fromkeys(names(languages)))
    missing = [lang for lang in languages if lang not in present]
    if missing or not languages:
        raise ValueError(f"no rows evaluate language(s) {', '.join(missing) or '(none)'}; the "
                         f"table has: {', '.join(present[:20])}")
    return languages


def names(values: Iterable[str] | str | None) -> list[str]:
    """Names given as a list or as comma-separated text ('en, fr'), stripped; blanks (and None) dropped."""
    if isinstance(values, str):
        values = values.split(",")
    return [v.strip() for v in values or () if v.strip()]


# --- LOO ----------------------------------------------------------------------------------

def loo_table(runs: pd.DataFrame, laws: Iterable[str], *,
              sampler: Sampler | Approximation = Sampler(), languages=None,
              progress: Progress = None) -> pd.DataFrame:
    """PSIS-LOO comparison of laws fitted to all rows, one row per law (index: law).

    Columns are `arviz_stats.compare`'s (rank, elpd, se, elpd_diff, dse, weight, p, ...; unrounded)
    plus `n_bad_k` (observations with Pareto k > 0.7, whose LOO estimate is unreliable),
    `n_obs`, `converged` and `error`. Single-language laws are fitted to each language
    (`languages`, default all evaluated) and their pointwise log likelihoods joined along
    `obs`; a joint law's are restricted to those languages' rows, so every law scores the
    same observations. A law that cannot be fitted is listed last with its error.
    """
    laws = law_names(laws)
    languages = evaluated_languages(runs, languages)
    runs = runs.reset_index(drop=True)
    trees, failed, converged = {}, {}, {}
    for law in laws:
        start = time.perf_counter()
        try:
            trees[law], messages = _loo_tree(runs, law, languages, sampler)
            converged[law] = not messages
            flag = "" if converged[law] else ", not converged"
            _say(progress, f"loo {law}: fitted {trees[law].observed_data.sizes['obs']} rows, "
                           f"{time.perf_counter() - start:.1f} s{flag}")
        except ValueError as err:
            failed[law] = str(err)
            _say(progress, f"loo {law}: error: {err}")
    table = pd.DataFrame(columns=["rank", "elpd", "se", "elpd_diff", "dse", "weight", "p"])
    if trees:
        with warnings.catch_warnings():
            # Pareto k warnings: counted in n_bad_k instead
            warnings.simplefilter("ignore", UserWarning)
            loos = {law: azs.loo(tree, pointwise=True) for law, tree in trees.items()}
            table = azs.compare(loos, round_to="none")
        table["n_bad_k"] = [int((loos[law].pareto_k > BAD_PARETO_K).sum()) for law in table.index]
        table["n_obs"] = [int(loos[law].pareto_k.size) for law in table.index]
        table["converged"] = [converged[law] for law in table.index]
        table["error"] = None
    for law, message in failed.items():
        table.loc[law, "error"] = message
    table.index.name = "law"
    return table


def _loo_tree(runs: pd.DataFrame, law: str, languages: list[str],
              sampler) -> tuple[xr.DataTree, list[str]]:
    """One DataTree per law: posterior, pointwise log likelihood and observed log loss.

    Per-language fits are joined: row i of `runs` keeps its place along `obs`, and each
    fit's posterior variables get the suffix `__<language>` (for loo's relative ESS).
    """
    if get_law(law).hierarchical:
        tree, messages = fit_quietly(runs, law, sampler=sampler)
        parts = [(tree, np.arange(len(runs)), "")]
    else:
        parts, messages = [], []
        for lang in languages:
            tree, said = fit_quietly(runs, law, language=lang, sampler=sampler)
            parts.append((tree, np.flatnonzero(runs["language"].astype(str) == lang), f"__{lang}"))
            messages += said
    shapes = {tuple(tree.log_likelihood["log_loss"].shape[:2]) for tree, _, _ in parts}
    if len(shapes) > 1:
        raise ValueError(f"the fits of {law} differ in chains and draws ({shapes}); LOO needs "
                         "the same sampler settings for every language")
    (chains, draws), = shapes
    log_lik = np.full((chains, draws, len(runs)), np.nan)
    observed = np.full(len(runs), np.nan)
    posterior = {}
    for tree, positions, suffix in parts:
        log_lik[..., positions] = tree.log_likelihood["log_loss"].values
        observed[positions] = tree.observed_data["log_loss"].values
        posterior |= {f"{name}{suffix}": values.values
                      for name, values in tree.posterior.data_vars.items()}
    keep = np.flatnonzero(runs["language"].astype(str).isin(languages))
    labels = [f"{lang}:{run}@{tokens:.4g}" for lang, run, tokens
              in runs.loc[keep, ["language", "run_id", "n_tokens"]].itertuples(index=False)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # unnamed dims of posterior variables
        tree = azb.from_dict({"posterior": posterior,
                              "log_likelihood": {"log_loss": log_lik[..., keep]},
                              "observed_data": {"log_loss": observed[keep]}},
                             coords={"obs": labels}, dims={"log_loss": ["obs"]})
    tree.attrs.update(FitRecord(LAW, law=law).to_attrs())   # a joined view: the law only
    return tree, messages


def loo_records(table: pd.DataFrame) -> list[dict]:
    """`loo_table`'s rows as the CLI's JSON records (law, rank, elpd, ..., p_loo, n_bad_k)."""
    frame = table.rename(columns={"p": "p_loo"}).reset_index()
    records = []
    for row in frame.to_dict("records"):
        record = {key: _plain(row.get(key)) for key in LOO_COLUMNS}
        for key in ("rank", "n_bad_k"):
            record[key] = None if record[key] is None else int(record[key])
        records.append(record)
    return records


def held_out_records(table: pd.DataFrame) -> list[dict]:
    """`held_out_table`'s rows as the CLI's JSON records (NaN as None)."""
    keys = [c for c in HELD_OUT_COLUMNS if c != "seconds"]
    records = []
    for row in table.to_dict("records"):
        record = {key: _plain(row.get(key)) for key in keys}
        for key in ("n_train", "n_test"):
            record[key] = None if record[key] is None else int(record[key])
        if record["converged"] is not None:
            record["converged"] = bool(record["converged"])
        records.append(record)
    return records


def _plain(value):
    """A JSON-ready scalar: NaN and missing as None, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value.item() if isinstance(value, np.generic) else value


def format_comparison(held: pd.DataFrame, loo: pd.DataFrame | None = None) -> str:
    """The tables in words: R² and coverage by law and split, errors, then LOO."""
    overall = held[held["language"] == ALL].copy()
    overall["cell"] = [_r2_cell(r) for r in overall.itertuples()]
    overall["cov"] = [f"{c:.2f}" if np.isfinite(c) else "-" for c in overall["coverage_90"]]
    order = {"law": list(dict.fromkeys(overall["law"])),
             "split": list(dict.fromkeys(overall["split"]))}
    lines = ["Held-out R² (mean over target languages) and its 90% posterior interval:",
             _pivot(overall, "cell", order), "",
             "Coverage of the 90% posterior-predictive interval (nominal 0.90):",
             _pivot(overall, "cov", order)]
    failed = held[held["error"].notna() & (held["language"] == ALL)]
    if len(failed):
        lines += ["", "Not scored:"] + [f"  {r.law} on {r.split}: {r.error}"
                                        for r in failed.itertuples()]
    unconverged = overall[overall["converged"].eq(False)]
    if len(unconverged):
        lines += ["", "Fits that did not pass the convergence checks (more --warmup/--draws): "
                  + ", ".join(f"{r.law} on {r.split}" for r in unconverged.itertuples())]
    if loo is not None:
        lines += ["", "PSIS-LOO on all rows (elpd: higher is better; n_bad_k: Pareto k > 0.7):",
                  pd.DataFrame(loo_records(loo)).set_index("law").to_string(
                      float_format=lambda v: f"{v:.2f}", na_rep="-")]
    return "\n".join(lines)


def _r2_cell(row) -> str:
    if not np.isfinite(row.r2):
        return "-"
    return f"{row.r2:.3f} [{row.r2_q05:.2f}, {row.r2_q95:.2f}]"


def _pivot(frame: pd.DataFrame, column: str, order: dict) -> str:
    table = frame.pivot(index="law", columns="split", values=column)
    return table.reindex(index=order["law"], columns=order["split"]).fillna("-").to_string()


# --- plots --------------------------------------------------------------------------------

def plot_loo(table: pd.DataFrame, path: str | Path | None = None):
    """`arviz_plots.plot_compare` of the laws that could be fitted; saved as PNG (and its
    figure closed) when `path` is given."""
    import arviz_plots as azp

    fitted = table[table["elpd"].notna()].drop(columns=["n_bad_k", "n_obs", "converged", "error"],
                                               errors="ignore")
    collection = azp.plot_compare(fitted)
    if path is not None:
        import matplotlib.pyplot as plt

        with atomic_file(path) as tmp:
            collection.savefig(tmp, dpi=120, bbox_inches="tight")
        plt.close(collection.get_viz("figure"))
    return collection


def plot_held_out(table: pd.DataFrame, path: str | Path | None = None, floor: float = -1.0):
    """R² with its 90% interval and the 90% interval's coverage, per law and split.

    Uses the overall rows (mean over languages). R² below `floor` is drawn at the floor
    with its value written next to it; laws that could not be fitted are marked "n/a".
    """
    import matplotlib.pyplot as plt

    overall = table[table["language"] == ALL]
    laws = list(dict.fromkeys(overall["law"]))
    splits = list(dict.fromkeys(overall["split"]))
    colours = plt.cm.tab10(np.arange(len(laws)) % 10)
    fig, (ax_r2, ax_cov) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(splits) + 4), 4.5),
                                        constrained_layout=True, width_ratios=(3, 2))
    offsets = (np.arange(len(laws)) - (len(laws) - 1) / 2) * min(0.8 / max(len(laws), 1), 0.18)
    for i, law in enumerate(laws):
        rows = overall[overall["law"] == law].set_index("split").reindex(splits)
        x = np.arange(len(splits)) + offsets[i]
        _r2_points(ax_r2, x, rows, colours[i], law, floor)
        ax_cov.scatter(x, rows["coverage_90"], color=colours[i], s=30)
    ax_r2.axhline(1.0, color="grey", linewidth=0.6, linestyle=":")
    ax_r2.set(ylabel="held-out R² (mean over languages)", ylim=(floor - 0.08, 1.05),
              title="Held-out R² and its 90% posterior interval")
    ax_cov.axhline(0.9, color="black", linewidth=0.8, linestyle="--", label="nominal 0.9")
    ax_cov.set(ylabel="share of held-out losses inside (dashed: 0.9)", ylim=(-0.03, 1.03),
               title="Coverage of the 90% predictive interval")
    for ax in (ax_r2, ax_cov):
        ax.set_xticks(np.arange(len(splits)), splits)
        ax.set_xlabel("held-out split")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = ax_r2.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(laws), 6), fontsize=9)
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
    return fig


def _r2_points(ax, x, rows: pd.DataFrame, colour, law: str, floor: float) -> None:
    """One law's R² points and intervals; values below `floor` become a labelled arrow there."""
    r2, low, high = (rows[c].to_numpy(float) for c in ("r2", "r2_q05", "r2_q95"))
    ax.vlines(x, np.maximum(low, floor), np.maximum(high, floor), color=colour, linewidth=2.5,
              alpha=0.45)
    inside = r2 >= floor
    ax.scatter(x[inside], r2[inside], color=colour, s=30, zorder=3, label=law)
    below = r2 < floor
    ax.scatter(x[below], np.full(below.sum(), floor), color=colour, marker="v", s=40, zorder=3)
    for xi, value in zip(x, r2):
        if not np.isfinite(value):
            ax.annotate("n/a", (xi, floor), ha="center", va="bottom", fontsize=7, color=colour)
        elif value < floor:
            ax.annotate(f"{value:.2g}", (xi, floor), ha="center", va="bottom", fontsize=7,
                        color=colour, xytext=(0, 6), textcoords="offset points")
