"""Convergence checks on a fitted posterior, reported in words a user can act on.

The verdict has three values (`Diagnostics.converged`): True, False, or `NOT_CHECKED` where no
chains were compared (one chain, or an approximation). R-hat is NaN where it was not computed
(one chain) and infinite where it was computed and failed (a chain that never moves has no
within-chain variance): "not computed" and "failed" are different values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz_stats as azs
import numpy as np
import xarray as xr

from atlas_bayes.fitting import stuck

MAX_R_HAT = 1.01
MIN_ESS_BULK = 400
NOT_CHECKED = "not checked"    # the verdict where no chains were compared
ADVICE = "Raise --target-accept (e.g. 0.95)"   # what the divergence warning advises (`check_convergence`)


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
    checked: bool = True     # chains were compared (R-hat computed)
    failures: int = 0        # messages that say the fit failed (not only that it was not checked)

    @property
    def converged(self) -> bool | str:
        """True, False (a check failed) or `NOT_CHECKED` (no chains compared, nothing failed)."""
        if self.failures:
            return False
        return True if self.checked else NOT_CHECKED

    def as_dict(self) -> dict:
        return {"divergences": self.divergences, "max_r_hat": self.max_r_hat,
                "min_ess_bulk": self.min_ess_bulk}


def unchecked() -> Diagnostics:
    """The diagnostics of a posterior whose chains are not checked (an approximation)."""
    return Diagnostics(0, float("nan"), float("nan"), checked=False)


def check_convergence(tree: xr.DataTree, var_names: list[str], r_hat_advice: str = "",
                      advice: str = ADVICE) -> Diagnostics:
    """R-hat, bulk ESS and divergences for `var_names`, with advice for each failure
    (`r_hat_advice`: said after R-hat's, e.g. what this data cannot identify; `advice`: the
    first remedy for divergences, in the options of the command that fits)."""
    chains = int(tree.posterior.sizes["chain"])
    r_hat = failed_as_inf(flatten_scalars(rhat(tree, var_names))) if chains > 1 else {}
    ess = flatten_scalars(ess_bulk(tree, var_names))
    divergences = int(tree.sample_stats["diverging"].sum()) if "sample_stats" in tree else 0
    n_draws = int(chains * tree.posterior.sizes["draw"])
    diag = Diagnostics(divergences, _nan_max(r_hat), _nan_min(ess), r_hat, ess, checked=chains > 1)

    bad_r_hat = {k: v for k, v in r_hat.items() if not v <= MAX_R_HAT}
    if chains < 2:
        diag.messages.append(
            "one chain: R-hat compares chains, so convergence was not checked; run 2 or more "
            "chains (--chains) before trusting the intervals.")
    elif bad_r_hat:
        worst = ", ".join(f"{k} {v:.3f}" if np.isfinite(v) else f"{k} failed (a chain did not move)"
                          for k, v in sorted(bad_r_hat.items(), key=lambda kv: -kv[1])[:4])
        diag.failures += 1
        diag.messages.append(
            f"R-hat above {MAX_R_HAT} ({worst}): the chains disagree, so the intervals are not "
            "reliable. Run more warmup and draws (--warmup, --draws), or check that the data "
            "can identify these parameters (e.g. repetition parameters need runs past one epoch)."
            + (f" {r_hat_advice}" if r_hat_advice else ""))
    threshold = min(MIN_ESS_BULK, n_draws / 4)
    low_ess = {k: v for k, v in ess.items() if not v >= threshold}
    if low_ess:
        diag.failures += 1
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
    diag.failures += bool(warning)
    if divergences:
        diag.failures += 1
        diag.messages.append(
            f"{divergences} divergent transitions out of {n_draws}: the sampler could not explore "
            f"part of the posterior and it may be biased. {advice} or look for outlying runs in "
            "the data.")
    return diag


def failed_as_inf(r_hat: dict[str, float]) -> dict[str, float]:
    """R-hat computed over several chains, with a failed computation (NaN: a chain without
    variance) as infinity, so it is never read as "not computed"."""
    return {k: v if not np.isnan(v) else float("inf") for k, v in r_hat.items()}


def rhat(tree: xr.DataTree, var_names: list[str]) -> xr.Dataset:
    """Rank-normalised split R-hat of each posterior variable (arviz_stats)."""
    return azs.rhat(tree, var_names=var_names)


def ess_bulk(tree: xr.DataTree, var_names: list[str]) -> xr.Dataset:
    """Bulk effective sample size of each posterior variable (arviz_stats)."""
    return azs.ess(tree, var_names=var_names, method="bulk")


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
    return float(np.nanmax(arr)) if (~np.isnan(arr)).any() else float("nan")


def _nan_min(values: dict) -> float:
    arr = np.array(list(values.values()), dtype=float)
    return float(np.nanmin(arr)) if np.isfinite(arr).any() else float("nan")
