"""The design posterior protocol, the one place a target's kind picks its study, the design
command's result, and the loop's run table read once per invocation."""

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import QUICK

from atlas_bayes import design
from atlas_bayes.design import loop, study as design_study
from atlas_bayes.design.curves import BtsPosterior, CrossoverPosterior
from atlas_bayes.fitting.draws import LawDraws
from atlas_bayes.tables.runs import read_runs, write_runs

REPO = Path(__file__).resolve().parents[1]
M = 64


def law_posterior(n=M, seed=0):
    rng = np.random.default_rng(seed)
    p = {"E": rng.uniform(1.3, 1.5, n), "A": np.exp(rng.normal(6, 0.3, n)),
         "B": np.exp(rng.normal(7.4, 0.3, n)), "alpha": rng.uniform(0.3, 0.38, n),
         "beta": rng.uniform(0.28, 0.34, n)}
    return design.Posterior(LawDraws("chinchilla", p), np.full(n, 0.02), 4.0)


def crossover_posterior(n=M, seed=0):
    rng = np.random.default_rng(seed)
    params = {"L_end": rng.uniform(2.9, 3.1, n), "L0": rng.uniform(2.0, 2.2, n),
              "beta": rng.uniform(0.3, 0.5, n), "delta": rng.uniform(0.02, 0.08, n),
              "D0_rel": rng.uniform(0.2, 0.6, n)}
    return CrossoverPosterior("sw@2e+09", "sw", 2e9, 1e10, params, np.full(n, 0.02))


def bts_posterior(n=M, seed=0):
    rng = np.random.default_rng(seed)
    curve = lambda run: {"run_id": run, "d_end": 2e10, "E": rng.uniform(1.8, 2.0, n),  # noqa: E731
                         "L_end": rng.uniform(2.9, 3.1, n), "beta": rng.uniform(0.3, 0.5, n)}
    return BtsPosterior("en->sw@1e+09", 1e9, {"mono": curve("mono-sw"), "bilingual": curve("bi-en-sw")},
                        rng.normal(0.3, 0.1, n), np.full(n, 0.02))


# ---------------------------------------------------------------------------------------------
# The protocol


@pytest.mark.unit
@pytest.mark.parametrize("make", [law_posterior, crossover_posterior, bts_posterior])
def test_each_posterior_is_a_design_posterior(make):
    post = make()
    assert isinstance(post, design.DesignPosterior)
    assert post.n == M and post.sigma.shape == (M,) and post.nu == 4.0


@pytest.mark.unit
def test_the_protocol_is_structural_and_checked_before_scoring():
    class Duck:                                   # no subclassing: the members are enough
        sigma, nu, n = np.full(3, 0.1), 4.0, 3

        def candidate_log_mean(self, candidates):
            return np.zeros((3, len(candidates)))

    assert isinstance(Duck(), design.DesignPosterior)
    assert not isinstance(object(), design.DesignPosterior)
    assert not isinstance({"sigma": 1, "nu": 4, "n": 2}, design.DesignPosterior)
    candidates = design.candidate_grid(n_params=[1e8], tokens=[1e9])
    target = design.parse_target("loss@N=1e9,D=2e10")
    with pytest.raises(TypeError, match="choose_batch needs a design posterior.*got LawDraws"):
        design.choose_batch(law_posterior().draws, candidates, target)
    with pytest.raises(TypeError, match="reweight needs a design posterior"):
        design.reweight(object(), 1e8, 1e9, 3.0)


@pytest.mark.unit
def test_curve_posteriors_score_and_reweight_through_the_protocol():
    post = crossover_posterior()
    target = design.parse_target("crossover:sw@2e9")
    w = design.reweight(post, 2e9, 2e10, 2.9, init="scratch")
    assert w.shape == (M,) and w.sum() == pytest.approx(1.0) and w.max() < 1.0
    law = law_posterior()
    assert np.allclose(design.reweight(law, 1e8, 1e9, 3.0),
                       design.reweight(law, 1e8, 1e9, 3.0, init="scratch"))
    s = design.target_summary(post, target)
    assert s["lo"] < s["median"] < s["hi"]
    runs = pd.DataFrame({"candidate": ["mono", "bi"], "extends": ["mono-sw", "bi-en-sw"], "n_params": 1e9,
                         "n_tokens": [4e10, 4e10], "cost": [1.2e20, 1.2e20]})
    result = design.choose_batch(bts_posterior(), runs, design.parse_target("bts:en->sw"), k=1)
    assert len(result.chosen) == 1 and result.total_gain > 0


# ---------------------------------------------------------------------------------------------
# One dispatch


