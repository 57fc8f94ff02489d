"""The transfer matrix on a simulated study whose truth is the paper's Figure 2 (30 x 30 BTS).

    .venv/bin/python benchmarks/transfer_matrix.py [--shared ../shared] [--part a,b,c]
        [--seeds 3] [--png results/transfer_figure2.png] [--repeats 10] [--folds 5] [--out DIR]

Part a, the whole pipeline: monolingual runs on all 30 languages, 50/50 bilingual runs on all
36 pairs of the paper's directly measured block (en ru es fr de pt zh vi ja) plus 3 random
partners for each other language (learning curves of 8 checkpoints, 0.5% noise); BTS per
measured pair from the curve posteriors (`fit_bts`), then the matrix (`fit_transfer_matrix`)
over all 870 ordered pairs. Reports time, convergence, coverage of the truth by the curve
intervals (measured pairs) and by the matrix (measured and unmeasured pairs), error, and
what the model says about script, family and genus, symmetry, and each target's best source.

Part b, held-out pairs: measure 40% of the unordered pairs in both directions (noise sd 0.03
on g), hold out 20% of the measured ordered pairs, and compare the Bayesian matrix with the
paper's filler (a random forest on the same information) on them; for the Figure 2 truth and
for matrices drawn from the model, `--seeds` seeds each.

Part c, the paper's own measurements (issue 20): the Figure 2 values themselves as the
measured matrix (g = log(1 + tau) from BTS, each with the standard error of rounding to 0.1 on
BTS), held out three ways: `--repeats` random 20% of the off-diagonal cells; whole target rows
(a new target language) and whole source columns (a new source) in `--folds` folds. Each split
is fitted by the interaction model (the default), the additive model and the paper's random
forest (features: same script / family / genus, the source's and target's training means).
Scored on the held-out cells: mean absolute error of the median (BTS and g), 90% interval
coverage of the held-out value (posterior predictive incl. its rounding error) overall, on the
zh/ja/ko/gu/ps/ur target rows and on the rest, median interval width; the interaction fits'
time, R-hat and divergences. Writes the per-split table to `--out` (transfer_real_matrix.csv).
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.decisions.bts import bts_table, efficiency_from_bts, fit_bts
from atlas_bayes.fitting.inference import Sampler
from atlas_bayes.tables.runs import validate_runs
from atlas_bayes.decisions.transfer import fit_transfer_matrix, measured_pairs, plot_transfer_matrix, transfer_quantiles
from atlas_bayes.simulation.transfer_study import (figure2_matrix, heldout_comparison, measure,
                                                   regressor_baseline, simulate_bilingual_runs,
                                                   simulate_matrix)
from atlas_bayes.decisions.bts import bts_from_efficiency
from atlas_bayes.decisions.transfer import transfer_draws

HARD = ("zh", "ja", "ko", "gu", "ps", "ur")     # the target rows the additive model covered worst
ROUNDING = 0.1 / np.sqrt(12)                    # sd of rounding to 0.1 (Figure 2's BTS values)

DIRECT = ["en", "ru", "es", "fr", "de", "pt", "zh", "vi", "ja"]


def part_a(truth: pd.DataFrame, sampler: Sampler, png: Path | None) -> None:
    langs = list(truth.index)
    rng = np.random.default_rng(0)
    pairs = {tuple(sorted((a, b))) for i, a in enumerate(DIRECT) for b in DIRECT[i + 1:]}
    for lang in langs:
        if lang not in DIRECT:
            for partner in rng.choice([x for x in langs if x != lang], 3, replace=False):
                pairs.add(tuple(sorted((lang, str(partner)))))
    runs = validate_runs(simulate_bilingual_runs(truth, sorted(pairs), seed=0))
    print(f"part a: {len(langs)} languages, {len(pairs)} bilingual runs, "
          f"{runs['run_id'].nunique()} runs, {len(runs)} rows")
    start = time.perf_counter()
    curves = fit_bts(runs, sampler=Sampler(chains=4, warmup=500, draws=1000), warn=False)
    t_curves = time.perf_counter() - start
    measured = bts_table(curves)
    start = time.perf_counter()
    tree = fit_transfer_matrix(measured, languages=langs, sampler=sampler, warn=False)
    t_matrix = time.perf_counter() - start
    print(f"  curve fit {t_curves:.0f} s, {json.loads(curves.attrs['diagnostics'])}, "
          f"{float(curves.sample_stats['n_steps'].mean()):.0f} steps/draw")
    print(f"  matrix fit {t_matrix:.0f} s, {json.loads(tree.attrs['diagnostics'])}")

    value = np.array([truth.at[t, s] for s, t in zip(measured["source"], measured["target"])])
    inside = (measured["bts_q05"] <= value) & (value <= measured["bts_q95"])
    print(f"  measured pairs ({len(measured)}): curve 90% intervals cover the truth "
          f"{inside.mean():.2f}; median |error| {np.median(np.abs(measured['bts_median'] - value)):.3f}")
    low, median, high = transfer_quantiles(tree, (0.05, 0.5, 0.95), "bts")
    seen = measured_pairs(tree)
    rows = []
    for t in langs:
        for s in langs:
            if s != t:
                rows.append({"source": s, "target": t, "truth": truth.at[t, s],
                             "median": float(median.sel(source=s, target=t)),
                             "low": float(low.sel(source=s, target=t)),
                             "high": float(high.sel(source=s, target=t)),
                             "measured": (s, t) in seen})
    table = pd.DataFrame(rows)
    table["covered"] = (table["low"] <= table["truth"]) & (table["truth"] <= table["high"])
    table["error"] = table["median"] - table["truth"]
    for flag, name in ((True, "measured"), (False, "unmeasured")):
        part = table[table["measured"] == flag]
        print(f"  matrix, {name} pairs ({len(part)}): 90% coverage {part['covered'].mean():.2f}, "
              f"RMSE {np.sqrt((part['error'] ** 2).mean()):.3f} BTS, median width "
              f"{(part['high'] - part['low']).median():.2f}, Spearman "
              f"{part[['median', 'truth']].corr('spearman').iloc[0, 1]:.2f}")
    post = tree.posterior
    for name in ("mu", "sd_source", "sd_target", "sd_pair", "rho"):
        q = post[name].quantile([0.05, 0.5, 0.95]).to_numpy()
        print(f"  {name:10s} {q[1]:+.3f} ({q[0]:+.3f}, {q[2]:+.3f})")
    for k, cov in enumerate(post["covariate"].to_numpy()):
        q = post["gamma"].isel(covariate=k).quantile([0.05, 0.5, 0.95]).to_numpy()
        print(f"  gamma[{cov}] {q[1]:+.3f} ({q[0]:+.3f}, {q[2]:+.3f}) on g")
    best_truth = truth.idxmax(axis=1)
    best_model = table.loc[table.groupby("target")["median"].idxmax(), ["target", "source"]]
    top3 = table.sort_values("median", ascending=False).groupby("target")["source"].apply(lambda s: list(s[:3]))
    hits = np.mean([best_truth[t] in top3[t] for t in langs])
    agree = np.mean([best_truth[t] == s for t, s in zip(best_model["target"], best_model["source"])])
    print(f"  each target's best source (truth): model's first choice agrees {agree:.2f}, "
          f"in its top 3 {hits:.2f}")
    if png:
        png.parent.mkdir(parents=True, exist_ok=True)
        plot_transfer_matrix(tree, png)
        print(f"  plot: {png}")


def part_b(truth_g: pd.DataFrame, seeds: int, sampler: Sampler, label: str, draw=None) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        g = truth_g if draw is None else draw(seed)
        langs = list(g.index)
        rng = np.random.default_rng(seed)
        unordered = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]
        chosen = [unordered[i] for i in rng.choice(len(unordered), int(0.4 * len(unordered)), replace=False)]
        ordered = [p for a, b in chosen for p in ((a, b), (b, a))]
        measured = measure(g, ordered, sd=0.03, seed=seed)
        held = [ordered[i] for i in rng.choice(len(ordered), len(ordered) // 5, replace=False)]
        metrics, _, tree = heldout_comparison(g, measured, held, sampler=sampler, seed=seed)
        rows += [{"truth": label, "seed": seed, **m} for m in metrics.to_dict("records")]
    return pd.DataFrame(rows)


def real_splits(langs, repeats: int, folds: int):
    """(kind, index, held-out (source, target) cells): random 20% of cells, then target rows and
    source columns in folds."""
    cells = [(s, t) for t in langs for s in langs if s != t]
    for r in range(repeats):
        held = np.random.default_rng(r).random(len(cells)) < 0.2
        yield "cells", r, [c for c, h in zip(cells, held) if h]
    order = list(np.random.default_rng(0).permutation(langs))
    for kind, side in (("rows", 1), ("columns", 0)):
        for f in range(folds):
            group = set(order[f::folds])
            yield kind, f, [c for c in cells if c[side] in group]


def split_cells(g: pd.DataFrame, se: pd.DataFrame, held):
    """One split of the measured matrix: the training table (source, target, g_mean, g_sd),
    and the held-out cells' values, rounding errors and whether each is in a hard row."""
    langs, held_set = list(g.index), set(held)
    train = pd.DataFrame([{"source": s, "target": t, "g_mean": g.at[t, s], "g_sd": se.at[t, s]}
                          for t in langs for s in langs if s != t and (s, t) not in held_set])
    return (train, np.array([g.at[t, s] for s, t in held]), np.array([se.at[t, s] for s, t in held]),
            np.array([t in HARD for _, t in held]))


