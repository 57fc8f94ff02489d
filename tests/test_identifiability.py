"""Confounded designs (fitting/identifiability.py): languages whose model sizes are tied to their
data sizes are found, and a joint fit without A and alpha shared says so before sampling, with
the fix; the R-hat warning and the record repeat it. Detector and messages only: no sampling."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atlas_bayes.fitting import inference
from atlas_bayes.fitting.diagnostics import check_convergence
from atlas_bayes.fitting.identifiability import (TiedSizesWarning, check_tied_sizes, describe,
                                                 size_groups, tied_languages)
from atlas_bayes.fitting.record import LAW, FitRecord
from atlas_bayes.models import get_law
from atlas_bayes.simulation.simulate import simulate
from atlas_bayes.tables.adapters import load_shared

pytestmark = pytest.mark.unit

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}
GOLDFISH = [(33e6, 5e6), (39e6, 1e7), (125e6, 1e8), (125e6, 1e9)]   # (n_params, tokens) per run
GRID = [(n, d) for n in (1e7, 1e8, 1e9) for d in (1e8, 1e9, 1e10)]


def table(languages: dict[str, list]) -> pd.DataFrame:
    """A simulated run table: per language, its runs' (n_params, n_tokens[, {lang: share}])."""
    rows = []
    for language, runs in languages.items():
        for i, (n, d, *mix) in enumerate(runs):
            row = {"run_id": f"{language}-{i}", "language": language, "n_params": n,
                   "n_tokens": d, "n_languages": 1}
            row.update({f"mix_{k}": v for k, v in (mix[0] if mix else {}).items()})
            rows.append(row)
    return simulate(pd.DataFrame(rows), "chinchilla", TRUTH, seed=0)


def test_model_sizes_within_a_factor_of_1_5_are_one_size():
    assert list(size_groups([33e6, 39e6, 125e6, 125e6])) == [0, 0, 1, 1]
    assert list(size_groups([1e9, 1.4e9, 2.8e9, 70e6])) == [1, 1, 2, 0]


def test_tied_designs_are_found_and_grids_are_not():
    runs = table({
        "gf": GOLDFISH,                                          # two sizes, each its own data
        "one": [(1e8, d) for d in (1e8, 1e9, 1e10)],             # one model size
        "line": [(n, 20 * n) for n in (1e7, 3e7, 1e8, 3e8)],     # D = 20 N
        "grid": GRID,                                            # every size at every D
        "two": [(n, d) for n in (1e7, 1e8) for d in (1e8, 1e9)], # two sizes at common D
        "iso": [(n, c / n) for c in (1e16, 1e18) for n in (1e7, 1e8, 1e9)],   # two isoFLOPs
    })
    found = {t.language: t for t in tied_languages(runs)}
    assert set(found) == {"gf", "one", "line"}
    assert found["gf"].reason == "two model sizes" and found["gf"].size_groups == 2
    assert found["one"].reason == "one model size"
    assert found["line"].reason == "collinear" and found["line"].correlation > 0.999


def test_the_data_size_is_the_target_languages_tokens():
    """Both sizes train on the same total tokens (a grid), but the small model's mixtures hold
    1% of the target and the large one's half: in target tokens, the sizes are tied."""
    small, large = {"fr": 0.01, "en": 0.99}, {"fr": 0.5, "en": 0.5}
    runs = table({"fr": [(1e7, 1e9, small), (1e7, 1e10, small), (1e8, 1e9, large),
                         (1e8, 1e10, large)],
                  "en": [(1e7, 1e9, {"fr": 0.5, "en": 0.5}), (1e7, 1e10, {"fr": 0.5, "en": 0.5}),
                         (1e8, 1e9, {"fr": 0.5, "en": 0.5}), (1e8, 1e10, {"fr": 0.5, "en": 0.5})]})
    assert [t.language for t in tied_languages(runs)] == ["fr"]


def test_the_warning_names_the_languages_and_the_fix():
    runs = table({f"l{i}": GOLDFISH for i in range(7)} | {"grid": GRID})
    law = get_law("chinchilla-h")
    with pytest.warns(TiedSizesWarning) as caught:
        message, advice = check_tied_sizes(law, runs, {})
    text = str(caught[0].message)
    assert text == message
    assert text.startswith("7 of 8 languages (l0, l1, l2, l3, l4, ...) have model sizes tied")
    assert "7 at two model sizes" in text and "cannot separate A from alpha" in text
    assert "--shared A,alpha" in text and 'options={"shared": ["A", "alpha"]}' in text
    assert "7 of 8 languages" in advice and "--shared A,alpha" in advice
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_tied_sizes(law, runs, {}, warn=False)[0] == message   # recorded only
        assert check_tied_sizes(law, runs, {"shared": ["alpha", "A", "E"]}) is None
        assert check_tied_sizes(get_law("chinchilla"), runs[runs["language"] == "l0"], {}) is None
        assert check_tied_sizes(law, table({"grid": GRID}), {}) is None
    assert "(3 at one model size)" in describe(tied_languages(table(
        {k: [(1e8, 1e9), (1e8, 1e10)] for k in "abc"})), 3)


def test_a_joint_fit_warns_before_sampling(monkeypatch):
    def no_sampling(*args, **kwargs):
        raise RuntimeError("sampling")
    monkeypatch.setattr(inference, "_nuts", no_sampling)
    runs = table({"a": GOLDFISH, "b": GOLDFISH})
    with pytest.warns(TiedSizesWarning, match="2 of 2 languages"), \
            pytest.raises(RuntimeError, match="sampling"):
        inference.fit(runs, "chinchilla-h")


def test_the_r_hat_warning_repeats_the_fix_and_the_record_keeps_the_warning():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(2, 100)) + np.array([[0.0], [3.0]])     # chains that disagree
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"E": (("chain", "draw"), draws)})})
    message, advice = check_tied_sizes(get_law("chinchilla-h"), table({"a": GOLDFISH}), {},
                                       warn=False)
    r_hat = check_convergence(tree, ["E"], advice).messages[0]
    assert r_hat.startswith("R-hat above") and r_hat.endswith(advice)
    assert "--shared A,alpha" not in check_convergence(tree, ["E"]).messages[0]
    record = FitRecord(LAW, law="chinchilla-h", design_warnings=[message])
    attrs = record.to_attrs()
    assert json.loads(attrs["design_warnings"]) == [message]
    back = FitRecord.from_tree(xr.DataTree(dataset=xr.Dataset(attrs=attrs)))
    assert back.design_warnings == (message,)
    assert "design_warnings" not in FitRecord(LAW, law="chinchilla-h").to_attrs()


def test_goldfish_languages_are_tied(shared_data):
    """Goldfish trains each language's small model (22-39M parameters, by tokenizer) at 5 and 10
    MB and its 125M model at 100 and 1000 MB: every one of the 202 languages is tied, and a
    joint fit without A and alpha shared is told so (measured: at 2 chains x (200 + 200) that
    fit reached max R-hat 1.91, min bulk ESS 3, 1023 leapfrog steps per draw)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # languages outside our metadata
        runs = load_shared("goldfish", shared_data)
    tied = tied_languages(runs)
    assert len(tied) == runs["language"].nunique() == 202
    assert {t.reason for t in tied} == {"two model sizes"}
    with pytest.warns(TiedSizesWarning, match=r"202 of 202 languages \(ace_Arab, .*--shared A,alpha"):
        assert check_tied_sizes(get_law("chinchilla-h"), runs, {"centring": "centred"})
    assert check_tied_sizes(get_law("chinchilla-h"), runs, {"shared": ["A", "alpha"]}) is None
