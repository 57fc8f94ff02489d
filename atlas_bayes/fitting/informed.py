"""Parameters the data do not inform: posterior about as wide as the prior.

A fit can pass every R-hat and ESS check and still report, for some parameter, nothing but
its prior: a run table with one model size cannot say how loss falls with model size (A and
alpha), one data size cannot say it for tokens (B and beta), a transfer language that never
trains beside the target leaves its tau at the prior. `uninformed` finds them from the fit
itself: the posterior's standard deviation over the prior's (the contraction ratio), each in
the coordinate the model puts its prior on (`PRIORS`: log E, the log N and D terms at the data
centre, log alpha, ...). The single-language laws' priors have fixed widths there, so the
ratio needs no prior draws (their centred sampling sites cannot be drawn from the prior by
ancestral sampling: `models/scaling.py`).

A ratio of `MAX_RATIO` or more flags a parameter. Measured with Chinchilla fits at the test
preset QUICK (2 x 200 draws) of `monolingual_design("en")` simulated at fixed truths: cut to
any one of its five model sizes, alpha's ratio is 0.98-1.09 (E 0.47-0.58, the N term at the
centre 0.52-0.63); the whole multi-size grid gives at most 0.15, `data/example_runs.csv` at
most 0.15 (Chinchilla and ATLAS, tau included), two model sizes at most 0.70 (E; alpha 0.64).
A natural-scale A (B) carries the N (D) term to N = 1 with alpha (beta), so it is flagged with
its exponent. Joint (`*-h`) and curse laws learn their per-language priors from the data, so
no fixed prior width measures them; for them (and every law) the run table itself says what
cannot be informed: one model size leaves A and alpha to the prior, one data size B and beta,
one number of languages per mixture the curse's phi and psi (`single_values`). Languages
whose sizes are tied to their data sizes: `identifiability`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.fitting.identifiability import size_groups
from atlas_bayes.fitting.law_inputs import effective_languages, target_tokens
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.models import LAWS
from atlas_bayes.models.scaling import (ALPHA_PRIOR, GAMMA_SD, LAMBDA_PRIOR, LOG_E_SD, R_STAR_PRIOR,
                                        TAU_OTHER_LOG_PRIOR, TAU_PRIOR, TERM_SD)
from atlas_bayes.tables.runs import mixture_fractions

MAX_RATIO = 0.8       # posterior sd / prior sd at or above this: not informed
CHECKED_LAWS = ("chinchilla", "dcsl", "msl", "atlas", "atlas-dt", "atlas-other")
# parameter -> (coordinate of the prior, its sd): "log" log(value), "identity" the value,
# "log_N_term"/"log_D_term" log A - alpha log N_ref (the N term at the data centre), likewise B
PRIORS = {"E": ("log", LOG_E_SD), "A": ("log_N_term", TERM_SD), "B": ("log_D_term", TERM_SD),
          "alpha": ("log", ALPHA_PRIOR[1]), "beta": ("log", ALPHA_PRIOR[1]),
          "lambda": ("log", LAMBDA_PRIOR[1]), "R_N_star": ("log", R_STAR_PRIOR["R_N_star"][1]),
          "gamma": ("identity", GAMMA_SD), "tau": ("identity", TAU_PRIOR[1]),
          "tau_other": ("log", TAU_OTHER_LOG_PRIOR[1])}
EXPONENT = {"A": "alpha", "B": "beta"}   # natural-scale A, B reach N, D = 1 through these
# a prior of its own only where sampled (DCSL)
SAMPLED_ONLY = {"R_D_star": ("log", R_STAR_PRIOR["R_D_star"][1])}


class UninformedWarning(UserWarning):
    """The data leave a parameter's posterior about as wide as its prior."""


def contraction(tree: xr.DataTree) -> dict[str, float]:
    """{parameter label: posterior sd / prior sd} of a single-language law fit (labels as in
    the summary: 'tau[en]'); {} for laws not checked here (module docstring)."""
    record = FitRecord.from_tree(tree)
    if record.law not in CHECKED_LAWS or record.centred is False:
        return {}
    post = tree.posterior
    priors = dict(PRIORS)
    if "R_D_star" in (record.latent_sites or ()):
        priors.update(SAMPLED_ONLY)
    ratios = {}
    for name, (coordinate, sd) in priors.items():
        if name not in post or name not in (record.parameters or ()):
            continue
        values = _coordinate(post, name, coordinate, record)
        if name == "tau":
            for i, language in enumerate(post["tau"]["transfer_language"].values):
                scale = _tau_scale(record, i)
                ratios[f"tau[{language}]"] = float(values[..., i].std()) / scale
        else:
            ratios[name] = float(values.std()) / sd
    return ratios