@pytest.mark.unit
def test_study_for_is_the_one_map_from_a_targets_kind_to_its_study(tmp_path):
    for text in ("params", "loss@N=1e9,D=2e10", "nstar@C=1e21"):
        study = design.study_for(design.parse_target(text), law="atlas", language="sw")
        assert type(study) is design.LawStudy and study.can_plan and not study.needs_runs
        assert (study.law, study.language) == ("atlas", "sw")
    cx = design.study_for(design.parse_target("crossover:sw@2e9"), run_folder=tmp_path)
    assert type(cx) is design.CrossoverStudy and cx.can_plan and cx.run_folder == tmp_path
    bts = design.study_for(design.parse_target("bts:en->sw"))
    assert type(bts) is design.BtsStudy and not bts.can_plan and bts.needs_runs
    with pytest.raises(ValueError, match="no trainer plan"):
        bts.plan_check()
    cx.plan_check()
    # options that do not apply are refused by the study, before any fit
    with pytest.raises(design.OptionError, match="--tokens \\(no --candidates"):
        cx.check(design.CandidateOptions(shapes=["s0"]))
    with pytest.raises(design.OptionError, match="not a posterior.nc"):
        cx.check(design.CandidateOptions(), runs_given=False)
    with pytest.raises(design.OptionError, match="--tokens does not apply"):
        bts.check(design.CandidateOptions(tokens=[1e9]))
    with pytest.raises(design.OptionError, match="not both"):
        design.study_for(design.parse_target("params")).check(
            design.CandidateOptions(tokens=[1e9], tokens_per_param=[20.0]))


@pytest.mark.unit
def test_loop_settings_refuse_both_token_options_and_read_the_trainer_base(tmp_path):
    with pytest.raises(design.OptionError, match="^give either --tokens or --tokens-per-param, not both$"):
        loop.LoopSettings(runs="r.csv", target="params", budget=1e20, tokens=[1e6],
                          tokens_per_param=[20.0])
    assert loop.read_train_base(None) == {}
    path = tmp_path / "base.json"
    path.write_text(json.dumps({"seq_len": 32, "lr": 5e-3}))
    assert loop.read_train_base(path) == {"seq_len": 32, "lr": 5e-3}
    path.write_text("[32]")
    with pytest.raises(ValueError, match="^expected a JSON object of config fields$"):
        loop.read_train_base(path)
    with pytest.raises(ValueError, match="^cannot be read as JSON: "):
        loop.read_train_base(tmp_path / "missing.json")


@pytest.mark.unit
def test_loop_status_is_a_dict_the_command_reports(tmp_path):
    status = loop.LoopStatus(stopped="2 round(s) done", rounds=2, spent=np.float64(3e18),
                             last={"width": float("nan")})
    assert status["rounds"] == 2 and json.loads(json.dumps(status, default=float))["rounds"] == 2
    assert status.as_dict() == {"stopped": "2 round(s) done", "rounds": 2, "spent": 3e18,
                                "last": {"width": None}}
    assert status.to_text(tmp_path) == (f"2 round(s) done; log {tmp_path / 'rounds.jsonl'}, "
                                        f"plot {tmp_path / 'width.png'}")
    status.write(tmp_path)
    assert not any(tmp_path.iterdir())         # the loop has written its folder already


