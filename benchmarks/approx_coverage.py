"""How often each approximate posterior's 90% intervals cover the truth, against NUTS.

    .venv/bin/python benchmarks/approx_coverage.py [--studies chinchilla:5,atlas:3,atlas-h:3]
                     [--methods nuts,svi,flow,laplace]

Each study is simulated from known parameters at seeds 0..n-1: `chinchilla` (the recovery
test's monolingual design, `tests/test_recovery.py`), `atlas` (the bundled example study:
a low-resource target with transfer languages) and `atlas-h` (the joint per-language law on
`paper_study`'s four-language design of `tests/test_hierarchical.py`, a study per seed;
`atlas-h12`: its first 12 languages, as `benchmarks/hierarchical_speed.py` picks them). Every
method fits the same data; per study and method it prints the share of the truth's scalar
parameters inside the 90% interval, the median ratio of interval widths to NUTS's, and the
wall seconds of the fit (compilation included), and the share of NUTS's draws inside the
method's 90% intervals ("NUTS mass": 0.90 for an exact posterior, whatever the truth); then
both pooled per method. NUTS runs 4 chains x (500 + 500).
"""

import argparse
import json
import os
import time
import warnings

import numpy as np

from atlas_bayes.fitting.inference import Approximation, Sampler, fit
from atlas_bayes.simulation.paper_design import paper_study
from atlas_bayes.simulation.simulate import EXAMPLE_TRUTH, example_study, monolingual_design, simulate
from hierarchical_speed import FAMILIES, _first_languages

CHINCHILLA = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}  # test_recovery's BASE
JOINT_LANGUAGES = ["en", "fr", "sw", "hi"]                                    # test_hierarchical's


def study(name: str, seed: int):
    """(law, run table, truth as {parameter: value or {language: value}}) of one simulated study."""
    if name == "chinchilla":
        return name, simulate(monolingual_design("en"), name, CHINCHILLA, sigma=0.01, seed=seed), CHINCHILLA
    if name == "atlas":
        return name, example_study(seed), EXAMPLE_TRUTH
    count = int(name[len("atlas-h"):] or 0)     # atlas-h12: the paper study's first 12 languages
    languages = _first_languages(count) if count else JOINT_LANGUAGES
    runs, truth = paper_study(eval_languages=languages, seed=seed)
    return "atlas-h", runs, {family: truth[family] for family in FAMILIES}


def intervals(tree, truth: dict) -> dict[str, tuple[float, float, float]]:
    """{parameter label: (q05, q95, true value)} for every scalar of the truth."""
    return {label: (float(np.quantile(d, 0.05)), float(np.quantile(d, 0.95)), true)
            for label, (d, true) in cell_draws(tree, truth).items()}


def cell_draws(tree, truth: dict) -> dict[str, tuple[np.ndarray, float]]:
    """{parameter label: (its draws, true value)} for every scalar of the truth."""
    post = tree.posterior
    out = {}
    for name, value in truth.items():
        if name not in post.data_vars:       # e.g. tau_other in a study without other languages
            continue
        cells = value.items() if isinstance(value, dict) else [(None, value)]
        for label, true in cells:
            draws = post[name]
            if label is not None:
                dim = "language" if "language" in draws.dims else "transfer_language"
                if label not in draws[dim].values:
                    continue
                draws = draws.sel({dim: label})
            out[f"{name}[{label}]" if label else name] = (np.ravel(draws.values), float(true))
    return out


