"""Whether a saved fit may be used for decisions: its verdict and warnings, repeated where it is
read, and a refusal for a fit that failed its checks unless the caller accepts it."""

from __future__ import annotations

import warnings

from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.fitting.record import FitRecord

ACCEPT = "--accept-unconverged"   # the command-line flag that accepts a flagged fit


class SavedFitWarning(ConvergenceWarning):
    """A warning recorded with a saved fit, repeated where the fit is read."""


class UnconvergedFitError(ValueError):
    """A saved fit failed its convergence checks and was not accepted."""


def check_saved_fit(tree, accept_unconverged: bool = False, stacklevel: int = 3) -> FitRecord:
    """Repeat a saved fit's warnings (`SavedFitWarning`) and raise `UnconvergedFitError` when
    its verdict is False, unless `accept_unconverged`. Returns its record."""
    record = FitRecord.from_tree(tree)
    where = record.origin
    for message in record.warnings:
        warnings.warn(f"{where}: {message}", SavedFitWarning, stacklevel=stacklevel)
    if record.converged is False and not accept_unconverged:
        first = record.diagnostics.warnings[0] if record.diagnostics.warnings else ""
        raise UnconvergedFitError(
            f"the saved fit did not converge ({first.split(':')[0]}), so its decisions would not be "
            f"reliable: refit it with more warmup and draws, or pass {ACCEPT} (accept_unconverged"
            "=True in Python) to use it anyway")
    return record


def verdict(tree) -> dict:
    """{"converged": True / False / "not checked", "warnings": [...]} of a fitted tree, for a
    decision's JSON."""
    record = FitRecord.from_tree(tree)
    return {"converged": record.converged, "warnings": list(record.warnings)}
