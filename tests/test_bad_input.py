"""Malformed input to every analysis command is refused before any fit starts: exit status 2,
one message naming the file/row/column or option, what was found and what was expected, and no
traceback. Run in-process; a fit that starts fails the test (`no_fitting`)."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from atlas_bayes import cli
from atlas_bayes.fitting import approximate, inference

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example_runs.csv"
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled_study.csv"


@pytest.fixture(autouse=True)
def no_fitting(monkeypatch):
    """Any NUTS or approximate fit fails the test: every case must be refused before one."""
    def started(*_, **__):
        raise AssertionError("a fit started before the input was refused")
    monkeypatch.setattr(inference, "_nuts", started)
    monkeypatch.setattr(approximate, "approximate", started)
    monkeypatch.setattr(inference.approximation, "approximate", started)


def make_files(folder: Path) -> dict[str, Path]:
    """The malformed (and a few good) inputs, by name."""
    runs = pd.read_csv(EXAMPLE)
    lines = EXAMPLE.read_text().splitlines()
    paths = {name: folder / name for name in (
        "good.csv", "good.parquet", "comma.csv", "extra.csv", "nparams.csv",
        "trunc.parquet", "garbage.parquet", "empty.parquet", "empty.nc", "garbage.nc",
        "trunc.nc", "list.json", "prior_list.json", "prior_text.json", "prior_sd.json",
        "cands_model.csv", "cands_bad_model.csv", "cands_bad.csv", "cands_id.csv", "train_list.json",
        "afile", "sub")}
    runs.to_csv(paths["good.csv"], index=False)
    runs.to_parquet(paths["good.parquet"])
    paths["comma.csv"].write_text("\n".join([lines[0]] + [line + "," for line in lines[1:]]) + "\n")
    paths["extra.csv"].write_text("\n".join(lines[:3] + [lines[3] + ",7"] + lines[4:]) + "\n")
    changed = runs.copy()
    changed.loc[1, "n_params"] = 1.5e7
    changed.to_csv(paths["nparams.csv"], index=False)
    parquet = paths["good.parquet"].read_bytes()
    paths["trunc.parquet"].write_bytes(parquet[: len(parquet) // 2])
    paths["garbage.parquet"].write_bytes(b"not a parquet file")
    paths["empty.parquet"].write_bytes(b"")
    paths["empty.nc"].write_bytes(b"")
    paths["garbage.nc"].write_bytes(b"not a netCDF file" * 20)
    paths["trunc.nc"].write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    paths["list.json"].write_text("[1, 2, 3]")
    paths["prior_list.json"].write_text(json.dumps({"sw": [0.1, 0.2]}))
    paths["prior_text.json"].write_text(json.dumps({"sw": {"en": "x"}}))
    paths["prior_sd.json"].write_text(json.dumps({"sw": {"en": [0.1, -1]}}))
    paths["cands_model.csv"].write_text("n_params,n_tokens,model\n1e6,1e7,t9\n")
    paths["cands_bad_model.csv"].write_text("n_params,n_tokens,model\n1e6,1e7,t1\n1e6,2e7,\n")
    paths["cands_bad.csv"].write_text("n_params,n_tokens\n1e6,-5\n")
    paths["cands_id.csv"].write_text("n_params,n_tokens,model,candidate\n1e6,1e7,t1,..\n")
    paths["train_list.json"].write_text("[1]")
    paths["afile"].write_text("a file, not a folder")
    paths["sub"].mkdir()
    return paths


FIT, OPT = ("fit", "{good.csv}"), ("optimal", "{good.csv}", "--compute", "1e15")
DESIGN, LOOP = ("design", "{good.csv}"), ("loop", "{good.csv}", "--budget", "1e16", "--out", "{sub}/loop")
CURSE = ("curse", "{good.csv}", "--from-k", "1", "--to-k", "2")

CASES = [
    # run tables, for every command that reads them
    ("comma-csv", ("fit", "{comma.csv}"),
     r"comma\.csv.*row 1 \(line 2\): 15 fields, but the header has 14 columns.*ends in a comma"),
    ("extra-field", ("fit", "{extra.csv}"),
     r"extra\.csv.*row 3 \(line 4\): 15 fields, but the header has 14"),
    ("n-params-differ", ("fit", "{nparams.csv}"),
     r"row 1 \(line 2\), row 2 \(line 3\).*run 'sim-sw-9\.04e\+06-5x'.*column 'n_params'.*one value"),
    ("missing-table", ("fit", "{sub}/nope.csv"), r"nope\.csv.*file not found"),
    ("xlsx-table", ("fit", "{afile}"), r"unknown file type ''.*expected \.csv or \.parquet"),
    *[(f"{name}-{cmd[0]}", (cmd[0], "{" + name + "}", *cmd[2:]),
       rf"{re.escape(name)}.*cannot be read as a (Parquet )?table")
      for name in ("trunc.parquet", "garbage.parquet", "empty.parquet")
      for cmd in (FIT, ("compare", "x"), CURSE, ("crossover", "x", "--lang", "sw"),
                  ("transfer", "x", "--target", "sw"), OPT, DESIGN, LOOP)],
    # saved posteriors
    *[(f"{name}-{cmd}", (cmd, "{" + name + "}", *(("--compute", "1e15") if cmd == "optimal" else ())),
       rf"{re.escape(name)}: cannot be read as a saved fit.*expected a complete posterior\.nc")
      for name in ("empty.nc", "garbage.nc", "trunc.nc") for cmd in ("optimal", "design")],
    ("missing-nc", ("optimal", "{sub}/posterior.nc", "--compute", "1e15"), r"posterior\.nc: file not found"),
    # fit's options
    ("tau-prior-list", (*FIT, "--law", "atlas", "--tau-prior", "{list.json}"), r"--tau-prior .*list\.json: "
                                                                                r"expected a JSON object"),
    ("tau-prior-entry", (*FIT, "--law", "atlas", "--tau-prior", "{prior_list.json}"),
     r"\['sw'\]: expected an object \{source: \[mean, sd\]\}"),
    ("tau-prior-text", (*FIT, "--law", "atlas", "--tau-prior", "{prior_text.json}"),
     r"\['sw'\]\['en'\]: expected \[mean, sd\], two numbers"),
    ("tau-prior-sd", (*FIT, "--law", "atlas", "--tau-prior", "{prior_sd.json}"), r"positive finite sd"),
    ("transfer-absent", (*FIT, "--law", "atlas", "--transfer-languages", "en,xx"),
     r"--transfer-languages: 'xx' trains in no run evaluated on 'sw'.*prior alone.*en, fr"),
    ("transfer-wrong-law", (*FIT, "--transfer-languages", "en"),
     r"law 'chinchilla' has no transfer languages"),
    ("transfer-joint-target", (*FIT, "--law", "atlas-h", "--transfer-languages", "xx=en"),
     r"target 'xx' is not evaluated"),
    ("target-accept-high", (*FIT, "--target-accept", "1.5"), r"--target-accept: expected a probability"),
    ("target-accept-nan", (*FIT, "--target-accept", "nan"), r"--target-accept: expected a probability"),
    ("chains-zero", (*FIT, "--chains", "0"), r"--chains: expected a whole number >= 1, got '0'"),
    ("draws-fraction", (*FIT, "--draws", "10.5"), r"--draws: expected a whole number >= 1"),
    ("seed-negative", (*FIT, "--seed", "-1"), r"--seed: expected a whole number from 0"),
    ("out-is-file", (*FIT, "--out", "{afile}"), r"--out .*afile: is an existing file; expected a folder"),
    ("out-under-file", (*FIT, "--out", "{afile}/deeper"), r"afile is a file, so no folder can be made"),
    ("lang-absent", (*FIT, "--lang", "xx"), r"no rows evaluate language 'xx'"),
    # compare
    ("compare-out-file", ("compare", "{good.csv}", "--out", "{afile}"),
     r"--out .*afile: is an existing file"),
    ("compare-law", ("compare", "{good.csv}", "--laws", "chinchila"), r"unknown law 'chinchila'"),
    ("compare-split", ("compare", "{good.csv}", "--split", "Q"), r"unknown split 'Q'"),
    # curse
    ("curse-to-k-inf", ("curse", "{good.csv}", "--from-k", "1", "--to-k", "inf"),
     r"--to-k: expected a whole number"),
    ("curse-from-k-nan", ("curse", "{good.csv}", "--from-k", "nan", "--to-k", "2"),
     r"--from-k: expected a whole"),
    ("curse-tokens-negative", (*CURSE, "--n-params", "1e6", "--tokens", "-1"),
     r"--tokens: expected a positive finite"),
    ("curse-lang", (*CURSE, "--per-language", "--lang", "xx"), r"--lang xx: no row of .* evaluates it"),
    ("curse-out-file", (*CURSE, "--out", "{afile}"), r"--out .*afile: is an existing file"),
    # crossover
    ("crossover-no-init-tokens", ("crossover", "{good.csv}", "--lang", "sw"),
     r"no \(language, model size\) has both a monolingual scratch run and a run continued"),
    ("crossover-lang", ("crossover", str(BUNDLED), "--lang", "xx"),
     r"--lang xx: no \(language, model size\).*es"),
    ("crossover-budget", ("crossover", str(BUNDLED), "--lang", "es", "--budget", "0"),
     r"--budget: expected a positive"),
    # transfer
    ("transfer-target", ("transfer", str(BUNDLED), "--target", "es/x"),
     r"--target: 'es/x' is neither a language"),
    ("transfer-languages", ("transfer", str(BUNDLED), "--target", "es", "--languages", "zz"),
     r"--languages: 'zz' is neither"),
    ("transfer-horizon", ("transfer", str(BUNDLED), "--target", "es", "--horizon", "inf"),
     r"--horizon: expected a"),
    # optimal
    ("optimal-compute-inf", ("optimal", "{good.csv}", "--compute", "inf"),
     r"--compute: expected a positive finite"),
    ("optimal-unique-negative", (*OPT, "--unique-tokens", "-5"), r"--unique-tokens: expected a positive"),
    ("optimal-lang", (*OPT, "--lang", "xx"), r"no rows evaluate language 'xx'"),
    # design
    ("design-cost-power-nan", (*DESIGN, "--cost-power", "nan"),
     r"--cost-power: expected a finite number >= 0"),
    ("design-eval-tokens", (*DESIGN, "--eval-tokens", "-1"), r"--eval-tokens: expected a finite number >= 0"),
    ("design-shapes", (*DESIGN, "--shapes", "t0,t9"), r"--shapes: unknown trainer shape\(s\) \['t9'\]"),
    ("design-plan-shape", (*DESIGN, "--candidates", "{cands_model.csv}", "--plan", "{sub}/plan.jsonl"),
     r"--candidates .*column 'model': unknown trainer shape\(s\) \['t9'\]"),
    ("design-plan-n-params", (*DESIGN, "--n-params", "1e6,1e7", "--tokens", "1e8", "--plan", "{sub}/p.jsonl"),
     r"--plan writes trainer configs, which need trainer shapes: give --shapes"),
    ("design-plan-unnamed", (*DESIGN, "--candidates", "{cands_bad_model.csv}", "--plan", "{sub}/p.jsonl"),
     r"cands_bad_model\.csv: row 2, column 'model' is empty, but --plan writes trainer configs"),
    ("loop-target-accept", (*LOOP, "--target-accept", "1.5"),
     r"--target-accept: expected a probability strictly between 0 and 1"),
    ("design-plan-run-id", (*DESIGN, "--candidates", "{cands_id.csv}", "--plan", "{sub}/plan.jsonl"),
     r"row 1, column 'candidate' \(a planned run's id\): expected a folder name of the run's own"),
    ("design-candidates-value", (*DESIGN, "--candidates", "{cands_bad.csv}"),
     r"cands_bad\.csv: row 1, column 'n_tokens': expected a positive number"),
    ("design-candidates-missing", (*DESIGN, "--candidates", "{sub}/none.csv"),
     r"none\.csv: candidate file not found"),
    ("design-tokens", (*DESIGN, "--tokens", "1e7,nan"), r"--tokens: expected positive finite numbers"),
    ("design-n-params", (*DESIGN, "--n-params", "0"), r"--n-params: expected positive finite numbers"),
    ("design-target", (*DESIGN, "--target", "loss@N=abc"), r"target 'loss@N=abc': cannot read 'N=abc'"),
    ("design-k", (*DESIGN, "--k", "0"), r"--k: expected a whole number >= 1"),
    ("design-max-draws", (*DESIGN, "--max-draws", "1"), r"--max-draws: expected a whole number >= 16"),
    ("design-bts-same", (*DESIGN, "--target", "bts:en->en"), r"the source and the target are one language"),
    ("design-plan-folder", (*DESIGN, "--shapes", "t0", "--plan", "{sub}"),
     r"--plan .*sub: is an existing folder"),
    ("design-out-jsonl", (*DESIGN, "--out", "{afile}/plan.jsonl"), r"afile is a file, so no folder"),
    # loop
    ("loop-shapes", (*LOOP, "--shapes", "t0,tt1"), r"--shapes: unknown trainer shape\(s\) \['tt1'\]"),
    ("loop-out-file", ("loop", "{good.csv}", "--budget", "1e16", "--out", "{afile}"),
     r"--out .*afile: is an existing"),
    ("loop-budget", ("loop", "{good.csv}", "--budget", "nan", "--out", "{sub}/l"),
     r"--budget: expected a positive"),
    ("loop-width", (*LOOP, "--width", "-1"), r"--width: expected a positive finite"),
    ("loop-ingest", (*LOOP, "--shapes", "t0", "--ingest", "{sub}/none.csv"),
     r"--ingest .*none\.csv: no such file"),
    ("loop-train-config", (*LOOP, "--shapes", "t0", "--train-config", "{train_list.json}"),
     r"--train-config .*train_list\.json: expected a JSON object"),
    # adapt
    ("adapt-out-type", ("adapt", "goldfish", "{sub}", "--out", "{sub}/x.xlsx"),
     r"--out .*x\.xlsx: unknown file type"),
]


def run(argv: list[str], capsys) -> tuple[int, str]:
    """`atlas-bayes ARGV` in this process: its exit status and everything it printed."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:          # argparse refuses an option's value this way
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.err + captured.out


