"""Whole processes to a converged Chinchilla posterior on Epoch's 240 points: the CLI against a
first-attempt NumPyro script, timed in the same run.

Each side is timed as a user runs it, a fresh Python process from start to exit (imports,
compilation, sampling, output):

- cli cold:  `atlas-bayes fit RUNS --law chinchilla` at its defaults (4 chains x 1000 + 1000)
             with an empty compilation cache (a new ATLAS_BAYES_JAX_CACHE folder each time);
- cli warm:  the same command again, the cache filled by the cold run (a user's later fits);
- naive:     benchmarks/naive_chinchilla.py (same priors and likelihood; raw log N and log D,
             NumPyro's default NUTS, vectorised chains) at 1000 + 1000 draws, or the first of
             2000, 4000, 8000 at which it converges, as a user would have to climb.

Converged: every R-hat <= 1.01, every bulk ESS >= 400 and no divergences, judged for both sides
by ArviZ (atlas_bayes.fitting.diagnostics). Prints each process's seconds and the ratios of
medians (naive / cli); `--json FILE` keeps them.

    .venv/bin/python benchmarks/fit_speed.py [--shared ../shared/data] [--repeats 3] [--json F]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAIVE = ROOT / "benchmarks" / "naive_chinchilla.py"
LADDER = (1000, 2000, 4000, 8000)


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of one process; a failure stops the benchmark with its stderr."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def cli_fit(runs: Path, out: Path, cache: Path, seed: int) -> dict:
    seconds, stdout = timed([sys.executable, "-m", "atlas_bayes.cli", "fit", str(runs), "--law",
                             "chinchilla", "--out", str(out), "--seed", str(seed), "--json"],
                            {"ATLAS_BAYES_JAX_CACHE": str(cache)})
    diag = json.loads(stdout)["diagnostics"]
    return {"seconds": seconds, "converged": converged(diag), **diag}


def naive_fit(runs: Path, folder: Path, draws: int, seed: int) -> dict:
    import arviz as az
    from atlas_bayes.fitting.diagnostics import check_convergence
    saved = folder / f"naive-{draws}-{seed}.npz"
    seconds, stdout = timed([sys.executable, str(NAIVE), str(runs), "--warmup", str(draws),
                             "--draws", str(draws), "--seed", str(seed), "--save", str(saved)],
                            {"ATLAS_BAYES_JAX_CACHE": "0"})
    counts = json.loads(stdout.strip().splitlines()[-1])
    with np.load(saved) as f:
        samples = {name: f[name] for name in f.files}
    diag = check_convergence(az.from_dict({"posterior": samples}), list(samples))
    diag = {"max_r_hat": diag.max_r_hat, "min_ess_bulk": diag.min_ess_bulk, **counts}
    return {"seconds": seconds, "draws": draws, "converged": converged(diag), **diag}


def converged(diag: dict) -> bool:
    return diag["max_r_hat"] <= 1.01 and diag["min_ess_bulk"] >= 400 and diag["divergences"] == 0


def show(name: str, result: dict) -> None:
    extra = "".join(f", {k} {result[k]:.3g}" for k in ("n_compilations", "compile_seconds")
                    if k in result)
    print(f"  {name:<10} {result['seconds']:6.1f} s  R-hat {result['max_r_hat']:.3f}, bulk ESS "
          f"{result['min_ess_bulk']:.0f}, divergences {result['divergences']}{extra}"
          f"{'' if result['converged'] else '  NOT CONVERGED'}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every process's numbers here")
    args = parser.parse_args()
    from atlas_bayes.tables.adapters import epoch_chinchilla
    from atlas_bayes.tables.runs import write_runs
    folder = Path(tempfile.mkdtemp(prefix="fit-speed-"))
    runs = folder / "epoch_chinchilla_240.csv"
    write_runs(epoch_chinchilla(args.shared / "epoch_chinchilla", drop_epoch_outliers=True), runs)
    print(f"Epoch's Chinchilla points (240 runs), load {os.getloadavg()[0]:.2f}, "
          f"{args.repeats} repeats, whole processes")
    results = {"cold": [], "warm": [], "naive": []}
    for seed in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="cache-", dir=folder))
        for kind in ("cold", "warm"):
            results[kind].append(cli_fit(runs, folder / f"out-{seed}", cache, seed))
            show(f"cli {kind}", results[kind][-1])
        for draws in LADDER:
            results["naive"].append(naive_fit(runs, folder, draws, seed))
            show(f"naive {draws}", results["naive"][-1])
            if results["naive"][-1]["converged"]:
                break
    naive = [r for r in results["naive"] if r["converged"]]
    medians = {kind: statistics.median(r["seconds"] for r in rows)
               for kind, rows in (("cold", results["cold"]), ("warm", results["warm"]),
                                  ("naive", naive))}
    print(f"\nmedians: naive (converged runs) {medians['naive']:.1f} s, cli cold "
          f"{medians['cold']:.1f} s, cli warm {medians['warm']:.1f} s")
    print(f"ratios: cold {medians['naive'] / medians['cold']:.1f}x, "
          f"warm {medians['naive'] / medians['warm']:.1f}x; load {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "medians": medians}, indent=1,
                                         default=float))


if __name__ == "__main__":
    main()
