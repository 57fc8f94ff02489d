"""The posteriors that design reads. `DesignPosterior` states what scoring a run needs from any
of them; `Posterior` is a fitted law's draws, the noise scale per draw and the likelihood's
degrees of freedom (the curve fits' posteriors are in `design.curves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from atlas_bayes.fitting.draws import LawDraws, law_draws, predicted_loss, predicted_loss_at
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.models import form_of


DEFAULT_DRAWS = 512       # posterior draws the estimators use (cost grows as draws^2)


@runtime_checkable
class DesignPosterior(Protocol):
    """What expected-information-gain scoring reads from a posterior (`eig.choose_batch`):

    * `candidate_log_mean(candidates)`: each draw's predicted log loss of each candidate run,
      an array (draws, candidates); the candidates are a `validate_candidates` table (plus any
      columns the posterior's own candidates carry, such as `init` or `extends`);
    * `sigma`: the likelihood's noise scale on log loss, one per draw;
    * `nu`: the Student-t degrees of freedom of that likelihood (inf: normal);
    * `n`: the number of draws.

    A target's `values(posterior)` reads the same object. `Posterior` (a law),
    `curves.CrossoverPosterior` and `curves.BtsPosterior` implement it; `isinstance(x,
    DesignPosterior)` checks that an object has these members (not their types).
    """
    sigma: np.ndarray
    nu: float

    @property
    def n(self) -> int:
        """The number of posterior draws."""
        ...

    def candidate_log_mean(self, candidates: pd.DataFrame) -> np.ndarray:
        """(draws, candidates) predicted log loss of the candidate runs."""
        ...


def require_design_posterior(posterior, where: str) -> None:
    """Raise a TypeError naming `where` unless `posterior` has `DesignPosterior`'s members."""
    if not isinstance(posterior, DesignPosterior):
        raise TypeError(f"{where} needs a design posterior (candidate_log_mean, sigma, nu, n: "
                        "design.DesignPosterior), such as design.posterior_from_tree(tree) or a "
                        f"study's posterior(...); got {type(posterior).__name__}")


@dataclass
class Posterior(DesignPosterior):
    """Posterior draws for design: the law (`LawDraws`), the noise scale sigma per draw and
    the Student-t degrees of freedom nu of the likelihood on log loss (inf: normal)."""
    draws: LawDraws
    sigma: np.ndarray
    nu: float = 4.0

    def __post_init__(self):
        self.sigma = np.asarray(self.sigma, dtype=float).ravel()
        if self.sigma.size != self.draws.n or not np.all(self.sigma > 0):
            raise ValueError(f"sigma needs one positive value per draw ({self.draws.n}), got "
                             f"{self.sigma.size} values")

    @property
    def n(self) -> int:
        """The number of draws."""
        return self.draws.n

    def log_mean(self, n_params, n_tokens) -> np.ndarray:
        """The law's log loss (draws, candidates) at each candidate's (N, D)."""
        N = np.asarray(n_params, dtype=float)[None, :]
        D = np.asarray(n_tokens, dtype=float)[None, :]
        return np.log(predicted_loss(self.draws, N, D))

    def candidate_log_mean(self, candidates: pd.DataFrame) -> np.ndarray:
        """Each draw's predicted log loss (draws, candidates) at the candidates' (N, D), or a
        user law's FEATURES columns."""
        if form_of(self.draws.kind).user is not None:
            return np.log(predicted_loss_at(self.draws, candidates))
        return self.log_mean(candidates["n_params"], candidates["n_tokens"])


def posterior_from_tree(tree, *, language: str | None = None, unique_tokens: float | None = None,
                        max_draws: int | None = DEFAULT_DRAWS) -> Posterior:
    """A fitted tree's draws for design (evenly thinned to `max_draws`)."""
    draws = law_draws(tree, language)
    post = tree.posterior
    if "sigma" not in post:
        raise ValueError("the fit has no 'sigma' draws; design needs the likelihood's noise scale")
    sigma = post["sigma"]
    if "language" in sigma.dims:
        sigma = sigma.sel(language=draws.language)
    sigma = np.asarray(sigma.values, dtype=float).ravel()
    if max_draws is not None and draws.n > max_draws:
        keep = np.linspace(0, draws.n - 1, int(max_draws)).round().astype(int)
        draws, sigma = draws.thin(max_draws), sigma[keep]
    draws = draws.with_unique_tokens(unique_tokens)
    nu = FitRecord.from_tree(tree).student_t_nu
    return Posterior(draws, sigma, 4.0 if nu is None else nu)
