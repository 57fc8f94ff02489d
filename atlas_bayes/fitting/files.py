"""Fits and inputs on disk: saving and loading a fit, and reading what commands take as files
or text (a fit or a run table, tau priors, a JSON object, transfer languages)."""

import json
import math
from pathlib import Path

import pandas as pd
import xarray as xr

from atlas_bayes.tables.atomic_files import atomic_file
from atlas_bayes.tables.runs import read_runs


def save(tree: xr.DataTree, path: str | Path) -> Path:
    """Write a fit to a netCDF file (all groups, attributes included), atomically: a save that
    is interrupted leaves the file as it was."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    return path


def load(path: str | Path) -> xr.DataTree:
    """Read a fit written by `save`."""
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()


def read_source(path: str | Path) -> xr.DataTree | pd.DataFrame:
    """A fit written by `save` (a .nc file), else a run table (`read_runs`): the input of what
    takes either (design, the compute-optimal size); ValueError when the .nc file is missing."""
    if Path(path).suffix != ".nc":
        return read_runs(path)
    if not Path(path).is_file():
        raise ValueError(f"{path}: file not found")
    try:
        return load(path)
    except (OSError, ValueError, KeyError, TypeError) as err:     # h5py/netCDF: corrupt, truncated
        raise ValueError(f"{path}: cannot be read as a saved fit ({type(err).__name__}: {err}); "
                         "expected a complete posterior.nc written by 'atlas-bayes fit'") from None


def read_tau_prior(path) -> dict:
    """Tau priors from a JSON file ({target: {source: [mean, sd]}}, as `transfer` writes
    tau_priors.json), for `options["tau_prior"]`; ValueError when it is not such an object."""
    given = read_json_object(path, "tau priors, {target: {source: [mean, sd]}}")
    check_tau_priors(given)
    return given


def check_tau_priors(given: dict) -> None:
    """ValueError naming the entry that is not {target: {source: [mean, sd]}} with finite
    numbers and sd > 0."""
    for target, sources in given.items():
        if not isinstance(sources, dict):
            raise ValueError(f"[{target!r}]: expected an object {{source: [mean, sd]}}, got "
                             f"{json.dumps(sources)[:60]}")
        for source, prior in sources.items():
            where = f"[{target!r}][{source!r}]"
            if not (isinstance(prior, list) and len(prior) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in prior)):
                raise ValueError(f"{where}: expected [mean, sd], two numbers, got "
                                 f"{json.dumps(prior)[:60]}")
            if not all(math.isfinite(v) for v in prior) or prior[1] <= 0:
                raise ValueError(f"{where}: expected a finite mean and a positive finite sd, got "
                                 f"{json.dumps(prior)}")


def read_json_object(path, holding: str) -> dict:
    """The JSON object in file `path`; ValueError when it cannot be read or is not an object
    (the message says it should hold `holding`)."""
    try:
        given = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot be read as JSON: {err}") from None
    if not isinstance(given, dict):
        raise ValueError(f"expected a JSON object of {holding}")
    return given


def parse_transfer_languages(text: str | None) -> list[str] | dict[str, list[str]] | None:
    """Transfer languages as text: 'en,es' -> a list; 'fr=en,es;sw=en' -> {target: list} (joint
    laws); None or '' -> None (the default). ValueError for a part without TARGET=LANG."""
    if not text or "=" not in text:
        return text.split(",") if text else None
    chosen = {}
    for part in filter(None, text.split(";")):
        target, _, sources = part.partition("=")
        if not target.strip() or not sources.strip():
            raise ValueError(f"expected TARGET=LANG[,LANG] in {part!r}")
        chosen[target.strip()] = [s.strip() for s in sources.split(",")]
    return chosen
