"""V-optimal's least-squares fit: the batched fit (design_voptimal.fit_least_squares, default)
against the selection scripts' sequential L-BFGS-B (method="scipy"), in this process.

    .venv/bin/python benchmarks/voptimal_speed.py [--data ../shared/data/scalebench]
        [--rows 40 80] [--starts 64] [--repeats 1]

The data-constrained pool (law "dcsl", 7 parameters), its `rows` cheapest runs. Each path
fits the same starts (the same seed) with no warm starts; one untimed call per path and row
count first (another seed) fills the compilation caches. Prints the seconds per fit (the
best of `repeats`), their ratio and both best training MSEs.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from atlas_bayes.design import voptimal as vopt  # noqa: E402
from atlas_bayes.design.scalebench import load_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scalebench"


def timed(law, X, y, starts, method, repeats):
    vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(1), n_starts=starts,
                           method=method)                               # compile
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        theta, mse = vopt.fit_least_squares(law, X, y, rng=np.random.default_rng(0),
                                            n_starts=starts, method=method)
        best = min(best, time.perf_counter() - start)
    return best, theta, mse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, nargs="+", default=[40, 80])
    parser.add_argument("--starts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    pool, _ = load_task(args.data, "data_constrained")
    law = vopt.ls_law("dcsl")
    print(f"dcsl on the data-constrained pool, {args.starts} starts, seconds per fit "
          f"(best of {args.repeats}, compilation excluded)")
    print(f"{'rows':>5} {'scipy s':>9} {'batched s':>10} {'ratio':>7} "
          f"{'scipy MSE':>13} {'batched MSE':>13} {'MSE ratio':>10}")
    for n in args.rows:
        rows = pool.sort_values("cost").head(n)
        X, y = law.matrix(rows), rows["loss"].to_numpy(float)
        t_s, theta_s, mse_s = timed(law, X, y, args.starts, "scipy", args.repeats)
        t_b, theta_b, mse_b = timed(law, X, y, args.starts, "batched", args.repeats)
        print(f"{n:>5} {t_s:>9.2f} {t_b:>10.3f} {t_s / t_b:>7.1f} {mse_s:>13.6g} "
              f"{mse_b:>13.6g} {mse_b / mse_s:>10.4f}")
        for name, theta in (("scipy", theta_s), ("batched", theta_b)):
            print(f"      {name:>7} theta: " + ", ".join(
                f"{p}={t:.4g}" for p, t in zip(law.params, theta)))


if __name__ == "__main__":
    main()
