"""Time to a converged joint ATLAS posterior on a paper-scale simulated study, NUTS vs fast paths.

    .venv/bin/python benchmarks/hierarchical_speed.py [--draws 500 --warmup 500 --chains 4]
                     [--scales compact|paper] [--methods nuts,laplace,svi] [--checkpoints 2]
    # NUTS alone: a scaling curve over the first N languages, or one study at several seeds
    .venv/bin/python benchmarks/hierarchical_speed.py --languages 6,12,24,48 --scales paper \
                     --checkpoints 4 --draws 1000 --warmup 1000
    .venv/bin/python benchmarks/hierarchical_speed.py --eval-languages en,fr,sw,hi \
                     --study-seed 3 --seeds 0,1,2,3,4 --draws 300 --warmup 300

The study is `paper_design()` (48 evaluation languages; monolingual, bilingual, capacity,
Unimax and finetune runs with learning-curve checkpoints) filled by `paper_study()` from
per-language truths. NUTS runs 4 chains, spread over one CPU device per core as in the CLI
(`jax_setup.use_cpu_cores`); "converged" means every R-hat <= 1.01,
every bulk ESS >= 400 and no divergences over the reported parameters. The fast paths
(Laplace, SVI) are timed on the same data, and their distance from NUTS is printed per
parameter family: |mean difference| in NUTS posterior sds, the ratio of their sds, and the
90% interval coverage of the truth for each method.

At the CLI's defaults, paper scales, 4 checkpoints (RESULTS "Issue 18: joint fits at paper
scale"): 48 languages, 11,424 rows, 544.9 s, converged, 31 leapfrog steps per draw; 24
languages 178.7 s. Earlier (before the joint models' blocks and rotated transfer weights),
on 2 CPU cores (defaults, compact scales: 401 runs, 3,160 rows): NUTS 258 s,
converged (max R-hat 1.009, min bulk ESS 875, no divergences, 255 leapfrog steps per draw);
Laplace 21 s; SVI 40 s. `--scales paper --methods nuts` (668 runs, 5,712 rows): 446 s,
converged (max R-hat 1.009, min bulk ESS 769, no divergences, 264 steps per draw). The
README's "One joint fit" section has the distance table.
"""

import argparse
import json
import time
import warnings

import numpy as np

from atlas_bayes.fitting import jax_setup
from atlas_bayes.fitting.inference import Approximation, Sampler, fit
from atlas_bayes.simulation.paper_design import paper_design, paper_study, summarise_design

FAMILIES = ("E", "A", "B", "alpha", "beta", "tau_other")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--law", default="atlas-h")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--scales", default="compact", choices=("compact", "paper"))
    parser.add_argument("--methods", default="nuts,laplace,svi")
    parser.add_argument("--checkpoints", type=int, default=2,
                        help="learning-curve checkpoints per run (evenly spaced fractions)")
    parser.add_argument("--languages", default="",
                        help="comma-separated counts: a NUTS scaling curve over the first N "
                             "evaluation languages (en first) instead of the method comparison")
    parser.add_argument("--eval-languages", default="",
                        help="comma-separated codes: NUTS on that study at each of --seeds")
    parser.add_argument("--seeds", default="0", help="sampler seeds, comma separated")
    parser.add_argument("--study-seed", type=int, default=0, help="the simulated study's seed")
    parser.add_argument("--target-accept", type=float, help="default: the law's")
    parser.add_argument("--options", default="{}",
                        help='model options as JSON, e.g. \'{"language_blocks": 0}\' (no mass '
                             'blocks) or \'{"transfer_axes": null}\' (transfer weights unrotated)')
    parser.add_argument("--dense-mass", default="auto", choices=("auto", "true", "false"),
                        help="mass matrix: dense up to DENSE_MAX latent dimensions (auto), or always/never")
    args = parser.parse_args()
    print(f"{jax_setup.use_cpu_cores() or 1} CPU devices (one per core, as the CLI)", flush=True)
    checkpoints = tuple(np.arange(1, args.checkpoints + 1) / args.checkpoints)
    if args.languages or args.eval_languages:
        studies = ([_first_languages(int(c)) for c in args.languages.split(",")] if args.languages
                   else [args.eval_languages.split(",")])
        for languages in studies:
            for seed in (int(s) for s in args.seeds.split(",")):
                dense = {"auto": "auto", "true": True, "false": False}[args.dense_mass]
                sampler = Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup,
                                  seed=seed, target_accept=args.target_accept, dense_mass=dense)
                nuts_point(languages, args, checkpoints, sampler)
        return

    runs, truth = paper_study(seed=args.study_seed, scales=args.scales, checkpoints=checkpoints)
    print(f"study: {len(runs)} rows, {runs['run_id'].nunique()} runs, "
          f"{runs['language'].nunique()} evaluated languages")
    print(summarise_design(runs).to_string())
    fits = {}
    samplers = {"nuts": Sampler(chains=args.chains, draws=args.draws, warmup=args.warmup),
                "laplace": Approximation("laplace"), "svi": Approximation("svi")}
    for name in args.methods.split(","):
        sampler = samplers[name]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fits[name] = fit(runs, args.law, sampler=sampler)
            except ValueError as error:   # Laplace refuses a non-positive-definite Hessian
                print(f"{name}: failed after {time.perf_counter() - start:.1f} s: {error}")
                continue
        print(f"{name}: {time.perf_counter() - start:.1f} s wall "
              f"(sampling {fits[name].attrs['seconds']:.1f} s)  diagnostics "
              f"{fits[name].attrs['diagnostics']}", flush=True)
        if name == "nuts":
            steps = fits[name].sample_stats["n_steps"]
            print(f"  mean leapfrog steps per draw {float(steps.mean()):.0f}")
    print()
    print(distance_table(fits, truth))


