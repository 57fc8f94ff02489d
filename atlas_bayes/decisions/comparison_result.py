"""The `compare` command's result: laws judged on the paper's held-out splits and by PSIS-LOO
(`comparison.py` holds the scores, tables and plots)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from atlas_bayes.decisions import comparison
from atlas_bayes.tables.atomic_files import atomic_write


@dataclass
class ComparisonResult:
    """The held-out table (`held`), the LOO table (`loo`, None when skipped), the laws and
    splits compared and the seconds it took. `as_dict()` is the --json object (laws, splits,
    held_out, loo, seconds), `to_text()` the readable tables, `write(out)` the files
    (held_out.csv/.png, loo.csv and loo.png when there is a LOO table with scores)."""
    laws: list[str]
    splits: list[str]
    held: pd.DataFrame
    loo: pd.DataFrame | None
    seconds: float

    def as_dict(self) -> dict:
        """laws, splits, held_out and loo (JSON records; loo [] when skipped), seconds."""
        return {"laws": self.laws, "splits": self.splits,
                "held_out": comparison.held_out_records(self.held),
                "loo": comparison.loo_records(self.loo) if self.loo is not None else [],
                "seconds": self.seconds}

    def files(self, out: Path) -> list[Path]:
        """The files `write(out)` writes."""
        names = ["held_out.csv", "held_out.png"]
        if self.loo is not None:
            names.append("loo.csv")
            if self.loo["elpd"].notna().any():
                names.append("loo.png")
        return [out / name for name in names]

    def to_text(self, out: Path | None = None) -> str:
        """The comparison tables (`format_comparison`); with `out`, the line naming the files."""
        text = comparison.format_comparison(self.held, self.loo)
        if out is not None:
            text += f"\n\nwrote {', '.join(map(str, self.files(out)))}"
        return text

    def write(self, out: Path) -> None:
        """Write the tables and their plots into the folder `out`."""
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "held_out.csv", self.held.to_csv(index=False))
        comparison.plot_held_out(self.held, out / "held_out.png")
        if self.loo is not None:
            atomic_write(out / "loo.csv", self.loo.to_csv())
            if self.loo["elpd"].notna().any():
                comparison.plot_loo(self.loo, out / "loo.png")


def compare_laws(runs: pd.DataFrame, laws: list[str], splits: list[str], *, sampler,
                 languages: list[str], seed: int = 0, loo: bool = True,
                 progress=None) -> ComparisonResult:
    """Fit each law on each held-out split (`held_out_table`, `seed` for the random split) and,
    unless `loo` is False, on all rows (`loo_table`); `progress` gets one line per fit."""
    start = time.perf_counter()
    held = comparison.held_out_table(runs, laws, splits, sampler=sampler, languages=languages,
                                     seed=seed, progress=progress)
    table = comparison.loo_table(runs, laws, sampler=sampler, languages=languages,
                                 progress=progress) if loo else None
    return ComparisonResult(laws, splits, held, table, time.perf_counter() - start)
