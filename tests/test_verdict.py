"""One verdict that travels (issue 19): a fit records whether it converged and its warnings in its
tree, summary.json and --json; commands that read a saved posterior.nc repeat them and refuse a
fit that failed its checks unless --accept-unconverged; parameters the data leave at their prior
are named (fitting/informed.py); answers far outside the data say by how much; --target-accept
is range-checked. Commands run in-process (`atlas_bayes.cli.main`)."""

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import xarray as xr

from atlas_bayes.cli import main
from atlas_bayes.fitting.diagnostics import NOT_CHECKED, check_convergence
from atlas_bayes.fitting.files import save
from atlas_bayes.fitting.inference import fit
from atlas_bayes.fitting.informed import UninformedWarning, contraction, uninformed
from atlas_bayes.fitting.record import Convergence, FitRecord
from atlas_bayes.fitting.summary import FitResult
from atlas_bayes.simulation.simulate import monolingual_design, simulate
from atlas_bayes.tables.runs import read_runs
from conftest import QUICK

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example_runs.csv"
TRUTH = {"E": 1.2, "A": 350.0, "B": 1800.0, "alpha": 0.33, "beta": 0.34}


@pytest.fixture(scope="module")
def study():
    """Five model sizes x three token budgets x three checkpoints of one language."""
    return simulate(monolingual_design("en"), "chinchilla", TRUTH, seed=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, study):
    path = tmp_path_factory.mktemp("verdict")
    study.to_csv(path / "runs.csv", index=False)
    return path


@pytest.fixture(scope="module")
def multi_size(study, folder):
    """A converged fit of the multi-size study, saved: (tree, path, warnings raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = fit(study, "chinchilla", sampler=QUICK)
    save(tree, folder / "multi.nc")
    return tree, folder / "multi.nc", caught


@pytest.fixture(scope="module")
def stuck_fit(multi_size, folder):
    """The fit with both chains stuck, each at its first draw (every variable, and the log
    density: a step size collapsed to nothing), checked again and written as `fit` writes it:
    its output folder."""
    tree = multi_size[0].copy(deep=True)
    for group in ("posterior", "sample_stats"):
        data = tree[group].to_dataset()
        for name in data.data_vars:
            data[name][...] = data[name].isel(draw=[0]).values
        tree[group] = xr.DataTree(data)
    record = FitRecord.from_tree(tree)
    checked = Convergence.of(check_convergence(tree, list(record.parameters)))
    tree.attrs = {**tree.attrs, **replace(record, diagnostics=checked).to_attrs()}   # a copy's own
    FitResult(tree).write(folder / "stuck")
    return folder / "stuck"


def run(capsys, *args) -> tuple[int, str, str]:
    """`atlas-bayes ARGS` in-process: (exit status, stdout, stderr); argparse's exits too."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["optimal", "design"])
def test_a_flagged_saved_fit_is_refused_unless_accepted(stuck_fit, capsys, command):
    options = {"optimal": ["--compute", "1e18"],
               "design": ["--k", "1", "--max-draws", "16", "--n-params", "1e8,1e9",
                          "--tokens", "1e10"]}[command]
    posterior = stuck_fit / "posterior.nc"
    out = stuck_fit.parent / f"{command}-out"
    status, stdout, stderr = run(capsys, command, posterior, *options, "--out", out)
    assert status == 2 and stdout == ""
    assert "did not converge" in stderr and "--accept-unconverged" in stderr
    assert "R-hat above 1.01" in stderr and len(stderr.splitlines()) == 1
    assert "Traceback" not in stderr
    status, stdout, stderr = run(capsys, command, posterior, *options, "--out", out,
                                 "--accept-unconverged", "--json")
    assert status == 0, stderr
    answer = json.loads(stdout)
    assert answer["converged"] is False and any("R-hat" in w for w in answer["warnings"])
    assert "warning: the fit in" in stderr and "failed (a chain did not move)" in stderr


