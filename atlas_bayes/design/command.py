"""The `design` command's work without the command line: fit (or take) the posterior the target's
study needs, build its candidates, choose a batch (`make_design`), and what is written and shown
about it (`DesignOutput`): posterior.nc (when fitted here), scores.csv, design.png, design.json,
the trainer plan, and a warning for chosen runs outside the fitted model sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from atlas_bayes.design.eig import Design, choose_batch
from atlas_bayes.design.plan import plan_configs, plot_design, write_plan
from atlas_bayes.design.posterior import DEFAULT_DRAWS
from atlas_bayes.design.study import CandidateOptions, Study
from atlas_bayes.fitting.summary import json_safe
from atlas_bayes.fitting.trust import check_saved_fit
from atlas_bayes.tables.atomic_files import atomic_write

OUTSIDE_FACTOR = 1.5      # a chosen size beyond 1.5x the fitted range is flagged


@dataclass
class DesignOutput:
    """A chosen batch (`design`) with its study and fitted tree; `fitted`: the tree was fitted
    here (so it is saved); `language`: the candidates' language; `plan` and `configs`: the
    trainer plan's path and configs, when one was asked for."""
    design: Design
    study: Study
    tree: object
    fitted: bool
    language: str
    plan: Path | None = None
    configs: list[dict] | None = None
    notes: tuple[str, ...] = ()     # the target far outside the fitted runs (`target_notes`)

    @property
    def model(self) -> str:
        """The fitted model's name (the law, or the curve fit's kind)."""
        return self.study.model_name(self.tree)

    @cached_property
    def fitted_runs(self) -> pd.DataFrame | None:
        """The runs of a law fit (plotted beside the candidates); None for curve fits."""
        return self.study.fitted_runs(self.tree)

    @property
    def fitted_sizes(self) -> tuple[float, float] | None:
        """The smallest and largest fitted model size (None without a law fit's runs)."""
        data = self.fitted_runs
        if data is None:
            return None
        return data["n_params"].min(), data["n_params"].max()

    @property
    def outside(self) -> list[str]:
        """Chosen candidates more than `OUTSIDE_FACTOR` outside the fitted model sizes."""
        sizes, chosen = self.fitted_sizes, self.design.chosen
        if sizes is None or not len(chosen):
            return []
        lo, hi = sizes
        far = (chosen["n_params"] < lo / OUTSIDE_FACTOR) | (chosen["n_params"] > hi * OUTSIDE_FACTOR)
        return chosen["candidate"][far].tolist()

    def summary(self) -> dict:
        """design.json's object (and the command's --json output): the design's `as_dict()`
        with the model, language, runs outside the fitted sizes and the plan's path, as plain
        JSON values (non-finite numbers as null)."""
        from atlas_bayes.fitting.trust import verdict

        fit = verdict(self.tree)
        return json_safe({**self.design.as_dict(), "law": self.model, "language": self.language,
                           "outside_fitted_sizes": self.outside,
                           "plan": str(self.plan) if self.plan else None,
                           "converged": fit["converged"], "warnings": fit["warnings"] + self.warnings()})

    def as_dict(self) -> dict:
        """The --json object: `summary()` (the command layer reports every result this way)."""
        return self.summary()

    def warnings(self) -> list[str]:
        """Messages the user should see beside the result."""
        outside, notes = self.outside, list(self.notes)
        if not outside:
            return notes
        lo, hi = self.fitted_sizes
        return notes + [f"chosen runs {outside} lie outside the fitted model sizes ({lo:.3g}-"
                        f"{hi:.3g}); their value assumes the law holds there"]

    def files(self, out) -> list[Path]:
        """The files `write(out)` writes, in order."""
        out = Path(out)
        return ([out / "posterior.nc"] if self.fitted else []) \
            + [out / "scores.csv", out / "design.png", out / "design.json"] \
            + ([Path(self.plan)] if self.configs is not None else [])

    def write(self, out) -> list[Path]:
        """Write the outputs into folder `out` (and the plan to its own path); returns them."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if self.fitted:
            from atlas_bayes.fitting.inference import save
            save(self.tree, out / "posterior.nc")
        atomic_write(out / "scores.csv", self.design.scores.to_csv(index=False))
        plot_design(self.design, out / "design.png", data=self.fitted_runs)
        atomic_write(out / "design.json", json.dumps(self.summary(), indent=2))
        if self.configs is not None:
            write_plan(self.configs, self.plan)
        return self.files(out)

    def to_text(self, out) -> str:
        """The screen output: the design (`Design.to_text`) and the files written to `out`."""
        out = Path(out)
        return (self.design.to_text(model=self.model, language=self.language)
                + f"\nwrote {out / 'design.json'}, {out / 'scores.csv'}, {out / 'design.png'}"
                + (f", plan {self.plan}" if self.plan else ""))


def make_design(study: Study, source, *, sampler=None,
                options: CandidateOptions = CandidateOptions(), k: int = 4,
                budget: float | None = None, cost_power: float = 1.0,
                max_draws: int | None = DEFAULT_DRAWS, seed: int = 0, plan=None,
                progress: bool = False, accept_unconverged: bool = False) -> DesignOutput:
    """Choose up to `k` runs about the study's target within `budget` FLOPs.

    The posterior is fitted with `sampler` to `source`, a run table (DataFrame), or `source` is
    a saved fit's tree; candidates from `options` (`CandidateOptions`). With `plan` (a path) the
    chosen runs also become trainer configs. Options that do not apply raise `OptionError` and a
    study without trainer plans refuses `plan`, both before any fitting. A saved fit's warnings
    are repeated and a fit that did not converge is refused unless `accept_unconverged`
    (`fitting.trust.check_saved_fit`)."""
    runs = source if isinstance(source, pd.DataFrame) else None
    tree = None if runs is not None else source
    study.check(options, runs_given=runs is not None)
    if plan is not None:
        study.plan_check()
    fitted = tree is None
    if not fitted:
        check_saved_fit(tree, accept_unconverged)
    if fitted:
        if runs is None:
            raise ValueError("design needs a run table to fit, or a fitted posterior")
        tree = study.fit(runs, sampler, progress=progress)
    posterior = study.posterior(tree, runs, max_draws)
    candidates = study.candidates(posterior, tree, runs, options)
    result = choose_batch(posterior, candidates, study.target, k=k, budget=budget,
                          cost_power=cost_power, seed=seed)
    configs = plan_configs(result.chosen) if plan is not None else None
    return DesignOutput(result, study, tree, fitted, study.candidate_language(posterior),
                        Path(plan) if plan is not None else None, configs,
                        tuple(study.target_notes(tree)))



