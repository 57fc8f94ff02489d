"""The closed loop on CPU with the real trainer: tiny byte-level runs, two rounds, an interruption
in the middle of a run, and a rerun that finishes without repeating or losing a run."""

import json
import random

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

from atlas_bayes.design import loop  # noqa: E402
from atlas_bayes.cli import main  # noqa: E402
from atlas_bayes.tables.runs import read_runs  # noqa: E402
from atlas_bayes.trainers.model import SHAPES  # noqa: E402
from atlas_bayes.trainers.train import train  # noqa: E402

STEP = 32 * 4                           # tokens (bytes) per step: seq_len x batch_size
N_T0 = float(SHAPES["t0"].n_params())


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A corpus, the trainer's base config, and two starting runs trained for real."""
    root = tmp_path_factory.mktemp("loop")
    rng = random.Random(0)
    words = "the cat dog sat on a mat and ran to its house".split()
    docs = [" ".join(rng.choice(words) for _ in range(10)) + "." for _ in range(300)]
    (root / "corpus").mkdir()
    (root / "corpus" / "en.txt").write_text("\n\n".join(docs), encoding="utf-8")
    base = {"seq_len": 32, "batch_size": 4, "corpus": {"kind": "folder", "path": str(root / "corpus")},
            "lr": 5e-3, "warmup_steps": 2, "eval_every": 4, "eval_bytes": 256, "checkpoint_every": 2}
    for run_id, steps in (("start-a", 8), ("start-b", 12)):
        train({**base, "run_id": run_id, "model": "t0", "mixture": "en", "tokens": STEP * steps},
              root / "start", progress=False)
    (root / "base.json").write_text(json.dumps(base))
    return root, base


