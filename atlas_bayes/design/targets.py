"""What the user wants to learn: a `Target` gives one number (or a row of numbers) per
posterior draw; its interval over weighted draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from atlas_bayes.decisions.optimal import allocation
from atlas_bayes.design.candidates import _positive_list
from atlas_bayes.design.posterior import DesignPosterior, require_design_posterior
from atlas_bayes.fitting.draws import predicted_loss


@dataclass(frozen=True)
class Target:
    """A quantity to learn about: `values(posterior)` gives one number per draw (or a row of
    T numbers per draw: T quantities, scored by their mean gain); `values=None` means all of
    the law's parameters (nested Monte Carlo on the likelihood). `spec["kind"]` names the kind
    of target (params, loss, nstar, crossover, bts, ...): `design.study.study_for` maps it to
    the model that answers it."""
    name: str
    values: Callable[[DesignPosterior], np.ndarray] | None = None
    spec: dict = field(default_factory=dict)

    @property
    def is_parameters(self) -> bool:
        """Whether the target is all of the law's parameters (no single quantity)."""
        return self.values is None

    @property
    def kind(self) -> str:
        """The kind of target (`spec["kind"]`; '' when the spec names none)."""
        return str(self.spec.get("kind", ""))


def parameters_target() -> Target:
    """Every parameter of the law at once."""
    return Target("params", None, {"kind": "params"})


def loss_target(n_params: float, n_tokens: float) -> Target:
    """The log loss the law predicts at (N, D), e.g. a large run nobody can afford to try."""
    n, d = _positive_list(n_params, "N")[0], _positive_list(n_tokens, "D")[0]
    return Target(f"loss@N={n:.3g},D={d:.3g}",
                  lambda p: np.log(predicted_loss(p.draws, np.array([n]), np.array([d]))).ravel(),
                  {"kind": "loss", "n_params": n, "n_tokens": d})


def optimal_size_target(compute: float) -> Target:
    """log N*, the compute-optimal model size at budget C (`atlas_bayes.decisions.optimal.allocation`)."""
    c = _positive_list(compute, "C")[0]
    return Target(f"nstar@C={c:.3g}", lambda p: np.log(allocation(p.draws, c)["N"]),
                  {"kind": "nstar", "compute": c})


def weighted_interval(values, weights=None, prob: float = 0.9) -> tuple[float, float]:
    """Central `prob` interval of weighted draws."""
    values = np.asarray(values, dtype=float)
    weights = np.full(values.size, 1.0 / values.size) if weights is None else np.asarray(weights)
    order = np.argsort(values)
    cdf = np.cumsum(weights[order]) / np.sum(weights)
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    return float(values[order][np.searchsorted(cdf, lo)]), \
        float(values[order][min(np.searchsorted(cdf, hi), values.size - 1)])


def target_summary(posterior: DesignPosterior, target: Target, prob: float = 0.9) -> dict:
    """A scalar target's median and central `prob` interval over the posterior's draws:
    {median, lo, hi, width} in the target's own units (log loss, log N*, ...)."""
    require_design_posterior(posterior, "target_summary")
    if target.is_parameters:
        raise ValueError("target 'params' has no single interval; summarise each parameter")
    q = np.asarray(target.values(posterior), dtype=float)
    if q.ndim != 1:
        raise ValueError(f"target {target.name} holds {q.shape[1]} quantities per draw, so it "
                         "has no single interval; summarise each quantity")
    lo, hi = weighted_interval(q, prob=prob)
    return {"median": float(np.median(q)), "lo": lo, "hi": hi, "width": hi - lo}
