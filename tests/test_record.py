"""FitRecord and build_tree: the one schema of a fitted result and the one tree builder.

Unit tests check the attribute layout (round trip, the layout `fit` has always written, clear
errors for missing attributes) and the builder on hand-made draws; the others fit each kind
(law, BTS, crossover and its power law, transfer matrix) with tiny samplers and read the
record back.
"""

import functools
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import QUICK

from atlas_bayes.decisions.bts import bts_table, fit_bts
from atlas_bayes.decisions.crossover import fit_crossover, fit_power_law, predict_crossover
from atlas_bayes.decisions.transfer import fit_transfer_matrix
from atlas_bayes.fitting.diagnostics import ConvergenceWarning
from atlas_bayes.fitting.inference import Sampler, fit, load, predict, save
from atlas_bayes.fitting.record import LAW, Convergence, FitRecord
from atlas_bayes.fitting.summary import summary_dict
from atlas_bayes.fitting.tree import build_tree
from atlas_bayes.simulation.crossover_study import simulate_crossover
from atlas_bayes.simulation.simulate import monolingual_design, simulate
from atlas_bayes.simulation.transfer_study import simulate_bilingual_runs
from atlas_bayes.tables.runs import validate_runs

TINY = QUICK

# the attributes `fit` wrote for a joint fit before FitRecord existed (copied from a fit)
LEGACY = {
    "atlas_bayes_version": "0.1.0", "centred": 1, "data_hash": "d379dcf279861fb7",
    "diagnostics": '{"divergences": 0, "max_r_hat": 1.1869836383618326, "min_ess_bulk": 8.727593209228278}',
    "has_other": 0, "languages": '["en", "fr"]',
    "latent_sites": '["log_E_mu", "log_E_sd", "log_E_z", "sigma"]',
    "law": "chinchilla-h",
    "law_description": "Chinchilla with per-language parameters pooled across languages",
    "left_out_runs": "[]", "log_D_ref": 21.18960746497081, "log_N_ref": 18.887022371976766,
    "method": "nuts", "n_obs": 75,
    "options": '{"centring": [1.0, 1.0], "centres": [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]}',
    "parameters": '["E", "A", "B", "alpha", "beta", "sigma"]',
    "sampler": '{"chains": 2, "draws": 100, "warmup": 100, "seed": 0, "target_accept": 0.9, '
               '"dense_mass": "auto", "chain_method": "vectorized"}',
    "scales": '{"log_N_ref": 18.887022371976766, "log_D_ref": 21.18960746497081}',
    "simulated": 1, "source": "", "student_t_nu": 4.0, "target_language": "en,fr",
    "transfer_languages": '[["es", ""], ["en", "es"]]', "seconds": 12.5,
}


def _tree_with(attrs: dict) -> xr.DataTree:
    tree = xr.DataTree()
    tree.attrs.update(attrs)
    return tree


@pytest.mark.unit
def test_legacy_attributes_rebuild_the_record_and_are_written_back_unchanged():
    record = FitRecord.from_tree(_tree_with(LEGACY))
    assert record.kind == LAW and record.law == "chinchilla-h" and record.model == "chinchilla-h"
    assert record.languages == ("en", "fr") and record.transfer_languages == (("es", ""), ("en", "es"))
    assert record.has_other is False and record.centred is True and record.simulated is True
    assert record.n_obs == 75 and record.student_t_nu == 4.0 and record.seconds == 12.5
    assert record.options["centring"] == [1.0, 1.0] and record.scales["log_N_ref"] == LEGACY["log_N_ref"]
    assert record.diagnostics == Convergence(0, 1.1869836383618326, 8.727593209228278, ())
    assert record.extra == {} and record.version == "0.1.0"
    attrs = record.to_attrs()
    assert attrs.pop("convergence_warnings") == "[]"   # the attributes FitRecord adds
    assert attrs.pop("convergence_notes") == "[]" and attrs.pop("warnings") == "[]"
    assert attrs.pop("converged") == "true"     # derived: the legacy file recorded no warnings
    assert attrs == LEGACY


