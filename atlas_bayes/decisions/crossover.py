"""When does pretraining from scratch beat finetuning a multilingual checkpoint? (ATLAS section 6)

`fit_crossover(runs)` finds every cell (language, model size) with monolingual scratch runs
and runs continued from a checkpoint (`init` not `scratch`, `init_tokens` set) evaluated on
that language, and fits all cells' curves in one model (`models.crossover.crossover_curves`).
`crossover_tokens` solves, per posterior draw, for the current-run tokens d_x at which the
scratch curve drops below the finetune curve (C_x = 6 N d_x); draws with no crossover in the
searched range (a non-positive penalty, or beyond `MAX_SPAN` times the data) are +inf and
counted. `crossover_summary` gives the interval, P(no crossover within a budget) and the
recommendation in words. `fit_power_law` fits the paper's C_x = k N^gamma across sizes and
languages with each cell's uncertainty, and `predict_crossover` uses it at an unseen size.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import laws
from atlas_bayes.decisions.bts import run_kinds
from atlas_bayes.fitting.inference import Sampler, sample_posterior
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.fitting.tree import build_tree
from atlas_bayes.models.crossover import (CrossoverInputs, PowerLawInputs,
                                          crossover_curves, crossover_power_law, log_k_draws)
from atlas_bayes.tables.runs import read_runs
from atlas_bayes.tables.atomic_files import atomic_file

MIN_CHECKPOINTS = 3
MAX_SPAN = 1e4          # search crossovers up to this multiple of a cell's largest scratch tokens
MIN_FINITE = 0.95       # cells whose crossover is finite in fewer draws stay out of the power law
CELL_PARAMETERS = ("L_end", "L0", "beta", "delta", "D0_rel", "sigma")


def crossover_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows usable for the crossover, with `cell` (language@size), `finetune` and `d` (the
    current run's tokens). Cells need both kinds of runs; the others are named in a warning."""
    source = runs.attrs.get("source") or "the run table"
    kinds = run_kinds(runs).set_index("run_id")
    rows = runs.join(kinds[["kind"]], on="run_id")
    continued = rows["init"] != "scratch"
    if continued.any():
        if "init_tokens" not in rows.columns or rows.loc[continued, "init_tokens"].isna().any():
            missing = rows.loc[continued & (rows.get("init_tokens", pd.Series(np.nan, rows.index)).isna()),
                               "run_id"].unique()
            raise ValueError(f"{source}: continued runs {list(missing)[:5]} need column "
                             "'init_tokens' (the checkpoint's tokens, included in n_tokens)")
    scratch = ~continued & (rows["kind"] == "mono")
    rows = rows[scratch | continued].copy()
    rows["finetune"] = (rows["init"] != "scratch").astype(float)
    checkpoint = rows["init_tokens"] if "init_tokens" in rows.columns else pd.Series(0.0, rows.index)
    rows["d"] = rows["n_tokens"] - checkpoint.fillna(0.0)
    rows["cell"] = rows["language"] + "@" + rows["n_params"].map(lambda n: f"{n:.4g}")
    has = rows.groupby("cell")["finetune"].agg(["min", "max"])
    complete = has.index[(has["min"] == 0) & (has["max"] == 1)]
    partial = sorted(set(has.index) - set(complete))
    if partial:
        warnings.warn(f"{source}: cells with only scratch or only finetuned runs get no "
                      f"crossover: {partial[:10]}", stacklevel=2)
    if not len(complete):
        raise ValueError(f"{source}: no (language, model size) has both a monolingual scratch "
                         "run and a run continued from a checkpoint (init not 'scratch')")
    rows = rows[rows["cell"].isin(complete)]
    short = rows[rows["finetune"] == 0].groupby("cell")["d"].nunique()
    short = short[short < MIN_CHECKPOINTS]
    if len(short):
        raise ValueError(f"{source}: the scratch runs of {list(short.index)} have fewer than "
                         f"{MIN_CHECKPOINTS} checkpoints; the scratch curve needs a learning curve")
    return rows.reset_index(drop=True)


