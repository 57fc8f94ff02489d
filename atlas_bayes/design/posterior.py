"""The posterior that design reads: a fitted law's draws, the noise scale per draw and the
likelihood's degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from atlas_bayes.fitting.draws import LawDraws, law_draws, predicted_loss
from atlas_bayes.fitting.record import FitRecord


DEFAULT_DRAWS = 512       # posterior draws the estimators use (cost grows as draws^2)


@dataclass
class Posterior:
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
        return self.draws.n

    def log_mean(self, n_params, n_tokens) -> np.ndarray:
        """The law's log loss (draws, candidates) at each candidate's (N, D)."""
        N = np.asarray(n_params, dtype=float)[None, :]
        D = np.asarray(n_tokens, dtype=float)[None, :]
        return np.log(predicted_loss(self.draws, N, D))

    def candidate_log_mean(self, candidates: pd.DataFrame) -> np.ndarray:
        """Each draw's predicted log loss (draws, candidates) of the candidate runs. Other
        posteriors (`design_curves`: crossover and BTS curves) define their own."""
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
