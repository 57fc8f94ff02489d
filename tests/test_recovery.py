"""Parameter recovery: fit each law to data simulated from known parameters.

Each law's 90% credible intervals must cover the truth at about their nominal rate, and the
sampler must converge. A replicated Chinchilla study checks the coverage rate itself.
"""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from atlas_bayes.fitting.diagnostics import flatten_scalars
from atlas_bayes.fitting.inference import fit
from atlas_bayes.simulation.simulate import PAPER_MODEL_SIZES, mixture_design, monolingual_design, simulate
from conftest import MAX_R_HAT, RECOVERY, seeded

pytestmark = pytest.mark.statistical

SAMPLER = RECOVERY
BASE = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}


def interval_hits(tree, truth: dict, prob: float = 0.9) -> dict[str, bool]:
    """For each true parameter (tau as {lang: value}), whether the central interval covers it."""
    post = tree.posterior.to_dataset().stack(sample=("chain", "draw"))
    tail = (1 - prob) / 2
    low = flatten_scalars(post.quantile(tail, "sample").drop_vars("quantile"))
    high = flatten_scalars(post.quantile(1 - tail, "sample").drop_vars("quantile"))
    flat = {}
    for name, value in truth.items():
        if isinstance(value, dict):
            flat.update({f"{name}[{lang}]": v for lang, v in value.items()})
        else:
            flat[name] = value
    return {name: bool(low[name] <= value <= high[name]) for name, value in flat.items()}


def repeated_design(n_params, unique, epochs):
    rows = [{"run_id": f"r{n:.3g}-{u:.3g}-{e}", "language": "en", "n_params": n,
             "n_tokens": u * e, "unique_tokens": u}
            for n, u, e in itertools.product(n_params, unique, epochs)]
    return pd.DataFrame(rows)


def chinchilla_case(seed):
    runs = simulate(monolingual_design("en"), "chinchilla", BASE, sigma=0.01, seed=seed)
    return "chinchilla", BASE, runs, {}


def dcsl_case(seed):
    truth = {**BASE, "R_D_star": 12.0, "R_N_star": 4.0}
    design = repeated_design(PAPER_MODEL_SIZES[2::2], (1e8, 1e9, 1e10), (1, 2, 4, 10, 30, 60))
    return "dcsl", truth, simulate(design, "dcsl", truth, sigma=0.01, seed=seed), {}


def atlas_dt_case(seed):
    truth = {**BASE, "lambda": 0.08}
    design = repeated_design(PAPER_MODEL_SIZES[1::3], (3e8, 3e9), (0.3, 1, 3, 10, 40))
    return "atlas-dt", truth, simulate(design, "atlas-dt", truth, sigma=0.01, seed=seed), {}


def atlas_multilingual_case(seed):
    truth = {**BASE, "lambda": 0.08, "tau": {"en": 0.3, "fr": 0.1, "ar": -0.1}, "tau_other": 0.02}
    unique = {"sw": 1e9, "en": 2.8e12, "fr": 3.6e11, "ar": 2e11, "yo": 5e8, "ha": 1e9}
    mixtures = {"mono": {"sw": 1.0}, "sw-en": {"sw": 0.5, "en": 0.5}, "sw-fr": {"sw": 0.5, "fr": 0.5},
                "sw-ar": {"sw": 0.5, "ar": 0.5},
                "sw-en-yo-ha": {"sw": 0.25, "en": 0.25, "yo": 0.25, "ha": 0.25},
                "sw-fr-yo": {"sw": 0.4, "fr": 0.3, "yo": 0.3}, "sw-ar-ha": {"sw": 0.4, "ar": 0.2, "ha": 0.4}}
    design = mixture_design("sw", mixtures, PAPER_MODEL_SIZES[1::4], (1e9, 1e10, 6e10), unique)
    design["unique_tokens"] = unique["sw"]
    options = {"transfer_languages": ["en", "fr", "ar"]}
    return "atlas", truth, simulate(design, "atlas", truth, sigma=0.01, seed=seed, **options), options


def msl_case(seed):
    truth = {**BASE, "gamma": 0.12}
    mixtures = {"mono": {"sw": 1.0}, "half": {"sw": 0.5, "en": 0.5}, "quarter": {"sw": 0.25, "en": 0.75},
                "family": {"sw": 0.1, "yo": 0.3, "en": 0.6}, "tenth": {"sw": 0.1, "en": 0.9}}
    design = mixture_design("sw", mixtures, PAPER_MODEL_SIZES[1::3], (1e9, 1e10, 1e11))
    return "msl", truth, simulate(design, "msl", truth, sigma=0.01, seed=seed), {}


CASES = [chinchilla_case, dcsl_case, atlas_dt_case, atlas_multilingual_case, msl_case]
SEEDS = (1, 2)


@pytest.fixture(scope="module")
def recoveries():
    """Every law fitted to two simulated studies: {case name: [(law, truth, tree), ...]}."""
    results = {}
    for case, seed in itertools.product(CASES, SEEDS):
        law, truth, runs, options = case(seed)
        tree = fit(runs, law, sampler=SAMPLER, warn=False, **options)
        results.setdefault(case.__name__, []).append((truth, tree))
    return results


@pytest.mark.parametrize("case", [c.__name__ for c in CASES])
def test_each_law_converges_and_contains_the_truth(recoveries, case):
    for truth, tree in recoveries[case]:
        diag = json.loads(tree.attrs["diagnostics"])
        assert diag["divergences"] == 0 and diag["max_r_hat"] <= MAX_R_HAT, diag
        hits99 = interval_hits(tree, truth, 0.99)
        assert all(hits99.values()), f"truth outside the 99% interval: {hits99}"


def test_intervals_cover_the_truth_at_about_the_nominal_rate(recoveries):
    hits = [hit for fits in recoveries.values() for truth, tree in fits
            for hit in interval_hits(tree, truth, 0.9).values()]
    rate = np.mean(hits)
    # Parameters of one fit move together, so allow more slack than a binomial would need.
    assert 0.78 <= rate, f"90% intervals covered {rate:.0%} of {len(hits)} true values"


def test_multilingual_posterior_is_labelled_by_transfer_language(recoveries):
    _, tree = recoveries["atlas_multilingual_case"][0]
    assert list(tree.posterior["tau"].coords["transfer_language"].values) == ["en", "fr", "ar"]


@pytest.mark.parametrize("seeds", [range(8)])
def test_chinchilla_interval_coverage_is_near_nominal(seeds):
    """Across replicated simulated studies, 90% intervals cover the truth ~90% of the time."""
    hits = []
    for seed in seeds:
        runs = simulate(monolingual_design("en", tokens_per_param=(5, 20, 80), checkpoints=(0.5, 1.0)),
                        "chinchilla", BASE, sigma=0.02, seed=100 + seed)
        tree = fit(runs, "chinchilla", sampler=seeded(RECOVERY, seed),
                   warn=False)
        hits += list(interval_hits(tree, BASE, 0.9).values())
    rate = np.mean(hits)
    # 40 intervals: a binomial(40, 0.9) falls below 0.75 with probability < 1%.
    assert 0.75 <= rate <= 1.0, f"coverage {rate:.2f} over {len(hits)} intervals"
