"""Beyond one process, on CPU: a plan's runs as Ray tasks (one local Ray with 2 CPUs for the
module), a Ray worker killed mid-run, the loop on Ray for two rounds, and one run across two
`jax.distributed` processes; each compared with the same runs trained one after another."""

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")
ray = pytest.importorskip("ray")

from atlas_bayes.tables.runs import read_runs  # noqa: E402
from atlas_bayes.trainers.model import SHAPES  # noqa: E402
from atlas_bayes.trainers.ray_plan import STATUS, run_plan_on_ray  # noqa: E402
from atlas_bayes.trainers.train import run_plan  # noqa: E402

STEP = 32 * 4                                       # bytes per step: seq_len x batch_size
KEY = ["run_id", "language", "n_tokens"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the module, shut down after it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             object_store_memory=80 * 1024 ** 2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    rng = random.Random(0)
    for lang, words in {"en": "the cat dog sat on a mat and ran to its house",
                        "fr": "le chat chien est sur la maison et va vers un tapis"}.items():
        docs = [" ".join(rng.choice(words.split()) for _ in range(10)) + "." for _ in range(300)]
        (root / f"{lang}.txt").write_text("\n\n".join(docs), encoding="utf-8")
    base = {"model": "t0", "seq_len": 32, "batch_size": 4, "lr": 5e-3, "warmup_steps": 2,
            "eval_every": 4, "eval_bytes": 256, "checkpoint_every": 4,
            "corpus": {"kind": "folder", "path": str(root)}}
    configs = [{**base, "run_id": "en-a", "mixture": "en", "tokens": STEP * 8},
               {**base, "run_id": "en-b", "mixture": "en", "tokens": STEP * 12, "seed": 1},
               {**base, "run_id": "bi", "mixture": {"kind": "bilingual", "languages": ["en", "fr"]},
                "tokens": STEP * 8},
               {**base, "run_id": "ft-fr", "mixture": "fr", "tokens": STEP * 4, "init": "en-a"}]
    return root, base, configs


@pytest.fixture(scope="module")
def on_ray(local_ray, plan):
    """The plan through Ray, `bi`'s first worker killed (SIGKILL) after 5 steps (its checkpoint
    is at step 4), and the same plan one run after another."""
    root, _, configs = plan
    rows = run_plan_on_ray(configs, root / "ray", progress=False, _kill_after={"bi": 5})
    return rows, run_plan(configs, root / "sequential", progress=False)


def test_a_plan_on_ray_trains_every_run_once_as_the_sequential_path_does(plan, on_ray):
    root, _, configs = plan
    rows, sequential = on_ray
    table = read_runs(root / "ray" / "runs.csv")                    # written by the driver only
    assert sorted(table["run_id"].unique()) == sorted(c["run_id"] for c in configs)
    assert not table.duplicated(KEY).any() and len(table) == len(sequential)
    a, b = table.sort_values(KEY).reset_index(drop=True), sequential.sort_values(KEY).reset_index(drop=True)
    np.testing.assert_array_equal(a[KEY].to_numpy(), b[KEY].to_numpy())
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)       # same seeds, same curves
    assert list(rows["run_id"].unique()) == [c["run_id"] for c in configs]      # plan order
    status = json.loads((root / "ray" / STATUS).read_text())
    assert {s["state"] for s in status.values()} == {"done"}
    assert status["ft-fr"]["started_at"] >= status["en-a"]["finished_at"]     # after its base
    assert (a[a["run_id"] == "ft-fr"]["init"] == f"finetune:en-a@{STEP * 8}").all()


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(plan, on_ray):
    root, _, _ = plan
    _, sequential = on_ray
    assert (root / "ray" / "bi" / "killed-by-test").exists()         # its first worker died
    status = json.loads((root / "ray" / STATUS).read_text())
    assert status["bi"]["resumed_from_step"] == 4                    # not from scratch
    table = read_runs(root / "ray" / "runs.csv")
    bi = table[table["run_id"] == "bi"].sort_values(["language", "n_tokens"])
    assert list(bi["n_tokens"]) == [STEP * 4, STEP * 8] * 2           # no row lost or repeated
    expected = sequential[sequential["run_id"] == "bi"].sort_values(["language", "n_tokens"])
    np.testing.assert_allclose(bi["loss"], expected["loss"], rtol=1e-6)



