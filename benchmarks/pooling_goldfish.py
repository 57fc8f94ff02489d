"""Goldfish (202 FLORES languages, 2 to 4 runs each): per-language exponents from one joint
fit, and how much partial pooling helps languages with few runs on held-out runs.

    .venv/bin/python benchmarks/pooling_goldfish.py [--shared ../shared/data]
        [--chains 4 --warmup 500 --draws 500 --target-accept 0.9 --dense]
        [--nu 4 --centring centred --shared A,alpha] [--keep 1,2,all]
        [--png results/pooling_goldfish.png]

Law `chinchilla-h`: every Goldfish model trains 10 epochs, so D = 10 U in every run; the
repetition term of ATLAS then multiplies D by one constant, which B absorbs (lambda would be
prior-only). Loss is bits per FLORES sentence-half, not per token: a per-language unit that
E, A and B absorb, leaving the exponents unit-free.

Prints, for the joint fit with partial pooling and with none (separate fits), its time and
diagnostics (with the least-converged parameters), the population beta and the 5 smallest
and largest per-language betas; then the held-out table (pooled vs separate, by training
runs per language) for the natural split and for the thinned one of `--keep`, with each
fit's time. The plot goes to results/ (not tracked).

`--shared A,alpha` (default) holds A and alpha common to all languages: with two model sizes,
each at its own data sizes, a language's own A and alpha are not identified. `--shared ""`
gives every language its own. The numbers below were measured with per-language A and alpha
(`--shared ""`), on 2 shared CPU cores (17.7 min in all): partial-pooling joint fit
98 s, 472 leapfrog steps per draw, 23 divergences, max R-hat 1.078 (log_A_ref_sd 1.61):
not converged. Population beta 0.187 (90% 0.181-0.193); held-out mean |log loss error|,
partial vs none: 0.034 vs 0.087 (2 training runs), 0.041 vs 0.045 (3); thinned: 0.061 vs
0.113 (1), 0.043 vs 0.074 (2), 0.045 vs 0.042 (3).
"""

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

from atlas_bayes.tables.adapters import load_shared
from atlas_bayes.fitting.diagnostics import check_convergence
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.decisions.pooling import POOLINGS, per_language_exponents, plot_pooling, pooling_study, population_summary

LAW = "chinchilla-h"


def parse_keep(text: str) -> tuple:
    return tuple(None if k == "all" else int(k) for k in text.split(","))


def worst_parameters(tree, n: int = 6) -> str:
    """The parameters (hyperparameters included) with the highest R-hat."""
    names = json.loads(tree.attrs["parameters"])
    names += [v for v in tree.posterior.data_vars if v.endswith(("_mu", "_sd"))]
    r_hat = check_convergence(tree, names).r_hat
    return ", ".join(f"{k} {v:.3f}" for k, v in sorted(r_hat.items(), key=lambda kv: -kv[1])[:n])


def print_fit(tree, seconds: float):
    diag = json.loads(tree.attrs["diagnostics"])
    steps = float(tree.sample_stats["n_steps"].mean())
    pooling = json.loads(tree.attrs["options"])["pooling"]
    print(f"\njoint fit, pooling={pooling}: {seconds:.0f} s wall ({float(tree.attrs['seconds']):.0f} s sampling), "
          f"mean leapfrog steps per draw {steps:.0f}; divergences {diag['divergences']}, "
          f"max R-hat {diag['max_r_hat']:.3f}, min bulk ESS {diag['min_ess_bulk']:.0f}")
    print(f"  highest R-hat: {worst_parameters(tree)}")


def print_exponents(tree, exponents):
    if "log_beta_mu" in tree.posterior:
        pop = population_summary(tree, "beta")
        print(f"  population beta {pop['median']:.3f} (90% {pop['low']:.3f}-{pop['high']:.3f}), "
              f"spread sd(log beta) {pop['log_sd']:.3f}")
    medians = exponents["beta_median"]
    print(f"  per-language beta medians {medians.min():.3f}-{medians.max():.3f} "
          f"(sd {medians.std():.3f}); median 90% width "
          f"{(exponents['beta_q95'] - exponents['beta_q05']).median():.3f}")
    rows = exponents.sort_values("beta_median")
    for label, part in (("smallest", rows.head(5)), ("largest", rows.tail(5))):
        print(f"  5 {label}: " + "; ".join(
            f"{r.language} {r.beta_median:.3f} ({r.beta_q05:.3f}-{r.beta_q95:.3f}, n={r.n_points})"
            for r in part.itertuples()))


def print_study(study, title: str):
    seconds = study.attrs["seconds"]
    diag = study.attrs["diagnostics"]
    print(f"\n{title}: {study.attrs['n_train']} training runs, {study.attrs['n_test']} held out")
    for pooling in seconds:
        d = diag[pooling]
        print(f"  {pooling:>7} fit {seconds[pooling]:.0f} s; divergences {d['divergences']}, "
              f"max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}")
    print(study.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--target-accept", type=float, default=0.9)
    parser.add_argument("--dense", action="store_true",
                        help="dense mass matrix (Sampler's default; ~10x slower per step here)")
    parser.add_argument("--nu", type=float, default=4.0, help="Student-t degrees of freedom")
    parser.add_argument("--shared", default="A,alpha",
                        help="parameters common to every language, comma separated ('' for none)")
    parser.add_argument("--centring", default="centred",
                        help="centred (fewer leapfrog steps here), auto or noncentred")
    parser.add_argument("--keep", type=parse_keep, default=(1, 2, None),
                        help="thinned split: training-run caps cycled over held-out languages")
    parser.add_argument("--png", type=Path, default=Path("results/pooling_goldfish.png"))
    args = parser.parse_args()
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = load_shared("goldfish", args.shared)
    sampler = Sampler(chains=args.chains, warmup=args.warmup, draws=args.draws,
                      target_accept=args.target_accept, dense_mass=args.dense)
    shared = [name for name in args.shared.split(",") if name]
    settings = {"nu": args.nu, "options": {"centring": args.centring, "shared": shared}}
    print(f"{len(runs)} runs, {runs['language'].nunique()} languages; law {LAW}; {sampler}; "
          f"{settings}\n")

    exponents = {}
    for pooling in POOLINGS:
        start = time.perf_counter()
        tree = fit(runs, LAW, sampler=sampler, warn=False, nu=args.nu,
                   options={**settings["options"], "pooling": pooling})
        print_fit(tree, time.perf_counter() - start)
        exponents[pooling] = per_language_exponents(tree)
        print_exponents(tree, exponents[pooling])

    studies = {}
    for keep in dict.fromkeys([(None,), args.keep]):
        study = pooling_study(runs, sampler=sampler, law=LAW, keep=keep, **settings)
        studies[keep] = study
        print_study(study, f"held out: each language's largest-data run (languages with >= 3 runs); "
                           f"training runs kept per held-out language {keep}")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    plot_pooling(exponents["partial"], studies[args.keep], args.png, separate=exponents["none"])
    print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
