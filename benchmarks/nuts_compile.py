"""Where a cold Chinchilla fit's compile time goes: XLA seconds of NUTS programs by variant.

    .venv/bin/python benchmarks/nuts_compile.py [--runs RUNS.csv] [--variants default,diag,...]

Epoch's 240 Chinchilla points (or RUNS), the CLI's model at its padded size, one chain of
1000 + 1000 in one jitted program, compiled with the persistent cache off. Variants: NumPyro's
NUTS as the fit builds it (`default`: dense mass, `init_to_median`), with a diagonal mass
matrix, without mass adaptation, `init_to_uniform`, no warmup, tree depth 5, static HMC (8
steps: no trees at all), and BlackJAX's NUTS with window adaptation on the same potential
(`blackjax`, where installed); then the model's own potential and its gradient alone. A
variant that barely moves the NUTS figure is not where the time goes.
"""

import argparse
import os
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("ATLAS_BAYES_JAX_CACHE", "0")     # compile, never load

import jax  # noqa: E402
from numpyro.infer import HMC, MCMC, NUTS, init_to_median, init_to_uniform  # noqa: E402
from numpyro.infer.util import initialize_model  # noqa: E402

from atlas_bayes.fitting import compiled  # noqa: E402
from atlas_bayes.fitting.law_inputs import build_inputs  # noqa: E402
from atlas_bayes.models import get_law  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"default": {}, "diag": {"dense": False}, "no_mass_adaptation": {"adapt_mass": False},
            "init_uniform": {"init": init_to_uniform}, "no_warmup": {"warmup": 0},
            "depth5": {"max_tree_depth": 5}, "static_hmc": {"kernel": "hmc"}, "blackjax": None}


def numpyro_program(model, static, dense=True, init=init_to_median, warmup=1000,
                    max_tree_depth=10, adapt_mass=True, kernel="nuts"):
    def run(key, traced, log_loss):
        chosen = (partial(NUTS, max_tree_depth=max_tree_depth) if kernel == "nuts"
                  else partial(HMC, num_steps=8))
        mcmc = MCMC(chosen(model, dense_mass=dense, init_strategy=init(), target_accept_prob=0.9,
                           adapt_mass_matrix=adapt_mass),
                    num_warmup=warmup, num_samples=1000, num_chains=1, progress_bar=False)
        mcmc.run(key, compiled._join(static, traced), log_loss)
        return mcmc.get_samples()
    return run


def blackjax_program(potential):
    import blackjax

    def run(key, position):
        logdensity = lambda z: -potential(z)  # noqa: E731
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, is_mass_matrix_diagonal=False,
                                            target_acceptance_rate=0.9)
        key_warmup, key_draws = jax.random.split(key)
        (state, params), _ = warmup.run(key_warmup, position, num_steps=1000)
        kernel = blackjax.nuts(logdensity, **params)

        def step(state, k):
            state, _ = kernel.step(k, state)
            return state, state.position
        return jax.lax.scan(step, state, jax.random.split(key_draws, 1000))[1]
    return run


def timed(name: str, function, *args) -> None:
    start = time.perf_counter()
    lowered = jax.jit(function).lower(*args)
    lowered_at = time.perf_counter()
    lowered.compile()
    print(f"{name:20s} lower {lowered_at - start:5.2f} s   XLA compile "
          f"{time.perf_counter() - lowered_at:5.2f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    if args.runs:
        from atlas_bayes.tables.runs import read_runs
        runs = read_runs(args.runs)
    else:
        from atlas_bayes.tables.adapters import epoch_chinchilla
        runs = epoch_chinchilla(args.shared / "epoch_chinchilla", drop_epoch_outliers=True)
    inputs, _, log_loss = build_inputs(runs)
    model = get_law("chinchilla").bind(nu=4.0)
    _, traced, observed, static = compiled._prepare(inputs, log_loss)
    key = jax.random.PRNGKey(0)
    start = initialize_model(key, model, model_args=(compiled._join(static, traced), observed))
    print(f"{len(runs)} runs, jax {jax.__version__}, load {os.getloadavg()[0]:.2f}")
    for name in args.variants.split(","):
        if name == "blackjax":
            try:
                program = blackjax_program(start.potential_fn)
            except ImportError:
                print("blackjax             not installed")
                continue
            timed(name, program, key, start.param_info.z)
        else:
            timed(name, numpyro_program(model, static, **VARIANTS[name]), key, traced, observed)
    timed("model potential", start.potential_fn, start.param_info.z)
    timed("potential + grad", jax.value_and_grad(start.potential_fn), start.param_info.z)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
