"""Convergence checks on a fitted posterior, reported in words a user can act on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from scipy.special import ndtri

from atlas_bayes.fitting import stuck

MAX_R_HAT = 1.01
MIN_ESS_BULK = 400


class ConvergenceWarning(UserWarning):
    """The sampler's output should not be trusted as it is."""


@dataclass
class Diagnostics:
    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    r_hat: dict[str, float] = field(default_factory=dict)
    ess_bulk: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    restarted_chains: tuple[int, ...] = ()    # chains rerun because they got stuck (`stuck`)
    notes: list[str] = field(default_factory=list)   # what was done about it, in words

    @property
    def converged(self) -> bool:
        return not self.messages

    def as_dict(self) -> dict:
        return {"divergences": self.divergences, "max_r_hat": self.max_r_hat,
                "min_ess_bulk": self.min_ess_bulk}


def check_convergence(tree: xr.DataTree, var_names: list[str], r_hat_advice: str = "") -> Diagnostics:
    """R-hat, bulk ESS and divergences for `var_names`, with advice for each failure
    (`r_hat_advice`: said after R-hat's, e.g. what this data cannot identify)."""
    chains = int(tree.posterior.sizes["chain"])
    r_hat = flatten_scalars(rhat(tree, var_names)) if chains > 1 else {}
    ess = flatten_scalars(ess_bulk(tree, var_names))
    divergences = int(tree.sample_stats["diverging"].sum()) if "sample_stats" in tree else 0
    n_draws = int(chains * tree.posterior.sizes["draw"])
    diag = Diagnostics(divergences, _nan_max(r_hat), _nan_min(ess), r_hat, ess)

    bad_r_hat = {k: v for k, v in r_hat.items() if not v <= MAX_R_HAT}
    if chains < 2:
        diag.messages.append(
            "one chain: R-hat compares chains, so convergence was not checked; run 2 or more "
            "chains (--chains) before trusting the intervals.")
    elif bad_r_hat:
        worst = ", ".join(f"{k} {v:.3f}" for k, v in sorted(bad_r_hat.items(), key=lambda kv: -kv[1])[:4])
        diag.messages.append(
            f"R-hat above {MAX_R_HAT} ({worst}): the chains disagree, so the intervals are not "
            "reliable. Run more warmup and draws (--warmup, --draws), or check that the data "
            "can identify these parameters (e.g. repetition parameters need runs past one epoch)."
            + (f" {r_hat_advice}" if r_hat_advice else ""))
    threshold = min(MIN_ESS_BULK, n_draws / 4)
    low_ess = {k: v for k, v in ess.items() if not v >= threshold}
    if low_ess:
        worst = ", ".join(f"{k} {v:.0f}" for k, v in sorted(low_ess.items(), key=lambda kv: kv[1])[:4])
        diag.messages.append(
            f"bulk ESS below {threshold:.0f} ({worst}): too few effective draws for stable "
            "intervals; run more draws (--draws) or chains (--chains).")
    restarts = (tree.sample_stats["restarts"].values[:, 0] if "sample_stats" in tree
                 and "restarts" in tree.sample_stats else np.zeros(chains, dtype=int))
    still = (stuck.stuck_chains(tree.sample_stats["lp"].values)
             if "sample_stats" in tree and "lp" in tree.sample_stats else {})
    diag.restarted_chains = tuple(int(c) for c in np.flatnonzero(restarts))
    note, warning = stuck.describe(chains, restarts, still)
    diag.notes += [note] if note else []
    diag.messages += [warning] if warning else []
    if divergences:
        diag.messages.append(
            f"{divergences} divergent transitions out of {n_draws}: the sampler could not explore "
            "part of the posterior and it may be biased. Raise --target-accept (e.g. 0.95) or look "
            "for outlying runs in the data.")
    return diag


# R-hat and bulk ESS as arviz_stats computes them (rank-normalised split R-hat, bulk and tail;
# bulk ESS with Geyer's initial monotone sequence: Vehtari et al. 2021), in numpy and scipy.special:
# importing arviz_stats loads scipy.stats (~0.4 s of every `atlas-bayes fit`); tests check
# that the two agree


def rhat(tree: xr.DataTree, var_names: list[str]) -> xr.Dataset:
    """Rank-normalised split R-hat of each posterior variable (`arviz_stats.rhat`)."""
    return _over_draws(tree, var_names, _rhat_rank)


def ess_bulk(tree: xr.DataTree, var_names: list[str]) -> xr.Dataset:
    """Bulk effective sample size of each posterior variable (`arviz_stats.ess`, bulk)."""
    return _over_draws(tree, var_names, _ess_bulk)


