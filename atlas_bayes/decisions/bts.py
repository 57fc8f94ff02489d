"""The bilingual transfer score (BTS) from learning curves, with a posterior.

The paper's definition (docs: ../shared/reference/atlas-law.md section 3.1): a monolingual run
on target t and a 50/50 bilingual run on (s, t), at one model size. At a reference horizon
d_mono (tokens of the monolingual run), L* = L_mono(d_mono); d_bi is the total tokens the
bilingual run needs to reach L* on t; BTS = 2 - d_bi / d_mono. We also report the log
transfer efficiency g = log(2 d_mono / d_bi) = log(1 + tau), the scale the transfer matrix
is modelled on (BTS = 2 (1 - exp(-g))).

Every run's curve on each evaluated language gets a posterior (`models.transfer.
learning_curves`, all curves in one vectorised fit) and BTS is computed per posterior draw,
so both curves' uncertainty reaches it. Draws whose bilingual curve never reaches L* (its
fitted floor E lies above L*) give d_bi = inf, BTS = -inf: counted, never hidden.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import laws
from atlas_bayes.fitting.inference import Sampler, sample_posterior
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.fitting.tree import build_tree
from atlas_bayes.tables.runs import mixture_fractions, read_runs
from atlas_bayes.models.transfer import CurveInputs, learning_curves

SHARE_TOLERANCE = 0.01
MIN_CHECKPOINTS = 3
HORIZON_SHARE = 0.25   # default horizon: this share of the shortest run's final tokens
CURVE_PARAMETERS = ("L_end", "E", "beta", "sigma")


def run_kinds(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per training run: run_id, n_params, init, kind (mono/bilingual/other), languages."""
    fractions = mixture_fractions(runs)
    rows = []
    for run_id, index in runs.groupby("run_id", sort=False).groups.items():
        first = index[0]
        shares = fractions.loc[first]
        shares = shares[shares > SHARE_TOLERANCE]
        if len(shares) == 1 and abs(shares.iloc[0] - 1.0) < SHARE_TOLERANCE:
            kind = "mono"
        elif len(shares) == 2 and np.allclose(shares.to_numpy(), 0.5, atol=SHARE_TOLERANCE):
            kind = "bilingual"
        else:
            kind = "other"
        rows.append({"run_id": run_id, "n_params": float(runs.at[first, "n_params"]),
                     "init": runs.at[first, "init"], "kind": kind,
                     "languages": tuple(sorted(shares.index))})
    return pd.DataFrame(rows)


def bilingual_pairs(runs: pd.DataFrame, n_params: float | None = None) -> pd.DataFrame:
    """Every measurable ordered pair: (source, target, n_params, mono_run, bilingual_run).

    A pair needs, at one model size and trained from scratch, a monolingual run on the
    target, a 50/50 bilingual run on (source, target) evaluated on the target, and no second
    candidate for either role (ambiguity is an error, not a silent choice).
    """
    kinds = run_kinds(runs)
    kinds = kinds[kinds["init"] == "scratch"]
    if n_params is not None:
        kinds = kinds[np.isclose(kinds["n_params"], n_params, rtol=1e-6)]
    evaluated = runs.groupby("run_id")["language"].agg(set)
    source = runs.attrs.get("source") or "the run table"
    mono = {}
    for row in kinds[kinds["kind"] == "mono"].itertuples():
        key = (row.languages[0], row.n_params)
        if key in mono:
            raise ValueError(f"{source}: two monolingual runs on {key[0]!r} at n_params "
                             f"{key[1]:.4g} ({mono[key]!r}, {row.run_id!r}); BTS needs one: "
                             "drop one, or pass n_params to pick a size")
        mono[key] = row.run_id
    pairs, seen, missing = [], {}, []
    for row in kinds[kinds["kind"] == "bilingual"].itertuples():
        key = (row.languages, row.n_params)
        if key in seen:
            raise ValueError(f"{source}: two 50/50 bilingual runs on {'/'.join(key[0])} at "
                             f"n_params {key[1]:.4g} ({seen[key]!r}, {row.run_id!r}); keep one")
        seen[key] = row.run_id
        for target in row.languages:
            if target not in evaluated[row.run_id]:
                continue
            (other,) = [lang for lang in row.languages if lang != target]
            partner = mono.get((target, row.n_params))
            if partner is None or target not in evaluated[partner]:
                missing.append(f"{other}->{target} ({row.run_id})")
                continue
            pairs.append({"source": other, "target": target, "n_params": row.n_params,
                          "mono_run": partner, "bilingual_run": row.run_id})
    if missing:
        warnings.warn(f"{source}: no monolingual run at the same size for {len(missing)} "
                      f"bilingual direction(s), which get no BTS: {', '.join(missing[:10])}"
                      + (" ..." if len(missing) > 10 else ""), stacklevel=2)
    if not pairs:
        raise ValueError(f"{source}: no (monolingual, 50/50 bilingual) pair of runs at one model "
                         "size, trained from scratch and evaluated on the target; BTS needs both")
    return pd.DataFrame(pairs)


