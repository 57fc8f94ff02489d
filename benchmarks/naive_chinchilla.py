"""A first-attempt NumPyro fit of the Chinchilla law, as a user would write it without atlas_bayes.

The baseline of benchmarks/fit_speed.py, run as its own process. Same posterior as
`atlas-bayes fit --law chinchilla` (the same priors, Student-t likelihood on log loss), written
the direct way: E, A, B, alpha, beta sampled on raw log N and log D (no centring), NumPyro's
default NUTS (diagonal mass matrix, target acceptance 0.8), chains vectorised.

    python benchmarks/naive_chinchilla.py RUNS.csv [--warmup 1000] [--draws 1000] [--seed 0]
                                          [--save DRAWS.npz]

Prints NumPyro's summary and one JSON line (divergences, leapfrog steps); `--save` keeps the
draws (chain, draw) so the benchmark judges convergence with the same ArviZ diagnostics as
atlas_bayes'.
"""

import argparse
import json

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from jax import random
from numpyro.infer import MCMC, NUTS


def model(log_N, log_D, log_loss=None):
    loss_min, loss_median = jnp.exp(log_loss.min()), jnp.exp(jnp.median(log_loss))
    alpha = numpyro.sample("alpha", dist.LogNormal(jnp.log(0.35), 0.5))
    beta = numpyro.sample("beta", dist.LogNormal(jnp.log(0.35), 0.5))
    log_E = numpyro.sample("log_E", dist.Normal(jnp.log(0.5 * loss_min), 1.0))
    term = jnp.log(0.25 * loss_median)     # each term a quarter of the loss at the data's scale
    log_A = numpyro.sample("log_A", dist.Normal(term + 0.35 * log_N.mean(),
                                                1.5 + 0.5 * log_N.mean()))
    log_B = numpyro.sample("log_B", dist.Normal(term + 0.35 * log_D.mean(),
                                                1.5 + 0.5 * log_D.mean()))
    loss = jnp.exp(log_E) + jnp.exp(log_A - alpha * log_N) + jnp.exp(log_B - beta * log_D)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.1))
    with numpyro.plate("obs", log_N.shape[0]):
        numpyro.sample("log_loss", dist.StudentT(4.0, jnp.log(loss), sigma), obs=log_loss)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save")
    args = parser.parse_args()
    runs = pd.read_csv(args.runs)
    data = {name: jnp.log(runs[column].to_numpy(np.float32))
            for name, column in (("log_N", "n_params"), ("log_D", "n_tokens"), ("log_loss", "loss"))}
    mcmc = MCMC(NUTS(model), num_warmup=args.warmup, num_samples=args.draws, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(random.PRNGKey(args.seed), **data, extra_fields=("diverging", "num_steps"))
    mcmc.print_summary()
    extra = mcmc.get_extra_fields()
    print(json.dumps({"divergences": int(extra["diverging"].sum()),
                      "leapfrog_steps": int(extra["num_steps"].sum())}))
    if args.save:
        np.savez(args.save, **{k: np.asarray(v) for k, v in
                               mcmc.get_samples(group_by_chain=True).items()})


if __name__ == "__main__":
    main()
