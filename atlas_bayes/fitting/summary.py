"""Summaries of a fit: a machine-readable dict (the CLI's --json contract) and a readable table;
`FitResult`, what the `fit` command reports and writes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.fitting.diagnostics import ess_bulk, failed_as_inf, flatten_scalars, rhat
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.tables.atomic_files import atomic_write

SUMMARY_NEEDS = ("law", "law_description", "target_language", "n_obs", "parameters",
                 "diagnostics", "seconds")


def parameter_table(tree: xr.DataTree) -> pd.DataFrame:
    """One row per natural-scale parameter: mean, median, q05, q95, r_hat, ess_bulk."""
    record = FitRecord.from_tree(tree, require=("parameters",), purpose="the parameter table")
    names = list(record.parameters)
    posterior = tree.posterior.to_dataset()[names]
    stacked = posterior.stack(sample=("chain", "draw"))
    stats = {
        "mean": flatten_scalars(stacked.mean("sample")),
        "median": flatten_scalars(stacked.median("sample")),
        "q05": flatten_scalars(stacked.quantile(0.05, "sample").drop_vars("quantile")),
        "q95": flatten_scalars(stacked.quantile(0.95, "sample").drop_vars("quantile")),
        "r_hat": _r_hat(tree, names),
        "ess_bulk": flatten_scalars(ess_bulk(tree, names)),
    }
    return pd.DataFrame(stats)


def _r_hat(tree: xr.DataTree, names: list[str]) -> dict[str, float]:
    """R-hat per parameter: NaN where not computed (one chain), infinite where it failed."""
    values = flatten_scalars(rhat(tree, names))
    return failed_as_inf(values) if tree.posterior.sizes["chain"] > 1 else values


def summary_dict(tree: xr.DataTree, table: pd.DataFrame | None = None) -> dict:
    """The fit summary as plain JSON-able Python (see the CLI contract in the README);
    `table`: the tree's `parameter_table` when already computed."""
    record = FitRecord.from_tree(tree, require=SUMMARY_NEEDS, purpose="the summary")
    table = parameter_table(tree) if table is None else table
    return {
        "law": record.law,
        "n_obs": record.n_obs,
        "target_language": record.target_language,
        "parameters": {name: {k: _finite(v, failed=k == "r_hat") for k, v in row.items()}
                       for name, row in table.to_dict(orient="index").items()},
        "diagnostics": {k: v for k, v in record.diagnostics.as_json().items() if k != "converged"},
        "converged": record.converged,
        "warnings": list(record.warnings),
        "seconds": record.seconds,
        "left_out_runs": list(record.left_out_runs or []),
        **({"method": record.method, "approximation": record.approximation}
           if record.approximation else {}),
    }


def format_summary(tree: xr.DataTree, table: pd.DataFrame | None = None) -> str:
    """A readable summary: what was fitted, the parameter table (`table` when already
    computed), and the diagnostics."""
    record = FitRecord.from_tree(tree, require=SUMMARY_NEEDS, purpose="the summary")
    table = parameter_table(tree) if table is None else table
    diagnostics = record.diagnostics.as_json()
    left_out = list(record.left_out_runs or [])   # older fits record none
    lines = [
        f"{record.law_description}"
        + ("   [fitted to SIMULATED data]" if record.simulated else ""),
        f"target language: {record.target_language}   observations: {record.n_obs}"
        f"   source: {record.source or '-'}",
        "",
        table.to_string(float_format=_fmt),
        "",
    ]
    if record.approximation:   # no chains to check: say what the method is and how it was checked
        lines += [f"90% credible intervals (q05-q95). Fitting time: {record.seconds:.1f} s",
                  record.approximation]
    else:
        lines.append(
            f"90% credible intervals (q05-q95). Divergences: {diagnostics['divergences']}, "
            f"max R-hat: {_number(diagnostics['max_r_hat'], '.3f')}, min bulk ESS: "
            f"{_number(diagnostics['min_ess_bulk'], '.0f')}, sampling time: {record.seconds:.1f} s")
    if left_out:
        lines.append(f"left out (continued from a checkpoint): {', '.join(left_out)}")
    lines.append(verdict_line(record))
    lines += [f"warning: {message}" for message in record.warnings]
    return "\n".join(lines)


def verdict_line(record: FitRecord) -> str:
    """One line with the fit's verdict, in words."""
    words = {True: "converged", False: "NOT converged (see the warnings)",
             "not checked": "convergence not checked (no chains compared)"}
    return f"verdict: {words[record.converged]}"


def _number(value, spec: str) -> str:
    """A diagnostic number, or its word ("failed"; "not computed" for null)."""
    return "not computed" if value is None else value if isinstance(value, str) else format(value, spec)


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def _finite(value, failed: bool = False):
    """A JSON number: NaN (not computed) as None; infinity as None, or "failed" with `failed`."""
    value = float(value)
    if failed and np.isinf(value):
        return "failed"
    return value if np.isfinite(value) else None


def json_safe(value):
    """Plain JSON values: numpy scalars as Python numbers, non-finite numbers as None (null),
    inside dicts, lists and tuples too."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# The `fit` command's result


@dataclass
class FitResult:
    """A fitted law's posterior and what `atlas-bayes fit` reports about it: `as_dict()` is
    `summary_dict` (the --json contract), `to_text()` the readable summary, `write(out)` the
    files (posterior.nc, fit.png, summary.json, summary.txt)."""
    tree: xr.DataTree

    @cached_property
    def table(self) -> pd.DataFrame:
        """The `parameter_table`, computed once for the summaries written and printed."""
        return parameter_table(self.tree)

    def as_dict(self) -> dict:
        """The fit summary as plain JSON-able Python (`summary_dict`)."""
        return summary_dict(self.tree, self.table)

    def to_text(self, out: Path | None = None) -> str:
        """The readable summary; with `out`, followed by the line naming the files written."""
        text = format_summary(self.tree, self.table)
        if out is not None:
            text += f"\n\nwrote {out / 'posterior.nc'}, {out / 'fit.png'}, {out / 'summary.json'}"
        return text

    def write(self, out: Path) -> None:
        """Write posterior.nc, fit.png, summary.json and summary.txt into the folder `out`."""
        from atlas_bayes.fitting.inference import save
        from atlas_bayes.fitting.plots import plot_fit

        out.mkdir(parents=True, exist_ok=True)
        save(self.tree, out / "posterior.nc")
        plot_fit(self.tree, out / "fit.png")
        atomic_write(out / "summary.json", json.dumps(self.as_dict(), indent=2))
        atomic_write(out / "summary.txt", format_summary(self.tree, self.table) + "\n")


def fit_result(runs, law: str, *, sampler, language: str | None = None,
               transfer_languages=None, options: dict | None = None,
               progress: bool = False) -> FitResult:
    """Fit `law` to a run table (`inference.fit`) and return the result `fit` reports."""
    from atlas_bayes.fitting.inference import fit

    return FitResult(fit(runs, law, language=language, transfer_languages=transfer_languages,
                         sampler=sampler, options=options, progress=progress))