def test_the_command_reruns_a_finished_plan_and_names_failed_runs(plan, on_ray, capsys):
    """`train --plan --ray` over a plan trained without Ray: nothing retrained (every run is at
    its last step), every row kept. A run that fails (no text in its language) fails its
    finetune, naming it; the other run is written. (A language missing from the corpus is
    refused before any run starts: the failing language here has a file without text.)"""
    from atlas_bayes.cli import main
    root, base, configs = plan
    (root / "plan.jsonl").write_text("".join(json.dumps(c) + "\n" for c in configs))
    before = read_runs(root / "sequential" / "runs.csv")
    assert main(["train", "--plan", str(root / "plan.jsonl"), "--out", str(root / "sequential"),
                 "--ray", "--no-progress"]) == 0
    status = json.loads((root / "sequential" / STATUS).read_text())
    assert all(s["resumed_from_step"] == c["tokens"] // STEP for c, s in zip(configs, status.values()))
    after = read_runs(root / "sequential" / "runs.csv")
    a, b = before.sort_values(KEY).reset_index(drop=True), after.sort_values(KEY).reset_index(drop=True)
    np.testing.assert_array_equal(a[KEY + ["loss"]].to_numpy(), b[KEY + ["loss"]].to_numpy())
    bad = [{**base, "run_id": "de", "mixture": "de", "tokens": STEP * 4},
           {**base, "run_id": "ft-de", "mixture": "en", "tokens": STEP * 4, "init": "de"},
           {**base, "run_id": "en-c", "mixture": "en", "tokens": STEP * 4}]
    (root / "bad.jsonl").write_text("".join(json.dumps(c) + "\n" for c in bad))
    capsys.readouterr()
    blank = Path(base["corpus"]["path"]) / "de.txt"    # listed, so the plan's check passes; no text
    blank.write_text("\n\n   \n")
    try:
        assert main(["train", "--plan", str(root / "bad.jsonl"), "--out", str(root / "bad"), "--ray",
                     "--no-progress"]) == 2
    finally:
        blank.unlink()
    err = capsys.readouterr().err
    assert "2 of 3 runs failed" in err and "ft-de: its base run de failed" in err and "'de'" in err
    assert set(read_runs(root / "bad" / "runs.csv")["run_id"]) == {"en-c"}


@pytest.mark.filterwarnings("ignore:All-NaN slice")                  # R-hat of a single chain
def test_the_loop_on_ray_for_two_rounds(plan, on_ray, capsys):
    from atlas_bayes.cli import main
    root, base, _ = plan
    start = read_runs(root / "ray" / "runs.csv")
    start[start["run_id"].isin(["en-a", "en-b"])].to_csv(root / "start.csv", index=False)
    # one evaluation per 8 steps: the table stays within one padded size, so fits compile once
    (root / "base.json").write_text(json.dumps({**{k: v for k, v in base.items() if k != "model"},
                                                "eval_every": 8}))
    n_t0 = float(SHAPES["t0"].n_params())
    code = main(["loop", str(root / "start.csv"), "--out", str(root / "loop"), "--ray",
                 "--target", f"loss@N={n_t0:.6g},D=8000", "--budget", "1e12", "--shapes", "t0",
                 "--tokens", f"{STEP * 8},{STEP * 16}", "--k", "2", "--max-rounds", "2",
                 "--chains", "1", "--warmup", "100", "--draws", "100", "--max-draws", "100",
                 "--lang", "en", "--train-config", str(root / "base.json"), "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (root / "loop" / "rounds.jsonl").read_text().splitlines()]
    assert [e["round"] for e in log] == [0, 1, 2] and all(len(e["runs"]) == 2 for e in log[1:])
    table = read_runs(root / "loop" / "runs.csv")
    trained = log[1]["runs"] + log[2]["runs"]
    assert sorted(table["run_id"].unique()) == sorted(["en-a", "en-b"] + trained)
    assert not table.duplicated(KEY).any()
    for run_id in trained:                          # trained by Ray's workers, written by the driver
        own = read_runs(root / "loop" / "train" / run_id / "runs.csv")
        np.testing.assert_array_equal(table[table["run_id"] == run_id]["loss"], own["loss"])
    assert set(json.loads((root / "loop" / "train" / STATUS).read_text())) == set(log[2]["runs"])


PROCESS = """
import json, os, sys
out, rank, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
writes = []
def audit(event, args):      # every file this process opens for writing, creates or moves
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append(str(args[0]))
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove"):
        writes.append(str(args[0]))
if rank:
    sys.addaudithook(audit)
from atlas_bayes.trainers import distributed
assert distributed.initialize(f"localhost:{port}", 2, rank)
import jax
from atlas_bayes.trainers.train import train
rows = train(json.loads(sys.argv[4]), out, progress=False)
print(json.dumps({"devices": jax.device_count(), "loss": rows.sort_values(["language", "n_tokens"])
                  ["loss"].tolist(), "writes": [w for w in writes if w.startswith(out)]}))
"""


def test_one_run_across_two_processes_gives_the_one_process_curve(plan, on_ray, tmp_path):
    _, _, configs = plan
    _, sequential = on_ray
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    config = json.dumps(next(c for c in configs if c["run_id"] == "bi"))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, str(tmp_path), str(rank), port, config],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for rank in (0, 1)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    expected = sequential[sequential["run_id"] == "bi"].sort_values(["language", "n_tokens"])
    for result in results:
        assert result["devices"] == 2                               # one mesh over both processes
        np.testing.assert_allclose(result["loss"], expected["loss"], rtol=2e-3)
    assert results[1]["writes"] == []                               # process 1 wrote nothing
    table = read_runs(tmp_path / "runs.csv")
    assert len(table) == 4 and not table.duplicated(KEY).any()
    written = [p.name for p in (tmp_path / "bi" / "checkpoints").rglob("*")]
    assert any("process_0" in name for name in written)
    assert not any("process_1" in name for name in written)          # Orbax: process 0 only
