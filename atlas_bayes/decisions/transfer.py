"""The cross-lingual transfer matrix with uncertainty, and the decisions it supports.

`fit_transfer_matrix` takes measured transfer (a BTS table from `atlas_bayes.decisions.bts.bts_table`,
or any table with source, target, g_mean, g_sd) and fits `models.transfer.transfer_matrix`
(by default; `model="interaction"`: `models.transfer.transfer_interaction`): every ordered pair among
the languages, measured or not, gets a posterior of its log transfer efficiency g = log(1 +
tau) = log(2 d_mono / d_bi), hence of BTS = 2 (1 - e^-g) and of the ATLAS transfer weight
tau = e^g - 1 (the bridge of atlas-law.md section 3.7, exact when the bilingual run is D_eff =
D_t + tau D_s without repetition). Measured pairs are shrunk
where their own curves are uncertain; unmeasured pairs get source, target and script / family
/ genus information, the reverse direction's measurement and (interaction model) the source x
target interaction (latent language factors), with an honest residual spread (per target,
heavy-tailed, in the interaction model).
`transfer_interaction.deviations` lists the pairs the interaction moves most.

Decisions: `rank_sources` (which languages help a target, by P(positive transfer) and expected
tau), `tau_priors` (priors for ATLAS's tau, the paper's "initialised from BTS" made Bayesian).
Plots: `plot_transfer_matrix` (posterior median and interval width, ordered by family, genus
and script), `plot_source_ranking`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes.tables import languages as language_info
from atlas_bayes.decisions.bts import bts_from_efficiency
from atlas_bayes.fitting.inference import Sampler, sample_posterior
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.fitting.tree import build_tree
from atlas_bayes.decisions.transfer_interaction import (HYPERPARAMETERS as INTERACTION_CHECKED,
                                                       as_matrix, interaction_posterior)
from atlas_bayes.models.transfer import (MatrixInputs, coefficient_draws, pair_residuals,
                                         transfer_interaction, transfer_matrix)
from atlas_bayes.tables.atomic_files import atomic_file

COVARIATES = ("same_script", "same_family", "same_genus")
HYPERPARAMETERS = ("mu", "sd_source", "sd_target", "sd_pair", "rho", "gamma")
MAX_UNREACHABLE = 0.05   # pairs whose d_bi is infinite in more draws than this are not used
MODELS = ("interaction", "additive")
RANK = 2     # interaction factors (paper's matrix: 1 left the hard rows' error high, 3 mixed worse)
BRIDGE_SD = 0.1          # extra prior sd for tau: the BTS -> tau bridge ignores capacity effects


def language_order(codes) -> list[str]:
    """Languages ordered by family, genus and script (unknown codes last, alphabetically)."""
    table = language_info.table()

    def key(code):
        canon = language_info.canonical(code)
        if canon is None:
            return (1, "", "", "", code)
        row = table.loc[canon]
        return (0, row["family"], row["genus"], row["script_code"], code)
    return sorted(dict.fromkeys(codes), key=key)


def covariates(langs: list[str]) -> np.ndarray:
    """(n, n, 3) indicators: same script, same family, same genus (0 where either is unknown)."""
    table = language_info.table()
    keys = [language_info.canonical(code) for code in langs]
    unknown = [code for code, key in zip(langs, keys) if key is None]
    if unknown:
        warnings.warn(f"languages {unknown} are not in atlas_bayes/data/languages.csv: their "
                      "script, family and genus count as shared with no other language",
                      stacklevel=3)
    out = np.zeros((len(langs), len(langs), len(COVARIATES)))
    for k, column in enumerate(("script_code", "family", "genus")):
        values = np.array([None if key is None else table.at[key, column] for key in keys],
                          dtype=object)
        known = np.array([v is not None for v in values])
        out[:, :, k] = (values[:, None] == values[None, :]) & known[:, None] & known[None, :]
    return out


def matrix_inputs(table: pd.DataFrame, languages=None) -> tuple[MatrixInputs, np.ndarray, list[str]]:
    """Arrays for the matrix model from a measured table (source, target, g_mean, g_sd)."""
    missing = [c for c in ("source", "target", "g_mean", "g_sd") if c not in table.columns]
    if missing:
        raise ValueError(f"the transfer table lacks column(s) {missing}; expected source, "
                         "target, g_mean, g_sd (e.g. from atlas_bayes.decisions.bts.bts_table)")
    duplicated = table[table.duplicated(["source", "target"], keep=False)]
    if len(duplicated):
        pairs = sorted({f"{s}->{t}" for s, t in zip(duplicated["source"], duplicated["target"])})
        raise ValueError(f"pairs measured more than once (e.g. at several model sizes): {pairs}; "
                         "pass one model size (n_params)")
    bad = table.index[~(np.isfinite(table["g_mean"]) & (table["g_sd"] > 0))]
    if len(bad):
        raise ValueError(f"rows {list(bad)} of the transfer table: g_mean must be finite and "
                         "g_sd positive")
    self_pairs = table.index[table["source"] == table["target"]]
    if len(self_pairs):
        raise ValueError(f"rows {list(self_pairs)} of the transfer table: source equals target")
    langs = language_order(list(table["source"]) + list(table["target"]) + list(languages or []))
    n = len(langs)
    pos = {lang: i for i, lang in enumerate(langs)}
    src, tgt = np.array([(s, t) for t in range(n) for s in range(n) if s != t]).T
    pair_index = {(s, t): p for p, (s, t) in enumerate(zip(src, tgt))}
    reverse = np.array([pair_index[(t, s)] for s, t in zip(src, tgt)])
    measured = {pair_index[(pos[r.source], pos[r.target])]: (r.g_mean, r.g_sd)
                for r in table.itertuples()}
    single = [p for p in measured if reverse[p] not in measured]
    both = [q for p in measured if reverse[p] in measured and p < reverse[p] for q in (p, reverse[p])]
    order = np.array(single + both, dtype=int)
    eye = np.eye(n)
    design = np.concatenate([np.ones((len(src), 1)), covariates(langs)[src, tgt], eye[src], eye[tgt]],
                            axis=1)
    x = MatrixInputs(design=design, source=src, target=tgt, reverse=reverse, measured=order,
                     se=np.array([measured[p][1] for p in order]), n_single=len(single),
                     n_languages=n, n_covariates=len(COVARIATES))
    return x, np.array([measured[p][0] for p in order]), langs


def usable_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Measured pairs the matrix can use; warns naming any whose bilingual curve often never
    reaches the monolingual loss (a shorter horizon or a longer bilingual run fixes them)."""
    if "p_unreachable" not in table.columns:
        return table
    dropped = table[table["p_unreachable"] > MAX_UNREACHABLE]
    if len(dropped):
        names = [f"{s}->{t}" for s, t in zip(dropped["source"], dropped["target"])]
        warnings.warn(f"{len(dropped)} measured pair(s) left out of the matrix fit because the "
                      f"bilingual curve never reaches the monolingual loss in more than "
                      f"{MAX_UNREACHABLE:.0%} of draws: {names}; use a shorter horizon or "
                      "longer bilingual runs", stacklevel=3)
    return table[table["p_unreachable"] <= MAX_UNREACHABLE].reset_index(drop=True)


