"""What each kind of target needs, in one place: the model fitted to the run table, the posterior
design scores with, the candidate runs, and whether chosen runs can become a trainer plan.

`study_for(target, ...)` is the one place that maps a target's kind to its study:

* `LawStudy` (params, loss@N=..,D=.., nstar@C=.., any law target): a scaling law fitted to the
  run table (`fitting.inference.fit`), its draws (`posterior_from_tree`), and a grid of model
  sizes x token budgets or a candidate file;
* `CrossoverStudy` (crossover:LANG@N): the crossover curves (`decisions.crossover.fit_crossover`),
  the cell's draws (`curves.crossover_posterior`), new scratch and finetuned runs in the cell;
* `BtsStudy` (bts:SRC->TGT[@N]): the BTS curves (`decisions.bts.fit_bts`), the pair's draws
  (`curves.bts_posterior`), continuations of the pair's runs; no trainer plan.

The `design` command (`design.command.make_design`) and the closed loop (`design.loop`) both
work through a study, so neither asks which kind a target is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes.design.candidates import candidate_grid, law_costs, read_candidates
from atlas_bayes.design.curves import (BTS_NO_PLAN, bts_candidates, bts_posterior,
                                       crossover_candidates, crossover_posterior)
from atlas_bayes.design.posterior import DEFAULT_DRAWS, DesignPosterior, posterior_from_tree
from atlas_bayes.design.targets import Target
from atlas_bayes.models import form_of, get_law
from atlas_bayes.fitting.plausible import beyond, fitted_extremes
from atlas_bayes.fitting.record import FitRecord

DEFAULT_TOKENS_PER_PARAM = (5.0, 10.0, 20.0, 40.0, 80.0)


class OptionError(ValueError):
    """A design option that does not apply to the target's study (the message names it)."""


@dataclass(frozen=True)
class CandidateOptions:
    """Where candidate runs come from. A law study reads `file` (a candidate table) or builds a
    grid of sizes (`shapes`: trainer shape names, or 'all'; else `n_params`; else ten sizes from
    the fitted data's smallest to 10x its largest) x token budgets (`tokens`, else
    `tokens_per_param`, else `DEFAULT_TOKENS_PER_PARAM`). A crossover study reads `tokens`
    only, a BTS study none. `eval_tokens` adds 2 N per evaluated token to each cost.
    `trainer=True`: the runs are to be trained by the companion trainer (the loop), so a law
    study's sizes must be trainer shapes."""
    file: Path | None = None
    shapes: list[str] | str | None = None
    n_params: list[float] | None = None
    tokens: list[float] | None = None
    tokens_per_param: list[float] | None = None
    eval_tokens: float = 0.0
    trainer: bool = False


class Study:
    """A kind of target's model, posterior and candidates (see the module docstring).

    `can_plan`: whether chosen runs can become a trainer plan; `needs_runs`: whether the
    posterior and candidates read the run table (not only the fitted tree)."""
    target: Target
    can_plan: bool = True
    needs_runs: bool = False
    no_plan: str = ""             # why there is no trainer plan, where `can_plan` is False

    def check(self, options: CandidateOptions, *, runs_given: bool = True) -> None:
        """Raise `OptionError` where `options` (or a saved posterior instead of the run table,
        `runs_given=False`) do not apply to this study."""

    def fit(self, runs: pd.DataFrame, sampler=None, *, progress: bool = False, warn: bool = True):
        """The model's posterior tree fitted to the run table."""
        raise NotImplementedError

    def posterior(self, tree, runs: pd.DataFrame | None = None,
                  max_draws: int | None = DEFAULT_DRAWS) -> DesignPosterior:
        """The draws design scores with (evenly thinned to `max_draws`; None keeps all)."""
        raise NotImplementedError

    def candidates(self, posterior: DesignPosterior, tree, runs: pd.DataFrame | None = None,
                   options: CandidateOptions = CandidateOptions()) -> pd.DataFrame:
        """The candidate runs, with their cost in FLOPs."""
        raise NotImplementedError

    def candidate_language(self, posterior: DesignPosterior) -> str:
        """The language the candidate runs are evaluated in."""
        raise NotImplementedError

    def fitted_runs(self, tree) -> pd.DataFrame | None:
        """The runs the fit saw as (n_params, n_tokens, ...) rows, where the design's sizes are
        comparable with them (a law fit); None otherwise."""
        return None

    def model_name(self, tree) -> str:
        """The fitted model's name: the law, or the curve fit's kind."""
        return FitRecord.from_tree(tree).model

    def plan_check(self) -> None:
        """Raise where the chosen runs cannot become a plan for the companion trainer."""
        if not self.can_plan:
            raise ValueError(f"target {self.target.name}: {self.no_plan}")

    def target_notes(self, tree) -> list[str]:
        """Warnings for a target far beyond the fitted runs (`fitting.plausible`): a loss
        target's N and D, an N* target's compute."""
        largest = fitted_extremes(tree)
        spec = self.target.spec or {}
        asked = {"loss": (("n_params", "model size"), ("n_tokens", "tokens")),
                 "nstar": (("compute", "compute"),)}.get(self.target.kind, ())
        notes = [beyond(float(spec[key]), largest.get(key, float("nan")), what,
                        f"the largest fitted run's (target {self.target.name})")
                 for key, what in asked if key in spec]
        return [n for n in notes if n]


