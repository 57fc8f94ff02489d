"""Chains on both CPU cores: NumPyro's `chain_method="parallel"` over two host devices against
chains in turn in one program, on the joint fit of the paper-shaped study (first N languages).

    .venv/bin/python benchmarks/parallel_chains.py [--languages 24] [--methods sequential,parallel]

Each method fits twice (the second reuses the first's compiled program); 2 chains x (500 + 500).
The host device count must be set before JAX starts, so this script sets XLA_FLAGS itself.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=2").strip()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from atlas_bayes.fitting.inference import Sampler, fit  # noqa: E402
from atlas_bayes.simulation.paper_design import paper_study  # noqa: E402
from hierarchical_speed import _first_languages  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--languages", type=int, default=24)
    parser.add_argument("--methods", default="sequential,parallel")
    args = parser.parse_args()
    runs, _ = paper_study(seed=0, scales="paper", checkpoints=(0.25, 0.5, 0.75, 1.0),
                          eval_languages=_first_languages(args.languages))
    print(f"{args.languages} languages, {len(runs)} rows, load {os.getloadavg()[0]:.2f}")
    for method in args.methods.split(","):
        for repeat in range(2):
            sampler = Sampler(chains=2, warmup=500, draws=500, chain_method=method)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = fit(runs, "atlas-h", sampler=sampler, warn=False)
            diag = json.loads(tree.attrs["diagnostics"])
            print(f"{method:10s} fit {repeat + 1}  {time.perf_counter() - start:6.1f} s  compiling "
                  f"{diag['compile_seconds']:5.1f} s  {float(tree.sample_stats['n_steps'].mean()):5.1f} "
                  f"steps/draw  R-hat {diag['max_r_hat']:.3f}", flush=True)


if __name__ == "__main__":
    main()
