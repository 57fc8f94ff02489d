"""Issue 7's headline evidence: the compute needed to bring a target's 90% interval under a
width, for active design versus a Chinchilla-style grid versus random runs, on simulated
studies with a known truth.

    .venv/bin/python benchmarks/design_efficiency.py --replicates 14 --jobs 14 --k 4 --out results.json
    .venv/bin/python benchmarks/design_efficiency.py --replicates 30 --ray auto --out r.json   # a cluster

(one replicate, 32 fits with --k 3, took 907 s on 2 shared CPU cores before fits shared
compiled programs; now a replicate takes ~20 s after the first, which compiles). `--combine
a.json b.json` tabulates the replicates of several runs together.

The world (one per replicate): a Chinchilla law at the package's example truth (E 1.2, A 350,
B 1800, alpha 0.33, beta 0.34), Student-t(4) noise of scale 0.01 on log loss (as
`simulate.example_study`). Candidates: the paper's 10 smallest model sizes (9M-554M,
`simulate.PAPER_MODEL_SIZES`) x 5, 10, 20, 40, 80 tokens per parameter, each costing 6ND; a
run's "training" reveals its final loss, drawn once per replicate (so every method sees the
same outcome for the same run). Every method starts from the same seed runs (the two smallest
sizes at every ratio, counted in its compute) and refits (NUTS) after each round:

* active: `design.choose_batch`, `--k` runs per round by expected information gain per FLOP
  about the target, from the current fit;
* grid: a person's Chinchilla grid, cheapest sizes first: each round buys the next model size
  at every token ratio (5 runs);
* random: `--k` runs per round drawn uniformly from the candidates not yet bought.

Main target: the log loss of the paper's largest model (2.03B) at 20 tokens per parameter,
about 4x beyond the largest candidate: the extrapolation a scaling law is fitted for, in
log-loss units, so a width of 0.05 is about +-2.5% of the loss. `--target nstar` (log N* at
1e21 FLOPs) is the second choice; pick its `--width` in log-N units.

A method's compute is what it spent when its 90% interval first fell under `--width`; it has
not reached the width (counted as infinite) when the candidates or `--max-rounds` run out.
The table gives each method's median compute, the ratios of medians active/grid and
active/random with 90% bootstrap intervals over replicates, and the unreached counts.
Results (every round of every method) go to `--out`, rewritten after each replicate.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from atlas_bayes import design  # noqa: E402
from atlas_bayes.fitting.inference import Sampler, fit  # noqa: E402
from atlas_bayes.fitting.draws import LawDraws  # noqa: E402
from atlas_bayes.simulation.simulate import PAPER_MODEL_SIZES, simulate  # noqa: E402

import ray_pool  # noqa: E402

TRUTH = {"E": 1.2, "A": 350.0, "B": 1800.0, "alpha": 0.33, "beta": 0.34}
SIGMA, NU = 0.01, 4.0
SIZES, RATIOS, SEED_SIZES = PAPER_MODEL_SIZES[:10], (5, 10, 20, 40, 80), 2
TARGETS = {"loss": f"loss@N={PAPER_MODEL_SIZES[-1]:.4g},D={20 * PAPER_MODEL_SIZES[-1]:.4g}",
           "nstar": "nstar@C=1e21"}
METHODS = ("active", "grid", "random")


def world(seed: int):
    """The candidate runs with their cost and their (hidden) simulated final loss."""
    cand = design.candidate_grid(n_params=SIZES, tokens_per_param=RATIOS, language="en")
    rows = pd.DataFrame({"run_id": cand["candidate"], "language": "en",
                         "n_params": cand["n_params"], "n_tokens": cand["n_tokens"],
                         "n_languages": 1})
    runs = simulate(rows, "chinchilla", TRUTH, sigma=SIGMA, nu=NU, seed=seed)
    return cand.set_index("candidate", drop=False), runs.set_index("run_id", drop=False)


def true_value(target) -> float:
    truth = design.Posterior(LawDraws("chinchilla", {k: np.array([v]) for k, v in TRUTH.items()}),
                             np.array([SIGMA]), NU)
    return float(target.values(truth)[0])


def measure(runs, bought, target, args, seed):
    """Fit the bought runs; the target's 90% interval and the fit's diagnostics."""
    sampler = Sampler(chains=args.chains, warmup=args.warmup, draws=args.draws, seed=seed)
    tree = fit(runs.loc[bought].reset_index(drop=True), "chinchilla", sampler=sampler, warn=False)
    summary = design.target_summary(design.posterior_from_tree(tree, max_draws=None), target)
    return tree, {**summary, **json.loads(tree.attrs["diagnostics"])}


def pick(method, tree, cand, bought, target, args, rng, r):
    """The next round's runs for a method (empty when none is left)."""
    left = cand[~cand.index.isin(bought)]
    if left.empty:
        return []
    if method == "grid":
        return list(left[left["n_params"] == left["n_params"].min()].index)
    if method == "random":
        return [str(c) for c in rng.choice(left.index.to_numpy(), size=min(args.k, len(left)),
                                             replace=False)]
    post = design.posterior_from_tree(tree, max_draws=args.max_draws)
    chosen = design.choose_batch(post, left.reset_index(drop=True), target, k=args.k,
                                 cost_power=args.cost_power, seed=r).chosen
    return list(chosen["candidate"])