def curve_inputs(runs: pd.DataFrame, curves: list[tuple[str, str]]):
    """`CurveInputs` and log loss for the (run_id, language) curves, with their last tokens."""
    source = runs.attrs.get("source") or "the run table"
    index = {curve: i for i, curve in enumerate(curves)}
    key = list(zip(runs["run_id"], runs["language"]))
    rows = runs[[k in index for k in key]].copy()
    rows["curve"] = [index[k] for k in zip(rows["run_id"], rows["language"])]
    rows = rows.sort_values(["curve", "n_tokens"])
    log_d = np.log(rows["n_tokens"].to_numpy(float))
    by_curve = rows.assign(log_d=log_d).groupby("curve")
    count = by_curve.size()
    short = [f"{curves[c][0]} on {curves[c][1]} ({n})" for c, n in count.items()
             if n < MIN_CHECKPOINTS]
    if short:
        raise ValueError(f"{source}: BTS needs learning curves of at least {MIN_CHECKPOINTS} "
                         f"checkpoints (rows with different n_tokens); too few for: "
                         + ", ".join(short))
    log_d_end = by_curve["log_d"].max().to_numpy()
    log_d_start = by_curve["log_d"].min().to_numpy()
    log_loss_end = by_curve.apply(lambda g: np.log(g["loss"].iloc[-1]), include_groups=False)
    c = rows["curve"].to_numpy()
    inputs = CurveInputs(curve=c, log_d_rel=log_d - log_d_end[c],
                         log_span=log_d_end - log_d_start,
                         log_loss_end=log_loss_end.to_numpy(), n_curves=len(curves))
    return inputs, np.log(rows["loss"].to_numpy(float)), log_d_start, log_d_end


def curve_at(post: dict, curve, log_d, log_d_end):
    """Loss of curve(s) at log tokens, per draw (arrays broadcast over (chain, draw, k))."""
    E, L_end, beta = (post[name][..., curve] for name in ("E", "L_end", "beta"))
    return laws.learning_curve(log_d - log_d_end[curve], E, L_end - E, beta)


def tokens_to_reach(post: dict, curve, loss, log_d_end):
    """Log tokens at which curve(s) reach `loss`; +inf where the curve's floor E is above it."""
    E, L_end, beta = (post[name][..., curve] for name in ("E", "L_end", "beta"))
    return log_d_end[curve] + laws.tokens_for_loss(loss, E, L_end - E, beta)


def bts_from_efficiency(g):
    """BTS = 2 - d_bi / d_mono from g = log(2 d_mono / d_bi)."""
    return 2.0 * (1.0 - np.exp(-g))


def efficiency_from_bts(bts):
    """g = log(2 d_mono / d_bi) = log(1 + tau) from BTS (-inf for BTS = -inf)."""
    with np.errstate(divide="ignore"):
        return np.log(2.0 / (2.0 - np.asarray(bts, dtype=float)))


