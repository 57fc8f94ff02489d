"""The transfer matrix on a simulated study whose truth is the paper's Figure 2 (30 x 30 BTS).

    .venv/bin/python benchmarks/transfer_matrix.py [--shared ../shared] [--part a,b]
        [--seeds 3] [--png results/transfer_figure2.png]

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
from atlas_bayes.simulation.transfer_study import figure2_matrix, heldout_comparison, measure, simulate_bilingual_runs, simulate_matrix

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--part", default="a,b")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path("results/transfer_figure2.png"))
    args = parser.parse_args(argv)
    if not (args.shared / "reference" / "atlas-law.md").exists():
        print(f"needs {args.shared}/reference/atlas-law.md (the Figure 2 transcription)", file=sys.stderr)
        return 1
    warnings.simplefilter("ignore")
    print("command:", " ".join(sys.argv))
    truth = figure2_matrix(args.shared)
    sampler = Sampler(chains=4, warmup=500, draws=500)
    if "a" in args.part:
        part_a(truth, sampler, args.png)
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
