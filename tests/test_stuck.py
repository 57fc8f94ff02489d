"""Stuck chains (issue 18): the detector on synthetic log densities, the rerun that replaces only
the flagged chains, and what the fit's record and warnings say about it (fitting/stuck.py)."""

import json
import warnings

import numpy as np
import pytest

from atlas_bayes.fitting import stuck
from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.fitting.record import FitRecord
from atlas_bayes.fitting.tree import build_tree

pytestmark = pytest.mark.unit


def healthy(chains=4, draws=500, seed=0):
    """Log densities of well-mixing chains: AR(1) around one level, sd ~3 (10 dimensions)."""
    rng = np.random.default_rng(seed)
    lp = np.empty((chains, draws))
    lp[:, 0] = rng.normal(0, 3, chains)
    for t in range(1, draws):
        lp[:, t] = 0.5 * lp[:, t - 1] + rng.normal(0, 3 * np.sqrt(0.75), chains)
    return lp + 100.0


def frozen(lp, chain, share, seed=1):
    """`lp` with `share` of chain `chain`'s draws repeating the one before."""
    lp = lp.copy()
    repeat = np.random.default_rng(seed).random(lp.shape[1]) < share
    for t in np.flatnonzero(repeat[1:]) + 1:
        lp[chain, t] = lp[chain, t - 1]
    return lp


def test_healthy_chains_are_not_flagged():
    for seed in range(20):
        assert stuck.stuck_chains(healthy(seed=seed)) == {}
        assert stuck.stuck_chains(healthy(chains=2, draws=200, seed=seed)) == {}
    # chains that all repeat draws alike (small trees) are alike, not stuck
    lp = healthy()
    for chain in range(4):
        lp = frozen(lp, chain, 0.3, seed=chain)
    assert stuck.stuck_chains(lp) == {}
    assert stuck.stuck_chains(healthy(chains=1)) == {}          # one chain: nothing to compare


def test_a_chain_in_a_minor_mode_or_frozen_is_flagged():
    lp = healthy()
    lp[2] -= 40.0                   # the noise mode: its log density far below the others'
    found = stuck.stuck_chains(lp)
    assert list(found) == [2] and "minor mode" in found[2]
    found = stuck.stuck_chains(frozen(healthy(chains=2), 0, 0.33))   # the crossover case
    assert list(found) == [0] and "repeats 3" in found[0]
    assert stuck.stuck_chains(frozen(healthy(chains=2), 0, 0.05)) == {}


def fake_draw(bad_chains):
    """A stand-in for NUTS: draws of 'x' and extra fields for 4 chains; the chains in
    `bad_chains(call)` sit 40 below in log density; calls are counted."""
    calls = []

    def draw(key):
        calls.append(key)
        lp = healthy(seed=len(calls))
        lp[list(bad_chains(len(calls)))] -= 40.0
        x = np.full((4, 500), float(len(calls)))
        return {"x": x}, {"potential_energy": -lp, "diverging": np.zeros((4, 500), bool)}
    return draw, calls


def test_only_the_stuck_chain_is_replaced_by_a_rerun():
    import jax
    draw, calls = fake_draw(lambda call: [1] if call == 1 else [])
    samples, extra = draw(jax.random.PRNGKey(0))
    out, out_extra, restarts = stuck.restart_stuck(draw, jax.random.PRNGKey(0), samples, extra, False)
    assert len(calls) == 2 and list(restarts) == [0, 1, 0, 0]
    assert (out["x"][[0, 2, 3]] == 1).all() and (out["x"][1] == 2).all()
    assert stuck.stuck_chains(-out_extra["potential_energy"]) == {}
    # no chain stuck: nothing rerun, the very same draws back
    draw, calls = fake_draw(lambda call: [])
    samples, extra = draw(jax.random.PRNGKey(0))
    out, out_extra, restarts = stuck.restart_stuck(draw, jax.random.PRNGKey(0), samples, extra, False)
    assert len(calls) == 1 and out is samples and out_extra is extra and not restarts.any()
    # a chain that stays stuck is rerun at most MAX_RESTARTS times and then kept
    draw, calls = fake_draw(lambda call: [3])
    samples, extra = draw(jax.random.PRNGKey(0))
    *_, restarts = stuck.restart_stuck(draw, jax.random.PRNGKey(0), samples, extra, False)
    assert len(calls) == 1 + stuck.MAX_RESTARTS and list(restarts) == [0, 0, 0, stuck.MAX_RESTARTS]


def tree_with(lp, restarts=None, warn=True):
    rng = np.random.default_rng(0)
    stats = {"lp": lp, "diverging": np.zeros(lp.shape, bool)}
    if restarts is not None:
        stats["restarts"] = np.broadcast_to(np.asarray(restarts)[:, None], lp.shape).copy()
    posterior = {"mu": rng.normal(size=lp.shape)}
    return build_tree({"posterior": posterior, "sample_stats": stats}, FitRecord("crossover"),
                      check=["mu"], warn=warn)


def test_the_record_and_warnings_say_which_chains_were_rerun():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = tree_with(healthy(), restarts=[0, 0, 1, 0])
    record = FitRecord.from_tree(tree)
    assert record.diagnostics.restarted_chains == (2,) and record.diagnostics.converged
    assert json.loads(tree.attrs["diagnostics"])["restarted_chains"] == [2]
    said = [str(w.message) for w in caught if issubclass(w.category, stuck.RestartedChainWarning)]
    assert len(said) == 1 and "chain(s) 2 (1x) of 4" in said[0] and "now move with the others" in said[0]
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    # a chain still stuck after the reruns: a convergence warning naming it
    lp = healthy()
    lp[2] -= 40.0
    with pytest.warns(ConvergenceWarning, match="chain 2: its mean log density .*more than one mode"), \
            pytest.warns(stuck.RestartedChainWarning, match="chain\\(s\\) 2 \\(2x\\) of 4"):
        tree = tree_with(lp, restarts=[0, 0, 2, 0])
    assert not FitRecord.from_tree(tree).diagnostics.converged
    # a fit without reruns records none and says nothing new
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = tree_with(healthy())
    assert "restarted_chains" not in json.loads(tree.attrs["diagnostics"])
    assert "restarts" not in tree.sample_stats
