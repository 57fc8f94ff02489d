"""The `transfer` command's result: the bilingual transfer scores of the measured pairs, the
transfer matrix over all pairs, source rankings and ATLAS tau priors for targets (`bts.py`
and `transfer.py` hold the models)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from atlas_bayes.decisions.bts import bts_table, fit_bts
from atlas_bayes.decisions.comparison import names
from atlas_bayes.decisions.transfer import (RANK, fit_transfer_matrix, plot_source_ranking,
                                            plot_transfer_matrix, rank_sources, tau_priors)
from atlas_bayes.decisions.transfer_interaction import deviations
from atlas_bayes.fitting.inference import save
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.tables.atomic_files import atomic_write

FILES = ("matrix.png, ranking_<target>.png/.csv, bts.csv, tau_priors.json, matrix.nc, "
         "bts_curves.nc, transfer.json, interaction.csv (interaction model)")


@dataclass
class TransferResult:
    """The BTS curve fit (`curves`), the measured pairs' scores (`measured`), the matrix fit
    (`matrix`), each target's source ranking (`rankings`), tau priors for its best sources
    (`priors`) and, for the interaction model, the pairs that depart most from the additive
    prediction (`deviations`; None for the additive model). `as_dict()` is the --json object
    (print it with `default=str`), `to_text()` the readable tables, `write(out)` the files
    (matrix and ranking plots, bts.csv, ranking_<target>.csv, tau_priors.json, matrix.nc,
    bts_curves.nc, transfer.json, interaction.csv)."""
    targets: list[str]
    curves: xr.DataTree
    measured: pd.DataFrame
    matrix: xr.DataTree
    rankings: dict[str, pd.DataFrame]
    priors: dict
    deviations: pd.DataFrame | None = None

    def as_dict(self) -> dict:
        """targets, n_measured_pairs, languages, model, diagnostics {curves, matrix}, measured
        (records), rankings {target: records}, tau_priors, interaction (records; null for the
        additive model)."""
        return {"targets": self.targets, "n_measured_pairs": int(len(self.measured)),
                "languages": list(FitRecord.from_tree(self.matrix).languages),
                "model": (FitRecord.from_tree(self.matrix).options or {}).get("model", "additive"),
                "diagnostics": {"curves": FitRecord.from_tree(self.curves).diagnostics.as_dict(),
                                "matrix": FitRecord.from_tree(self.matrix).diagnostics.as_dict()},
                "measured": self.measured.to_dict(orient="records"),
                "rankings": {t: r.to_dict(orient="records") for t, r in self.rankings.items()},
                "tau_priors": self.priors,
                "interaction": None if self.deviations is None else self.deviations.to_dict(orient="records")}

    def to_text(self, out: Path | None = None) -> str:
        """The measured pairs' BTS and each target's ranking (* = measured); with `out`, the
        line naming the files."""
        columns = ["source", "target", "bts_median", "bts_q05", "bts_q95", "p_positive"]
        lines = [f"{len(self.measured)} measured pairs (BTS at the reference horizon, median and "
                 "90% interval):", self.measured[columns].round(3).to_string(index=False)]
        for target, table in self.rankings.items():
            lines.append(f"\nTransfer languages for {target}, best first (tau = exp(g) - 1; "
                         "* = measured):")
            shown = table.assign(source=[s + (" *" if m else "")
                                         for s, m in zip(table.source, table.measured)])
            lines.append(shown.drop(columns="measured").round(3).to_string(index=False))
        if self.deviations is not None:
            lines.append("\nPairs the interaction moves most from the additive prediction (on g = "
                         "log(1 + tau); additive: effects + covariates alone):")
            lines.append(self.deviations.round(3).to_string(index=False))
        if out is not None:
            lines.append(f"\nwrote {out}/: {FILES}")
        return "\n".join(lines)

    def write(self, out: Path) -> None:
        """Write the fits, tables, plots, tau priors and transfer.json into the folder `out`."""
        out.mkdir(parents=True, exist_ok=True)
        save(self.curves, out / "bts_curves.nc")
        save(self.matrix, out / "matrix.nc")
        atomic_write(out / "bts.csv", self.measured.to_csv(index=False))
        plot_transfer_matrix(self.matrix, out / "matrix.png")
        atomic_write(out / "tau_priors.json", json.dumps(self.priors, indent=2))
        for target, table in self.rankings.items():
            atomic_write(out / f"ranking_{target}.csv", table.to_csv(index=False))
            plot_source_ranking(self.matrix, target, out / f"ranking_{target}.png")
        if self.deviations is not None:
            atomic_write(out / "interaction.csv", self.deviations.to_csv(index=False))
        atomic_write(out / "transfer.json", json.dumps(self.as_dict(), indent=2, default=str))


def transfer_study(runs, targets: list[str] | str, *, sampler, languages: list[str] | str | None = (),
                   n_params: float | None = None, horizon: float | None = None,
                   tau_priors_for: int = 3, model: str = "additive", rank: int = RANK,
                   progress: bool = False) -> TransferResult:
    """Fit the BTS curves of the measured pairs, the transfer matrix over `targets` plus
    `languages` (lists, or comma-separated text; and the measured ones), rank each target's
    sources, and derive tau priors for each target's `tau_priors_for` best sources. `model`
    and `rank`: the matrix model (`transfer.fit_transfer_matrix`)."""
    targets, languages = names(targets), names(languages)
    curves = fit_bts(runs, n_params=n_params, horizon=horizon, sampler=sampler, progress=progress)
    measured = bts_table(curves)
    matrix = fit_transfer_matrix(measured, languages=list(targets) + list(languages), model=model,
                                 rank=rank, sampler=sampler, progress=progress)
    rankings = {t: rank_sources(matrix, t) for t in targets}
    priors = tau_priors(matrix, {t: list(r["source"].head(tau_priors_for))
                                 for t, r in rankings.items()})
    return TransferResult(list(targets), curves, measured, matrix, rankings, priors,
                          deviations(matrix) if model == "interaction" else None)
