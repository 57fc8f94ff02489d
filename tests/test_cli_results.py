"""The result objects behind the CLI's commands: `as_dict()` keys follow each command's --json
contract (docs/guide.md), `to_text()` holds the readable output's key lines, `write(out)` the
files; the shared helpers build the sampler and output folder from the arguments. Fixed fake
draws and tables, no sampling."""

import argparse
import json
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

from atlas_bayes.cli import build_parser
from atlas_bayes.cli.common import (ECHOED, BadInput, bad_input, library_call, output_folder, report,
                                     sampler_from)
from atlas_bayes.decisions.comparison import HELD_OUT_COLUMNS
from atlas_bayes.decisions.comparison_result import ComparisonResult
from atlas_bayes.decisions.crossover import summarise_draws
from atlas_bayes.decisions.crossover_result import CrossoverResult
from atlas_bayes.decisions.curse import IsoLossResult
from atlas_bayes.decisions.optimal import Optimum, OptimalResult, allocation
from atlas_bayes.decisions.transfer_result import TransferResult
from atlas_bayes.fitting.draws import LawDraws
from atlas_bayes.fitting.inference import Approximation, Sampler
from atlas_bayes.fitting.summary import FitResult, json_safe

pytestmark = pytest.mark.unit

DIAGNOSTICS = {"divergences": 0, "max_r_hat": 1.002, "min_ess_bulk": 480.0}
FIT_KEYS = {"law", "n_obs", "target_language", "parameters", "diagnostics", "converged",
            "warnings", "seconds", "left_out_runs"}


def fake_fit(law="chinchilla", names=("E", "A", "alpha")):
    """A tree shaped like a fit: fixed draws of `names`, the attributes summaries read."""
    rng = np.random.default_rng(0)
    tree = az.from_dict({"posterior": {k: rng.normal(1.0, 0.1, (2, 50)) for k in names}})
    tree.attrs.update({"law": law, "law_description": f"{law}: a fake law", "n_obs": 12,
                       "target_language": "sw", "parameters": json.dumps(list(names)),
                       "diagnostics": json.dumps(DIAGNOSTICS), "seconds": 1.5,
                       "languages": json.dumps(["en", "es"])})
    return tree


def test_fit_result_follows_the_fit_contract(tmp_path):
    result = FitResult(fake_fit())
    summary = result.as_dict()
    assert set(summary) == FIT_KEYS
    assert set(summary["parameters"]["E"]) == {"mean", "median", "q05", "q95", "r_hat", "ess_bulk"}
    text = result.to_text(tmp_path)
    assert text.startswith("chinchilla: a fake law") and "Divergences: 0" in text
    assert text.endswith(f"\n\nwrote {tmp_path / 'posterior.nc'}, {tmp_path / 'fit.png'}, "
                         f"{tmp_path / 'summary.json'}")
    assert "wrote" not in result.to_text()


def test_iso_loss_result_follows_the_curse_contract():
    table = pd.DataFrame({"median": [1.2, 1.6, 3.2, 3.8], "q05": [1.1, 1.4, 2.8, 3.1],
                          "q95": [1.3, 1.9, 3.8, 4.9]}, index=pd.Index(["N", "D_t", "D_tot", "C"],
                                                                      name="multiplier"))
    tree = fake_fit("curse")
    pooled = IsoLossResult(tree, table, "curse", 8.0, 16.0, {"n_params": None, "n_tokens": None},
                           language="xx")
    d = pooled.as_dict()
    assert list(d) == ["law", "from_k", "to_k", "language", "start", "multipliers", "parameters",
                       "diagnostics"]
    assert d["language"] == "pooled" and d["start"] == "compute-optimal"
    assert d["multipliers"]["D_tot"] == {"median": 3.2, "q05": 2.8, "q95": 3.8}
    assert d["diagnostics"] == DIAGNOSTICS
    assert pooled.to_text().startswith("Going from 8 to 16 languages at the same loss "
                                       "(compute-optimal start; curse, median and 90% interval):")
    start = {"n_params": 1e8, "n_tokens": 2e9}
    run = IsoLossResult(tree, table, "curse-h", 4.0, 8.0, start, language="fr")
    assert run.as_dict()["language"] == "fr" and run.as_dict()["start"] == start
    assert "(from the given run start; curse-h" in run.to_text(Path("o"))
    assert run.to_text(Path("o")).endswith("\n\nwrote o/posterior.nc, o/iso_loss.png, o/iso_loss.json")


