"""Approximate posteriors (`fitting/approximate.py`): they say they are approximate, how they
were checked, and the SVI path still covers the truth of a simulated study."""

import numpy as np
import pytest

from atlas_bayes.fitting.approximate import CHECKED, METHODS, Approximation, approximate, statement
from atlas_bayes.fitting.inference import fit
from atlas_bayes.fitting.record import LAW, FitRecord
from atlas_bayes.fitting.summary import format_summary, summary_dict
from atlas_bayes.fitting.tree import build_tree
from atlas_bayes.simulation.simulate import monolingual_design, simulate

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}   # test_recovery's BASE


@pytest.mark.unit
def test_an_approximate_fit_says_so_in_its_record_summary_and_json():
    """The statement names the method and its measured coverage, survives the attributes and
    replaces the R-hat line of the text summary; an unknown method is refused by name."""
    line = statement(Approximation("laplace"))
    assert line.startswith("APPROXIMATE posterior (laplace") and CHECKED["laplace"] in line
    assert all("covered the truth at 0." in CHECKED[m] and "(NUTS 0." in CHECKED[m] for m in METHODS)
    record = FitRecord(LAW, law="chinchilla", law_description="Chinchilla", target_language="en",
                       parameters=("E",), n_obs=3, seconds=1.5, method="svi",
                       approximation=statement(Approximation("svi")))
    tree = build_tree({"posterior": {"E": np.random.default_rng(0).normal(1.4, 0.1, (1, 200))}},
                      record, check=None)
    assert FitRecord.from_tree(tree).approximation == record.approximation
    text = format_summary(tree)
    assert record.approximation in text and "R-hat" not in text
    assert summary_dict(tree)["approximation"] == record.approximation
    with pytest.raises(ValueError, match="choose one of svi, flow, laplace"):
        approximate(None, None, None, Approximation("pathfinder"), None)


@pytest.mark.statistical
def test_svi_intervals_cover_a_simulated_studys_truth():
    """SVI on two simulated Chinchilla studies: every true parameter inside its 90% interval,
    and the intervals no wider than NUTS's there (alpha's 90% width was 0.08-0.09 at these
    seeds), so neither a shifted nor a needlessly wide posterior passes."""
    for seed in (3, 4):
        runs = simulate(monolingual_design("en"), "chinchilla", TRUTH, sigma=0.01, seed=seed)
        tree = fit(runs, "chinchilla", sampler=Approximation("svi", seed=seed))
        assert tree.attrs["approximation"].startswith("APPROXIMATE posterior (svi")
        for name, true in TRUTH.items():
            lo, hi = (float(tree.posterior[name].quantile(q)) for q in (0.05, 0.95))
            assert lo <= true <= hi, (seed, name, lo, hi)
        lo, hi = (float(tree.posterior["alpha"].quantile(q)) for q in (0.05, 0.95))
        assert hi - lo < 0.15, (seed, hi - lo)
