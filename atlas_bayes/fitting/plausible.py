"""Answers far outside the data: a decision asked about a compute, size or number of languages
orders of magnitude beyond the fitted runs says so, with the factor.

A law fitted to runs up to some size is an extrapolation beyond them; one or two orders of
magnitude is what scaling laws are for, more is the law's shape alone. `FACTOR` (1000, three
orders of magnitude) is where the warning starts.
"""

from __future__ import annotations

import numpy as np

FACTOR = 1e3    # an answer this many times beyond the largest run warns


class ExtrapolationWarning(UserWarning):
    """A decision asked about a point far outside the fitted runs."""


def beyond(asked: float, largest: float, what: str, of: str, factor: float = FACTOR) -> str | None:
    """'the compute asked for is 1e+278 times the largest run's (...)' when `asked` exceeds
    `largest` `factor` times, else None. `what`: the quantity ("compute"); `of`: whose
    largest value ("the largest run's")."""
    if not (np.isfinite(asked) and np.isfinite(largest) and largest > 0):
        return None
    ratio = asked / largest
    if ratio < factor:
        return None
    return (f"the {what} asked for is {ratio:.3g} times {of} ({asked:.3g} vs {largest:.3g}): "
            "the answer extrapolates the law far beyond its data and reflects the law's form, "
            "not measurements")


def fitted_extremes(tree) -> dict[str, float]:
    """Largest model size, tokens and compute (6 N D) among a law fit's runs (its `fit_data`);
    {} when the tree holds no run table."""
    if "fit_data" not in tree.children:
        return {}
    data = tree["fit_data"].to_dataset()
    if not {"n_params", "n_tokens"} <= set(data.data_vars):
        return {}
    n, d = (np.asarray(data[k].values, dtype=float) for k in ("n_params", "n_tokens"))
    return {"n_params": float(np.nanmax(n)), "n_tokens": float(np.nanmax(d)),
            "compute": float(np.nanmax(6.0 * n * d))}
