"""Time to a converged Chinchilla posterior on Epoch's points, against a naive parameterisation.

Converged means 4 chains with every R-hat <= 1.01, every bulk ESS >= 400 and no divergences.
For each parameterisation we climb a ladder of warmup/draw counts. At each rung one untimed
run fills the compilation caches, then `--repeats` runs with fresh seeds are timed; the rung
counts only when every timed run converges. We report the median wall time of the whole
`fit()` call there, the leapfrog steps (gradient evaluations) and ESS per second. Both
parameterisations run in this process.

    .venv/bin/python benchmarks/fit_speed.py [--shared ../shared/data] [--repeats 3]

- naive:       raw log N and log D (reference scales of 1), diagonal mass matrix.
- atlas_bayes: log N and log D centred at the data's geometric means, dense mass matrix.
"""

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

from atlas_bayes.tables.adapters import epoch_chinchilla
from atlas_bayes.fitting.inference import Sampler, fit

LADDER = (250, 500, 1000, 2000, 4000, 8000)
CONFIGS = {
    "naive": {"centre": False, "dense_mass": False},
    "atlas_bayes": {"centre": True, "dense_mass": True},
}


def run(runs, config, draws, seed):
    sampler = Sampler(chains=4, warmup=draws, draws=draws, seed=seed, dense_mass=config["dense_mass"])
    start = time.perf_counter()
    tree = fit(runs, "chinchilla", centre=config["centre"], sampler=sampler, warn=False)
    seconds = time.perf_counter() - start
    diag = json.loads(tree.attrs["diagnostics"])
    ok = diag["max_r_hat"] <= 1.01 and diag["min_ess_bulk"] >= 400 and diag["divergences"] == 0
    steps = int(tree.sample_stats["n_steps"].sum()) if "n_steps" in tree.sample_stats else -1
    return {"seconds": seconds, "converged": ok, "steps": steps, **diag}


def time_to_convergence(runs, config, repeats):
    """The smallest rung whose timed repeats all converge, with those timed runs."""
    for draws in LADDER:
        run(runs, config, draws, seed=0)  # fills the compilation caches for this shape
        timed = [run(runs, config, draws, seed=s) for s in range(1, repeats + 1)]
        worst = max(r["max_r_hat"] for r in timed), min(r["min_ess_bulk"] for r in timed)
        print(f"  {draws:>5} warmup + {draws:>5} draws: median {statistics.median(r['seconds'] for r in timed):6.2f} s, "
              f"worst R-hat {worst[0]:.3f}, worst min ESS {worst[1]:.0f}, "
              f"divergences {sum(r['divergences'] for r in timed)}")
        if all(r["converged"] for r in timed):
            return draws, timed
    raise RuntimeError("did not converge within the ladder")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = epoch_chinchilla(args.shared / "epoch_chinchilla")
    print(f"Epoch's Chinchilla points: {len(runs)} runs\n")
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, config in CONFIGS.items():
            print(f"{name}: climbing the ladder")
            draws, timed = time_to_convergence(runs, config, args.repeats)
            results[name] = {
                "draws": draws,
                "seconds": statistics.median(r["seconds"] for r in timed),
                "steps": statistics.median(r["steps"] for r in timed),
                "ess_per_s": statistics.median(r["min_ess_bulk"] / r["seconds"] for r in timed),
            }
            r = results[name]
            print(f"  converged at {draws}+{draws}: median {r['seconds']:.2f} s, "
                  f"{r['steps']:.0f} leapfrog steps, min-ESS/s {r['ess_per_s']:.0f}\n")
    naive, ours = results["naive"], results["atlas_bayes"]
    print(f"time to a converged posterior: naive {naive['seconds']:.2f} s, "
          f"atlas_bayes {ours['seconds']:.2f} s, ratio {naive['seconds'] / ours['seconds']:.1f}x")
    print(f"gradient evaluations:          naive {naive['steps']:.0f}, atlas_bayes {ours['steps']:.0f}, "
          f"ratio {naive['steps'] / ours['steps']:.1f}x")


if __name__ == "__main__":
    main()