def fit_bts(runs: pd.DataFrame | str, *, n_params: float | None = None,
            horizon: float | None = None, sampler: Sampler = Sampler(chains=4, warmup=500, draws=1000),
            progress: bool = False, warn: bool = True) -> xr.DataTree:
    """Posterior BTS for every measurable ordered pair of a run table (see `bilingual_pairs`).

    `horizon` is d_mono in tokens; by default a quarter of the shortest final token count
    among the runs used at that model size, so that d_bi down to BTS = -2 lies inside every
    bilingual curve's measured range. Returns a DataTree: the curve posterior (dims `curve`)
    and, per pair (dim `pair`, coords source/target/n_params/horizon), `bts`, `g` and
    `log_d_bi`, plus flags in `pair_info`.
    """
    if not isinstance(runs, pd.DataFrame):
        runs = read_runs(runs)
    pairs = bilingual_pairs(runs, n_params)
    curves = list(dict.fromkeys([(r.mono_run, r.target) for r in pairs.itertuples()]
                                + [(r.bilingual_run, r.target) for r in pairs.itertuples()]))
    x, log_loss, log_d_start, log_d_end = curve_inputs(runs, curves)
    mono = np.array([curves.index((r.mono_run, r.target)) for r in pairs.itertuples()])
    bi = np.array([curves.index((r.bilingual_run, r.target)) for r in pairs.itertuples()])
    if horizon is None:
        shortest = pd.Series(log_d_end[np.r_[mono, bi]], index=np.r_[pairs["n_params"], pairs["n_params"]])
        per_size = np.exp(shortest.groupby(level=0).min()) * HORIZON_SHARE
        pairs["horizon"] = pairs["n_params"].map(per_size).to_numpy()
    else:
        pairs["horizon"] = float(horizon)
    log_h = np.log(pairs["horizon"].to_numpy())

    posterior, stats = sample_posterior(learning_curves, x, log_loss, sampler, progress=progress)
    loss_star = curve_at(posterior, mono, log_h, log_d_end)
    log_d_bi = tokens_to_reach(posterior, bi, loss_star, log_d_end)
    g = np.log(2.0) + log_h - log_d_bi
    posterior.update(bts=bts_from_efficiency(g), g=g, log_d_bi=log_d_bi)

    labels = [f"{run}:{lang}" for run, lang in curves]
    pair_labels = [f"{r.source}->{r.target}@{r.n_params:.3g}" for r in pairs.itertuples()]
    dims = {name: ["curve"] for name in ("log_L_end", "log_gap", "logit_share", "L_end", "E", "beta")}
    dims.update({name: ["pair"] for name in ("bts", "g", "log_d_bi")})
    inside_mono = (log_h >= log_d_start[mono] - 1e-9) & (log_h <= log_d_end[mono] + 1e-9)
    extrapolated = (log_d_bi > log_d_end[bi]) | (log_d_bi < log_d_start[bi])
    pair_info = xr.Dataset(
        {"mono_run": ("pair", pairs["mono_run"].to_numpy().astype(str)),
         "bilingual_run": ("pair", pairs["bilingual_run"].to_numpy().astype(str)),
         "horizon_inside_mono_curve": ("pair", inside_mono),
         "p_extrapolated": ("pair", extrapolated.mean(axis=(0, 1))),
         "p_unreachable": ("pair", np.isinf(log_d_bi).mean(axis=(0, 1)))},
        coords={"pair": pair_labels})
    record = FitRecord("bts", source=str(runs.attrs.get("source", "")), sampler=asdict(sampler.resolved()))
    return build_tree(
        {"posterior": posterior, "sample_stats": stats, "observed_data": {"log_loss": log_loss}},
        record, coords={"curve": labels, "pair": pair_labels}, dims=dims,
        labels={"posterior": {"source": ("pair", pairs["source"].to_numpy()),
                              "target": ("pair", pairs["target"].to_numpy()),
                              "n_params": ("pair", pairs["n_params"].to_numpy()),
                              "horizon": ("pair", pairs["horizon"].to_numpy())}},
        datasets={"pair_info": pair_info}, check=CURVE_PARAMETERS, warn=warn)


def bts_table(tree: xr.DataTree, prob: float = 0.9) -> pd.DataFrame:
    """One row per measured pair: BTS and g (median, interval, mean and sd of g), P(BTS > 0),
    P(unreachable), P(extrapolated), runs. Infinite draws count in every quantile."""
    post = tree.posterior
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    flat = lambda name: post[name].stack(s=("chain", "draw")).transpose("pair", "s").to_numpy()  # noqa: E731
    bts, g = flat("bts"), flat("g")
    finite_g = np.where(np.isfinite(g), g, np.nan)
    table = pd.DataFrame({
        "source": post["source"].to_numpy(), "target": post["target"].to_numpy(),
        "n_params": post["n_params"].to_numpy(), "horizon": post["horizon"].to_numpy(),
        "bts_median": np.median(bts, axis=1),
        f"bts_q{lo * 100:02.0f}": np.quantile(bts, lo, axis=1, method="inverted_cdf"),
        f"bts_q{hi * 100:02.0f}": np.quantile(bts, hi, axis=1, method="inverted_cdf"),
        "p_positive": (bts > 0).mean(axis=1),
        "g_mean": np.nanmean(finite_g, axis=1), "g_sd": np.nanstd(finite_g, axis=1),
    })
    info = tree["pair_info"].to_dataset()
    for name in ("p_unreachable", "p_extrapolated", "horizon_inside_mono_curve", "mono_run",
                 "bilingual_run"):
        table[name] = info[name].to_numpy()
    return table
