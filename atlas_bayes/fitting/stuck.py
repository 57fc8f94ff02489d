"""Chains that got stuck, found from their log density alone, and the restart `_nuts` runs.

NUTS chains start apart and each adapts its own step size and mass matrix. Now and then one
of them ends its warmup somewhere the others are not (issue 18):

* **in a minor mode**: a joint fit had one chain of four sit where the noise sigma was 0.033
  instead of 0.010, its log density far below the other chains' the whole time;
* **frozen**: a chain whose step size suits only part of the posterior rejects nearly every
  trajectory once it reaches the rest, and repeats its draw (a crossover fit had one chain of
  two repeat 33% of its draws, the other 0.4%).

`stuck_chains` flags both from the draws of the log density (`lp`, chain x draw). A chain is
in a minor mode when its mean log density lies more than `GAP_SDS` within-chain standard
deviations below the best chain's (healthy chains differ by a small fraction of one: their
means are averages over hundreds of draws), and frozen when more than `FROZEN_SHARE` of its
draws repeat the one before and at least `FROZEN_RATIO` times as many as in the other chains.
Both compare chains, so one chain alone is never flagged.

`inference._nuts` reruns the sampler from a fresh key when a chain is flagged, at most
`MAX_RESTARTS` times, and replaces only the flagged chains by the rerun's chains of the same
index: a fit whose chains are all healthy is returned untouched (bit-identical). The count of
reruns of each chain goes into the fit's sample statistics (`restarts`, only when a chain was
rerun), its record (`diagnostics.restarted_chains`) and a `RestartedChainWarning`; a chain
still stuck after the reruns is named in a `ConvergenceWarning` (the posterior may have more
than one mode) beside the R-hat it causes.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

GAP_SDS = 3.0         # a chain this many within-chain sds of log density below the best: minor mode
FROZEN_SHARE = 0.15   # ... repeating more than this share of its draws: frozen
FROZEN_RATIO = 4.0    # ... and this many times the other chains' share (plus one draw in 100)
MAX_RESTARTS = 2      # reruns of the sampler at most


class RestartedChainWarning(UserWarning):
    """A stuck chain was rerun: the fit's draws of that chain come from a rerun."""


def stuck_chains(lp) -> dict[int, str]:
    """{chain index: why} for the chains of `lp` (log density, chain x draw) that sit in a
    minor mode or barely move; {} for one chain or none stuck."""
    lp = np.asarray(lp, dtype=float)
    if lp.ndim != 2 or lp.shape[0] < 2 or lp.shape[1] < 4 or not np.isfinite(lp).all():
        return {}
    means = lp.mean(axis=1)
    spread = float(np.median(lp.std(axis=1)))
    frozen = np.mean(np.diff(lp, axis=1) == 0, axis=1)
    found = {}
    for chain in range(lp.shape[0]):
        others = np.delete(frozen, chain)
        gap = means.max() - means[chain]
        if spread > 0 and gap > GAP_SDS * spread:
            found[chain] = (f"its mean log density is {gap:.3g} below the best chain's "
                            f"({gap / spread:.0f} within-chain sds): a minor mode")
        elif frozen[chain] > FROZEN_SHARE and frozen[chain] > FROZEN_RATIO * (np.median(others) + 0.01):
            found[chain] = (f"it repeats {frozen[chain]:.0%} of its draws (the others "
                            f"{np.median(others):.0%}): it barely moves")
    return found


def describe(chains: int, restarts, still: dict[int, str]) -> tuple[str | None, str | None]:
    """(the note on rerun chains, None when none was; the warning for chains still stuck, None
    when none is), from the reruns per chain and `stuck_chains` of the final draws."""
    restarts = np.asarray(restarts, dtype=int)
    rerun = [int(c) for c in np.flatnonzero(restarts)]
    note = None
    if rerun:
        named = ", ".join(f"{c} ({restarts[c]}x)" for c in rerun)
        fixed = [c for c in rerun if c not in still]
        note = (f"chain(s) {named} of {chains} (numbered from 0) got stuck, in a minor mode or "
                "barely moving, and were rerun from a fresh start; the draws and diagnostics are "
                "the rerun's" + (f", and chain(s) {', '.join(map(str, fixed))} now move with the "
                                 "others" if fixed else ""))
    warning = None
    if still:
        reasons = "; ".join(f"chain {c}: {why}" for c, why in sorted(still.items()))
        warning = (f"chain(s) stuck apart from the others ({reasons}), after "
                   f"{int(restarts.max(initial=0))} rerun(s): the posterior may have more than one "
                   "mode, or the sampler cannot move through part of it. Read the intervals with "
                   "care; run more warmup (--warmup) or another --seed, or look for a second "
                   "explanation of the data.")
    return note, warning


def restart_stuck(draw, key, samples, extra, progress: bool):
    """(samples, extra fields, reruns per chain): NUTS's draws (`draw(key)` -> samples and
    extra fields, chain first) with each chain that `stuck_chains` flags replaced by the same
    chain of a rerun from a fresh key (at most `MAX_RESTARTS` reruns). Healthy chains' draws
    are returned as they are, untouched when no chain is flagged."""
    restarts = np.zeros(np.shape(extra["potential_energy"])[0], dtype=int)
    for attempt in range(1, MAX_RESTARTS + 1):
        found = stuck_chains(-np.asarray(extra["potential_energy"]))
        if not found:
            break
        if progress:
            print("sampling: " + "; ".join(f"chain {c} is stuck ({why})" for c, why in found.items())
                  + f"; rerunning from a fresh start ({attempt} of {MAX_RESTARTS})",
                  file=sys.stderr, flush=True)
        again, again_extra = draw(jax.random.fold_in(key, attempt))
        chosen = np.isin(np.arange(len(restarts)), list(found))
        samples = {name: _replace_chains(value, again[name], chosen) for name, value in samples.items()}
        extra = {name: _replace_chains(value, again_extra[name], chosen) for name, value in extra.items()}
        restarts[chosen] += 1
    return samples, extra, restarts


def _replace_chains(value, other, chosen: np.ndarray) -> np.ndarray:
    """`value` (chain, ...) with the chains marked in `chosen` taken from `other`."""
    value, other = np.asarray(value), np.asarray(other)
    return np.where(chosen.reshape((-1,) + (1,) * (value.ndim - 1)), other, value)