@dataclass
class LawStudy(Study):
    """A scaling law's target: `law` fitted to `language` (None: the table's first; all of
    them for a hierarchical law), draws with `unique_tokens` (None: from the fit)."""
    target: Target
    law: str = "chinchilla"
    language: str | None = None
    unique_tokens: float | None = None

    def check(self, options: CandidateOptions, *, runs_given: bool = True) -> None:
        if options.file is None and options.tokens is not None \
                and options.tokens_per_param is not None:
            raise OptionError("give either --tokens or --tokens-per-param, not both")

    def fit(self, runs, sampler=None, *, progress: bool = False, warn: bool = True):
        from atlas_bayes.fitting.inference import fit
        hierarchical = get_law(self.law).hierarchical
        return fit(runs, self.law, language=None if hierarchical else self.language,
                   **_sampler(sampler), progress=progress, warn=warn)

    def posterior(self, tree, runs=None, max_draws=DEFAULT_DRAWS):
        return posterior_from_tree(tree, language=self.language, unique_tokens=self.unique_tokens,
                                   max_draws=max_draws)

    def candidates(self, posterior, tree, runs=None, options=CandidateOptions()):
        table = self._candidates(posterior, tree, options)
        law = form_of(posterior.draws.kind).user      # the fitted law (a saved fit's too)
        return table if law is None else law_costs(law, table, options.eval_tokens)

    def _candidates(self, posterior, tree, options):
        if options.file is not None:
            return read_candidates(options.file, eval_tokens=options.eval_tokens)
        amounts = ({"tokens": options.tokens} if options.tokens is not None else
                   {"tokens_per_param": options.tokens_per_param or DEFAULT_TOKENS_PER_PARAM})
        if options.shapes:
            sizes = {"shapes": None if options.shapes == "all" else list(options.shapes)}
        elif options.trainer:
            raise ValueError("the loop trains its runs, so candidates need trainer shapes "
                             "(shapes=[...], CLI --shapes)")
        elif options.n_params is not None:
            sizes = {"n_params": options.n_params}
        else:
            seen = tree["fit_data"]["n_params"].values.astype(float)
            top = max(10 * seen.max(), self.target.spec.get("n_params", 0.0))
            sizes = {"n_params": np.geomspace(seen.min(), top, 10)}
        return candidate_grid(**sizes, **amounts, language=self.candidate_language(posterior),
                              eval_tokens=options.eval_tokens)

    def candidate_language(self, posterior) -> str:
        return posterior.draws.language or "und"

    def fitted_runs(self, tree):
        if "fit_data" not in tree.children:
            return None
        return tree["fit_data"].to_dataset().to_dataframe()


@dataclass
class CurveStudy(Study):
    """A target read from learning-curve fits (crossover or BTS): its candidates are runs of
    the fitted cell or pair, so it needs the run table, not only a saved posterior."""
    target: Target
    run_folder: Path | None = None      # the trainer's folder: finetunes' checkpoints
    needs_runs = True

    def check(self, options: CandidateOptions, *, runs_given: bool = True) -> None:
        name = self.target.name
        if options.file is not None or options.shapes or options.n_params is not None \
                or options.tokens_per_param is not None:
            raise OptionError(f"target {name}: its candidates are runs of the fitted cell or "
                              "pair; choose their token counts with --tokens (no --candidates, "
                              "--shapes, --n-params or --tokens-per-param)")
        if not runs_given:
            raise OptionError(f"target {name}: give the run table, not a posterior.nc (the "
                              "candidates need the runs: the finetunes' checkpoint, the curves' "
                              "tokens)")

    def _needs_table(self, runs, why: str) -> None:
        if runs is None:
            raise ValueError(f"target {self.target.name}: {why}")


