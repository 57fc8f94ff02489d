"""Retrospective ScaleBench comparison (issues 7, 21): our EIG design vs V-optimal vs random.

For each task, method (eig_runs, eig, voptimal, random) and seed, play one episode of
`atlas_bayes.design.scalebench.run_episode` at the task's budgets (1/5/10% of the pool's cost;
20/35/50% for sparsity), and print the mean target-region R² across seeds with the population
sd (the paper's convention) and a 95% t-interval of the mean, next to the published numbers.

Laws: chinchilla and data_constrained fit the registry's chinchilla and dcsl; the other tasks
fit one of the authors' law instances, re-expressed as a user law under
benchmarks/scalebench_laws/ (`LAWS`; the one with the best all-data fit by the authors' own
full-data baseline; `--law` picks another).

Published numbers: Li et al. 2026 Table 2, as reproduced in the README of
github.com/PlanarG/active-sl (commit e0a58ff): task-level means over each task's law
instances (10 seeds, ± population sd), so context for one law, not like for like (the authors'
MSPE run unchanged on the same law instance is: benchmarks/RESULTS.md, issue 21). The paper
reports no chinchilla task (removed upstream) and no 20% budget.

    .venv/bin/python benchmarks/design_scalebench.py --seeds 10 --jobs 16 --out results.json
    .venv/bin/python benchmarks/design_scalebench.py --seeds 10 --ray auto --out results.json  # a cluster

Data is read from ../shared/data/scalebench (override with --data).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import ray_pool

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scalebench"
FRACTIONS = (0.01, 0.05, 0.10, 0.20)

LAW_FILES = ROOT / "benchmarks" / "scalebench_laws"
# the law each task fits by default: the registry's, or the authors' instance with the best
# all-data fit (their baseline_full_train.py, one repeat; target R² in the law's docstring;
# lr_bsz: the best of its three smallest laws; domain_mixture: of its laws positive by
# construction, see the law file)
LAWS = {"chinchilla": "chinchilla", "data_constrained": "dcsl",
        "moe": f"{LAW_FILES / 'moe.py'}:SL3", "parallel": f"{LAW_FILES / 'parallel.py'}:SL2",
        "sparsity": f"{LAW_FILES / 'sparsity.py'}:SL2", "farseer": f"{LAW_FILES / 'farseer.py'}:SL1",
        "vocab": f"{LAW_FILES / 'vocab.py'}:SL2", "lr_bsz": f"{LAW_FILES / 'lr_bsz.py'}:SL1",
        "domain_mixture": f"{LAW_FILES / 'domain_mixture.py'}:SL2"}
TRUSTED = ("chinchilla", "data_constrained")    # tasks whose laws read tokens per parameter

# task -> method -> {fraction: (mean, sd)}; paper method names: V-opt, Random, Ours (MSPE)
PUBLISHED = {
    "data_constrained": {
        "random": {0.01: (-0.74, 0.48), 0.05: (-0.36, 0.71), 0.10: (0.12, 0.62)},
        "voptimal": {0.01: (0.58, 0.53), 0.05: (0.83, 0.17), 0.10: (0.85, 0.13)},
        "mspe": {0.01: (0.73, 0.37), 0.05: (0.85, 0.16), 0.10: (0.86, 0.11)},
        "all data": {1.0: (0.79, 0.23)},
    },
    "moe": {"voptimal": {0.01: (0.67, 0.24), 0.05: (0.80, 0.05), 0.10: (0.80, 0.11)},
            "mspe": {0.01: (0.59, 0.39), 0.05: (0.65, 0.27), 0.10: (0.83, 0.07)}},
    "parallel": {"voptimal": {0.01: (-1.00, 0.00), 0.05: (0.69, 0.53), 0.10: (0.99, 0.00)},
                 "mspe": {0.01: (-1.00, 0.00), 0.05: (0.77, 0.39), 0.10: (0.99, 0.00)}},
    "sparsity": {"voptimal": {0.20: (0.12, 0.53), 0.35: (0.39, 0.20), 0.50: (0.51, 0.15)},
                 "mspe": {0.20: (0.31, 0.39), 0.35: (0.44, 0.17), 0.50: (0.53, 0.08)}},
    "farseer": {"voptimal": {0.01: (0.67, 0.22), 0.05: (0.87, 0.01), 0.10: (0.92, 0.01)},
                "mspe": {0.01: (0.60, 0.11), 0.05: (0.88, 0.02), 0.10: (0.93, 0.00)}},
    "vocab": {"random": {0.01: (0.54, 0.57), 0.05: (0.53, 0.62), 0.10: (0.59, 0.54)},
              "voptimal": {0.01: (0.96, 0.02), 0.05: (0.97, 0.00), 0.10: (0.98, 0.00)},
              "mspe": {0.01: (0.96, 0.02), 0.05: (0.98, 0.00), 0.10: (0.98, 0.00)}},
    "lr_bsz": {"random": {0.01: (-0.65, 0.49), 0.05: (-0.45, 0.61), 0.10: (-0.33, 0.66)},
               "voptimal": {0.01: (-0.70, 0.47), 0.05: (-0.06, 0.59), 0.10: (0.18, 0.54)},
               "mspe": {0.01: (-0.66, 0.53), 0.05: (0.00, 0.59), 0.10: (0.22, 0.55)}},
    "domain_mixture": {"random": {0.20: (-0.36, 0.82), 0.35: (0.41, 0.82), 0.50: (0.70, 0.67)},
                       "voptimal": {0.20: (0.57, 0.66), 0.35: (0.91, 0.33), 0.50: (0.95, 0.27)},
                       "mspe": {0.20: (0.64, 0.58), 0.35: (0.89, 0.38), 0.50: (0.95, 0.28)}},
}


def one_episode(task: str, method: str, seed: int, data: str, fractions, ls_starts: int,
                trust, law: str | None = None, k: int = 4, first_k: int | None = 1) -> list[dict]:
    """One (task, method, seed) episode in a worker process; rows with timing."""
    from atlas_bayes.design.scalebench import TASKS, load_task, run_episode
    pool, target = load_task(data, task)
    law = law or LAWS[task]
    start = time.perf_counter()
    table = run_episode(pool, target, method=method, law=law,
                        fractions=fractions or TASKS[task].fractions, seed=seed,
                        ls_starts=ls_starts, trust=trust if task in TRUSTED else None, k=k,
                        first_k=None if task in TRUSTED else first_k)
    table["task"], table["law"] = task, Path(law).name
    table["seconds"] = time.perf_counter() - start
    return table.to_dict("records")


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Two-sided t-interval of the mean (nan with fewer than two values)."""
    from scipy import stats
    values = np.asarray(values, float)
    if values.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, population sd and 95% t-interval of R² per (task, fraction, method)."""
    out = []
    for (task, fraction, method), g in rows.groupby(["task", "fraction", "method"]):
        lo, hi = t_interval(g["r2"])
        paper = PUBLISHED.get(task, {}).get(method, {}).get(fraction)
        mspe = PUBLISHED.get(task, {}).get("mspe", {}).get(fraction)
        out.append({"task": task, "law": g["law"].iloc[0] if "law" in g else "",
                    "budget": f"{fraction:.0%}", "method": method,
                    "seeds": len(g), "r2_mean": g["r2"].mean(), "r2_sd": g["r2"].std(ddof=0),
                    **({"r2_ls_mean": g["r2_ls"].mean(), "r2_ls_sd": g["r2_ls"].std(ddof=0)}
                       if "r2_ls" in g else {}),
                    "ci95": f"[{lo:.2f}, {hi:.2f}]", "runs": g["n_runs"].mean(),
                    "paper": "" if paper is None else f"{paper[0]:.2f} ± {paper[1]:.2f}",
                    "paper_mspe": "" if mspe is None else f"{mspe[0]:.2f} ± {mspe[1]:.2f}",
                    "sec_per_episode": g["seconds"].mean()})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="N seeds from --first-seed (default 10)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--tasks", default="chinchilla,data_constrained")
    ap.add_argument("--methods", default="eig_runs,voptimal,random",
                    help="of eig_runs, eig, voptimal, random (default eig_runs,voptimal,random)")
    ap.add_argument("--fractions", default=None, help="budget fractions, comma separated "
                    "(default: each task's own: 1/5/10%%, sparsity 20/35/50%%)")
    ap.add_argument("--law", default=None, help="law to fit (default: LAWS[task]); a registry "
                    "name or a law file path.py:NAME")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (one episode each)")
    ray_pool.add_option(ap)
    ap.add_argument("--ls-starts", type=int, default=64,
                    help="V-optimal's least-squares starts per refit (paper: 64)")
    ap.add_argument("--trust", default="2",
                    help="EIG's shape trust-region widening factor, or 'none'")
    ap.add_argument("--k", type=int, default=4, help="EIG's runs per refit (default 4)")
    ap.add_argument("--first-k", type=int, default=1,
                    help="EIG's runs per refit up to the first budget (default 1; chinchilla and "
                    "data_constrained: --k)")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", default=None, help="write every episode's rows and the summary")
    ap.add_argument("--combine", nargs="+", metavar="JSON",
                    help="only summarise the episodes of earlier --out files together")
    args = ap.parse_args(argv)
    if args.combine:
        rows = [row for path in args.combine for row in json.loads(Path(path).read_text())["episodes"]]
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(summarise(pd.DataFrame(rows)).to_string(index=False,
                                                         float_format=lambda v: f"{v:.2f}"))
        return 0
    from atlas_bayes.design.scalebench import METHODS, TASKS
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [t for t in tasks if t not in TASKS] + [m for m in methods if m not in METHODS]
    if bad or args.seeds < 1 or args.jobs < 1 or args.k < 1 or args.first_k < 1:
        ap.error(f"unknown tasks/methods {bad} (tasks: {', '.join(TASKS)}; methods: "
                 f"{', '.join(METHODS)}); --seeds, --jobs, --k and --first-k must be >= 1")
    fractions = tuple(sorted(float(f) for f in args.fractions.split(","))) if args.fractions \
        else None
    trust = None if args.trust == "none" else float(args.trust)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(t, m, s) for s in seeds for t in tasks for m in methods]
    print(f"{len(jobs)} episodes ({len(tasks)} tasks x {len(methods)} methods x {args.seeds} "
          f"seeds) " + (f"as Ray tasks ({args.ray})" if args.ray else f"on {args.jobs} processes"),
          flush=True)
    rows, start = [], time.perf_counter()
    calls = [(t, m, s, str(Path(args.data).resolve()), fractions, args.ls_starts, trust, args.law,
              args.k, args.first_k) for t, m, s in jobs]
    for i, (call, result) in enumerate(ray_pool.as_finished(one_episode, calls, args.jobs, args.ray),
                                       1):
        t, m, s = call[:3]
        rows += result
        r2 = " ".join(f"{r['fraction']:.0%}:{r['r2']:+.2f}/{r.get('r2_ls', float('nan')):+.2f}"
                      for r in result)
        print(f"[{i}/{len(jobs)}] {t} {m} seed {s}: {r2} ({result[0]['seconds']:.0f} s; "
              f"{time.perf_counter() - start:.0f} s elapsed)", flush=True)
        if args.out:                    # after every episode, so a stopped run keeps them
            write(args.out, args, fractions, trust, rows, summarise(pd.DataFrame(rows)))
    summary = summarise(pd.DataFrame(rows))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def write(path, args, fractions, trust, rows, summary) -> None:
    """The command, settings, published numbers, every episode's rows and the summary."""
    published = {t: {m: {str(f): v for f, v in d.items()} for m, d in ms.items()}
                 for t, ms in PUBLISHED.items()}
    Path(path).write_text(json.dumps(
        {"command": " ".join(sys.argv), "seeds": args.seeds, "fractions": fractions,
         "trust": trust, "ls_starts": args.ls_starts, "k": args.k, "first_k": args.first_k,
         "published": published,
         "episodes": rows, "summary": summary.to_dict("records")}, indent=1, default=float))


if __name__ == "__main__":
    sys.exit(main())
