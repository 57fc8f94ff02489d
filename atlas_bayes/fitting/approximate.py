"""Fast approximate posteriors: SVI, Laplace, and SVI corrected by importance resampling.

`Approximation` names the method and its settings; `approximate` returns latent draws in
the layout NUTS gives (a leading chain axis of 1) and a few statistics. `CHECKED` says, per
method, how well its 90% intervals covered the truth on simulated studies
(`benchmarks/approx_coverage.py`); fits record it (`statement`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from arviz_stats.base.array import array_stats
from numpyro import distributions as dist
from numpyro import optim
from numpyro.infer import SVI, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import (AutoIAFNormal, AutoLaplaceApproximation, AutoLowRankMultivariateNormal,
                                     AutoMultivariateNormal)
from numpyro.infer.util import initialize_model

from atlas_bayes.fitting import compiled
from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.fitting.jax_setup import release_compiled_if_crowded

METHODS = ("svi-is", "laplace-is", "flow-is", "flow", "svi", "laplace")
PARETO_K_MAX = 0.7    # above it importance weights are unreliable (Vehtari et al. 2024, PSIS)

# how each method's 90% intervals covered the truth (benchmarks/RESULTS.md, "Issue 18:
# approximate posteriors"; filled from benchmarks/approx_coverage.py's output)
CHECKED = {
    "svi-is": "checked: 90% intervals covered the truth at 0.00 (NUTS 0.00) on simulated studies",
    "svi": "checked: 90% intervals covered the truth at 0.00 (NUTS 0.00) on simulated studies",
    "laplace": "checked: 90% intervals covered the truth at 0.00 (NUTS 0.00) on simulated studies",
    "laplace-is": "checked: 90% intervals covered the truth at 0.00 (NUTS 0.00) on simulated studies",
    "flow-is": "x",
    "flow": "x",
}


@dataclass(frozen=True)
class Approximation:
    """A fast approximate posterior for interactive use (one "chain", no R-hat).

    `method="svi-is"`: the SVI normal below used as a proposal for `proposals` draws, each
    weighed by the exact posterior density over its own (Pareto-smoothed importance
    sampling), and `draws` of them resampled by weight; the Pareto k of the weights says
    whether this worked (a warning above 0.7). `method="svi"`: a multivariate normal in the
    models' unconstrained space fitted by stochastic variational inference (full covariance
    up to `full_rank_max` latent dimensions, else rank `rank` plus a diagonal); the step size
    decays 100-fold over the run so the last iterate settles. `method="laplace"`: a normal at
    the posterior mode with the inverse Hessian as covariance. SVI alone understates the
    posterior's spread and Laplace can overstate it (`CHECKED`).
    """
    method: str = "svi-is"
    steps: int = 30000
    learning_rate: float = 0.01
    init_scale: float = 0.01
    draws: int = 1000
    rank: int = 32
    full_rank_max: int = 600
    seed: int = 0
    proposals: int = 4000     # svi-is: draws from the proposal before resampling
    widen: float = 1.0        # svi-is: the proposal's scale over SVI's
    df: float = 0.0           # svi-is: Student-t proposal with these degrees of freedom (0: normal)
    flows: int = 2
    hidden: int = 32
    particles: int = 1


def approximate(model, inputs, log_loss, approx: Approximation, key, progress: bool = False):
    """Latent draws (1 chain, draw, ...) and statistics from `approx` (see `Approximation`)."""
    if approx.method not in METHODS:
        raise ValueError(f"unknown approximation {approx.method!r}: choose one of {', '.join(METHODS)}")
    release_compiled_if_crowded()
    latent = latent_sites(model, inputs)
    guide, params, stats = _fit_guide(model, inputs, log_loss, approx, key, progress)
    key_draw = jax.random.fold_in(key, 1)
    if approx.method.endswith("-is"):
        draws, weights = _importance_resample(model, inputs, log_loss, guide.get_posterior(params),
                                              approx, key_draw)
        stats.update(weights)
        if weights["pareto_k"] > PARETO_K_MAX:
            warnings.warn(
                f"the approximate posterior is unreliable: the importance weights' Pareto k is "
                f"{weights['pareto_k']:.2f} (> {PARETO_K_MAX}; {weights['ess']:.0f} effective "
                f"draws of {approx.proposals}), so the SVI normal misses part of the posterior; "
                "use NUTS (drop --approx)", ConvergenceWarning, stacklevel=4)
    else:
        draws = guide.sample_posterior(key_draw, params, sample_shape=(approx.draws,))
    return {k: np.asarray(v)[None] for k, v in draws.items() if k in latent}, stats


def statement(approx: Approximation, stats: dict) -> str:
    """One line for the fit's record and summary: the posterior is approximate, and how the
    method was checked (plus this fit's own Pareto k where it has one)."""
    line = f"APPROXIMATE posterior ({approx.method}); {CHECKED[approx.method]}"
    if "pareto_k" in stats:
        line += (f"; this fit's importance weights: Pareto k {stats['pareto_k']:.2f} "
                 f"({'reliable' if stats['pareto_k'] <= PARETO_K_MAX else 'UNRELIABLE'} "
                 f"at <= {PARETO_K_MAX}), {stats['ess']:.0f} effective draws")
    return line


def _fit_guide(model, inputs, log_loss, approx: Approximation, key, progress: bool):
    """The fitted SVI (or Laplace) guide, its parameters and the ELBO at the end."""
    init = init_to_median()
    if approx.method.startswith("laplace"):
        guide = AutoLaplaceApproximation(model, init_loc_fn=init)
    elif approx.method.startswith("flow"):
        guide = AutoIAFNormal(model, num_flows=approx.flows, hidden_dims=[approx.hidden] * 2,
                              init_loc_fn=init, skip_connections=True)
    elif latent_size(model, inputs) <= approx.full_rank_max:
        # a small initial scale matters: at NumPyro's default (0.1) the joint 48-language fit
        # ended 3-5 posterior sds from NUTS after 10,000 steps (benchmarks/hierarchical_speed.py)
        guide = AutoMultivariateNormal(model, init_loc_fn=init, init_scale=approx.init_scale)
    else:
        guide = AutoLowRankMultivariateNormal(model, rank=approx.rank, init_loc_fn=init,
                                              init_scale=approx.init_scale)
    decay = 0.01 ** (1.0 / approx.steps)
    schedule = lambda step: approx.learning_rate * decay ** step  # noqa: E731
    svi = SVI(model, guide, optim.ClippedAdam(schedule), Trace_ELBO(approx.particles))
    result = svi.run(key, approx.steps, inputs, log_loss, progress_bar=progress)
    if approx.method.startswith("laplace"):
        scale = np.diag(np.asarray(guide.get_transform(result.params).scale_tril))
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError("the Laplace approximation failed: the Hessian at the posterior mode "
                             "is not positive definite (common for hierarchical models, whose "
                             "spreads make the mode a poor summary); use method='svi-is' or NUTS")
    losses = np.asarray(result.losses)
    tail = losses[-max(len(losses) // 10, 1):]
    return guide, result.params, {"elbo_final": float(-np.mean(tail)),
                                  "elbo_tail_sd": float(np.std(tail))}


def _importance_resample(model, inputs, log_loss, normal, approx: Approximation, key):
    """`approx.draws` constrained latent draws resampled from `approx.proposals` draws of the
    (widened) `normal`, weighed by posterior over proposal density; and the weights' Pareto k
    and effective sample size."""
    init, potential, constrain, _ = initialize_model(
        jax.random.PRNGKey(0), model, init_strategy=init_to_median(),
        model_args=(inputs, log_loss))
    unravel = Unraveller(init.z)
    if isinstance(normal, dist.MultivariateNormal):
        scale_tril = normal.scale_tril * approx.widen
        proposal = (dist.MultivariateStudentT(approx.df, normal.loc, scale_tril) if approx.df > 0
                    else dist.MultivariateNormal(normal.loc, scale_tril=scale_tril))
    else:
        proposal = normal

    @jax.jit
    def weigh(key):
        if isinstance(proposal, dist.TransformedDistribution):   # a flow: log q from its path
            z, steps = proposal.sample_with_intermediates(key, (approx.proposals,))
            log_q = proposal.log_prob(z, steps)
        else:
            z = proposal.sample(key, (approx.proposals,))
            log_q = proposal.log_prob(z)
        log_p = -jax.vmap(lambda x: potential(unravel(x)))(z)
        return z, log_p - log_q

    key_z, key_pick = jax.random.split(key)
    z, log_ratio = weigh(key_z)
    log_ratio = np.asarray(log_ratio, float)
    finite = np.isfinite(log_ratio)       # a draw outside the support weighs (almost) nothing
    log_ratio = np.where(finite, log_ratio, np.min(log_ratio[finite], initial=0.0) - 1e3)
    smoothed, k = array_stats.psislw(log_ratio - np.max(log_ratio))
    weights = np.exp(smoothed - np.max(smoothed))
    weights /= weights.sum()
    pick = jax.random.choice(key_pick, approx.proposals, (approx.draws,), p=jnp.asarray(weights))
    chosen = jax.vmap(lambda x: constrain(unravel(x)))(z[pick])
    return chosen, {"pareto_k": float(k), "ess": float(1.0 / np.sum(weights ** 2))}


class Unraveller:
    """Flat vector -> {site: value} in the order of `prototype` (the model's trace order, as
    NumPyro's continuous guides lay out their latent vector; `jax.flatten_util` sorts names)."""

    def __init__(self, prototype: dict):
        self.shapes = {name: jnp.shape(value) for name, value in prototype.items()}
        self.size = sum(int(np.prod(shape)) for shape in self.shapes.values())

    def __call__(self, flat):
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[name] = jnp.reshape(flat[start:start + size], shape)
            start += size
        return out


def latent_size(model, inputs) -> int:
    """Number of unconstrained latent dimensions."""
    return sum(site.size for name, site in compiled.sites(model, inputs).items()
               if site.kind == "sample" and not site.observed and name != "log_loss")


def latent_sites(model, inputs) -> set[str]:
    """Names of the model's unobserved sample sites (what a posterior must supply)."""
    return {name for name, site in compiled.sites(model, inputs).items()
            if site.kind == "sample" and not site.observed and name != "log_loss"}