def settings(root, base, **overrides):
    values = dict(runs=str(root / "start" / "runs.csv"), target=f"loss@N={N_T0:.6g},D=8000",
                  budget=1e12, shapes=["t0"], tokens=[STEP * 8.0, STEP * 16.0, STEP * 24.0], k=2,
                  max_rounds=2, sampler={"chains": 1, "warmup": 100, "draws": 100},
                  max_draws=100, train_base=base, accept_unconverged=True)
    values.update(overrides)
    return loop.LoopSettings(**values)


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:All-NaN slice")          # R-hat of a single chain
def test_two_rounds_interrupted_mid_run_resumed_then_an_external_round(start, monkeypatch):
    root, base = start
    out = root / "loop"
    trained = []
    real_train = loop._train_run

    def counting(config, folder, progress):
        trained.append(config["run_id"])
        return real_train(config, folder, progress)

    monkeypatch.setattr(loop, "_train_run", counting)

    # round 0's tiny fit (one chain, 100 draws) fails its checks: the loop stops before designing
    # from it, and says so in its status and log
    status = loop.run_loop(settings(root, base, max_rounds=1, accept_unconverged=False), out,
                           progress=False)
    assert status["stopped"].startswith("round 0's fit did not converge") and trained == []
    assert "--accept-unconverged" in status["stopped"]
    log = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert log[0]["converged"] is False and any("ESS" in w for w in log[0]["warnings"])

    # accepted on a rerun (it may change): round 1 is designed from the saved round-0 fit
    status = loop.run_loop(settings(root, base, max_rounds=1), out, progress=False)
    assert status["stopped"] == "1 round(s) done"
    log = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [e["round"] for e in log] == [0, 1] and len(log[1]["runs"]) == 2
    assert trained == log[1]["runs"]

    # round 2: the second run crashes after 3 of its steps (its checkpoint is at step 2)
    def crash_on_second(config, folder, progress):
        trained.append(config["run_id"])
        if len(trained) == 4:
            train(config, folder, progress=False, _stop_after=3)
            raise KeyboardInterrupt
        return real_train(config, folder, progress)

    monkeypatch.setattr(loop, "_train_run", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        loop.run_loop(settings(root, base), out, progress=False)
    plan2 = [json.loads(line)["run_id"] for line in (out / "round-2" / "plan.jsonl").read_text().splitlines()]
    table = read_runs(out / "runs.csv")
    assert plan2[0] in set(table["run_id"]) and plan2[1] not in set(table["run_id"])

    # the same command again, from the command line: only the crashed run is trained
    monkeypatch.setattr(loop, "_train_run", counting)
    before = len(trained)
    code = main(["loop", str(root / "start" / "runs.csv"), "--out", str(out),
                 "--target", f"loss@N={N_T0:.6g},D=8000", "--budget", "1e12", "--shapes", "t0",
                 "--tokens", f"{STEP * 8},{STEP * 16},{STEP * 24}", "--k", "2", "--max-rounds", "2",
                 "--chains", "1", "--warmup", "100", "--draws", "100", "--max-draws", "100",
                 "--train-config", str(root / "base.json"), "--no-progress", "--json",
                 "--accept-unconverged"])
    assert code == 0
    assert trained[before:] == [plan2[1]]

    log = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [e["round"] for e in log] == [0, 1, 2] and log[2]["runs"] == plan2
    table = read_runs(out / "runs.csv")
    planned = ["start-a", "start-b"] + log[1]["runs"] + plan2
    assert sorted(table["run_id"].unique()) == sorted(planned)          # none lost, none extra
    for run_id, config in zip(plan2, [json.loads(line) for line in
                                      (out / "round-2" / "plan.jsonl").read_text().splitlines()]):
        rows = table[table["run_id"] == run_id].sort_values("n_tokens")
        assert not rows["n_tokens"].duplicated().any()                    # no repeated curve points
        assert rows["n_tokens"].max() >= config["tokens"]                 # complete
    # the crashed run's curve is the one an uninterrupted run gives (the trainer resumed it)
    redo = train({**json.loads((out / "round-2" / "plan.jsonl").read_text().splitlines()[1]),
                  "run_id": "check"}, root / "check", progress=False)
    crashed = table[table["run_id"] == plan2[1]].sort_values("n_tokens")
    assert np.allclose(crashed["loss"], redo.sort_values("n_tokens")["loss"], rtol=1e-5)

    # the log: measured costs, spent compute, a finite interval per round, and the plot
    for e in log[1:]:
        costs = [6 * N_T0 * table[table["run_id"] == i]["n_tokens"].max() for i in e["runs"]]
        assert e["cost"] == pytest.approx(sum(costs))
    assert log[2]["spent"] == pytest.approx(log[1]["cost"] + log[2]["cost"])
    assert all(np.isfinite(e["width"]) and e["lo"] < e["median"] < e["hi"] for e in log)
    assert (out / "width.png").stat().st_size > 0
    status = json.loads((out / "status.json").read_text())
    assert status["stopped"] == "2 round(s) done" and status["rounds"] == 2

    # round 3 by an external runner (stopping rules and who trains may change on a rerun):
    # the plan is written and the loop waits; incomplete runs are not taken, complete ones are
    more = settings(root, base, external=True, max_rounds=3)
    status = loop.run_loop(more, out, progress=False)
    plan3 = [json.loads(line) for line in (out / "round-3" / "plan.jsonl").read_text().splitlines()]
    assert status["waiting"] == [c["run_id"] for c in plan3]
    for config in plan3:
        train(config, root / "elsewhere", progress=False)
    done = pd.read_csv(root / "elsewhere" / "runs.csv")
    last = done["run_id"] == plan3[-1]["run_id"]
    done[~last | (done["n_tokens"] < done.loc[last, "n_tokens"].max())].to_csv(
        out / "round-3" / "results.csv", index=False)
    status = loop.run_loop(more, out, progress=False)
    assert status["waiting"] == [plan3[-1]["run_id"]]
    done.to_csv(out / "round-3" / "results.csv", index=False)
    status = loop.run_loop(more, out, progress=False)
    assert status["stopped"] == "3 round(s) done" and len(trained) == 5      # none trained here
    table = read_runs(out / "runs.csv")
    assert sorted(table["run_id"].unique()) == sorted(planned + [c["run_id"] for c in plan3])
    seeds = [json.loads(line)["seed"] for r in (1, 2, 3)
             for line in (out / f"round-{r}" / "plan.jsonl").read_text().splitlines()]
    assert len(set(seeds)) == len(seeds)      # a spec picked again is a new measurement


@pytest.mark.e2e
def test_a_rerun_with_other_settings_is_refused(start, tmp_path):
    root, base = start
    (tmp_path / "loop.json").write_text(json.dumps(
        json.loads(json.dumps(settings(root, base).__dict__)) | {"target": "params"}))
    with pytest.raises(ValueError, match="other settings \\(target"):
        loop.run_loop(settings(root, base), tmp_path, progress=False)


@pytest.mark.unit
def test_width_plot_shows_the_interval_beside_its_width_for_one_target(tmp_path):
    """A single target gets two panels (width, and the interval itself, so a shift between
    rounds shows); `params` keeps one panel of relative widths."""
    import matplotlib.image as mpimg
    rounds = [(0, 0.1, 0.6), (1e12, -0.3, 0.4)]               # spent, median, width
    log = [{"round": r, "spent": s, "target": "loss", "median": m, "lo": m - w / 2,
            "hi": m + w / 2, "width": w} for r, (s, m, w) in enumerate(rounds)]
    wide = mpimg.imread(loop.plot_width(log, tmp_path / "one.png"))
    params = [{"round": r, "spent": s, "target": "params", "width": None,
               "relative_widths": {"E": w}} for r, (s, w) in enumerate([(0, 0.5), (1e12, 0.3)])]
    narrow = mpimg.imread(loop.plot_width(params, tmp_path / "params.png"))
    assert wide.shape[1] / wide.shape[0] > 2.5 > narrow.shape[1] / narrow.shape[0]