@pytest.mark.unit
def test_round_trip_of_every_kind_through_attributes():
    records = [
        FitRecord(LAW, law="atlas", languages=["fr"], transfer_languages=["en", "es"],
                  options={"tau_prior": {"loc": [0.6], "scale": [0.02]}}, has_other=True,
                  latent_sites=["a", "b"], left_out_runs=[], student_t_nu=4.0,
                  diagnostics=Convergence(3, float("nan"), 120.0, ("R-hat above ...",)),
                  extra={"elbo_final": -1.5}),
        FitRecord("bts", source="runs.csv", sampler={"chains": 2}, diagnostics=Convergence()),
        FitRecord("crossover_power_law", log_N_ref=20.2, extra={"cells": ["fr@2e+08", "sw@2e+08"]}),
        FitRecord("transfer_matrix", languages=["en", "zh"], sampler={"chains": 4}),
    ]
    for record in records:
        attrs = record.to_attrs()
        for value in attrs.values():
            assert isinstance(value, (str, int, float)) and not isinstance(value, bool)
        back = FitRecord.from_tree(_tree_with(attrs))
        assert back.to_attrs() == attrs
        assert back.kind == record.kind and back.extra == record.extra
        assert ("kind" in attrs) == (record.kind != LAW)
    back = FitRecord.from_tree(_tree_with(records[0].to_attrs()))
    assert back.diagnostics.divergences == 3 and math.isnan(back.diagnostics.max_r_hat)
    assert back.diagnostics.warnings == ("R-hat above ...",) and not back.diagnostics.converged
    assert FitRecord.from_tree(_tree_with(records[2].to_attrs())).log_N_ref == 20.2


@pytest.mark.unit
def test_missing_attributes_give_a_clear_error():
    partial = {k: v for k, v in LEGACY.items() if k not in ("scales", "latent_sites")}
    with pytest.raises(ValueError, match=r"this fit \(not read from a file\) lacks attribute\(s\) "
                                         r"'scales', 'latent_sites' that predict needs"):
        FitRecord.from_tree(_tree_with(partial), require=("law", "scales", "latent_sites"),
                            purpose="predict")
    with pytest.raises(ValueError, match="'kind'"):
        FitRecord.from_tree(xr.DataTree(), require=("kind",))
    assert FitRecord.from_tree(_tree_with({"law": "x"}), require=("kind",)).kind == LAW
    with pytest.raises(ValueError, match="attribute 'languages' is not JSON"):
        FitRecord.from_tree(_tree_with({**LEGACY, "languages": "en,fr"}))
    with pytest.raises(ValueError, match="lacks attribute.*'parameters'"):
        summary_dict(_tree_with({k: v for k, v in LEGACY.items() if k != "parameters"}))


@pytest.mark.unit
def test_builder_labels_checks_and_warns_once():
    rng = np.random.default_rng(0)
    posterior = {"mu": rng.normal(size=(2, 50)), "theta": rng.normal(size=(2, 50, 3))}
    stats = {"diverging": np.zeros((2, 50), bool)}
    stats["diverging"][0, :2] = True
    record = FitRecord("bts", source="s.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = build_tree({"posterior": posterior, "sample_stats": stats,
                           "observed_data": {"y": rng.normal(size=3)}}, record,
                          coords={"pair": ["a", "b", "c"]}, dims={"theta": ["pair"], "y": ["pair"]},
                          labels={"posterior": {"source": ("pair", np.array(["x", "y", "z"])),
                                                "skipped": ("absent_dim", np.arange(2))}},
                          datasets={"pair_info": xr.Dataset({"p": ("pair", np.ones(3))})},
                          check=["mu", "theta"])
    got = FitRecord.from_tree(tree)
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert [str(w.message) for w in convergence] == list(got.diagnostics.warnings)
    assert got.diagnostics.divergences == 2 and any("2 divergent" in m for m in got.diagnostics.warnings)
    assert list(tree.posterior["source"].values) == ["x", "y", "z"] and "skipped" not in tree.posterior.coords
    assert set(tree.children) == {"posterior", "sample_stats", "observed_data", "pair_info"}
    assert got.kind == "bts" and got.source == "s.csv"
    # no check (an approximation): NaN diagnostics, no warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        tree = build_tree({"posterior": {"mu": posterior["mu"][:1]}}, record, check=None)
    assert FitRecord.from_tree(tree).diagnostics.as_dict()["divergences"] == 0
    assert math.isnan(FitRecord.from_tree(tree).diagnostics.max_r_hat)


# ---- each kind of fit, through the one builder ----

@functools.cache
def law_fit():
    truth = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}
    runs = simulate(monolingual_design("fr", tokens_per_param=(10, 40)), "chinchilla", truth, seed=5)
    return runs, fit(runs, "chinchilla", sampler=TINY, warn=False)


