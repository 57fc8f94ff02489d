"""The `crossover` command's result: when pretraining from scratch beats finetuning, for one
language and model size, from a measured cell or the power law C = k N^gamma (`crossover.py`
holds the models and summaries)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from atlas_bayes.decisions.crossover import (crossover_summary, fit_crossover, fit_power_law,
                                             plot_crossover, predict_crossover, summarise_draws)
from atlas_bayes.fitting.inference import save
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.tables.atomic_files import atomic_write


@dataclass
class CrossoverResult:
    """The crossover fit (`tree`), the power law (`power_law`, None for a measured cell) and
    the summary of the crossover at (`language`, `n_params`): `as_dict()` is the --json object
    (crossover_summary or the power law's prediction, plus diagnostics), `to_text()` the
    readable lines, `write(out)` the files (posterior.nc, crossover.json, and crossover.png for
    a measured cell or power_law.nc)."""
    tree: xr.DataTree
    power_law: xr.DataTree | None
    summary: dict
    language: str
    n_params: float | None = None
    budget: float | None = None

    @property
    def measured(self) -> bool:
        """Whether the size is a measured cell (else predicted by the power law)."""
        return self.power_law is None

    def as_dict(self) -> dict:
        """The summary with the crossover fit's diagnostics."""
        return {**self.summary, "diagnostics": FitRecord.from_tree(self.tree).diagnostics.as_dict()}

    def to_text(self, out: Path | None = None) -> str:
        """Crossover tokens and compute (median, 90%), P(no crossover), the recommendation;
        with `out`, the line naming the files."""
        result = self.summary
        t, c = result["tokens"], result["compute"]
        lines = [f"{self.language} at N = {result['n_params']:.3g} ({result['source']}): crossover "
                 f"after {t['median']:.3g} tokens ({t['q_lo']:.3g} - {t['q_hi']:.3g}, 90%), "
                 f"compute {c['median']:.3g} FLOPs ({c['q_lo']:.3g} - {c['q_hi']:.3g}); "
                 f"P(no crossover at all) {result['p_no_crossover']:.2f}"]
        if self.budget:
            lines.append(f"P(no crossover within {self.budget:.3g} tokens): "
                         f"{result['p_no_crossover_within_budget']:.2f}")
        lines.append(f"Recommendation: {result['recommendation']}")
        if out is not None:
            lines.append(f"wrote {out}/: posterior.nc, crossover.json, "
                         + ("crossover.png" if self.measured else "power_law.nc"))
        return "\n".join(lines)

    def write(self, out: Path) -> None:
        """Write posterior.nc, crossover.png or power_law.nc, and crossover.json into `out`."""
        out.mkdir(parents=True, exist_ok=True)
        save(self.tree, out / "posterior.nc")
        if self.measured:
            plot_crossover(self.tree, self.language, self.n_params, out / "crossover.png")
        else:
            save(self.power_law, out / "power_law.nc")
        atomic_write(out / "crossover.json", json.dumps(self.as_dict(), indent=2))


def crossover_decision(runs, language: str, *, sampler, n_params: float | None = None,
                       budget: float | None = None, progress: bool = False) -> CrossoverResult:
    """Fit the crossover curves and summarise the crossover of `language` at `n_params`: the
    measured cell's when there is one (or the language has one size), else predicted by the
    power law C = k N^gamma (fitted with target_accept 0.95)."""
    tree = fit_crossover(runs, sampler=sampler, progress=progress)
    post = tree.posterior
    sizes = post["n_params"].values[post["language"].values == language]
    if n_params is None or np.isclose(sizes, n_params, rtol=1e-3).any():
        _warn_beyond(None, sizes, budget, runs)
        summary = crossover_summary(tree, language, n_params, budget)
        summary["source"] = "measured cell"
        return CrossoverResult(tree, None, summary, language, n_params, budget)
    _warn_beyond(n_params, sizes, budget, runs)
    law = fit_power_law(tree, sampler=dataclasses.replace(sampler, target_accept=0.95))
    draws = predict_crossover(law, language, n_params, seed=sampler.seed)
    summary = {"language": language, **summarise_draws(draws, n_params, budget),
               "source": "power law C = k N^gamma over the measured cells",
               "gamma": _interval(law.posterior["gamma"]),
               "k": {str(lang): _interval(law.posterior["log_k"].sel(language=lang), np.exp)
                     for lang in law.posterior["language"].values}}
    return CrossoverResult(tree, law, summary, language, n_params, budget)


def _warn_beyond(n_params, sizes, budget, runs) -> None:
    """`ExtrapolationWarning`s for a model size or token budget far beyond the runs'."""
    import warnings

    from atlas_bayes.fitting.plausible import ExtrapolationWarning, beyond

    notes = [beyond(float(n_params), float(np.max(sizes)), "model size",
                    "the largest measured cell's") if n_params is not None and len(sizes) else None,
             beyond(float(budget), float(np.max(runs["n_tokens"])), "token budget",
                    "the longest run's") if budget is not None else None]
    for note in filter(None, notes):
        warnings.warn(note, ExtrapolationWarning, stacklevel=3)


def _interval(draws: xr.DataArray, transform=None) -> list[float]:
    """The 5%, 50% and 95% quantiles of the draws (then transformed, e.g. np.exp)."""
    q = draws.quantile([0.05, 0.5, 0.95])
    return [float(v) for v in (q if transform is None else transform(q))]