@pytest.mark.e2e
def test_the_verdict_is_in_the_tree_summary_json_and_the_json_output(stuck_fit, multi_size):
    attrs = xr.open_datatree(stuck_fit / "posterior.nc", engine="h5netcdf").attrs
    summary = json.loads((stuck_fit / "summary.json").read_text())   # = the fit's --json object
    assert attrs["converged"] == "false" and summary["converged"] is False
    assert json.loads(attrs["warnings"]) == summary["warnings"] and summary["warnings"]
    assert summary["diagnostics"]["max_r_hat"] == "failed"           # not null: not "not computed"
    assert summary["parameters"]["alpha"]["r_hat"] == "failed"
    assert "verdict: NOT converged" in (stuck_fit / "summary.txt").read_text()
    assert "max R-hat: failed" in (stuck_fit / "summary.txt").read_text()
    tree, _, _ = multi_size        # QUICK's 2 x 200 draws: R-hat near 1.01, either verdict
    record = FitRecord.from_tree(tree)
    assert record.converged is (not record.warnings) and tree.attrs["converged"] == str(
        record.converged).lower()


@pytest.mark.unit
def test_failed_and_not_computed_r_hat_are_different(multi_size):
    """Stuck chains make R-hat fail (infinite, "failed" in JSON); one chain leaves it not
    computed (NaN, null) and the verdict "not checked"."""
    tree, _, _ = multi_size
    stuck = tree.copy(deep=True)
    posterior = stuck.posterior.to_dataset()
    posterior["alpha"][...] = posterior["alpha"].isel(draw=[0]).values     # chains that never move
    stuck["posterior"] = xr.DataTree(posterior)
    failed = check_convergence(stuck, ["alpha"])
    assert failed.r_hat["alpha"] == float("inf") and failed.converged is False
    assert "alpha failed (a chain did not move)" in failed.messages[0]
    one = tree.posterior.to_dataset().isel(chain=[0])
    alone = check_convergence(xr.DataTree.from_dict({"posterior": one}), ["alpha"])
    assert alone.r_hat == {} and alone.converged == NOT_CHECKED and alone.checked is False


@pytest.mark.statistical
def test_one_model_size_is_named_and_a_multi_size_study_is_not(study, multi_size):
    tokens_per_param = tuple(5 * 1.25 ** i for i in range(15))       # 45 rows, as the study's
    one = simulate(monolingual_design("en", n_params=(2e8,), tokens_per_param=tokens_per_param),
                   "chinchilla", TRUTH, seed=1)
    assert len(one) == len(study)
    with pytest.warns(UninformedWarning, match=r"one model size \(.*\): A and alpha are not informed"):
        tree = fit(one, "chinchilla", sampler=QUICK)
    assert contraction(tree)["alpha"] > 0.9
    record = FitRecord.from_tree(tree)
    assert record.identifiability and record.identifiability[0] in record.warnings
    tree, _, caught = multi_size
    assert not [w for w in caught if issubclass(w.category, UninformedWarning)]
    assert max(contraction(tree).values()) < 0.3


@pytest.mark.unit
def test_joint_and_curse_laws_name_what_a_constant_quantity_leaves_uninformed():
    """No fixed prior width measures a pooled law, so the run table says it: one model size
    leaves A and alpha, one number of languages per mixture the curse's phi and psi."""
    runs = read_runs(EXAMPLE)
    def tree(law, parameters):
        t = xr.DataTree()
        t.attrs.update(FitRecord(kind="law", law=law, parameters=parameters).to_attrs())
        return t
    curse = tree("curse", ("E", "A", "B", "alpha", "beta", "phi", "psi"))
    joint = tree("atlas-h", ("E", "A", "B", "alpha", "beta", "tau"))
    assert uninformed(curse, runs) == [] and uninformed(joint, runs) == []
    mono = runs[runs["n_languages"] == 1]
    (message,) = uninformed(curse, mono)
    assert message.startswith("one number of languages (1 per mixture): phi and psi are not informed")
    one_size = runs[runs["n_params"] == runs["n_params"].iloc[0]]
    assert any(m.startswith("one model size (9.04e+06 parameters): A and alpha are not informed")
               for m in uninformed(joint, one_size))
    user = tree("/tmp/my_law.py", ("A", "alpha", "E"))      # a user's A need not be ours
    assert uninformed(user, one_size) == []