def fit_transfer_matrix(table: pd.DataFrame, *, languages=None, model: str = "additive",
                        rank: int = RANK, sampler: Sampler = Sampler(chains=4, warmup=500, draws=500),
                        progress: bool = False, warn: bool = True) -> xr.DataTree:
    """Posterior of the transfer matrix over the measured languages plus `languages`.

    `model`: "interaction" (`models.transfer.transfer_interaction`: `rank` source x target
    factors, a pair term shared by both directions, per-target Student-t noise) or "additive"
    (`models.transfer.transfer_matrix`: source and target effects and covariates only).
    Returns a DataTree whose posterior holds the hyperparameters, per-language source and
    target effects, and `g` (chain, draw, target, source) for every ordered pair (NaN on the
    diagonal); the interaction model adds `interaction` and `additive` (g's structured part
    without the interaction) per pair. `observed` holds the measured pairs used.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    if model == "interaction" and (not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be a whole number >= 1 (the interaction's factors), not {rank!r}")
    table = usable_pairs(table)
    x, y, langs = matrix_inputs(table, languages)
    n, k = len(langs), len(COVARIATES)
    if model == "interaction":
        x = x._replace(rank=rank)
        posterior, stats = sample_posterior(transfer_interaction, x, y, sampler, progress=progress)
        posterior = interaction_posterior(x, y, posterior, sampler.seed)
        g_pairs = posterior.pop("g_pairs")
        posterior.update(interaction=as_matrix(posterior.pop("interaction_pairs"), x),
                         additive=as_matrix(posterior.pop("additive_pairs"), x))
        check = [*INTERACTION_CHECKED, "gamma", "source_effect", "target_effect", "sigma_target"]
    else:
        posterior, stats = sample_posterior(transfer_matrix, x, y, sampler, progress=progress)
        posterior.pop("rho_01")
        beta = coefficient_draws(x, y, posterior, jax.random.PRNGKey(sampler.seed + 1))
        posterior.update(mu=beta[..., 0], gamma=beta[..., 1:1 + k], source_effect=beta[..., 1 + k:1 + k + n],
                         target_effect=beta[..., 1 + k + n:])
        fixed = beta @ x.design.T
        rng = np.random.default_rng(sampler.seed)
        g_pairs = fixed + pair_residuals(x, y, fixed, posterior["sd_pair"], posterior["rho"], rng)
        check = list(HYPERPARAMETERS) + ["source_effect", "target_effect"]
    posterior["g"] = as_matrix(g_pairs, x)
    dims = {"source_effect": ["language"], "target_effect": ["language"], "gamma": ["covariate"],
            "g": ["target", "source"], "interaction": ["target", "source"],
            "additive": ["target", "source"], "sigma_target": ["language"],
            "u": ["language", "factor"], "v": ["language", "factor"], "factor_sizes": ["factor"]}
    observed = xr.Dataset(
        {name: ("measured", table[name].to_numpy()) for name in ("source", "target", "g_mean", "g_sd")})
    record = FitRecord("transfer_matrix", languages=langs, sampler=asdict(sampler.resolved()),
                       options={"model": model, **({"rank": rank} if model == "interaction" else {})})
    return build_tree({"posterior": posterior, "sample_stats": stats}, record,
                      coords={"language": langs, "target": langs, "source": langs,
                              "covariate": list(COVARIATES), "factor": list(range(rank))},
                      dims={k: v for k, v in dims.items() if k in posterior},
                      datasets={"observed": observed}, check=check, warn=warn)


def transfer_draws(tree: xr.DataTree, scale: str = "bts") -> xr.DataArray:
    """Posterior draws of every pair on scale 'g', 'bts' or 'tau' (dims chain, draw, target, source)."""
    g = tree.posterior["g"].astype(float)
    if scale == "g":
        return g
    if scale == "bts":
        return bts_from_efficiency(g)
    if scale == "tau":
        return np.expm1(g)
    raise ValueError(f"scale must be 'g', 'bts' or 'tau', not {scale!r}")


def transfer_quantiles(tree: xr.DataTree, qs, scale: str = "bts") -> list[xr.DataArray]:
    """Posterior quantiles of every pair (target x source; NaN on the diagonal)."""
    draws = transfer_draws(tree, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the all-NaN diagonal
        return [draws.quantile(q, ("chain", "draw")).drop_vars("quantile") for q in qs]


def measured_pairs(tree: xr.DataTree) -> set[tuple[str, str]]:
    """(source, target) pairs with a measurement in the fit."""
    obs = tree["observed"].to_dataset()
    return set(zip(obs["source"].to_numpy().astype(str), obs["target"].to_numpy().astype(str)))


def rank_sources(tree: xr.DataTree, target: str, prob: float = 0.9) -> pd.DataFrame:
    """Candidate transfer languages for `target`, best first (by expected tau).

    Columns: P(BTS > 0) (= P(tau > 0)), tau mean and interval, BTS median and interval, and
    whether the pair was measured.
    """
    langs = list(tree.posterior["target"].to_numpy().astype(str))
    if target not in langs:
        raise ValueError(f"target {target!r} is not in the matrix (languages: {', '.join(langs)}); "
                         "add it with languages=[...] when fitting")
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    g = transfer_draws(tree, "g").sel(target=target).stack(s=("chain", "draw")).transpose("source", "s")
    sources = [s for s in langs if s != target]
    g = g.sel(source=sources).to_numpy()
    tau, bts = np.expm1(g), bts_from_efficiency(g)
    measured = measured_pairs(tree)
    table = pd.DataFrame({
        "source": sources, "p_positive": (g > 0).mean(axis=1), "tau_mean": tau.mean(axis=1),
        f"tau_q{lo * 100:02.0f}": np.quantile(tau, lo, axis=1),
        f"tau_q{hi * 100:02.0f}": np.quantile(tau, hi, axis=1),
        "bts_median": np.median(bts, axis=1),
        f"bts_q{lo * 100:02.0f}": np.quantile(bts, lo, axis=1),
        f"bts_q{hi * 100:02.0f}": np.quantile(bts, hi, axis=1),
        "measured": [(s, target) in measured for s in sources]})
    return table.sort_values("tau_mean", ascending=False).reset_index(drop=True)


def tau_priors(tree: xr.DataTree, transfer_languages: dict[str, list[str]],
               bridge_sd: float = BRIDGE_SD) -> dict[str, dict[str, list[float]]]:
    """Priors (mean, sd) for ATLAS's tau[target <- source], from the matrix posterior.

    The sd adds `bridge_sd` in quadrature: BTS is measured at one model size and horizon, and
    tau = e^g - 1 ignores capacity effects. Pass the result as `options={"tau_prior": ...}`
    to `fit` (a joint law takes the whole dict; a single-language law its target's entry).
    """
    langs = set(tree.posterior["target"].to_numpy().astype(str))
    tau = transfer_draws(tree, "tau")
    out = {}
    for target, sources in transfer_languages.items():
        for lang in [target, *sources]:
            if lang not in langs:
                raise ValueError(f"language {lang!r} is not in the transfer matrix; fit it with "
                                 f"languages=[{lang!r}, ...]")
        out[target] = {}
        for source in sources:
            draws = tau.sel(target=target, source=source).to_numpy().ravel()
            out[target][source] = [float(draws.mean()), float(np.hypot(draws.std(), bridge_sd))]
    return out


def plot_transfer_matrix(tree: xr.DataTree, path: str | Path | None = None, prob: float = 0.9,
                         scale: str = "bts"):
    """Heatmaps of the posterior median and of the interval width; dots mark measured pairs."""
    import matplotlib.pyplot as plt

    low, median, high = transfer_quantiles(tree, ((1 - prob) / 2, 0.5, (1 + prob) / 2), scale)
    median, width = median.to_numpy(), (high - low).to_numpy()
    langs = list(tree.posterior["target"].to_numpy().astype(str))
    n = len(langs)
    measured = measured_pairs(tree)
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(5.0, 0.28 * n + 2), max(4.5, 0.28 * n + 1.5)))
    limit = float(np.nanmax(np.abs(median))) or 1.0
    panels = ((axes[0], median, "RdBu", -limit, limit, f"posterior median {scale.upper()}"),
              (axes[1], width, "viridis", 0.0, float(np.nanmax(width)), f"{prob:.0%} interval width"))
    for ax, values, cmap, vmin, vmax, title in panels:
        image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks(range(n), langs, rotation=90, fontsize=7)
        ax.set_yticks(range(n), langs, fontsize=7)
        ax.set_xlabel("source language")
        ax.set_ylabel("target language")
        ax.set_title(title)
        cells = [(langs.index(s), langs.index(t)) for s, t in measured]
        if cells:
            xs, ys = zip(*cells)
            ax.scatter(xs, ys, s=4, c="k", marker=".", label="measured")
        for boundary in _family_boundaries(langs):
            ax.axhline(boundary - 0.5, color="grey", lw=0.5)
            ax.axvline(boundary - 0.5, color="grey", lw=0.5)
    fig.suptitle("Bilingual transfer (rows: target, columns: source); ordered by family, genus, script")
    fig.tight_layout()
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
    return fig


def plot_source_ranking(tree: xr.DataTree, target: str, path: str | Path | None = None,
                        prob: float = 0.9, top: int | None = None):
    """Per-target ranking: tau interval per source, coloured by P(positive transfer)."""
    import matplotlib.pyplot as plt

    table = rank_sources(tree, target, prob)
    if top:
        table = table.head(top)
    lo, hi = [c for c in table.columns if c.startswith("tau_q")]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(table) + 1.5))
    y = np.arange(len(table))[::-1]
    colours = plt.cm.coolwarm_r(table["p_positive"].to_numpy())
    ax.hlines(y, table[lo], table[hi], colors=colours, lw=3)
    ax.scatter(table["tau_mean"], y, c=colours, edgecolors="k", zorder=3)
    ax.axvline(0.0, color="grey", lw=0.8)
    labels = [f"{s}{' *' if m else ''}  P+={p:.2f}" for s, m, p in
              zip(table["source"], table["measured"], table["p_positive"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(f"transfer weight tau = exp(g) - 1 ({prob:.0%} interval; * measured)")
    ax.set_title(f"Which languages help {target}?")
    fig.tight_layout()
    if path is not None:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120)
    return fig


def _family_boundaries(langs: list[str]) -> list[int]:
    families = [language_info.family(code) for code in langs]
    return [i for i in range(1, len(langs)) if families[i] != families[i - 1]]
