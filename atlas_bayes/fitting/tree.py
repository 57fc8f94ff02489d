"""One builder for every fitted result's DataTree: groups, labels, diagnostics, attributes."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Sequence

import arviz_base as azb
import xarray as xr

from atlas_bayes.fitting.diagnostics import ConvergenceWarning, check_convergence, unchecked
from atlas_bayes.fitting.record import Convergence, FitRecord
from atlas_bayes.fitting.stuck import RestartedChainWarning


def build_tree(groups: dict[str, dict], record: FitRecord, *, coords: dict | None = None,
               dims: dict | None = None, labels: dict[str, dict] | None = None,
               datasets: dict[str, xr.Dataset] | None = None, check: Sequence[str] | None = None,
               warn: bool = True, stacklevel: int = 3, r_hat_advice: str = "") -> xr.DataTree:
    """A fit's DataTree from dicts of draws, with its record as attributes.

    `groups` maps ArviZ groups (posterior, posterior_predictive, log_likelihood,
    observed_data, sample_stats) to {name: array}, draws with leading (chain, draw) axes;
    `coords` and `dims` label their axes as in `arviz.from_dict`. `labels` adds non-index
    coordinates per group ({"posterior": {"language": ("cell", values)}}), skipping any whose
    dimensions the group lacks; `datasets` adds further groups as they are (e.g. fit_data).
    The convergence of the variables in `check` (R-hat, bulk ESS, divergences; None: not
    checked, as for an approximation) goes into the record, and its problems are raised once
    as `ConvergenceWarning` when `warn` (`stacklevel` 3 points at the fit's caller); chains
    that the sampler reran because they got stuck (`fitting.stuck`) are recorded and said in
    a `RestartedChainWarning`. `r_hat_advice` is added to the R-hat warning (`check_convergence`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # unnamed dims of unlabelled variables
        tree = azb.from_dict(groups, coords=coords or {}, dims=dims or {})
    for group, extra in (labels or {}).items():
        data = tree[group].to_dataset()
        usable = {name: value for name, value in extra.items()
                  if set(_dims_of(value)) <= set(data.dims)}
        if usable:
            tree[group] = data.assign_coords(usable)
    for name, data in (datasets or {}).items():
        tree[name] = xr.DataTree(dataset=data)
    diagnostics = (unchecked() if check is None
                   else check_convergence(tree, list(check), r_hat_advice))
    checked = Convergence.of(diagnostics)
    if record.diagnostics is not None:    # what the fit counted itself (its compilations)
        checked = replace(checked, n_compilations=record.diagnostics.n_compilations,
                          compile_seconds=record.diagnostics.compile_seconds)
    record = replace(record, diagnostics=checked)
    tree.attrs.update(record.to_attrs())
    if warn:
        for note in diagnostics.notes:
            warnings.warn(note, RestartedChainWarning, stacklevel=stacklevel)
        for message in diagnostics.messages:
            warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
    return tree


def _dims_of(coordinate) -> tuple:
    """The dimensions of a coordinate given as (dims, values)."""
    dims = coordinate[0]
    return (dims,) if isinstance(dims, str) else tuple(dims)