def crossover_inputs(rows: pd.DataFrame):
    """`CrossoverInputs`, log loss, cell labels and each cell's (language, n_params, d_end)."""
    cells = sorted(rows["cell"].unique())
    index = {cell: i for i, cell in enumerate(cells)}
    c = rows["cell"].map(index).to_numpy()
    scratch = rows[rows["finetune"] == 0]
    log_d = np.log(scratch["d"].to_numpy(float))
    by = pd.DataFrame({"cell": scratch["cell"].map(index), "log_d": log_d,
                       "log_loss": np.log(scratch["loss"].to_numpy(float))}).groupby("cell")
    d_end, d_start = by["log_d"].max().to_numpy(), by["log_d"].min().to_numpy()
    last = by.apply(lambda g: g.loc[g["log_d"].idxmax(), "log_loss"], include_groups=False).to_numpy()
    x = CrossoverInputs(cell=c, finetune=rows["finetune"].to_numpy(float),
                        log_d_rel=np.log(rows["d"].to_numpy(float)) - d_end[c],
                        log_span=d_end - d_start, log_loss_end=last, n_cells=len(cells))
    first = rows.groupby("cell")[["language", "n_params"]].first().loc[cells]
    info = pd.DataFrame({"cell": cells, "language": first["language"].to_numpy(),
                         "n_params": first["n_params"].to_numpy(), "d_end": np.exp(d_end)})
    return x, np.log(rows["loss"].to_numpy(float)), info