def _over_draws(tree, var_names, function) -> xr.Dataset:
    posterior = tree.posterior.to_dataset()[list(var_names)]
    return xr.apply_ufunc(function, posterior, input_core_dims=[["chain", "draw"]],
                          vectorize=True)


def _usable(draws: np.ndarray, min_chains: int) -> bool:
    return bool(np.isfinite(draws).all()) and draws.shape[0] >= min_chains and draws.shape[1] >= 4


def _rhat_rank(draws: np.ndarray) -> float:
    if not _usable(draws, 2):
        return np.nan
    split = _split_chains(draws)
    return max(_rhat(_z_scale(split)), _rhat(_z_scale(np.abs(split - np.median(split)))))


def _ess_bulk(draws: np.ndarray) -> float:
    return _ess(_z_scale(_split_chains(draws))) if _usable(draws, 1) else np.nan


def _split_chains(draws: np.ndarray) -> np.ndarray:
    half = draws.shape[1] // 2
    return np.vstack((draws[:, :half], draws[:, -half:]))


def _z_scale(values: np.ndarray) -> np.ndarray:
    """Normal scores of the average ranks (Blom's offset 3/8)."""
    flat = values.ravel()
    order = np.argsort(flat, kind="mergesort")
    ordered = flat[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], flat.size)
    ranks = np.empty(flat.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ndtri((ranks - 3 / 8) / (flat.size - 2 * 3 / 8 + 1)).reshape(values.shape)


def _rhat(draws: np.ndarray) -> float:
    n = draws.shape[1]
    between = n * np.var(np.mean(draws, axis=1), ddof=1)
    within = np.mean(np.var(draws, axis=1, ddof=1))
    with np.errstate(invalid="ignore", divide="ignore"):     # constant draws: NaN
        return float(np.sqrt((between / within + n - 1) / n))


def _ess(draws: np.ndarray) -> float:
    draws = np.asarray(draws, dtype=float)
    if np.max(draws) - np.min(draws) < np.finfo(float).resolution:
        return float(draws.size)
    n_chain, n_draw = draws.shape
    size = _next_regular(2 * n_draw)
    centred = draws - draws.mean(axis=1, keepdims=True)
    transformed = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(transformed * np.conjugate(transformed), n=size, axis=1)[:, :n_draw] / n_draw
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(draws.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    t = 1     # Geyer's initial positive sequence
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1     # Geyer's initial monotone sequence
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    total = n_chain * n_draw
    tau = max(-1.0 + 2.0 * np.sum(rho[:max_t + 1]) + np.sum(rho[max_t + 1:max_t + 2]),
              1 / np.log10(total))
    return np.nan if np.isnan(rho).any() else float(total / tau)


def _next_regular(target: int) -> int:
    """The smallest 2^a 3^b 5^c >= target (scipy.fftpack.next_fast_len, as arviz_stats pads)."""
    best, power5 = 2 * target, 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            power2 = power35
            while power2 < target:
                power2 *= 2
            best = min(best, power2)
            power35 *= 3
        power5 *= 5
    return best


def flatten_scalars(result) -> dict[str, float]:
    """Flatten per-variable results (Dataset or DataTree) into {'alpha': 1.0, 'tau[fr]': 1.0, ...}."""
    data = result.to_dataset() if isinstance(result, xr.DataTree) else result
    if isinstance(data, xr.DataTree):
        data = data.to_dataset()
    flat = {}
    for name, values in data.data_vars.items():
        if values.ndim == 0:
            flat[name] = float(values)
            continue
        stacked = values.stack(_flat=values.dims)
        for i in range(stacked.sizes["_flat"]):
            label = _label(stacked, values.dims, i)
            if label is not None:
                flat[f"{name}[{label}]"] = float(stacked.values[i])
    return flat


def _label(stacked, dims, i) -> str | None:
    """'fr' or 'en,3' for an element; 'fr<-en' for a joint fit's transfer weight (target <- source).

    Empty transfer slots (a target with fewer than three transfer languages) return None:
    they carry no data, only the prior.
    """
    if "transfer_slot" in dims and "transfer_language" in stacked.coords:
        source = str(stacked["transfer_language"].values[i])
        return None if source == "" else f"{stacked['language'].values[i]}<-{source}"
    return ",".join(str(stacked[d].values[i]) for d in dims)


def _nan_max(values: dict) -> float:
    arr = np.array(list(values.values()), dtype=float)
    return float(np.nanmax(arr)) if np.isfinite(arr).any() else float("nan")


def _nan_min(values: dict) -> float:
    arr = np.array(list(values.values()), dtype=float)
    return float(np.nanmin(arr)) if np.isfinite(arr).any() else float("nan")