def crossover_result(power_law=None, budget=1e10):
    draws = np.r_[np.geomspace(1e9, 4e9, 95), np.full(5, np.inf)]
    summary = {"language": "fr", "cell": "fr@6e+08", **summarise_draws(draws, 6e8, budget),
               "source": "measured cell"}
    return CrossoverResult(fake_fit(), power_law, summary, "fr", 6e8, budget)


def test_crossover_result_follows_the_crossover_contract():
    result = crossover_result()
    d = result.as_dict()
    assert list(d) == ["language", "cell", "n_params", "tokens", "compute", "p_no_crossover",
                       "budget_tokens", "p_no_crossover_within_budget", "prob", "recommendation",
                       "source", "diagnostics"]
    assert d["p_no_crossover"] == pytest.approx(0.05) and d["diagnostics"] == DIAGNOSTICS
    json.dumps(d)
    lines = result.to_text(Path("out")).splitlines()
    assert lines[0].startswith("fr at N = 6e+08 (measured cell): crossover after ")
    assert lines[1] == "P(no crossover within 1e+10 tokens): 0.05"
    assert lines[2].startswith("Recommendation: finetune below ")
    assert lines[3] == "wrote out/: posterior.nc, crossover.json, crossover.png"
    predicted = crossover_result(power_law=fake_fit(), budget=None)
    assert not predicted.measured and len(predicted.to_text().splitlines()) == 2
    assert predicted.to_text(Path("o")).endswith("wrote o/: posterior.nc, crossover.json, power_law.nc")


def test_transfer_result_follows_the_transfer_contract():
    measured = pd.DataFrame({"source": ["en", "es"], "target": ["es", "en"],
                             "bts_median": [0.21, 0.1], "bts_q05": [0.1, 0.0],
                             "bts_q95": [0.3, 0.2], "p_positive": [0.99, 0.9]})
    ranking = pd.DataFrame({"source": ["en", "pt"], "measured": [True, False],
                            "tau_median": [0.3, 0.1]})
    tree = fake_fit()
    result = TransferResult(["es"], tree, measured, tree, {"es": ranking},
                            {"es": {"en": [0.3, 0.1]}})
    d = result.as_dict()
    assert list(d) == ["targets", "n_measured_pairs", "languages", "model", "diagnostics", "measured",
                       "rankings", "tau_priors", "interaction"]
    assert d["interaction"] is None
    assert d["n_measured_pairs"] == 2 and d["languages"] == ["en", "es"]
    assert d["diagnostics"] == {"curves": DIAGNOSTICS, "matrix": DIAGNOSTICS}
    assert d["rankings"]["es"][0] == {"source": "en", "measured": True, "tau_median": 0.3}
    text = result.to_text(Path("o"))
    assert text.startswith("2 measured pairs (BTS at the reference horizon, median and 90% interval):")
    assert "\nTransfer languages for es, best first (tau = exp(g) - 1; * = measured):" in text
    assert "en *" in text and "pt *" not in text
    assert text.endswith("\n\nwrote o/: matrix.png, ranking_<target>.png/.csv, bts.csv, "
                         "tau_priors.json, matrix.nc, bts_curves.nc, transfer.json, interaction.csv "
                         "(interaction model)")
    moved = pd.DataFrame({"source": ["ja"], "target": ["zh"], "interaction": [0.3]})
    text = TransferResult(["es"], tree, measured, tree, {"es": ranking}, {}, moved).to_text()
    assert "Pairs the interaction moves most from the additive prediction" in text and "ja" in text


