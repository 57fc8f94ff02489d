"""Fits and inputs on disk: saving and loading a fit, and reading what commands take as files
or text (a fit or a run table, tau priors, a JSON object, transfer languages)."""

import json
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
    return load(path)


def read_tau_prior(path) -> dict:
    """Tau priors from a JSON file ({target: {source: [mean, sd]}}, as `transfer` writes
    tau_priors.json), for `options["tau_prior"]`; ValueError when it is not such an object."""
    return read_json_object(path, "tau priors, {target: {source: [mean, sd]}}")


def read_json_object(path, holding: str) -> dict:
    """The JSON object in file `path`; ValueError when it cannot be read or is not an object
    (the message says it should hold `holding`)."""
    try:
        given = json.loads(Path(path).read_text())
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