def crossover_tokens(post: dict, d_end) -> np.ndarray:
    """Current-run tokens where scratch meets finetune, per draw (..., cells); +inf if none.

    Solves B [u^-beta - (u + D0)^-beta] = Delta for u = d / d_end by bisection in log u (the
    left side falls monotonically from +inf to 0), vectorised over draws and cells.
    """
    B = post["L_end"] - post["L0"]
    beta, delta, D0 = post["beta"], post["delta"], post["D0_rel"]
    # scratch minus finetune loss at u = exp(log_u); L0 cancels
    gap = lambda log_u: (laws.scratch_curve(np.exp(log_u), 0.0, B, beta)  # noqa: E731
                         - laws.finetune_curve(np.exp(log_u), 0.0, B, beta, delta, D0))
    lo = np.full(np.shape(B), np.log(1e-8))
    hi = np.full(np.shape(B), np.log(MAX_SPAN))
    found = (delta > 0) & (gap(hi) < 0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = gap(mid) > 0
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(found, np.exp(0.5 * (lo + hi)) * np.asarray(d_end), np.inf)


def fit_crossover(runs: pd.DataFrame | str, *, sampler: Sampler = Sampler(chains=4, warmup=500, draws=1000),
                  progress: bool = False, warn: bool = True) -> xr.DataTree:
    """Posterior of every cell's scratch and finetune curves and of its crossover tokens."""
    if not isinstance(runs, pd.DataFrame):
        runs = read_runs(runs)
    rows = crossover_cells(runs)
    x, log_loss, info = crossover_inputs(rows)
    posterior, stats = sample_posterior(crossover_curves, x, log_loss, sampler, progress=progress)
    posterior["d_cross"] = crossover_tokens(posterior, info["d_end"].to_numpy())
    posterior["C_cross"] = 6.0 * info["n_params"].to_numpy() * posterior["d_cross"]
    cell_sites = ("log_L_end", "log_gap", "logit_share", "delta_z", "log_D0_z", "L_end", "L0",
                  "beta", "delta", "D0_rel", "d_cross", "C_cross")
    fit_data = xr.Dataset({name: ("row", rows[name].to_numpy())
                           for name in ("cell", "run_id", "d", "loss", "finetune")})
    record = FitRecord("crossover", source=str(runs.attrs.get("source", "")))
    return build_tree(
        {"posterior": posterior, "sample_stats": stats, "observed_data": {"log_loss": log_loss}},
        record, coords={"cell": info["cell"].tolist()}, dims={name: ["cell"] for name in cell_sites},
        labels={"posterior": {"language": ("cell", info["language"].to_numpy()),
                              "n_params": ("cell", info["n_params"].to_numpy()),
                              "d_end": ("cell", info["d_end"].to_numpy())}},
        datasets={"fit_data": fit_data}, check=CELL_PARAMETERS, warn=warn)


def _cell(tree: xr.DataTree, language: str, n_params: float | None) -> str:
    post = tree.posterior
    cells = [c for c, lang in zip(post["cell"].values, post["language"].values) if lang == language]
    if not cells:
        raise ValueError(f"no crossover cell for language {language!r}; cells: "
                         f"{', '.join(post['cell'].values)}")
    if n_params is None:
        if len(cells) > 1:
            raise ValueError(f"{language!r} has cells at several sizes ({', '.join(cells)}); pass n_params")
        return cells[0]
    sizes = post["n_params"].sel(cell=cells).to_numpy()
    match = [c for c, n in zip(cells, sizes) if np.isclose(n, n_params, rtol=1e-3)]
    if not match:
        raise ValueError(f"no crossover cell for {language!r} at n_params {n_params:.4g} "
                         f"(sizes: {', '.join(f'{n:.4g}' for n in sizes)}); fit the power law "
                         "(fit_power_law) to predict an unseen size")
    return match[0]


def summarise_draws(d_cross: np.ndarray, n_params: float, budget: float | None = None,
                    prob: float = 0.9) -> dict:
    """Interval of the crossover tokens and compute, P(no crossover within the budget), and
    the recommendation in words. Infinite draws (no crossover) count in every quantile."""
    d = np.asarray(d_cross, dtype=float).ravel()
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    q = {name: float(np.quantile(d, p, method="inverted_cdf"))
         for name, p in (("q_lo", lo), ("median", 0.5), ("q_hi", hi))}
    limit = np.inf if budget is None else budget
    out = {"n_params": float(n_params), "tokens": q,
           "compute": {k: 6.0 * n_params * v for k, v in q.items()},
           "p_no_crossover": float(np.mean(~np.isfinite(d))),
           "budget_tokens": None if budget is None else float(budget),
           "p_no_crossover_within_budget": float(np.mean(d > limit)), "prob": prob}
    if not np.isfinite(q["q_lo"]):
        words = (f"finetune: in over {lo:.0%} of the posterior scratch pretraining never catches "
                 "up within the searched range")
    elif not np.isfinite(q["q_hi"]):
        words = (f"finetune below {q['q_lo']:.3g} tokens; beyond that it is uncertain, and in "
                 f"{out['p_no_crossover']:.0%} of the posterior scratch never catches up")
    else:
        words = (f"finetune below {q['q_lo']:.3g} tokens, pretrain from scratch above "
                 f"{q['q_hi']:.3g}; uncertain between (median crossover {q['median']:.3g})")
    out["recommendation"] = words
    return out


def crossover_summary(tree: xr.DataTree, language: str, n_params: float | None = None,
                      budget: float | None = None, prob: float = 0.9) -> dict:
    """The crossover of one measured cell (language, n_params) as `summarise_draws` reports it."""
    cell = _cell(tree, language, n_params)
    post = tree.posterior
    out = summarise_draws(post["d_cross"].sel(cell=cell).to_numpy(), float(post["n_params"].sel(cell=cell)),
                          budget, prob)
    return {"language": language, "cell": cell, **out}


def fit_power_law(tree: xr.DataTree, *,
                  sampler: Sampler = Sampler(chains=4, warmup=500, draws=1000, target_accept=0.95),
                  warn: bool = True) -> xr.DataTree:
    """The paper's C_x = k N^gamma over all cells whose crossover is finite in at least
    `MIN_FINITE` of draws (the rest are named in a warning), each with its posterior sd.
    target_accept defaults to 0.95 (at 0.9: 6 divergences in 4,000 draws on two languages)."""
    post = tree.posterior
    C = post["C_cross"].stack(s=("chain", "draw")).transpose("cell", "s").to_numpy()
    finite = np.isfinite(C).mean(axis=1)
    keep = finite >= MIN_FINITE
    if (~keep).any():
        warnings.warn(f"cells without a crossover in {1 - MIN_FINITE:.0%}+ of draws left out of the "
                      f"power law: {[str(c) for c in post['cell'].values[~keep]]}", stacklevel=2)
    if keep.sum() < 3:
        raise ValueError(f"the power law needs crossovers in at least 3 cells; {int(keep.sum())} have one")
    logC = np.log(np.where(np.isfinite(C[keep]), C[keep], np.nan))
    langs = sorted(set(post["language"].values[keep]))
    log_N = np.log(post["n_params"].values[keep])
    log_N_ref = float(log_N.mean())
    x = PowerLawInputs(language=np.array([langs.index(lang) for lang in post["language"].values[keep]]),
                       log_N=log_N - log_N_ref, se=np.nanstd(logC, axis=1), n_languages=len(langs),
                       log_C_mid=float(np.nanmean(logC)))
    y = np.nanmean(logC, axis=1)
    posterior, stats = sample_posterior(crossover_power_law, x, y, sampler)
    posterior["log_k_ref"] = log_k_draws(x, y, posterior, np.random.default_rng(sampler.seed))
    posterior["log_k"] = posterior["log_k_ref"] - posterior["gamma"][..., None] * log_N_ref
    record = FitRecord("crossover_power_law", log_N_ref=log_N_ref,
                       extra={"cells": [str(c) for c in post["cell"].values[keep]]})
    return build_tree({"posterior": posterior, "sample_stats": stats}, record,
                      coords={"language": langs},
                      dims={"log_k_ref": ["language"], "log_k": ["language"]},
                      check=["gamma", "log_k", "sigma"], warn=warn)


def predict_crossover(law: xr.DataTree, language: str, n_params: float, seed: int = 0) -> np.ndarray:
    """Posterior-predictive crossover tokens at a (possibly unseen) size; a language outside
    the fit draws its k from the population."""
    post = law.posterior
    gamma = post["gamma"].to_numpy()
    if language in post["language"].values:
        log_k_ref = post["log_k_ref"].sel(language=language).to_numpy()
    else:
        z = np.random.default_rng(seed).standard_normal(gamma.shape)
        log_k_ref = post["log_k_mu"].to_numpy() + post["log_k_sd"].to_numpy() * z
    noise = np.random.default_rng(seed + 1).standard_normal(gamma.shape) * post["sigma"].to_numpy()
    log_N_ref = FitRecord.from_tree(law, require=("log_N_ref",), purpose="predict_crossover").log_N_ref
    log_C = log_k_ref + gamma * (np.log(n_params) - log_N_ref) + noise
    return np.exp(log_C) / (6.0 * n_params)


def plot_crossover(tree: xr.DataTree, language: str, n_params: float | None = None, path=None,
                   prob: float = 0.9):
    """Both fitted curves with bands and the data, and the crossover distribution."""
    import matplotlib.pyplot as plt

    cell = _cell(tree, language, n_params)
    post = tree.posterior.sel(cell=cell)
    data = tree["fit_data"].to_dataset()
    mine = data["cell"].values == cell
    d_end = float(post["d_end"])
    d = np.geomspace(float(data["d"].values[mine].min()) / 2, d_end * 20, 200)
    u = d / d_end
    flat = {k: post[k].stack(s=("chain", "draw")).to_numpy()[:, None]
            for k in ("L0", "L_end", "beta", "delta", "D0_rel")}
    B = flat["L_end"] - flat["L0"]
    curves = {"scratch": laws.scratch_curve(u, flat["L0"], B, flat["beta"]),
              "finetune": laws.finetune_curve(u, flat["L0"], B, flat["beta"], flat["delta"], flat["D0_rel"])}
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (name, draws), colour in zip(curves.items(), ("C0", "C3")):
        lo, mid, hi = np.quantile(draws, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
        ax.fill_between(d, lo, hi, color=colour, alpha=0.25)
        ax.plot(d, mid, color=colour, label=name)
        flag = 1.0 if name == "finetune" else 0.0
        sel = mine & (data["finetune"].values == flag)
        ax.scatter(data["d"].values[sel], data["loss"].values[sel], s=10, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel("tokens of the current run")
    ax.set_ylabel("loss")
    ax.set_title(f"{language}, N = {float(post['n_params']):.3g}")
    ax.legend()
    cross = post["d_cross"].to_numpy().ravel()
    finite = cross[np.isfinite(cross)]
    if finite.size:
        hx.hist(np.log10(finite), bins=40, color="grey")
    hx.set_xlabel("log10 crossover tokens")
    hx.set_title(f"crossover (none in {np.mean(~np.isfinite(cross)):.0%} of draws)")
    fig.tight_layout()
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
    return fig


