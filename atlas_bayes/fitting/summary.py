"""Summaries of a fit: a machine-readable dict (the CLI's --json contract) and a readable table."""

from __future__ import annotations

import json

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.fitting.diagnostics import flatten_scalars


def parameter_table(tree: xr.DataTree) -> pd.DataFrame:
    """One row per natural-scale parameter: mean, median, q05, q95, r_hat, ess_bulk."""
    names = json.loads(tree.attrs["parameters"])
    posterior = tree.posterior.to_dataset()[names]
    stacked = posterior.stack(sample=("chain", "draw"))
    stats = {
        "mean": flatten_scalars(stacked.mean("sample")),
        "median": flatten_scalars(stacked.median("sample")),
        "q05": flatten_scalars(stacked.quantile(0.05, "sample").drop_vars("quantile")),
        "q95": flatten_scalars(stacked.quantile(0.95, "sample").drop_vars("quantile")),
        "r_hat": flatten_scalars(azs.rhat(tree, var_names=names)),
        "ess_bulk": flatten_scalars(azs.ess(tree, var_names=names, method="bulk")),
    }
    return pd.DataFrame(stats)


def summary_dict(tree: xr.DataTree) -> dict:
    """The fit summary as plain JSON-able Python (see the CLI contract in the README)."""
    table = parameter_table(tree)
    diagnostics = json.loads(tree.attrs["diagnostics"])
    return {
        "law": tree.attrs["law"],
        "n_obs": int(tree.attrs["n_obs"]),
        "target_language": tree.attrs["target_language"],
        "parameters": {name: {k: _finite(v) for k, v in row.items()}
                       for name, row in table.to_dict(orient="index").items()},
        "diagnostics": {k: _finite(v) if isinstance(v, float) else v for k, v in diagnostics.items()},
        "seconds": float(tree.attrs["seconds"]),
        "left_out_runs": _left_out(tree),
    }


def format_summary(tree: xr.DataTree) -> str:
    """A readable summary: what was fitted, the parameter table, and the diagnostics."""
    table = parameter_table(tree)
    diagnostics = json.loads(tree.attrs["diagnostics"])
    lines = [
        f"{tree.attrs['law_description']}"
        + ("   [fitted to SIMULATED data]" if tree.attrs.get("simulated") else ""),
        f"target language: {tree.attrs['target_language']}   observations: {tree.attrs['n_obs']}"
        f"   source: {tree.attrs.get('source') or '-'}",
        "",
        table.to_string(float_format=_fmt),
        "",
        f"90% credible intervals (q05-q95). Divergences: {diagnostics['divergences']}, "
        f"max R-hat: {diagnostics['max_r_hat']:.3f}, min bulk ESS: {diagnostics['min_ess_bulk']:.0f}, "
        f"sampling time: {tree.attrs['seconds']:.1f} s",
    ]
    if _left_out(tree):
        lines.append(f"left out (continued from a checkpoint): {', '.join(_left_out(tree))}")
    return "\n".join(lines)


def _left_out(tree: xr.DataTree) -> list[str]:
    """Runs the fit left out (`runs.split_continued`); older fits record none."""
    return json.loads(tree.attrs.get("left_out_runs", "[]"))


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None