def comparison_result(loo=True):
    row = {c: np.nan for c in HELD_OUT_COLUMNS}
    rows = [{**row, "law": "atlas-dt", "split": "D", "language": lang, "n_train": 20,
             "n_test": 4, "r2": 0.9, "r2_q05": 0.8, "r2_q95": 0.95, "coverage_90": 0.9,
             "converged": True, "error": None} for lang in ("sw", "all")]
    held = pd.DataFrame(rows, columns=HELD_OUT_COLUMNS)
    table = pd.DataFrame({"rank": [0], "elpd": [12.0], "se": [2.0], "elpd_diff": [0.0],
                          "dse": [0.0], "weight": [1.0], "p": [4.1], "n_bad_k": [0]},
                         index=pd.Index(["atlas-dt"], name="law")) if loo else None
    return ComparisonResult(["atlas-dt"], ["D"], held, table, 3.5)


def test_comparison_result_follows_the_compare_contract(tmp_path):
    result = comparison_result()
    d = result.as_dict()
    assert list(d) == ["laws", "splits", "held_out", "loo", "seconds"]
    assert set(d["held_out"][0]) == {"law", "split", "language", "n_train", "n_test", "r2",
                                     "r2_log", "r2_q05", "r2_q95", "r2_pooled", "coverage_50",
                                     "coverage_90", "width_90", "converged", "error"}
    assert d["held_out"][0]["r2_log"] is None and d["loo"][0]["p_loo"] == 4.1
    text = result.to_text(tmp_path)
    assert text.startswith("Held-out R² (mean over target languages)") and "PSIS-LOO" in text
    assert text.endswith(f"\n\nwrote {tmp_path / 'held_out.csv'}, {tmp_path / 'held_out.png'}, "
                         f"{tmp_path / 'loo.csv'}, {tmp_path / 'loo.png'}")
    skipped = comparison_result(loo=False)
    assert skipped.as_dict()["loo"] == [] and "PSIS-LOO" not in skipped.to_text()
    skipped.write(tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["held_out.csv", "held_out.png"]
    assert skipped.files(tmp_path / "w") == [tmp_path / "w" / "held_out.csv",
                                             tmp_path / "w" / "held_out.png"]


def test_optimal_result_follows_the_optimal_contract():
    rng = np.random.default_rng(1)
    draws = LawDraws("chinchilla", {"E": rng.normal(1.7, 0.01, 64), "A": np.full(64, 400.0),
                                    "B": np.full(64, 900.0), "alpha": rng.normal(0.34, 0.01, 64),
                                    "beta": rng.normal(0.28, 0.01, 64)},
                     language="sw", law="chinchilla")
    optimum = Optimum(draws, 1e20, allocation(draws, 1e20))
    track = pd.DataFrame({"label": ["sw"], "compute": [1e20], "N_median": [np.inf]})
    result = OptimalResult(fake_fit(), optimum, track)
    d = result.as_dict()
    assert list(d) == ["law", "language", "compute", "unique_tokens", "unique_tokens_source",
                       "prob", "n_draws", "allocation", "p_repeated", "p_at_bound",
                       "p_more_params_than_chinchilla", "diagnostics", "converged", "warnings",
                       "trajectory"]
    assert d["trajectory"] == [{"compute": 1e20, "N_median": None}]     # JSON-safe: inf -> null
    json.dumps(d, allow_nan=False)
    lines = result.to_text(Path("o")).splitlines()
    assert lines[0] == ("Compute-optimal allocation for sw at C = 1e+20 FLOPs (chinchilla; "
                        "unique tokens not limited (never repeated); median and 90% interval):")
    assert lines[-2].startswith("P(the optimum repeats data) = 0.00; ")
    assert lines[-1] == "wrote o/posterior.nc, o/optimal.json, o/trajectory.png"


def test_json_safe_makes_plain_values():
    assert json_safe({"a": [np.float64(1.5), np.inf], "b": (np.int64(2), float("nan"))}) == \
        {"a": [1.5, None], "b": [2, None]}


def test_sampler_and_output_folder_come_from_the_arguments():
    parser = build_parser()
    args = parser.parse_args(["fit", "runs.csv", "--chains", "2", "--draws", "30", "--seed", "4",
                              "--target-accept", "0.8"])
    assert sampler_from(args) == Sampler(chains=2, draws=30, warmup=1000, seed=4, target_accept=0.8)
    assert output_folder(args, args.law) == Path("results/runs-chinchilla")
    args = parser.parse_args(["fit", "data/x.csv", "--approx", "laplace", "--seed", "3",
                              "--out", "here"])
    assert sampler_from(args) == Approximation("laplace", seed=3)
    assert output_folder(args, "fit") == Path("here")
    args = parser.parse_args(["crossover", "r.csv", "--lang", "sw"])      # --target-accept not given
    assert sampler_from(args) == Sampler(chains=4, draws=1000, warmup=500, seed=0)
    args = parser.parse_args(["curse", "r.csv", "--from-k", "2", "--to-k", "4"])
    assert sampler_from(args).target_accept == 0.95


def test_library_call_turns_value_errors_into_bad_input_and_echoes_warnings(capsys):
    import warnings

    from atlas_bayes.fitting.diagnostics import ConvergenceWarning
    with pytest.raises(BadInput, match="^runs.csv: no rows$"):
        with library_call("runs.csv"):
            raise ValueError("no rows")
    with library_call("runs.csv"):
        warnings.warn("R-hat above 1.01", ConvergenceWarning)
    assert capsys.readouterr().err == "atlas-bayes: warning: R-hat above 1.01\n"
    with library_call("runs.csv", always=Warning, echo=UserWarning):
        warnings.warn("old", DeprecationWarning)
        warnings.warn("cells left out", UserWarning)
    assert capsys.readouterr().err == "atlas-bayes: warning: cells left out\n"


def test_bad_input_names_the_source_unless_plain_and_catches_only_its_errors():
    class ConfigError(ValueError):
        pass

    with pytest.raises(BadInput, match="^--tau-prior p.json: cannot be read as JSON$"):
        with bad_input("--tau-prior p.json"):
            raise ValueError("cannot be read as JSON")
    with pytest.raises(BadInput, match="^not both$"):
        with bad_input("runs.csv", plain=ConfigError):
            raise ConfigError("not both")
    with pytest.raises(BadInput, match="^plan.jsonl: unknown config keys$"):
        with bad_input("plan.jsonl", errors=ConfigError):
            raise ConfigError("unknown config keys")
    with pytest.raises(ValueError, match="^a bug$"):      # not one of `errors`: a traceback
        with bad_input("plan.jsonl", errors=ConfigError):
            raise ValueError("a bug")


def test_report_writes_then_prints_json_or_text(tmp_path, capsys):
    class Stub:
        def write(self, out):
            (out / "written").write_text("")

        def as_dict(self):
            return {"when": pd.Timestamp("2026-01-01"), "n": 1}

        def to_text(self, out=None):
            return f"readable\nwrote {out}"

    ECHOED.clear()                         # as `main` does before each command
    assert report(Stub(), argparse.Namespace(json=True), tmp_path) == 0
    assert json.loads(capsys.readouterr().out) == {"when": "2026-01-01 00:00:00", "n": 1,
                                                   "warnings": []}
    assert (tmp_path / "written").exists()
    report(Stub(), argparse.Namespace(json=False), tmp_path)
    assert capsys.readouterr().out == f"readable\nwrote {tmp_path}\n"