@pytest.mark.e2e
def test_an_answer_far_beyond_the_data_says_by_how_much(multi_size, study, capsys, folder):
    _, path, _ = multi_size
    factor = 1e300 / (6 * (study["n_params"] * study["n_tokens"]).max())
    status, stdout, stderr = run(capsys, "optimal", path, "--compute", "1e300", "--json",
                                 "--out", folder / "far", "--accept-unconverged")
    assert status == 0, stderr
    answer = json.loads(stdout)
    far = [w for w in answer["warnings"] if "times the largest run's" in w]
    assert far and f"the compute asked for is {factor:.3g} times the largest run's" in far[0]
    assert any("not determined" in w for w in answer["warnings"])     # flat to double precision
    assert "times the largest run's" in stderr
    status, stdout, stderr = run(capsys, "optimal", path, "--compute", "1e18", "--json",
                                 "--out", folder / "near", "--accept-unconverged")
    assert status == 0 and not [w for w in json.loads(stdout)["warnings"]
                                if "times the largest" in w or "not determined" in w]


MALFORMED = [
    ("fit", "1.5"), ("fit", "0"), ("fit", "1"),
    ("optimal", "-0.1"), ("optimal", "nan"), ("optimal", "abc"),
    ("design", "inf"), ("design", "1.0000001"), ("design", "0.0"),
    ("crossover", "1.5"), ("crossover", "0"),
    ("transfer", "2"), ("transfer", "-1"),
    ("compare", "1.5"), ("compare", "nan"),
    ("curse", "1.2"), ("curse", "0"),
]
REQUIRED = {"optimal": ["--compute", "1e18"], "crossover": ["--lang", "en"],
            "transfer": ["--target", "en"], "curse": ["--from-k", "1", "--to-k", "2"]}


@pytest.mark.unit
@pytest.mark.parametrize("command, value", MALFORMED)
def test_target_accept_outside_0_1_is_refused(folder, capsys, command, value):
    status, stdout, stderr = run(capsys, command, folder / "runs.csv", *REQUIRED.get(command, []),
                                 "--target-accept", value)
    assert status == 2 and stdout == ""
    assert f"--target-accept: expected a probability strictly between 0 and 1, " \
           f"got '{value}'" in stderr
    assert "Traceback" not in stderr


@pytest.mark.unit
def test_curse_and_crossover_beyond_their_data_warn_with_the_factor(study):
    from atlas_bayes.decisions.crossover_result import _warn_beyond
    from atlas_bayes.decisions.curse import _warn_beyond_languages
    from atlas_bayes.fitting.plausible import ExtrapolationWarning
    with pytest.warns(ExtrapolationWarning, match=r"number of languages asked for is 50 times the most"):
        _warn_beyond_languages(study, 50)
    with pytest.warns(ExtrapolationWarning, match=r"token budget asked for is 1e\+10 times"):
        _warn_beyond(None, [1e8], 1e10 * study["n_tokens"].max(), study)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_beyond_languages(study, 4)
        _warn_beyond(2e8, [1e8], study["n_tokens"].max(), study)


@pytest.mark.unit
def test_every_warning_a_command_gave_is_in_its_json(tmp_path, capsys):
    """Warnings echoed during a command (e.g. curse's or crossover's extrapolation) reach its
    --json, beside the result's own."""
    from types import SimpleNamespace

    from atlas_bayes.cli import common

    class Result:
        def write(self, out):
            pass

        def as_dict(self):
            return {"answer": 1, "warnings": ["the result's own"]}

        def warnings(self):
            return ["the result's own"]
    common.ECHOED.clear()
    common.echo_warnings(["the number of languages asked for is 50 times the most"])
    assert common.report(Result(), SimpleNamespace(json=True), tmp_path) == 0
    common.ECHOED.clear()
    printed = json.loads(capsys.readouterr().out)
    assert printed["warnings"] == ["the result's own",
                                   "the number of languages asked for is 50 times the most"]
