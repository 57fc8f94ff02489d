"""Fits that share one compiled program (atlas_bayes/fitting/compiled.py) against fits that compile
their own, in the same process.

A design loop or a ScaleBench episode refits the same law to a growing table; a recovery
study refits it to many simulated tables of one size. Both are mimicked by Chinchilla fits to
random subsets of Epoch's points whose sizes grow by `--step` rows (2 chains x 300 + 300, the
episodes' sampler). Each side starts cold: its first fit compiles.

    .venv/bin/python benchmarks/compiled_reuse.py [--fits 8] [--start 40] [--step 6]
"""

import argparse
import statistics
import time
from pathlib import Path

from atlas_bayes.fitting import compiled
from atlas_bayes.tables.adapters import epoch_chinchilla
from atlas_bayes.fitting.inference import Sampler, fit

SAMPLER = Sampler(chains=2, warmup=300, draws=300)


def fits(runs, sizes, shared: bool) -> list[tuple[float, float]]:
    """(seconds, posterior median alpha) of each fit, shared programs on or off."""
    compiled.ENABLED = shared
    compiled.clear()
    out = []
    for i, n in enumerate(sizes):
        sub = runs.sample(n=n, random_state=i).reset_index(drop=True)
        start = time.perf_counter()
        tree = fit(sub, "chinchilla", sampler=SAMPLER, warn=False)
        out.append((time.perf_counter() - start, float(tree.posterior["alpha"].median())))
        print(f"  {'shared' if shared else 'own   '} n={n:3d}: {out[-1][0]:6.2f} s, "
              f"alpha {out[-1][1]:.4f}", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--fits", type=int, default=8)
    parser.add_argument("--start", type=int, default=40)
    parser.add_argument("--step", type=int, default=6)
    args = parser.parse_args()
    runs = epoch_chinchilla(args.shared / "epoch_chinchilla" / "svg_extracted_data.csv")
    sizes = [args.start + args.step * i for i in range(args.fits)]
    own = fits(runs, sizes, shared=False)
    shared = fits(runs, sizes, shared=True)
    t_own, t_shared = sum(t for t, _ in own), sum(t for t, _ in shared)
    gap = max(abs(a - b) for (_, a), (_, b) in zip(own, shared))
    print(f"\n{len(sizes)} fits of {sizes[0]}-{sizes[-1]} rows: own programs {t_own:.1f} s, "
          f"shared {t_shared:.1f} s: {t_own / t_shared:.1f}x faster "
          f"(after the first fit: median {statistics.median(t for t, _ in own[1:]):.2f} s vs "
          f"{statistics.median(t for t, _ in shared[1:]):.2f} s); "
          f"largest gap in median alpha {gap:.4f}")
    compiled.ENABLED = True


if __name__ == "__main__":
    main()
