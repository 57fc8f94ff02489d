"""Fast approximate posteriors: SVI with a normal or a normalising-flow guide, and Laplace.

`Approximation` names the method and its settings; `approximate` returns latent draws in
the layout NUTS gives (a leading chain axis of 1) and the final ELBO. `CHECKED` says, per
method, how its 90% intervals covered the truth on simulated studies, beside NUTS's
(`benchmarks/approx_coverage.py`, benchmarks/RESULTS.md "Issue 18: approximate
posteriors"); every approximate fit records it (`statement`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from numpyro import optim
from numpyro.infer import SVI, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import (AutoIAFNormal, AutoLaplaceApproximation,
                                     AutoLowRankMultivariateNormal, AutoMultivariateNormal)

from atlas_bayes.fitting import compiled
from atlas_bayes.fitting.jax_setup import release_compiled_if_crowded

METHODS = ("svi", "flow", "laplace")
STEPS = {"svi": 30000, "flow": 10000, "laplace": 30000}   # optimiser steps unless given

CHECKED = {   # benchmarks/RESULTS.md "Issue 18: approximate posteriors" (2026-12-05)
    "svi": "its 90% intervals held 0.88 of NUTS's posterior on simulated single-language studies "
           "and 0.85 on joint ones (exact: 0.90), and covered the truth at 0.82 and 0.85 (NUTS "
           "0.85 and 0.90)",
    "flow": "its 90% intervals held 0.95 of NUTS's posterior on simulated single-language studies "
            "(wider than the posterior; exact: 0.90) and covered the truth at 0.95 (NUTS 0.85); "
            "its optimisation diverged on 2 of 13 studies and on joint laws",
    "laplace": "its 90% intervals held 0.86 of NUTS's posterior on simulated single-language "
               "studies and 0.87 on joint ones (exact: 0.90), and covered the truth at 0.78 and "
               "0.90 (NUTS 0.85 and 0.90)",
}


@dataclass(frozen=True)
class Approximation:
    """A fast approximate posterior for interactive use (one "chain", no R-hat).

    `method="svi"`: a multivariate normal in the models' unconstrained space fitted by
    stochastic variational inference (full covariance up to `full_rank_max` latent
    dimensions, else rank `rank` plus a diagonal); the step size decays 100-fold over the
    run so the last iterate settles. `method="flow"`: the same SVI with an inverse
    autoregressive flow over a normal (`flows` layers of `hidden` units, or of the latent
    size if larger), which can bend with a curved posterior. `method="laplace"`: a normal at
    the posterior mode with the inverse Hessian as covariance. `steps`: optimiser steps
    (None: `STEPS`). How each compares with NUTS: `CHECKED`.
    """
    method: str = "svi"
    steps: int | None = None
    learning_rate: float = 0.01
    init_scale: float = 0.01
    draws: int = 1000
    rank: int = 32
    full_rank_max: int = 600
    seed: int = 0
    flows: int = 2
    hidden: int = 32


def approximate(model, inputs, log_loss, approx: Approximation, key, progress: bool = False):
    """Latent draws (1 chain, draw, ...) and the final ELBO from `approx`."""
    if approx.method not in METHODS:
        raise ValueError(f"unknown approximation {approx.method!r}: choose one of {', '.join(METHODS)}")
    release_compiled_if_crowded()
    init = init_to_median()
    if approx.method == "laplace":
        guide = AutoLaplaceApproximation(model, init_loc_fn=init)
    elif approx.method == "flow":
        hidden = max(approx.hidden, latent_size(model, inputs))   # IAF needs >= the latent size
        guide = AutoIAFNormal(model, num_flows=approx.flows, hidden_dims=[hidden] * 2,
                              init_loc_fn=init, skip_connections=True)
    elif latent_size(model, inputs) <= approx.full_rank_max:
        # a small initial scale matters: at NumPyro's default (0.1) the joint 48-language fit
        # ended 3-5 posterior sds from NUTS after 10,000 steps (benchmarks/hierarchical_speed.py)
        guide = AutoMultivariateNormal(model, init_loc_fn=init, init_scale=approx.init_scale)
    else:
        guide = AutoLowRankMultivariateNormal(model, rank=approx.rank, init_loc_fn=init,
                                              init_scale=approx.init_scale)
    steps = approx.steps or STEPS[approx.method]
    decay = 0.01 ** (1.0 / steps)
    schedule = lambda step: approx.learning_rate * decay ** step  # noqa: E731
    svi = SVI(model, guide, optim.ClippedAdam(schedule), Trace_ELBO())
    key_fit, key_draw = jax.random.split(key)
    result = svi.run(key_fit, steps, inputs, log_loss, progress_bar=progress)
    if approx.method == "laplace":
        scale = np.diag(np.asarray(guide.get_transform(result.params).scale_tril))
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError("the Laplace approximation failed: the Hessian at the posterior mode "
                             "is not positive definite (common for hierarchical models, whose "
                             "spreads make the mode a poor summary); use method='svi' or NUTS")
    draws = guide.sample_posterior(key_draw, result.params, sample_shape=(approx.draws,))
    if not all(np.all(np.isfinite(v)) for v in draws.values()):
        raise ValueError(f"the {approx.method} approximation failed: its optimisation diverged "
                         "(non-finite draws); use method='svi' or NUTS")
    losses = np.asarray(result.losses)
    tail = losses[-max(len(losses) // 10, 1):]
    stats = {"elbo_final": float(-np.mean(tail)), "elbo_tail_sd": float(np.std(tail))}
    latent = latent_sites(model, inputs)
    return {k: v[None] for k, v in draws.items() if k in latent}, stats


def statement(approx: Approximation) -> str:
    """One line for the fit's record and summary: the posterior is approximate, and how its
    method was checked."""
    return (f"APPROXIMATE posterior ({approx.method}, not NUTS); checked: {CHECKED[approx.method]} "
            "(benchmarks/approx_coverage.py)")


def latent_size(model, inputs) -> int:
    """Number of unconstrained latent dimensions."""
    return sum(site.size for name, site in compiled.sites(model, inputs).items()
               if site.kind == "sample" and not site.observed and name != "log_loss")


def latent_sites(model, inputs) -> set[str]:
    """Names of the model's unobserved sample sites (what a posterior must supply)."""
    return {name for name, site in compiled.sites(model, inputs).items()
            if site.kind == "sample" and not site.observed and name != "log_loss"}