def score(name, draws, truth, hard, seconds=np.nan, diag=None) -> dict:
    """Held-out metrics of one method; `draws` (samples, cells) on g (one row: a point forecast)."""
    bts, truth_bts = bts_from_efficiency(draws), bts_from_efficiency(truth)
    row = {"method": name, "mae_bts": float(np.abs(np.median(bts, axis=0) - truth_bts).mean()),
           "mae_g": float(np.abs(np.median(draws, axis=0) - truth).mean()), "seconds": seconds}
    if len(draws) > 1:
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        inside = (lo <= truth) & (truth <= hi)
        width = np.quantile(bts, 0.95, axis=0) - np.quantile(bts, 0.05, axis=0)
        row.update(coverage=inside.mean(), coverage_hard=inside[hard].mean() if hard.any() else np.nan,
                   coverage_rest=inside[~hard].mean() if (~hard).any() else np.nan,
                   width_bts=float(np.median(width)))
    if diag:
        row.update(max_r_hat=diag["max_r_hat"], divergences=diag["divergences"])
    return row


def part_c(shared: Path, sampler: Sampler, repeats: int, folds: int, out: Path | None,
           whole_fit: bool = True, additive_splits: int | None = None,
           models=("interaction", "additive"), name: str = "transfer_real_matrix.csv") -> pd.DataFrame:
    bts = figure2_matrix(shared)
    langs = list(bts.index)
    g = pd.DataFrame(efficiency_from_bts(bts.to_numpy()), index=langs, columns=langs)
    se = ROUNDING / (2.0 - bts)             # rounding on BTS, carried to g = -log(1 - BTS/2)
    whole = pd.DataFrame([{"source": s, "target": t, "g_mean": g.at[t, s], "g_sd": se.at[t, s]}
                          for t in langs for s in langs if s != t])
    full = Sampler(chains=4, warmup=1000, draws=1000)
    for model in ("interaction", "additive") if whole_fit else ():
        start = time.perf_counter()
        tree = fit_transfer_matrix(whole, model=model, sampler=full, warn=False)
        print(f"part c: {model} model on all 870 cells, 4 x (1000 + 1000): "
              f"{time.perf_counter() - start:.1f} s, {json.loads(tree.attrs['diagnostics'])}", flush=True)
    rows = []
    for kind, index, held in real_splits(langs, repeats, folds):
        train, truth, noise, hard = split_cells(g, se, held)
        rng = np.random.default_rng(index)
        results = [score("forest", regressor_baseline(train, held, langs, index)[None], truth, hard)]
        for model in [m for m in models if m != "additive" or additive_splits is None
                      or index < additive_splits]:
            start = time.perf_counter()
            tree = fit_transfer_matrix(train, languages=langs, model=model, sampler=sampler, warn=False)
            seconds = time.perf_counter() - start
            draws = transfer_draws(tree, "g")
            draws = np.stack([draws.sel(source=s, target=t).to_numpy().ravel() for s, t in held], axis=1)
            draws = draws + noise * rng.standard_normal(draws.shape)     # the held-out value's rounding
            results.append(score(model, draws, truth, hard, seconds, json.loads(tree.attrs["diagnostics"])))
        for r in results:
            rows.append({"split": kind, "index": index, "n_held": len(held), **r})
            shown = {k: v for k, v in rows[-1].items() if k not in ("split", "index")}
            print(f"  {kind} {index}: " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()), flush=True)
        if out:
            out.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).round(4).to_csv(out / name, index=False)
    table = pd.DataFrame(rows)
    columns = ["mae_bts", "mae_g", "coverage", "coverage_hard", "coverage_rest", "width_bts", "seconds",
               "max_r_hat", "divergences"]
    summary = table.groupby(["split", "method"], sort=False)[columns].mean()
    print("part c: the paper's measured matrix, mean over splits (coverage: 90% intervals)")
    print(summary.round(3).to_string())
    worse = table.pivot_table(index=["split", "index"], columns="method", values="mae_bts")
    if {"interaction", "forest"} <= set(worse.columns):
        worse = worse.dropna(subset=["interaction", "forest"])
        wins = (worse["interaction"] < worse["forest"]).groupby("split").agg(["sum", "count"])
        print("splits where the interaction model's MAE (BTS) beats the forest's:", wins.to_dict("index"))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--part", default="a,b")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path("results/transfer_figure2.png"))
    parser.add_argument("--repeats", type=int, default=10, help="part c: random 20%% cell hold-outs")
    parser.add_argument("--folds", type=int, default=5, help="part c: folds of whole rows and of columns")
    parser.add_argument("--out", type=Path, help="part c: folder for transfer_real_matrix.csv")
    parser.add_argument("--warmup", type=int, default=500, help="warmup draws per chain (parts b, c)")
    parser.add_argument("--draws", type=int, default=500, help="draws per chain (parts b, c)")
    parser.add_argument("--additive-splits", type=int, help="part c: fit the additive model on only "
                        "the first N splits of each kind (default: all)")
    parser.add_argument("--models", default="interaction,additive", help="part c: matrix models to fit")
    parser.add_argument("--name", default="transfer_real_matrix.csv", help="part c: file name in --out")
    parser.add_argument("--no-whole-fit", action="store_true", help="part c: skip the 4 x (1000 + 1000) "
                        "fits of all 870 cells")
    args = parser.parse_args(argv)
    if not (args.shared / "reference" / "atlas-law.md").exists():
        print(f"needs {args.shared}/reference/atlas-law.md (the Figure 2 transcription)", file=sys.stderr)
        return 1
    warnings.simplefilter("ignore")
    print("command:", " ".join(sys.argv))
    truth = figure2_matrix(args.shared)
    sampler = Sampler(chains=4, warmup=args.warmup, draws=args.draws)
    if "a" in args.part:
        part_a(truth, sampler, args.png)
    if "c" in args.part:
        part_c(args.shared, sampler, args.repeats, args.folds, args.out, not args.no_whole_fit,
               args.additive_splits, args.models.split(","), args.name)
    if "b" in args.part:
        g = pd.DataFrame(efficiency_from_bts(truth.to_numpy()), index=truth.index, columns=truth.columns)
        langs = list(truth.index)
        results = pd.concat([
            part_b(g, args.seeds, sampler, "figure 2"),
            part_b(None, args.seeds, sampler, "model", draw=lambda seed: simulate_matrix(langs, seed=seed)[0])])
        print("part b: held-out pairs (20% of measured), per method, mean over seeds")
        print(results.groupby(["truth", "method"])[["rmse_g", "rmse_bts", "spearman", "coverage"]]
              .mean().round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