def _first_languages(count: int) -> list[str]:
    """The study's first `count` evaluation languages, English first."""
    languages = list(paper_design()["language"].unique())
    return ["en"] + [lang for lang in languages if lang != "en"][:count - 1]


def nuts_point(languages, args, checkpoints, sampler) -> None:
    """One NUTS fit of the simulated study on `languages`: its size, time and geometry."""
    runs, _ = paper_study(seed=args.study_seed, scales=args.scales, checkpoints=checkpoints,
                          eval_languages=languages)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = fit(runs, args.law, sampler=sampler, options=json.loads(args.options))
    diag = json.loads(tree.attrs["diagnostics"])
    print(f"{len(languages):3d} languages  {runs['run_id'].nunique():4d} runs  {len(runs):6d} rows  "
          f"seed {sampler.seed}  {time.perf_counter() - start:7.1f} s wall (sampling "
          f"{tree.attrs['seconds']:.1f} s, compiling {diag['compile_seconds']:.1f} s)  "
          f"{float(tree.sample_stats['n_steps'].mean()):6.1f} steps/draw  "
          f"R-hat {diag['max_r_hat']:.3f}  bulk ESS {diag['min_ess_bulk']:.0f}  "
          f"divergences {diag['divergences']}"
          + (f"  restarted chains {diag['restarted_chains']}" if diag.get("restarted_chains") else ""),
          flush=True)


def distance_table(fits, truth) -> str:
    """Per parameter family: each method's distance from NUTS and its coverage of the truth."""
    nuts = fits["nuts"].posterior
    languages = [str(v) for v in nuts["language"].values]
    lines = [f"{'param':10s} {'method':8s} {'|dmean|/sd':>10s} {'sd ratio':>9s} {'cover90':>8s}"]
    for family in FAMILIES:
        if family not in nuts:
            continue
        true = np.array([truth[family][lang] for lang in languages])
        ref_mean, ref_sd = _moments(nuts[family])
        for method, tree in fits.items():
            mean, sd = _moments(tree.posterior[family])
            lo, hi = (tree.posterior[family].quantile(q, ("chain", "draw")).values for q in (0.05, 0.95))
            lines.append(f"{family:10s} {method:8s} {np.median(np.abs(mean - ref_mean) / ref_sd):10.2f} "
                         f"{np.median(sd / ref_sd):9.2f} {np.mean((lo <= true) & (true <= hi)):8.2f}")
    return "\n".join(lines)


def _moments(values):
    return values.mean(("chain", "draw")).values, values.std(("chain", "draw")).values


if __name__ == "__main__":
    main()
