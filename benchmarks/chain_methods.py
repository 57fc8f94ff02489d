"""Chains one after another in one compiled program ("sequential") against chains in lockstep
("vectorized", jax.vmap), on this machine's default device.

For each study, each method fits twice in this process with the persistent compilation cache
off: the first fit pays the compilation, the second (another seed) reuses the program, so its
time is the sampling. Prints seconds, compile seconds, leapfrog steps per draw and the ratios
vectorized / sequential.

    ATLAS_BAYES_JAX_CACHE=0 .venv/bin/python benchmarks/chain_methods.py [--shared ../shared/data]
"""

import argparse
import json
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import jax

from atlas_bayes.fitting import compiled
from atlas_bayes.fitting.inference import Sampler, fit
from atlas_bayes.simulation.paper_design import paper_study
from atlas_bayes.tables.adapters import epoch_chinchilla, load_shared

METHODS = ("sequential", "vectorized")


def studies(shared: Path):
    """(name, runs, law, sampler): the CLI's defaults on real and simulated studies."""
    epoch = epoch_chinchilla(shared / "epoch_chinchilla", drop_epoch_outliers=True)
    repeated = load_shared("datablations", shared)
    joint, _ = paper_study(eval_languages=["en", "fr", "sw", "hi"], seed=0)
    return [("chinchilla, Epoch's 240 points", epoch, "chinchilla", Sampler()),
            ("dcsl, Muennighoff et al.'s repeated-data runs", repeated, "dcsl",
             Sampler(target_accept=0.95)),
            ("atlas-h, 4 simulated languages", joint, "atlas-h", Sampler(warmup=500, draws=500))]


def timed_fit(runs, law, sampler):
    start = time.perf_counter()
    tree = fit(runs, law, sampler=sampler, warn=False)
    diag = json.loads(tree.attrs["diagnostics"])
    steps = float(tree.sample_stats["n_steps"].mean())
    return {"seconds": time.perf_counter() - start, "steps": steps, **diag}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args()
    print(f"device {jax.default_backend()}, load {os.getloadavg()[0]:.2f}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, runs, law, sampler in studies(args.shared):
            print(f"\n{name} ({len(runs)} rows), {sampler.chains} chains x "
                  f"{sampler.warmup} + {sampler.draws}")
            result = {}
            for method in METHODS:
                compiled.clear()
                jax.clear_caches()
                first = timed_fit(runs, law, replace(sampler, chain_method=method))
                second = timed_fit(runs, law, replace(sampler, chain_method=method, seed=1))
                result[method] = (first, second)
                print(f"  {method:<10} first fit {first['seconds']:6.1f} s (compiling "
                      f"{first['compile_seconds']:5.1f} s), refit {second['seconds']:5.1f} s, "
                      f"{second['steps']:.0f} steps per draw, R-hat {second['max_r_hat']:.3f}, "
                      f"divergences {first['divergences']} / {second['divergences']}", flush=True)
            (v1, v2), (s1, s2) = result["vectorized"], result["sequential"]
            print(f"  vectorized / sequential: first fit {v1['seconds'] / s1['seconds']:.2f}x, "
                  f"compiling {v1['compile_seconds'] / s1['compile_seconds']:.2f}x, "
                  f"refit {v2['seconds'] / s2['seconds']:.2f}x")
    print(f"\nload {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