@pytest.mark.unit
@pytest.mark.parametrize("argv, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_any_fit(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # default output folders land here
    files = make_files(tmp_path)
    argv = [re.sub(r"\{([^}]+)\}", lambda m: str(files[m[1]]), a) for a in argv]
    status, output = run(argv, capsys)
    assert status == 2, output
    assert "Traceback" not in output
    assert re.search(expected, output, re.DOTALL), output


@pytest.mark.unit
def test_a_loop_whose_language_cannot_name_a_run_is_refused_before_any_state(tmp_path, capsys):
    runs = pd.read_csv(EXAMPLE)
    runs["language"] = runs["language"].replace("sw", "s/w")
    table = tmp_path / "runs.csv"
    runs[runs["n_languages"] == 1].to_csv(table, index=False)
    out = tmp_path / "loop"
    status, output = run(["loop", str(table), "--budget", "1e16", "--out", str(out), "--shapes", "t0",
                          "--lang", "s/w"], capsys)
    assert status == 2 and "Traceback" not in output, output
    assert "language 's/w' names the loop's runs (run ids loop-r1-s/w-...), so it must be a safe name" \
        in output
    assert not out.exists()


@pytest.mark.unit
def test_a_loop_whose_corpus_lacks_its_language_is_refused_before_the_fit(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "en.txt").write_text("some text.\n\nmore text.")
    config = tmp_path / "base.json"
    config.write_text(json.dumps({"corpus": {"kind": "folder", "path": str(tmp_path / "corpus")}}))
    out = tmp_path / "loop"
    status, output = run(["loop", str(EXAMPLE), "--budget", "1e16", "--out", str(out), "--shapes", "t0",
                          "--lang", "sw", "--train-config", str(config)], capsys)
    assert status == 2 and "Traceback" not in output, output
    assert "the trainer's corpus (--train-config 'corpus'): " in output and "no text for ['sw']" in output
    assert not out.exists()


@pytest.mark.unit
def test_a_loop_refused_for_a_typo_leaves_no_state(tmp_path, capsys):
    files = make_files(tmp_path)
    out = tmp_path / "loop"
    status, output = run(["loop", str(files["good.csv"]), "--budget", "1e16", "--out", str(out),
                          "--shapes", "t0,tt1"], capsys)
    assert status == 2 and "'tt1'" in output
    assert not out.exists()              # so the corrected command starts afresh


@pytest.mark.unit
def test_the_case_table_is_large_and_covers_every_analysis_command():
    commands = {argv[0] for _, argv, _ in CASES}
    assert len(CASES) >= 35
    assert {"fit", "compare", "curse", "crossover", "transfer", "optimal", "design", "loop"} <= commands