@functools.cache
def curve_fit():
    langs = ["en", "es", "zh"]
    truth = pd.DataFrame([[np.nan, 0.2, -0.1], [0.1, np.nan, -0.2], [-1.0, -1.2, np.nan]],
                         index=langs, columns=langs)
    return fit_bts(validate_runs(simulate_bilingual_runs(truth, seed=0)), sampler=TINY, warn=False)


@functools.cache
def crossover_fit():
    truth = {"sw": dict(E=1.5, A=300., alpha=0.34, B=1.2, beta=0.3, delta=0.04, D0=2e10, eta=0.3, zeta=0.3),
             "fr": dict(E=1.3, A=300., alpha=0.34, B=1.0, beta=0.28, delta=0.06, D0=5e10, eta=0.3, zeta=0.3)}
    runs = validate_runs(simulate_crossover(truth, [2e8, 6e8, 2e9], seed=0))
    return fit_crossover(runs, sampler=TINY, warn=False)


@pytest.mark.statistical
def test_law_fit_record_survives_save_and_load(tmp_path):
    runs, tree = law_fit()
    record = FitRecord.from_tree(tree)
    assert record.kind == LAW and record.law == "chinchilla" and record.languages == ("fr",)
    assert record.target_language == "fr" and record.n_obs == len(runs) and record.method == "nuts"
    assert record.sampler == {"chains": TINY.chains, "draws": TINY.draws, "warmup": TINY.warmup,
                              "seed": 0, "target_accept": 0.9, "dense_mass": "auto",
                              "chain_method": "sequential"}
    assert record.scales["log_N_ref"] == record.log_N_ref and record.simulated
    assert json.loads(tree.attrs["diagnostics"]) == record.diagnostics.as_dict()
    path = save(tree, tmp_path / "posterior.nc")
    back = load(path)
    assert FitRecord.from_tree(back) == record and FitRecord.from_tree(back).to_attrs() == record.to_attrs()
    np.testing.assert_allclose(predict(back, runs.head(3)).log_loss_mean.values,
                               predict(tree, runs.head(3)).log_loss_mean.values)
    del back.attrs["scales"]
    with pytest.raises(ValueError, match=rf"{path}.*lacks attribute\(s\) 'scales' that predict needs"):
        predict(back, runs.head(3))


@pytest.mark.statistical
def test_bts_fit_record_and_its_warnings():
    record = FitRecord.from_tree(curve_fit())
    assert record.kind == "bts" and record.source == "<run table>" and record.sampler["draws"] == TINY.draws
    assert record.law is None and record.diagnostics is not None
    with pytest.warns(ConvergenceWarning) as caught:
        fit_bts(validate_runs(simulate_bilingual_runs(
            pd.DataFrame([[np.nan, 0.2], [0.1, np.nan]], index=["en", "es"], columns=["en", "es"]),
            seed=1)), sampler=Sampler(chains=2, draws=20, warmup=20))
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    messages = [str(w.message) for w in convergence]
    assert len(messages) == len(set(messages)) and convergence[0].filename == __file__


@pytest.mark.statistical
def test_transfer_matrix_record():
    tree = fit_transfer_matrix(bts_table(curve_fit()), model="additive", sampler=TINY, warn=False)
    record = FitRecord.from_tree(tree)
    assert record.options == {"model": "additive"}
    assert record.kind == "transfer_matrix" and set(record.languages) == {"en", "es", "zh"}
    assert list(record.languages) == list(tree.posterior["language"].values)
    assert record.sampler["chains"] == 2 and record.diagnostics is not None


@pytest.mark.statistical
def test_crossover_and_power_law_records():
    tree = crossover_fit()
    record = FitRecord.from_tree(tree)
    assert record.kind == "crossover" and record.source == "<run table>" and record.diagnostics
    assert "fit_data" in tree.children and "language" in tree.posterior.coords
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = fit_power_law(tree, sampler=TINY, warn=False)
    power = FitRecord.from_tree(law)
    assert power.kind == "crossover_power_law" and power.model == "crossover_power_law"
    assert len(power.extra["cells"]) >= 3 and set(power.extra["cells"]) <= set(tree.posterior["cell"].values)
    assert np.isfinite(power.log_N_ref) and power.diagnostics is not None
    assert predict_crossover(law, "fr", 1e9).shape == law.posterior["gamma"].shape
    del law.attrs["log_N_ref"]
    with pytest.raises(ValueError, match="'log_N_ref' that predict_crossover needs"):
        predict_crossover(law, "fr", 1e9)
