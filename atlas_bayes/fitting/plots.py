"""Plots of a fit: the observed runs against the posterior predictive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from atlas_bayes.fitting.record import FitRecord  # noqa: E402
from atlas_bayes.tables.atomic_files import atomic_file

SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def predictive_intervals(tree: xr.DataTree, prob: float = 0.9):
    """Posterior-predictive median and equal-tailed `prob` interval of the loss, per observation."""
    draws = np.exp(tree.posterior_predictive["log_loss"].stack(sample=("chain", "draw")).values)
    tail = (1 - prob) / 2
    low, median, high = np.quantile(draws, [tail, 0.5, 1 - tail], axis=-1)
    return median, low, high


def plot_fit(tree: xr.DataTree, path: str | Path | None = None, prob: float = 0.9):
    """Two panels: loss against tokens with predictive intervals, and observed vs predicted.

    Points are coloured by model size; runs with several checkpoints get their predicted
    learning curve drawn through the medians. Returns the figure (saved when `path` is given).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogFormatter

    class PowersOfTen(LogFormatter):
        """Log-axis labels as plain text (10¹¹, 3×10¹⁰): matplotlib's default writes them in
        mathtext, whose parser takes ~0.4 s to build in each process that draws a plot."""
        def _num_to_string(self, x, vmin, vmax):
            exponent = int(np.floor(np.log10(x) + 1e-9))
            mantissa = x / 10.0 ** exponent
            power = "10" + str(exponent).translate(SUPERSCRIPTS)
            return power if round(mantissa, 6) == 1 else f"{mantissa:.3g}×{power}"

    record = FitRecord.from_tree(tree, require=("law", "target_language"), purpose="plot_fit")
    data = tree["fit_data"].to_dataset()
    observed = np.exp(tree.observed_data["log_loss"].values)
    median, low, high = predictive_intervals(tree, prob)
    tokens, n_params = data["n_tokens"].values, data["n_params"].values
    inside = np.mean((observed >= low) & (observed <= high))

    fig, (ax_curve, ax_diag) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    norm = LogNorm(n_params.min(), max(n_params.max(), n_params.min() * 1.01))
    colours = plt.cm.viridis(norm(n_params))
    ax_curve.vlines(tokens, low, high, colors=colours, alpha=0.35, linewidth=2,
                    label=f"{prob:.0%} posterior predictive")
    runs = data["run_id"].values
    for run in np.unique(runs):
        rows = np.flatnonzero(runs == run)
        if len(rows) > 1:
            order = rows[np.argsort(tokens[rows])]
            ax_curve.plot(tokens[order], median[order], color=colours[order[0]], linewidth=1)
    ax_curve.scatter(tokens, observed, c=colours, s=14, edgecolors="black", linewidths=0.3,
                     label="observed", zorder=3)
    ax_curve.set(xscale="log", yscale="log", xlabel="training tokens seen (n_tokens)",
                 ylabel="loss", title=f"{record.law} fit: loss vs tokens")
    ax_curve.legend(loc="upper right", fontsize=8)
    colourbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax_curve,
                             label="model parameters N")
    for axis in (ax_curve.xaxis, colourbar.ax.yaxis):
        axis.set_major_formatter(PowersOfTen())
        axis.set_minor_formatter(PowersOfTen(labelOnlyBase=False, minor_thresholds=(1, 0.4)))

    ax_diag.errorbar(median, observed, xerr=[median - low, high - median], fmt="none",
                     ecolor="grey", alpha=0.4, linewidth=1)
    ax_diag.scatter(median, observed, c=colours, s=14, edgecolors="black", linewidths=0.3, zorder=3)
    lo, hi = min(observed.min(), low.min()), max(observed.max(), high.max())
    ax_diag.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--")
    ax_diag.set(xscale="log", yscale="log", xlabel="posterior predictive median loss",
                ylabel="observed loss",
                title=f"{inside:.0%} of {len(observed)} runs inside the {prob:.0%} interval")
    for axis in (ax_curve.yaxis, ax_diag.xaxis, ax_diag.yaxis):
        axis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(3, 1)))
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(3, 1)))
    source = record.source or ""
    simulated = "   SIMULATED DATA" if record.simulated else ""
    fig.suptitle(f"target language: {record.target_language}"
                 + (f"   data: {Path(source).name}" if source else "") + simulated, fontsize=10)
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
    return fig