@dataclass
class CrossoverStudy(CurveStudy):
    """crossover:LANG@N: the cell (LANG, N) of the crossover curves; candidates are new scratch
    and finetuned runs in the cell (`curves.crossover_candidates`)."""

    def fit(self, runs, sampler=None, *, progress: bool = False, warn: bool = True):
        """The crossover fit of the run table (convergence is not warned about here)."""
        from atlas_bayes.decisions.crossover import fit_crossover
        return fit_crossover(runs, **_sampler(sampler), progress=progress, warn=False)

    def posterior(self, tree, runs=None, max_draws=DEFAULT_DRAWS):
        spec = self.target.spec
        return crossover_posterior(tree, spec["language"], spec["n_params"], max_draws)

    def candidates(self, posterior, tree, runs=None, options=CandidateOptions()):
        self._needs_table(runs, "finetune candidates need the run table (which checkpoint the "
                                "cell's finetunes continue)")
        return crossover_candidates(posterior, runs, tokens=options.tokens,
                                    run_folder=self.run_folder, eval_tokens=options.eval_tokens)

    def candidate_language(self, posterior) -> str:
        return self.target.spec["language"]


@dataclass
class BtsStudy(CurveStudy):
    """bts:SRC->TGT[@N]: the pair's two curves of the BTS fit; candidates continue the pair's
    runs to more tokens (`curves.bts_candidates`), which the companion trainer cannot do."""
    can_plan = False
    no_plan = BTS_NO_PLAN

    def check(self, options: CandidateOptions, *, runs_given: bool = True) -> None:
        super().check(options, runs_given=runs_given)
        if options.tokens is not None:
            raise OptionError(f"target {self.target.name}: BTS candidates continue the pair's "
                              "runs to 1.5-8x their tokens; --tokens does not apply")

    def fit(self, runs, sampler=None, *, progress: bool = False, warn: bool = True):
        """The BTS fit of the run table at the target's size (convergence is not warned about
        here)."""
        from atlas_bayes.decisions.bts import fit_bts
        return fit_bts(runs, n_params=self.target.spec["n_params"], **_sampler(sampler),
                       progress=progress, warn=False)

    def posterior(self, tree, runs=None, max_draws=DEFAULT_DRAWS):
        self._needs_table(runs, "a BTS design needs the run table (the saved posterior does not "
                                "record the curves' token ranges)")
        spec = self.target.spec
        return bts_posterior(tree, runs, spec["source"], spec["target"], spec["n_params"],
                             max_draws)

    def candidates(self, posterior, tree, runs=None, options=CandidateOptions()):
        return bts_candidates(posterior, eval_tokens=options.eval_tokens)

    def candidate_language(self, posterior) -> str:
        return self.target.spec["target"]


CURVE_STUDIES = {"crossover": CrossoverStudy, "bts": BtsStudy}


def study_for(target: Target, *, law: str = "chinchilla", language: str | None = None,
              unique_tokens: float | None = None, run_folder=None) -> Study:
    """The study that answers `target`: a curve study for the curve kinds (`CURVE_STUDIES`,
    with the trainer's `run_folder`), else a law study of `law` (with `language` and
    `unique_tokens`)."""
    curve = CURVE_STUDIES.get(target.kind)
    if curve is not None:
        return curve(target, None if run_folder is None else Path(run_folder))
    return LawStudy(target, law, language, unique_tokens)


def curve_study(target: Target, runs: pd.DataFrame | None, *, tree=None, sampler=None,
                tokens=None, eval_tokens: float = 0.0, max_draws: int | None = DEFAULT_DRAWS,
                run_folder=None, progress: bool = False):
    """Fit (or take, `tree`) the curve model a crossover or BTS target needs; returns (tree,
    posterior, candidates). `runs` is the run table (required for BTS: the curves' token
    ranges; for crossover: the finetunes' checkpoint)."""
    study = study_for(target, run_folder=run_folder)
    if not isinstance(study, CurveStudy):
        raise ValueError(f"target {target.name} is not read from learning curves "
                         f"(curve targets: {', '.join(CURVE_STUDIES)})")
    if tree is None:
        tree = study.fit(runs, sampler, progress=progress)
    post = study.posterior(tree, runs, max_draws)
    return tree, post, study.candidates(post, tree, runs,
                                        CandidateOptions(tokens=tokens, eval_tokens=eval_tokens))


def _sampler(sampler) -> dict:
    """The fit functions' `sampler` argument (their own default when None)."""
    return {} if sampler is None else {"sampler": sampler}
