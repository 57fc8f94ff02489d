"""Confounded designs: languages whose model sizes are tied to their data sizes.

A joint law (`*-h`) gives every language its own A and alpha unless `shared` names them.
A language's own runs pin those only where its model sizes vary apart from its data sizes.
Goldfish, for one, trains each language's small model (22-39M parameters, by tokenizer) at
5 and 10 MB and its 125M model at 100 and 1000 MB: the runs follow one path through (N, D),
the N-term A N^-alpha is seen at two sizes only (one step, which pins neither A apart from
alpha nor its level apart from E), and that step falls where the data size jumps, so it
trades against the D-term too. Each such language adds a ridge that the population priors
alone bound, and NUTS crosses them slowly (R-hat above 1.01). Sharing A and alpha leaves
each language what its runs do pin: E and the D-term.

`tied_languages` finds such languages from the run table (per evaluated language, its rows'
n_params and target-language tokens, the D the laws use). A language is tied when either

- its model sizes form at most two groups (sizes within a factor of `SIZE_FACTOR` of a
  group's smallest count as one: Goldfish's small models differ by tokenizer, up to 1.25x
  within a language) and no data size is trained at both: the groups' ranges of D do not
  overlap (or there is one group), so there is no contrast of model size at a fixed data
  size; or
- log N and log D are collinear across three or more size groups (|r| >= `MAX_CORRELATION`:
  the model grows with its data, as along a compute-optimal frontier), so the two terms are
  two power laws of one variable.

Two model sizes on a grid (both trained at a common data size) are not tied: the step of the
N-term is measured at a fixed D. The fit is not changed automatically: sharing changes the
model the user asked for, for every language, tied or not. `check_tied_sizes` warns before
sampling (`TiedSizesWarning`) with the fix, and the fit records the message
(`FitRecord.design_warnings`) and repeats the fix in its R-hat warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from atlas_bayes.fitting.law_inputs import target_tokens

SIZE_FACTOR = 1.5        # model sizes within this factor of a group's smallest: one size
MAX_CORRELATION = 0.98   # |corr(log N, log D)| at or above: the sizes grow in step
FIX = ('share A and alpha across all languages (--shared A,alpha on the CLI, '
       'options={"shared": ["A", "alpha"]} in Python)')
SHOWN = 5                # languages named in a message


class TiedSizesWarning(UserWarning):
    """A joint fit gives languages their own parameters that their runs cannot separate."""


@dataclass(frozen=True)
class Tied:
    """A language whose model sizes are tied to its data sizes, and how."""
    language: str
    reason: str     # "one model size", "two model sizes", "collinear"
    size_groups: int
    correlation: float   # corr(log N, log D) over its rows (NaN when either is constant)


def size_groups(n_params: np.ndarray, factor: float = SIZE_FACTOR) -> np.ndarray:
    """Per value, the index of its model-size group: sorted sizes, a new group where a size
    exceeds `factor` times its group's smallest."""
    log_n = np.log(np.asarray(n_params, dtype=float))
    order = np.argsort(log_n, kind="stable")
    groups = np.empty(len(log_n), dtype=int)
    group, start = -1, -np.inf
    for i in order:
        if log_n[i] > start + np.log(factor):
            group, start = group + 1, log_n[i]
        groups[i] = group
    return groups


def tied_language(language: str, n_params, tokens) -> Tied | None:
    """How one language's model sizes are tied to its data sizes (`tokens`, its D), or None."""
    n_params, tokens = np.asarray(n_params, dtype=float), np.asarray(tokens, dtype=float)
    usable = (n_params > 0) & (tokens > 0) & np.isfinite(n_params) & np.isfinite(tokens)
    log_n, log_d = np.log(n_params[usable]), np.log(tokens[usable])
    if len(log_n) == 0:
        return None
    groups = size_groups(np.exp(log_n))
    count = int(groups.max()) + 1
    r = (float(np.corrcoef(log_n, log_d)[0, 1]) if np.ptp(log_n) > 0 and np.ptp(log_d) > 0
         else float("nan"))
    if count == 1:
        return Tied(language, "one model size", count, r)
    if count == 2:
        low, high = (log_d[groups == g] for g in (0, 1))
        if low.max() < high.min() or high.max() < low.min():
            return Tied(language, "two model sizes", count, r)
        return None
    if abs(r) >= MAX_CORRELATION:
        return Tied(language, "collinear", count, r)
    return None


def tied_languages(runs: pd.DataFrame) -> list[Tied]:
    """The evaluated languages of a run table whose model sizes are tied to their data sizes
    (module docstring), in the table's order of languages."""
    runs = runs.reset_index(drop=True)
    tokens = target_tokens(runs)
    language = runs["language"].astype(str)
    found = []
    for name in dict.fromkeys(language):
        rows = (language == name).to_numpy()
        tied = tied_language(name, runs["n_params"].to_numpy(float)[rows], tokens[rows])
        if tied is not None:
            found.append(tied)
    return found


_REASONS = {"one model size": "at one model size",
            "two model sizes": "at two model sizes, each trained at data sizes the other is not",
            "collinear": f"with model sizes growing in step with data sizes (|r| >= {MAX_CORRELATION})"}


def describe(tied: list[Tied], n_languages: int) -> str:
    """The warning for a joint fit with per-language A and alpha: how many and which languages
    (the first few), why, and the fix."""
    names = ", ".join(t.language for t in tied[:SHOWN]) + (", ..." if len(tied) > SHOWN else "")
    counts = {reason: sum(t.reason == reason for t in tied) for reason in _REASONS}
    how = "; ".join(f"{count} {_REASONS[reason]}" for reason, count in counts.items() if count)
    return (f"{len(tied)} of {n_languages} languages ({names}) have model sizes tied to their "
            f"data sizes ({how}): their runs cannot separate A from alpha, nor the model-size term "
            "from the data-size term, so a joint fit giving each language its own A and alpha "
            f"mixes slowly (R-hat above 1.01). Fix: {FIX}.")


def advice(tied: list[Tied], n_languages: int) -> str:
    """What the R-hat warning of such a fit adds."""
    return (f"Here {len(tied)} of {n_languages} languages have model sizes tied to their data "
            f"sizes (see the warning before sampling); {FIX}.")


def check_tied_sizes(law, runs: pd.DataFrame, options: dict, warn: bool = True,
                     stacklevel: int = 3) -> tuple[str, str] | None:
    """For a joint law fitted without A and alpha shared: the languages whose model sizes are
    tied to their data sizes, as (warning, R-hat advice); the warning is raised as a
    `TiedSizesWarning` when `warn`. None when there are none, or for other laws."""
    if not (law.hierarchical and law.takes("shared")):
        return None
    if {"A", "alpha"} <= set(options.get("shared") or ()):
        return None
    tied = tied_languages(runs)
    if not tied:
        return None
    n_languages = int(runs["language"].nunique())
    message = describe(tied, n_languages)
    if warn:
        warnings.warn(message, TiedSizesWarning, stacklevel=stacklevel)
    return message, advice(tied, n_languages)