def _coordinate(post, name: str, coordinate: str, record: FitRecord) -> np.ndarray:
    values = np.asarray(post[name].values, dtype=float)
    if coordinate == "identity":
        return values
    if coordinate == "log":
        return np.log(values)
    exponent, reference = (("alpha", record.log_N_ref) if coordinate == "log_N_term"
                           else ("beta", record.log_D_ref))
    return np.log(values) - np.asarray(post[exponent].values, dtype=float) * reference


def _tau_scale(record: FitRecord, slot: int) -> float:
    """The prior sd of transfer slot `slot`: the given tau prior's, else the default's."""
    given = (record.options or {}).get("tau_prior")
    if given and float(np.ravel(given["scale"])[slot]) > 0:
        return float(np.ravel(given["scale"])[slot])
    return PRIORS["tau"][1]


def single_values(runs: pd.DataFrame, parameters) -> list[tuple[str, tuple[str, ...], float, str]]:
    """(term, the parameters it alone informs, its one value, unit) for each quantity that takes
    one value (within `identifiability.SIZE_FACTOR`) in every run: model size (A, alpha), the
    evaluated language's tokens (B, beta), languages per mixture (phi, psi: curse laws).
    Only parameters in `parameters` are named."""
    terms = [("model size", ("A", "alpha"), runs["n_params"], "parameters"),
             ("data size", ("B", "beta"), target_tokens(runs), "tokens")]
    if "phi" in parameters or "psi" in parameters:
        terms.append(("number of languages", ("phi", "psi"),
                      effective_languages(mixture_fractions(runs)), "per mixture"))
    found = []
    for term, names, values, unit in terms:
        values = np.asarray(values, dtype=float)
        named = tuple(n for n in names if n in parameters)
        if named and len(values) and int(size_groups(values).max()) == 0:
            found.append((term, named, float(np.median(values)), unit))
    return found


def uninformed(tree: xr.DataTree, runs: pd.DataFrame, max_ratio: float = MAX_RATIO) -> list[str]:
    """Messages naming the parameters whose posterior is about their prior (contraction ratio
    at or above `max_ratio`), with the reason where the run table shows it (one model size,
    one data size); `runs`: the fitted rows. Laws without fixed prior widths (joint, curse):
    the parameters that a quantity which never varies leaves uninformed (`single_values`)."""
    record = FitRecord.from_tree(tree)
    if record.law not in LAWS:         # a user's law: its names need not mean ours (A, alpha, ...)
        return []
    if record.law not in CHECKED_LAWS or record.centred is False:
        return [_single_message(*found, because="not informed by the data, so their intervals "
                                "come from the prior (and, pooled, the other languages)")
                for found in single_values(runs, record.parameters or ())]
    ratios = contraction(tree)
    flagged = {k: v for k, v in ratios.items()
               if max(v, ratios.get(EXPONENT.get(k, ""), 0.0)) >= max_ratio}
    messages = []
    for term, names, value, unit in single_values(runs, flagged):
        messages.append(_single_message(term, names, value, unit, because=f"not informed "
                                        f"({_ratios(flagged, names)}), so their intervals are the prior's"))
        for n in names:
            flagged.pop(n)
    if flagged:
        names = list(flagged)
        messages.append(
            f"the data barely inform {', '.join(names)} ({_ratios(flagged, names)}), so their "
            "intervals are mostly the prior's. Add runs that vary what they describe, or read "
            "them as the prior.")
    return messages


def _single_message(term: str, names, value: float, unit: str, because: str) -> str:
    """'one model size (1e+08 parameters): A and alpha are not informed (...). Add runs at
    other model sizes.'"""
    verb = "is" if len(names) == 1 else "are"
    return (f"one {term} ({value:.3g} {unit}): {' and '.join(names)} {verb} {because}. "
            f"Add runs at other {term}s.")


def _ratios(flagged: dict, names) -> str:
    """'posterior sd / prior sd: A 0.52 (with alpha), alpha 0.98'."""
    shown = [f"{n} {flagged[n]:.2f}" + (f" (with {EXPONENT[n]})" if EXPONENT.get(n) in flagged
                                        and flagged[n] < MAX_RATIO else "") for n in names]
    return "posterior sd / prior sd: " + ", ".join(shown)


def check_informed(tree: xr.DataTree, runs: pd.DataFrame, warn: bool = True,
                   stacklevel: int = 3) -> xr.DataTree:
    """Record `uninformed`'s messages in the tree's record (`FitRecord.identifiability`, so
    they travel with the verdict) and raise each as an `UninformedWarning` when `warn`."""
    from dataclasses import replace

    messages = uninformed(tree, runs)
    if messages:
        record = FitRecord.from_tree(tree)
        tree.attrs.update(replace(record, identifiability=tuple(messages)).to_attrs())
        for message in messages if warn else ():
            warnings.warn(message, UninformedWarning, stacklevel=stacklevel)
    return tree
