"""Chains on both CPU cores: the "parallel" chain method (chains spread over one JAX CPU device
per core, each device running its share in turn: `compiled.chain_devices`) against all chains in
turn on one device, on the joint fit of the paper-shaped study (first N languages).

    .venv/bin/python benchmarks/parallel_chains.py [--languages 12] [--chains 4]
                                                   [--methods sequential,parallel] [--repeats 2]

Each method fits `--repeats` times (later fits reuse the compiled program), chains x (500 + 500).
The process gets one CPU device per core the way the CLI does (`jax_setup.use_cpu_cores`).
"""

import argparse
import json
import os
import time
import warnings

from atlas_bayes.fitting import jax_setup
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.simulation.paper_design import paper_study
from hierarchical_speed import _first_languages


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--languages", type=int, default=12)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--methods", default="sequential,parallel")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    devices = jax_setup.use_cpu_cores()
    runs, _ = paper_study(seed=0, scales="paper", checkpoints=(0.25, 0.5, 0.75, 1.0),
                          eval_languages=_first_languages(args.languages))
    print(f"{args.languages} languages, {len(runs)} rows, {devices} CPU devices, "
          f"load {os.getloadavg()[0]:.2f}")
    for method in args.methods.split(","):
        for repeat in range(args.repeats):
            sampler = Sampler(chains=args.chains, warmup=500, draws=500, chain_method=method)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = fit(runs, "atlas-h", sampler=sampler, warn=False)
            diag = json.loads(tree.attrs["diagnostics"])
            print(f"{method:10s} fit {repeat + 1}  {time.perf_counter() - start:6.1f} s  compiling "
                  f"{diag['compile_seconds']:5.1f} s  {float(tree.sample_stats['n_steps'].mean()):5.1f} "
                  f"steps/draw  R-hat {diag['max_r_hat']:.3f}", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