def timed_fit(runs, law, sampler):
    """(tree or None, wall seconds, warning messages); None when the method refused."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tree = fit(runs, law, sampler=sampler)
        except ValueError as error:   # Laplace refuses a non-positive-definite Hessian
            return None, time.perf_counter() - start, [str(error)[:80]]
    notes = [str(w.message)[:80] for w in caught if "Pareto" in str(w.message)]
    return tree, time.perf_counter() - start, notes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", default="chinchilla:5,atlas:3,atlas-h:3")
    parser.add_argument("--methods", default="nuts,svi,flow,laplace")
    parser.add_argument("--variants", default="{}",
                        help='more Approximation settings, as JSON {"label": {"method": ..., ...}}')
    args = parser.parse_args()
    methods = args.methods.split(",")
    samplers = {"nuts": Sampler(chains=4, warmup=500, draws=500)}
    samplers.update({m: Approximation(m) for m in methods if m != "nuts"})
    for label, settings in json.loads(args.variants).items():
        samplers[label] = Approximation(**settings)
        methods.append(label)
    pooled, mass = {m: [] for m in methods}, {m: [] for m in methods}
    print(f"load before: {open('/proc/loadavg').read().strip()}  cpus: {os.cpu_count()}")
    print(f"{'study':12s} {'seed':>4s} {'method':8s} {'cover90':>8s} {'width/NUTS':>10s} "
          f"{'shift':>6s} {'NUTS mass':>9s} {'wall s':>7s}  notes")
    for entry in args.studies.split(","):
        name, count = entry.split(":")
        for seed in range(int(count)):
            law, runs, truth = study(name, seed)
            found, nuts_draws = {}, None
            for method in methods:
                tree, seconds, notes = timed_fit(runs, law, samplers[method])
                if tree is not None:
                    found[method] = intervals(tree, truth)
                    if method == "nuts":
                        nuts_draws = cell_draws(tree, truth)
                    extra = {k: round(float(tree.attrs[k]), 2) for k in ("pareto_k", "ess")
                             if k in tree.attrs}
                    notes = [f"{k} {v}" for k, v in extra.items()] + notes
                print(_row(name, seed, method, found, seconds, notes, nuts_draws), flush=True)
                if method in found:
                    pooled[method] += _hits(found[method])
                    if nuts_draws:
                        mass[method] += _nuts_mass(found[method], nuts_draws)
    print()
    for method, hits in pooled.items():
        if hits:
            print(f"{method:8s} pooled 90% coverage {np.mean(hits):.3f} over {len(hits)} intervals; "
                  f"NUTS mass inside {np.mean(mass[method]):.3f}")
    print(f"load after: {open('/proc/loadavg').read().strip()}")


def _hits(cells: dict) -> list[bool]:
    return [lo <= true <= hi for lo, hi, true in cells.values()]


def _nuts_mass(cells: dict, nuts_draws: dict) -> list[float]:
    """Per parameter, the share of NUTS's draws inside this method's 90% interval."""
    return [float(np.mean((nuts_draws[k][0] >= lo) & (nuts_draws[k][0] <= hi)))
            for k, (lo, hi, _) in cells.items()]


def _row(name, seed, method, found, seconds, notes, nuts_draws=None) -> str:
    if method not in found:
        return (f"{name:12s} {seed:4d} {method:8s} {'failed':>8s} {'':>27s} {seconds:7.1f}  "
                f"{'; '.join(notes)}")
    cells = found[method]
    ratio, shift = _against_nuts(cells, found.get("nuts"))
    inside = np.mean(_nuts_mass(cells, nuts_draws)) if nuts_draws else np.nan
    return (f"{name:12s} {seed:4d} {method:8s} {np.mean(_hits(cells)):8.2f} {ratio:10.2f} "
            f"{shift:6.2f} {inside:9.2f} {seconds:7.1f}  {'; '.join(notes)}")


def _against_nuts(cells: dict, nuts: dict | None) -> tuple[float, float]:
    """Median over parameters of the interval's width over NUTS's, and of the distance
    between the intervals' midpoints in NUTS widths."""
    if nuts is None:
        return np.nan, np.nan
    widths = {k: nuts[k][1] - nuts[k][0] for k in cells}
    ratio = np.median([(hi - lo) / widths[k] for k, (lo, hi, _) in cells.items()])
    shift = np.median([abs(lo + hi - sum(nuts[k][:2])) / 2 / widths[k] for k, (lo, hi, _) in cells.items()])
    return float(ratio), float(shift)


if __name__ == "__main__":
    main()
