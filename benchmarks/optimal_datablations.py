"""Repetition-aware compute-optimal allocation on Muennighoff et al.'s data, against their advice.

Fits DCSL and ATLAS (D_t only) to the 182 C4 runs of Muennighoff et al. (2023) (read in place
from ../shared/data/datablations) and computes, with 90% posterior intervals, the optimum
for a fixed unique-token budget. Printed next to their published recommendation (the
huggingface/datablations README, "Parametric Fit"): at the compute of 8.67B parameters x
178B tokens (9.26e21 FLOPs) with 25B unique tokens, their fitted law's optimum is "227B
tokens, 9.1 epochs, 6.8B parameters" ("many epochs, fewer params"; their Figure 1 trains
6.34B on 242B tokens), and "up to 4 epochs of repeated data is almost as good as unique".

    .venv/bin/python benchmarks/optimal_datablations.py [--chains 4 --warmup 1000 --draws 1000]
                     [--unique-tokens 25e9] [--shared ../shared/data] [--out DIR]
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from atlas_bayes import laws
from atlas_bayes.tables.adapters import load_shared
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.fitting.draws import LawDraws, law_draws
from atlas_bayes.decisions.optimal import allocation, plot_trajectories, trajectories
from atlas_bayes.tables.runs import RunTableWarning

REPO = Path(__file__).resolve().parents[1]
# Muennighoff et al. (2023) C4 fit, as printed in their README (exponents tied).
MUENNIGHOFF = {"E": np.exp(0.6254804), "A": np.exp(6.255414), "B": np.exp(7.3049974),
               "alpha": 0.3526596, "beta": 0.3526596, "R_D_star": 15.387756,
               "R_N_star": 5.309743}
BUDGET = 6 * 8.67e9 * 178e9
PUBLISHED = {"N": 6.8e9, "D": 227e9, "epochs": 9.1}


def budget_for_tokens(p, D):
    """Per draw, the compute whose Chinchilla optimum trains on D tokens."""
    return 6 * laws.chinchilla_params_for_tokens(D, p["A"], p["B"], p["alpha"], p["beta"]) * D


def q(v):
    lo, mid, hi = np.quantile(v, [0.05, 0.5, 0.95])
    return f"{mid:9.3g} ({lo:.3g} to {hi:.3g})"


def report(name: str, draws: LawDraws, U: float) -> None:
    r = allocation(draws, BUDGET, unique_tokens=U)
    p = draws.params
    print(f"\n{name}: optimum at C = {BUDGET:.3g} FLOPs, U = {U:.3g} (median, 90% interval)")
    print(f"  N* parameters        {q(r['N'])}")
    print(f"  D* tokens            {q(r['D'])}")
    print(f"  epochs D*/U          {q(r['D'] / U)}")
    print(f"  Chinchilla N*        {q(r['chinchilla_N'])}   (closed form, ignores repetition)")
    print(f"  Chinchilla D*        {q(r['chinchilla_D'])}")
    print(f"  N*/Chinchilla N*     {q(r['N'] / r['chinchilla_N'])}   "
          f"P(fewer params than Chinchilla) = {np.mean(r['N'] < r['chinchilla_N']):.2f}")
    one = predicted_one_epoch(draws, U)
    print(f"  loss at optimum      {q(r['loss'])}; one epoch on U with N = C/6U: {q(one)}")
    for epochs in (4, 16, 40):
        budget = budget_for_tokens(p, epochs * U)
        limited = allocation(draws, budget, unique_tokens=U)["loss"]
        free = allocation(draws, budget, unique_tokens=np.inf)["loss"]
        print(f"  {epochs:>2} epochs (budget whose Chinchilla optimum is {epochs} x U): optimal loss "
              f"rises {q(100 * (limited / free - 1))} % over unique data")
    if "R_D_star" in p:
        print(f"  R_D* {q(p['R_D_star'])}" + (f"   R_N* {q(p['R_N_star'])}" if "R_N_star" in p else ""))
    if "lambda" in p:
        print(f"  R_D* = 1/lambda {q(1 / p['lambda'])}")


def predicted_one_epoch(draws, U):
    from atlas_bayes.fitting.draws import predicted_loss
    return predicted_loss(draws, np.full(draws.n, BUDGET / (6 * U)), np.full(draws.n, U), U)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    # as tests/test_real_data.py: at 500+500 ATLAS hit divergences on these runs
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--unique-tokens", type=float, default=25e9)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "optimal_datablations")
    args = parser.parse_args()
    U = args.unique_tokens

    print("Published (Muennighoff et al. 2023, huggingface/datablations README):")
    print(f"  at C = {BUDGET:.3g} FLOPs with U = 25B: Chinchilla-style 8.67B params x 178B tokens "
          "(7.1 epochs) -> data-constrained optimum 6.8B params, 227B tokens, 9.1 epochs")
    print("  ('many epochs, fewer params'); up to ~4 epochs of repetition ~ as good as unique data")
    theirs = LawDraws("dcsl", MUENNIGHOFF, law="dcsl (their constants)")
    report("Their fitted DCSL constants, our search", theirs, U)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)
        runs = load_shared("datablations", args.shared)
    sampler = Sampler(chains=args.chains, warmup=args.warmup, draws=args.draws, target_accept=0.95)
    trees = {}
    for law in ("dcsl", "atlas-dt"):
        start = time.perf_counter()
        trees[law] = fit(runs, law, sampler=sampler, warn=False)
        print(f"\nfitted {law} to {len(runs)} runs in {time.perf_counter() - start:.0f} s; "
              f"diagnostics {trees[law].attrs['diagnostics']}")
        report(f"Posterior {law} (our joint fit)", law_draws(trees[law], unique_tokens=U), U)

    args.out.mkdir(parents=True, exist_ok=True)
    budgets = np.geomspace(1e19, 1e23, 13)
    table = trajectories({f"{law}, U = {U:.3g}": (tree, "en") for law, tree in trees.items()}
                         | {"dcsl, unique data": (trees["dcsl"], "en")}, budgets,
                         unique_tokens={f"{law}, U = {U:.3g}": U for law in trees}
                         | {"dcsl, unique data": np.inf})
    plot_trajectories(table, args.out / "trajectories.png",
                      title=f"Datablations (C4): compute-optimal N*, D* with U = {U:.3g}")
    table.to_csv(args.out / "trajectories.csv", index=False)
    print(f"\nwrote {args.out / 'trajectories.png'}, {args.out / 'trajectories.csv'}")


if __name__ == "__main__":
    main()