def run_method(method, start, cand, runs, target, truth, args, rep):
    """Rounds of one method from the shared seed fit until the width, the pool or the cap."""
    rng = np.random.default_rng([rep, METHODS.index(method)])
    bought, (tree, summary) = list(start["bought"]), start["fit"]
    rounds = []
    for r in range(args.max_rounds + 1):
        if r:
            tree, summary = measure(runs, bought, target, args, seed=1000 * rep + r)
        spent = float(cand.loc[bought, "cost"].sum())
        rounds.append({"round": r, "n_runs": len(bought), "spent": spent,
                       "covers_truth": bool(summary["lo"] <= truth <= summary["hi"]), **summary})
        if summary["width"] <= args.width:
            return {"reached": spent, "rounds": rounds, "bought": bought}
        if r == args.max_rounds:
            break
        new = pick(method, tree, cand, bought, target, args, rng, r)
        if not new:
            break
        bought = bought + new
    return {"reached": None, "rounds": rounds, "bought": bought}


def replicate(rep: int, args) -> dict:
    """One simulated study: the three methods from the same seed runs and outcomes."""
    started = time.perf_counter()
    target = design.parse_target(TARGETS[args.target])
    cand, runs = world(seed=rep)
    seed_ids = list(cand.index[cand["n_params"] <= SIZES[SEED_SIZES - 1]])
    start = {"bought": seed_ids, "fit": measure(runs, seed_ids, target, args, seed=1000 * rep)}
    truth = true_value(target)
    out = {"replicate": rep, "truth": truth, "cap": float(cand["cost"].sum())}
    for method in METHODS:
        t = time.perf_counter()
        out[method] = run_method(method, start, cand, runs, target, truth, args, rep)
        res = out[method]
        print(f"  replicate {rep} {method}: {len(res['rounds'])} fit(s), width "
              f"{res['rounds'][-1]['width']:.4f}, "
              + (f"reached at {res['reached']:.3g} FLOPs" if res["reached"] else "not reached")
              + f" ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    out["seconds"] = time.perf_counter() - started
    return out


def ratio_interval(a, b, n_boot=4000, seed=0):
    """median(a) / median(b) with a 90% paired bootstrap interval over replicates."""
    a, b = np.asarray(a, float), np.asarray(b, float)

    def ratio(x, y):
        mx, my = np.median(x), np.median(y)
        return mx / my if np.isfinite(my) else (np.nan if np.isinf(mx) else 0.0)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, (n_boot, a.size))
    boot = np.array([ratio(a[i], b[i]) for i in idx])
    lo, hi = np.nanpercentile(boot, [5, 95]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return ratio(a, b), float(lo), float(hi)


def paired_ratio(a, b, n_boot=4000, seed=0):
    """Median over replicates of a / b (both reached), a 90% bootstrap interval, the count.
    Sturdier than the ratio of medians when b's values are few and far apart (the grid's
    compute takes three or four values)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    both = np.isfinite(a) & np.isfinite(b)
    r = a[both] / b[both]
    if r.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    boot = np.median(np.random.default_rng(seed).choice(r, (n_boot, r.size)), axis=1)
    return float(np.median(r)), *(float(v) for v in np.percentile(boot, [5, 95])), int(r.size)


def table(results, args) -> dict:
    """Median compute per method, the ratios with intervals, unreached counts; printed."""
    need = {m: np.array([r[m]["reached"] if r[m]["reached"] else np.inf for r in results])
            for m in METHODS}
    print(f"\n{len(results)} replicate(s), target {TARGETS[args.target]}, 90% width <= "
          f"{args.width}, cap {results[0]['cap']:.3g} FLOPs (every candidate)")
    print(f"{'method':>8} {'median FLOPs':>13} {'unreached':>9} {'fits (median)':>13} "
          f"{'truth in interval':>17}")
    summary = {}
    for m in METHODS:
        fits = np.median([len(r[m]["rounds"]) for r in results])
        covered = np.mean([r[m]["rounds"][-1]["covers_truth"] for r in results])
        unreached = int(np.isinf(need[m]).sum())
        summary[m] = {"median_flops": float(np.median(need[m])), "unreached": unreached,
                      "median_fits": float(fits), "final_coverage": float(covered)}
        print(f"{m:>8} {np.median(need[m]):>13.3g} {unreached:>9} {fits:>13.0f} {covered:>17.2f}")
    for other in ("grid", "random"):
        est, lo, hi = ratio_interval(need["active"], need[other])
        share = float(np.mean(np.isfinite(need["active"]) & (need["active"] <= need[other] / 3)))
        summary[f"active/{other}"] = {"ratio": est, "lo": lo, "hi": hi,
                                      "share_at_most_a_third": share}
        paired = paired_ratio(need["active"], need[other])
        summary[f"active/{other}"]["paired_median"] = paired
        print(f"active/{other}: {est:.3f} (90% bootstrap interval {lo:.3f}-{hi:.3f}); "
              f"active <= 1/3 of {other} in {share:.0%} of replicates; median of the "
              f"replicates' own ratios {paired[0]:.3f} ({paired[1]:.3f}-{paired[2]:.3f}, "
              f"{paired[3]} replicates where both reached)")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    ray_pool.add_option(parser)
    parser.add_argument("--out", default="design_efficiency.json")
    parser.add_argument("--target", choices=sorted(TARGETS), default="loss")
    parser.add_argument("--width", type=float, default=0.05,
                        help="90%% interval width to reach, in the target's units")
    parser.add_argument("--k", type=int, default=3, help="runs per round (active, random)")
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument("--cost-power", type=float, default=1.0)
    parser.add_argument("--max-draws", type=int, default=512)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--first", type=int, default=0, help="index of the first replicate")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="only tabulate the replicates of earlier --out files together")
    args = parser.parse_args()
    if args.combine:
        saved = [json.loads(Path(path).read_text()) for path in args.combine]
        settings = argparse.Namespace(**{**vars(args), **saved[0]["settings"]})
        table(sorted((r for s in saved for r in s["results"]), key=lambda r: r["replicate"]),
              settings)
        return
    reps = range(args.first, args.first + args.replicates)
    where = f"as Ray tasks ({args.ray})" if args.ray else f"on {args.jobs} process(es)"
    print(f"design efficiency: {args.replicates} replicate(s) {where}; "
          f"target {TARGETS[args.target]}, width {args.width}", flush=True)
    started, results = time.perf_counter(), []

    def done(res):
        results.append(res)
        line = ", ".join(f"{m} " + (f"{res[m]['reached']:.3g}" if res[m]["reached"] else "never")
                         for m in METHODS)
        print(f"replicate {res['replicate']} done in {res['seconds']:.0f} s ({len(results)}/"
              f"{args.replicates}, {time.perf_counter() - started:.0f} s elapsed): {line}",
              flush=True)
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), "truth": TRUTH, "sigma": SIGMA, "nu": NU,
                       "results": sorted(results, key=lambda r: r["replicate"])}, f, indent=1)

    jobs = args.jobs if args.jobs > 1 else 0          # one job: here, one after another
    for _, result in ray_pool.as_finished(replicate, [(rep, args) for rep in reps], jobs, args.ray):
        done(result)
    summary = table(sorted(results, key=lambda r: r["replicate"]), args)
    with open(args.out) as f:
        saved = json.load(f)
    saved["summary"] = summary
    saved["wall_seconds"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(saved, f, indent=1)
    print(f"wall time {saved['wall_seconds']:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