@pytest.mark.unit
def test_the_kind_is_decided_only_in_the_study_module():
    """The design command, the loop, the target parser and the command's work ask a study;
    none of them names a curve kind or reads a target's kind."""
    users = ["atlas_bayes/design/loop.py", "atlas_bayes/cli/design.py",
             "atlas_bayes/design/parse.py", "atlas_bayes/design/command.py"]
    for path in users:
        tree = ast.parse((REPO / path).read_text())
        constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} \
            | {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not constants & {"crossover", "bts", "kind"}, path
        assert not names & {"CURVE_KINDS", "CURVE_STUDIES", "curve_study", "kind"}, path
    for path in ("atlas_bayes/design/loop.py", "atlas_bayes/cli/design.py"):
        assert "study_for" in (REPO / path).read_text(), path


@pytest.mark.unit
def test_a_law_studys_default_candidates_span_the_fitted_sizes():
    study = design.study_for(design.parse_target("loss@N=1e10,D=2e11"))

    class Tree(dict):                         # the one thing the default grid reads
        pass
    tree = Tree(fit_data={"n_params": pd.Series([1e7, 1e8, 1e9])})
    grid = study.candidates(law_posterior(), tree)
    sizes = np.unique(grid["n_params"])
    assert len(sizes) == 10 and sizes[0] == pytest.approx(1e7) and sizes[-1] == pytest.approx(1e10)
    assert set(np.round(grid["n_tokens"] / grid["n_params"], 6)) == {5.0, 10.0, 20.0, 40.0, 80.0}
    with pytest.raises(ValueError, match="need trainer shapes"):
        study.candidates(law_posterior(), tree, options=design.CandidateOptions(trainer=True))


@pytest.mark.unit
def test_design_to_text_is_the_commands_screen_output():
    post = law_posterior()
    candidates = design.candidate_grid(n_params=[1e7, 1e8], tokens=[1e9, 1e10])
    result = design.choose_batch(post, candidates, design.parse_target("loss@N=1e9,D=2e10"), k=2,
                                 budget=1e18)
    lines = result.to_text(model="chinchilla", language="und").splitlines()
    assert lines[0] == ("Runs chosen to learn loss@N=1e+09,D=2e+10 (chinchilla, und; 4 candidates, "
                        f"{M} posterior draws, budget 1e+18 FLOPs):")
    assert lines[1].split() == ["order", "candidate", "n_params", "n_tokens", "cost", "gain",
                                "cumulative_gain"]
    assert len(lines) == 2 + len(result.chosen) + 2 and lines[-2] == ""
    cost = result.as_dict()["total_cost"]
    assert lines[-1].startswith(f"expected gain {result.total_gain:.3g} nats for {cost:.3g} FLOPs")


# ---------------------------------------------------------------------------------------------
# The loop's run table


@pytest.mark.unit
def test_the_loop_table_keeps_memory_and_file_equal(tmp_path):
    start = read_runs(REPO / "data" / "example_runs.csv")
    table = loop.LoopTable.open(tmp_path / "runs.csv", REPO / "data" / "example_runs.csv")
    pd.testing.assert_frame_equal(table.runs, read_runs(tmp_path / "runs.csv"))
    new = start[start["run_id"] == start["run_id"].iloc[0]].copy()
    new["run_id"] = "new-run"
    table.add(new.drop(columns=["source"]))
    assert table.rows("new-run").shape[0] == len(new) and "new-run" in table.run_ids()
    pd.testing.assert_frame_equal(table.runs, read_runs(tmp_path / "runs.csv"))
    with pytest.raises(ValueError, match="already in the loop's run table"):
        table.add(new)
    assert not (tmp_path / "runs.csv.tmp").exists()
    again = loop.LoopTable.open(tmp_path / "runs.csv", "never-read.csv")
    pd.testing.assert_frame_equal(again.runs, table.runs)


@pytest.fixture(scope="module")
def law_fit():
    pytest.importorskip("flax")
    from atlas_bayes.fitting.inference import fit
    runs = read_runs(REPO / "data" / "example_runs.csv")
    return fit(runs, "chinchilla", sampler=QUICK, warn=False)


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_the_loop_reads_its_run_table_once_per_invocation(law_fit, tmp_path, monkeypatch):
    """An external loop: each invocation reads OUT/runs.csv once (the first one not at all: it
    writes it from the starting table), and a rerun continues from the folder."""
    reads = []
    real_read = loop.read_runs

    def counting(path):
        reads.append(Path(path).name)
        return real_read(path)

    monkeypatch.setattr(loop, "read_runs", counting)
    fits = []
    monkeypatch.setattr(design_study.LawStudy, "fit",
                        lambda self, runs, sampler=None, **kw: fits.append(len(runs)) or law_fit)
    settings = loop.LoopSettings(runs=str(REPO / "data" / "example_runs.csv"),
                                 target="loss@N=1e9,D=2e10", budget=1e30, shapes=["t0"],
                                 tokens=[1e6, 2e6], k=2, max_rounds=2, external=True,
                                 sampler={"chains": 1, "warmup": 10, "draws": 10}, max_draws=64,
                                 accept_unconverged=True)    # the shared fit's verdict is not the point
    out = tmp_path / "loop"
    status = loop.run_loop(settings, out, progress=False)
    assert reads == ["example_runs.csv"] and len(fits) == 1
    plan = [json.loads(line) for line in (out / "round-1" / "plan.jsonl").read_text().splitlines()]
    assert status["waiting"] == [c["run_id"] for c in plan]

    # nothing new: the rerun reads the folder's table once and waits for the same plan
    reads.clear()
    status = loop.run_loop(settings, out, progress=False)
    assert reads == ["runs.csv"] and status["waiting"] == [c["run_id"] for c in plan]

    # the runs arrive: one read of runs.csv and one of the results; both runs added, refit
    start = read_runs(REPO / "data" / "example_runs.csv")
    rows = pd.DataFrame([{"run_id": c["run_id"], "language": "sw", "n_params": 5e6,
                          "n_tokens": float(c["tokens"]), "loss": 4.0, "mixture": '"sw"'}
                         for c in plan])
    write_runs(rows, out / "round-1" / "results.csv")
    reads.clear()
    status = loop.run_loop(settings, out, progress=False)
    assert reads == ["runs.csv", "results.csv"] and fits == [len(start), len(start) + 2]
    table = read_runs(out / "runs.csv")
    assert sorted(table["run_id"].unique()) == sorted(set(start["run_id"]) | {c["run_id"] for c in plan})
    log = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [e["round"] for e in log] == [0, 1] and log[1]["runs"] == [c["run_id"] for c in plan]
    assert status["waiting"]                              # round 2 planned, waiting again
