"""Experiment design: which run to pay for next (EIG per FLOP), curve targets, each target's study
(`study_for`), the design command's work (`make_design`), V-optimal, ScaleBench, the loop.

May import: laws, models, tables, fitting, decisions (and the trainer, lazily, in `loop`); never cli.

The names below are the layer's public API (`from atlas_bayes import design; design.choose_batch`).
"""

from atlas_bayes.design.candidates import (CANDIDATE_COLUMNS, candidate_grid, flops, read_candidates,
                                           shape_sizes, validate_candidates)
from atlas_bayes.design.command import DesignOutput, make_design
from atlas_bayes.design.eig import (Design, choose_batch, eig_scores, greedy_batch, loglik_matrix,
                                    reweight, simulate_outcomes)
from atlas_bayes.design.parse import TARGET_FORMS, parse_target
from atlas_bayes.design.plan import plan_configs, plot_design, write_plan
from atlas_bayes.design.posterior import DEFAULT_DRAWS, DesignPosterior, Posterior, posterior_from_tree
from atlas_bayes.design.study import (BtsStudy, CandidateOptions, CrossoverStudy, CurveStudy, LawStudy,
                                      OptionError, Study, curve_study, study_for)
from atlas_bayes.design.targets import (Target, loss_target, optimal_size_target, parameters_target,
                                        target_summary, weighted_interval)
from atlas_bayes.fitting.draws import LawDraws

__all__ = [
    "BtsStudy", "CANDIDATE_COLUMNS", "CandidateOptions", "CrossoverStudy", "CurveStudy",
    "DEFAULT_DRAWS", "Design", "DesignOutput", "DesignPosterior", "LawDraws", "LawStudy",
    "OptionError", "Posterior", "Study", "TARGET_FORMS", "Target", "candidate_grid",
    "choose_batch", "curve_study", "eig_scores", "flops", "greedy_batch", "loglik_matrix",
    "loss_target", "make_design", "optimal_size_target", "parameters_target", "parse_target",
    "plan_configs", "plot_design", "posterior_from_tree", "read_candidates", "reweight",
    "shape_sizes", "simulate_outcomes", "study_for", "target_summary", "validate_candidates",
    "weighted_interval", "write_plan",
]
