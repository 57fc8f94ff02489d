"""Design targets read from curve fits: crossover:LANG@N and bts:SRC->TGT (design_curves)."""

import functools
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from atlas_bayes import design
from atlas_bayes.design import curves as design_curves
from atlas_bayes.decisions.bts import fit_bts
from atlas_bayes.cli import main
from atlas_bayes.decisions.crossover import MAX_SPAN, crossover_summary, fit_crossover
from atlas_bayes.simulation.crossover_study import simulate_crossover
from atlas_bayes.tables.runs import validate_runs, write_runs
from atlas_bayes.simulation.transfer_study import simulate_bilingual_runs
from conftest import QUICK, cli_args

SAMPLER = QUICK
SW = {"sw": dict(E=1.5, A=300., alpha=0.34, B=1.2, beta=0.3, delta=0.04, D0=2e10, eta=0.3, zeta=0.3)}
BTS = pd.DataFrame([[np.nan, 0.3], [-0.5, np.nan]], index=["en", "sw"], columns=["en", "sw"])


@functools.cache
def crossover_fit():
    runs = validate_runs(simulate_crossover(SW, [2e9], seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return runs, fit_crossover(runs, sampler=SAMPLER, warn=False)


@pytest.mark.statistical
def test_crossover_target_is_the_crossover_modules_quantity_and_scores_runs():
    runs, tree = crossover_fit()
    target = design.parse_target("crossover:sw@2e9")
    _, post, candidates = design.curve_study(target, runs, tree=tree, max_draws=None)
    # the same crossover as atlas_bayes.decisions.crossover reports
    q = target.values(post)
    d_cross = tree.posterior["d_cross"].sel(cell="sw@2e+09").values.ravel()
    finite = np.isfinite(d_cross)
    assert np.allclose(q[finite], np.log(d_cross[finite]), rtol=1e-9)
    # draws without a crossover count at the searched range's end
    assert np.allclose(q[~finite], np.log(MAX_SPAN * float(tree.posterior["d_end"][0])))
    median = crossover_summary(tree, "sw", 2e9)["tokens"]["median"]
    assert np.quantile(np.exp(q), 0.5, method="inverted_cdf") == pytest.approx(median, rel=1e-9)
    # the observation model reproduces the data: predicted final losses of both curves
    last = runs[runs["n_tokens"] == runs.groupby("init")["n_tokens"].transform("max")]
    at_data = pd.DataFrame({"n_params": 2e9, "n_tokens": last["n_tokens"] - last["init_tokens"],
                            "init": last["init"]})
    predicted = np.exp(np.median(post.candidate_log_mean(at_data), axis=0))
    assert np.allclose(predicted, last["loss"], rtol=0.01), (predicted, list(last["loss"]))
    # both kinds of run are candidates; finetunes continue the cell's checkpoint
    assert set(candidates["init"]) == {"scratch", "unimax-2e+09"}
    result = design.choose_batch(post, candidates, target, k=2, budget=6 * 2e9 * 1e12)
    assert len(result.chosen) == 2 and result.chosen["cost"].sum() <= 6 * 2e9 * 1e12
    assert (result.scores["gain"] > 0).all() and result.total_gain > 0


@pytest.mark.statistical
def test_crossover_targets_that_the_posterior_cannot_answer_say_why():
    runs, tree = crossover_fit()
    with pytest.raises(ValueError, match="unmeasured size.*power law"):
        design.curve_study(design.parse_target("crossover:sw@5e9"), runs, tree=tree)
    with pytest.raises(ValueError, match="no crossover cell for language 'fr'"):
        design.curve_study(design.parse_target("crossover:fr@2e9"), runs, tree=tree)
    law = design.Posterior(design.LawDraws("chinchilla", {"E": [1.0, 1.1], "A": [1, 1], "B": [1, 1],
                                                          "alpha": [.3, .3], "beta": [.3, .3]}, law="chinchilla"),
                           [0.1, 0.1])
    with pytest.raises(ValueError, match="needs a crossover fit.*chinchilla fit"):
        design.parse_target("crossover:sw@2e9").values(law)
    for text, message in (("crossover:sw", "unknown target"), ("crossover:sw@big", "positive number"),
                          ("bts:en", "unknown target"), ("loss@N=1e9,D=2e10", None)):
        if message is None:
            design.parse_target(text)                     # the old forms still parse
        else:
            with pytest.raises(ValueError, match=message):
                design.parse_target(text)


@pytest.mark.statistical
def test_bts_target_continues_the_pairs_runs_and_has_no_trainer_plan():
    runs = validate_runs(simulate_bilingual_runs(BTS, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = fit_bts(runs, sampler=SAMPLER, warn=False)
    target = design.parse_target("bts:en->sw")
    _, post, candidates = design.curve_study(target, runs, tree=tree, max_draws=None)
    g = tree.posterior["g"].sel(pair="en->sw@1e+09").values.ravel()
    assert np.allclose(target.values(post), np.maximum(g, np.log(2 / design_curves.BTS_MAX_RATIO)))
    assert set(candidates["extends"]) == {"mono-sw", "bi-en-sw"}
    # a continuation to the run's own last tokens predicts its last loss
    for run in ("mono-sw", "bi-en-sw"):
        rows = runs[(runs["run_id"] == run) & (runs["language"] == "sw")]
        end = pd.DataFrame({"extends": [run], "n_tokens": [rows["n_tokens"].max()]})
        predicted = np.exp(np.median(post.candidate_log_mean(end)))
        assert predicted == pytest.approx(rows.loc[rows["n_tokens"].idxmax(), "loss"], rel=0.01)
    # cost is 6 N x the added tokens only
    first = candidates.iloc[0]
    assert first["cost"] == pytest.approx(6 * 1e9 * (first["n_tokens"] - 2e10))
    result = design.choose_batch(post, candidates, target, k=2, cost_power=0.0)
    assert result.total_gain > 0 and len(result.chosen) == 2
    with pytest.raises(ValueError, match="cannot continue a finished run"):
        design.study_for(target).plan_check()


@pytest.mark.e2e
def test_cli_design_with_a_crossover_target(tmp_path, capsys):
    runs, _ = crossover_fit()
    write_runs(runs, tmp_path / "runs.csv")
    code = main(["design", str(tmp_path / "runs.csv"), "--target", "crossover:sw@2e9", "--k", "2",
                 *cli_args(QUICK), "--max-draws", "200", "--json", "--out", str(tmp_path / "d")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["target"] == "crossover:sw@2e+09" and summary["law"] == "crossover"
    assert len(summary["chosen"]) == 2 and (tmp_path / "d" / "design.png").is_file()
    code = main(["design", str(tmp_path / "runs.csv"), "--target", "crossover:sw@2e9",
                 "--shapes", "s0", "--out", str(tmp_path / "e")])
    assert code == 2 and "--tokens" in capsys.readouterr().err
