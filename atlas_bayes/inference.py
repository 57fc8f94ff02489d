"""Fit a scaling law to a run table with NUTS and return ArviZ 1.x data (an `xarray.DataTree`).

The result holds the groups posterior (natural-scale E, A, B, alpha, beta, ... as
deterministic sites), posterior_predictive and observed_data (log loss), log_likelihood
(pointwise, for LOO), sample_stats, and `fit_data`: the run table itself, so a saved file
alone tells what was fitted. Attributes record the law, target language, sampler settings,
a hash of the data and the diagnostics.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import arviz as az
import jax
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median

from atlas_bayes import __version__
from atlas_bayes.diagnostics import ConvergenceWarning, check_convergence
from atlas_bayes.law_inputs import build_inputs
from atlas_bayes.models import get_law
from atlas_bayes.runs import read_runs


@dataclass(frozen=True)
class Sampler:
    """NUTS settings. Chains run vectorised in one process (jax.vmap)."""
    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    seed: int = 0
    target_accept: float = 0.9
    dense_mass: bool = True
    chain_method: str = "vectorized"


def fit(runs: pd.DataFrame | str | Path, law: str = "chinchilla", *, language: str | None = None,
        transfer_languages: list[str] | None = None, nu: float = 4.0, centre: bool = True,
        sampler: Sampler = Sampler(), progress: bool = False, warn: bool = True) -> xr.DataTree:
    """Posterior of `law` given a run table (a DataFrame from `read_runs`, or a path).

    `language` picks the evaluated language when the table has several; `transfer_languages`
    overrides ATLAS's default K_t. Convergence problems raise `ConvergenceWarning` with advice
    (set `warn=False` to only record them in the result's attributes).
    """
    if not isinstance(runs, pd.DataFrame):
        runs = read_runs(runs)
    runs = select_language(runs, language)
    spec = get_law(law)
    inputs, info, log_loss = build_inputs(runs, transfer_languages=transfer_languages, centre=centre)
    model = spec.bind(nu=nu)

    start = time.perf_counter()
    kernel = NUTS(model, target_accept_prob=sampler.target_accept, dense_mass=sampler.dense_mass,
                  init_strategy=init_to_median())
    mcmc = MCMC(kernel, num_warmup=sampler.warmup, num_samples=sampler.draws,
                num_chains=sampler.chains, chain_method=sampler.chain_method,
                progress_bar=progress)
    key_fit, key_ppc = jax.random.split(jax.random.PRNGKey(sampler.seed))
    mcmc.run(key_fit, inputs, log_loss, extra_fields=("num_steps", "energy"))
    ppc = posterior_predictive(model, inputs, mcmc.get_samples(group_by_chain=True), key_ppc)
    seconds = time.perf_counter() - start

    coords = {"obs": info.obs_labels}
    dims = {"log_loss": ["obs"]}
    if "tau" in mcmc.get_samples():
        coords["transfer_language"] = info.transfer_languages
        dims["tau"] = ["transfer_language"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz notes on unused coords
        tree = az.from_numpyro(mcmc, posterior_predictive={"log_loss": np.asarray(ppc["log_loss"])},
                               log_likelihood=True, coords=coords, dims=dims,
                               pred_dims=dims)  # given, so arviz skips re-tracing the model
    tree["fit_data"] = xr.DataTree(dataset=runs_to_dataset(runs, info.obs_labels))

    reported = [name for name in spec.parameters if name in tree.posterior.data_vars] + ["sigma"]
    diagnostics = check_convergence(tree, reported)
    tree.attrs.update({
        "law": spec.name, "law_description": spec.description, "target_language": info.target,
        "transfer_languages": json.dumps(info.transfer_languages),
        "parameters": json.dumps(reported), "n_obs": int(len(runs)),
        "sampler": json.dumps(asdict(sampler)), "student_t_nu": float(nu), "centred": int(centre),
        "log_N_ref": float(inputs.log_N_ref), "log_D_ref": float(inputs.log_D_ref),
        "data_hash": data_hash(runs), "source": str(runs.attrs.get("source", "")),
        "simulated": int(runs["source"].astype(str).str.startswith("simulated").any()),
        "seconds": float(seconds), "atlas_bayes_version": __version__,
        "diagnostics": json.dumps(diagnostics.as_dict()),
    })
    if warn:
        for message in diagnostics.messages:
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return tree


def posterior_predictive(model, inputs, samples: dict, key) -> dict:
    """Draws of log loss for every posterior sample (leading chain and draw axes kept).

    Compiled as one call with the samples as arguments, so the compiled program is reused
    (and cached on disk) rather than rebuilt around each new set of draws.
    """
    def draw(key, samples):
        return Predictive(model, posterior_samples=samples, batch_ndims=2,
                          return_sites=["log_loss"])(key, inputs)
    return jax.jit(draw)(key, samples)


def select_language(runs: pd.DataFrame, language: str | None) -> pd.DataFrame:
    """Rows evaluated on `language` (all rows when None); a clear error if there are none."""
    if language is None:
        return runs
    chosen = runs[runs["language"] == language]
    if chosen.empty:
        have = ", ".join(sorted(map(str, runs["language"].unique()))[:20])
        raise ValueError(f"no rows evaluate language {language!r}; the table has: {have}")
    chosen = chosen.reset_index(drop=True)
    chosen.attrs = dict(runs.attrs)
    return chosen


def runs_to_dataset(runs: pd.DataFrame, labels: list[str]) -> xr.Dataset:
    """The run table as an xarray Dataset along `obs` (text columns as plain strings)."""
    columns = {}
    for name in runs.columns:
        values = runs[name]
        if pd.api.types.is_numeric_dtype(values):
            columns[name] = ("obs", values.to_numpy(float))
        else:
            columns[name] = ("obs", values.astype(str).to_numpy(dtype=str))
    return xr.Dataset(columns, coords={"obs": labels})


def data_hash(runs: pd.DataFrame) -> str:
    """Short hash of the table's contents, stored with every fit."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(runs.astype(str), index=False).to_numpy())
    return digest.hexdigest()[:16]


def save(tree: xr.DataTree, path: str | Path) -> Path:
    """Write a fit to a netCDF file (all groups, attributes included)."""
    path = Path(path)
    tree.to_netcdf(path, engine="h5netcdf")
    return path


def load(path: str | Path) -> xr.DataTree:
    """Read a fit written by `save`."""
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()
