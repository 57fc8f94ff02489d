"""Laws of the user's own (`--law path.py[:NAME]`): the file's checks, every command with one, and
parameter recovery on data simulated from known values. Every fit uses one law file's content
and one preset, so a worker compiles its programs once."""

import json
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

from atlas_bayes import cli
from atlas_bayes.fitting.inference import fit, predict
from atlas_bayes.models import get_law
from atlas_bayes.models.user import LawFileError, load_user_law
from atlas_bayes.tables.runs import RunTableWarning, validate_runs
from conftest import QUICK, REPO, cli_args, seeded

LAW = textwrap.dedent('''
    """Chinchilla written as a user law, with a vocabulary column read too."""
    import jax.numpy as jnp
    import numpyro.distributions as dist

    PARAMS = {"E": (0.1, 10.0), "A": (1.0, 1e5), "B": (1.0, 1e6), "alpha": (0.05, 2.0),
              "beta": (0.05, 2.0)}
    FEATURES = ("n_params", "n_tokens")
    PRIORS = {"alpha": dist.LogNormal(jnp.log(0.3), 1.0)}


    def predict(p, x):
        return p["E"] + p["A"] / x["n_params"] ** p["alpha"] + p["B"] / x["n_tokens"] ** p["beta"]


    def cost(x):
        return 8 * x["n_params"] * x["n_tokens"]


    class Vocab:
        """The same law with a vocabulary term; runs cost 6 N D (1 + V / 1e5)."""
        PARAMS = {"E": (0.1, 10.0), "A": (1.0, 1e5), "alpha": (0.05, 2.0), "C": (1e-3, 10.0)}
        FEATURES = ("n_params", "n_tokens", "vocab")

        @staticmethod
        def predict(p, x):
            return p["E"] + p["A"] / x["n_params"] ** p["alpha"] + p["C"] * 1e4 / x["vocab"]

        @staticmethod
        def cost(x):
            return 6 * x["n_params"] * x["n_tokens"] * (1 + x["vocab"] / 1e5)
''')
TRUTH = {"E": 1.7, "A": 300.0, "B": 900.0, "alpha": 0.32, "beta": 0.26}


def simulated(seed: int, noise: float = 0.01) -> pd.DataFrame:
    """32 runs over three decades of N, 4-108 tokens per parameter, from TRUTH (and a vocab
    column, which the Vocab law reads)."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 4)
    D = N * np.tile([4.0, 12.0, 36.0, 108.0], 8)
    L = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunTableWarning)       # the vocab column
        return validate_runs(pd.DataFrame({
            "run_id": [f"r{i}" for i in range(len(N))], "n_params": N, "n_tokens": D,
            "vocab": np.tile([3.2e4, 6.4e4], 16), "loss": L * np.exp(rng.normal(0, noise, len(N)))}))


@pytest.fixture(scope="module")
def law_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("laws") / "my_law.py"
    path.write_text(LAW)
    return path


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    simulated(0).to_csv(path, index=False)
    return path


@pytest.mark.unit
@pytest.mark.parametrize("text, problem", [
    ("FEATURES = ('n_params',)\ndef predict(p, x): return x['n_params']", "missing PARAMS"),
    ("PARAMS = {'E': (0, 1)}\nFEATURES = ('n_params',)\ndef predict(p, x): return p['E']",
     "bounds must be positive"),
    ("PARAMS = {'sigma': (1, 2)}\nFEATURES = ('n_params',)\ndef predict(p, x): return 1.0",
     "taken by the model"),
    ("PARAMS = {'E': (1, 2)}\nFEATURES = 'n_params'\ndef predict(p, x): return 1.0",
     "FEATURES must be a non-empty tuple"),
    ("PARAMS = {'E': (1, 2)}\nFEATURES = ('n_params',)\nPRIORS = {'F': 1}\ndef predict(p, x): return 1",
     "PRIORS names"),
    ("PARAMS = {'E': (1, 2)}\nFEATURES = ('n_params',)\ndef predict(p, x) return 1",
     "importing the law file failed: SyntaxError"),
])
def test_a_law_file_is_checked_and_its_errors_name_it(tmp_path, text, problem):
    path = tmp_path / "law.py"
    path.write_text(text + "\n")
    with pytest.raises(LawFileError, match=problem) as err:
        load_user_law(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.unit
def test_a_named_object_in_the_file_is_a_law_and_an_edit_is_a_new_law(law_file, tmp_path):
    law = get_law(f"{law_file}:Vocab")
    assert law.parameters == ("E", "A", "alpha", "C") and law.user.features[-1] == "vocab"
    assert law.natural.inputs == ("n_params", "n_tokens", "vocab") and law.user.cost is not None
    with pytest.raises(LawFileError, match="defines no 'Nope'"):
        get_law(f"{law_file}:Nope")
    copy = tmp_path / "copy.py"
    copy.write_text(LAW)
    key = get_law(copy).user.key
    copy.write_text(LAW + "\n# edited\n")
    assert get_law(copy).user.key != key            # compiled programs are keyed by content


@pytest.mark.unit
def test_design_reads_a_user_laws_own_columns_and_cost(law_file):
    """A law of n_params, n_tokens and vocab scores and costs candidates from their columns."""
    from atlas_bayes.design.candidates import law_costs, validate_candidates
    from atlas_bayes.design.posterior import Posterior
    from atlas_bayes.fitting.draws import LawDraws
    spec = f"{law_file}:Vocab"
    draws = LawDraws(spec, {"E": [1.5, 1.7], "A": [300.0, 400.0], "alpha": [0.3, 0.35],
                            "C": [0.5, 1.0]})
    table = validate_candidates(pd.DataFrame({"n_params": [1e9, 1e9], "n_tokens": [2e10, 2e10],
                                              "vocab": [3.2e4, 1.28e5]}))
    assert table["candidate"].is_unique                  # rows apart only in vocab
    log_mean = Posterior(draws, [0.01, 0.01]).candidate_log_mean(table)
    expected = np.log(1.7 + 400.0 / 1e9 ** 0.35 + 1e4 / np.array([3.2e4, 1.28e5]))
    assert log_mean.shape == (2, 2) and np.allclose(log_mean[1], expected)
    costed = law_costs(get_law(spec).user, table)
    assert np.allclose(costed["cost"], 6 * 1e9 * 2e10 * (1 + np.array([3.2e4, 1.28e5]) / 1e5))
    with pytest.raises(ValueError, match=r"reads column\(s\) \['vocab'\]"):
        law_costs(get_law(spec).user, table.drop(columns="vocab"))


@pytest.mark.unit
@pytest.mark.parametrize("law, problem", [
    ("missing.py", "missing.py: law file not found"),
    ("{dir}/bad.py", "FEATURES names column(s) ['vocab_size'] that {runs} lacks"),
    ("{dir}/negative.py", "predict(p, x) gives a non-positive or non-finite loss at some rows of "
                          "the data (row 1: "),
])
def test_the_commands_refuse_a_bad_law_in_one_line(tmp_path, runs_csv, capsys, law, problem):
    (tmp_path / "bad.py").write_text("PARAMS = {'E': (1, 2)}\nFEATURES = ('vocab_size',)\n"
                                     "def predict(p, x): return p['E'] * x['vocab_size']\n")
    (tmp_path / "negative.py").write_text("PARAMS = {'E': (1, 2)}\nFEATURES = ('n_params',)\n"
                                          "def predict(p, x): return p['E'] - 5 + 0 * x['n_params']\n")
    law = law.format(dir=tmp_path)
    assert cli.main(["fit", str(runs_csv), "--law", law, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("atlas-bayes: error: ")]
    assert len(errors) == 1 and "Traceback" not in err      # (the other line: the vocab column)
    assert problem.format(runs=runs_csv) in errors[0]


@pytest.mark.statistical
def test_a_user_law_recovers_known_parameters(law_file):
    """Ten data sets simulated from TRUTH: the 90% intervals cover the truth at about the
    nominal rate (50 intervals, 45 expected: 45 here, 90 of 100 over twenty seeds; 39 or fewer
    has probability about 1% at 90%). QUICK: the programs the e2e test below reuses."""
    hits = []
    for seed in range(10):
        tree = fit(simulated(seed), str(law_file), sampler=seeded(QUICK, seed), warn=False)
        for name, value in TRUTH.items():
            lo, hi = np.quantile(tree.posterior[name].values, [0.05, 0.95])
            hits.append(lo <= value <= hi)
    assert sum(hits) >= 40, f"covered {sum(hits)} of {len(hits)}"
    mean = predict(tree, simulated(9).head(4))["log_loss_mean"].median(("chain", "draw")).values
    assert np.allclose(mean, np.log(simulated(9, noise=0.0)["loss"].head(4)), atol=0.02)


@pytest.mark.e2e
def test_every_command_takes_a_user_law(law_file, runs_csv, tmp_path, capsys):
    quick = cli_args(QUICK)
    assert cli.main(["fit", str(runs_csv), "--law", str(law_file), "--json",
                     "--out", str(tmp_path / "fit")] + quick) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["parameters"]) == ["E", "A", "B", "alpha", "beta", "sigma"]
    assert out["law"] == str(law_file.resolve())

    assert cli.main(["optimal", str(tmp_path / "fit" / "posterior.nc"), "--compute", "1e21",
                     "--accept-unconverged", "--json", "--out", str(tmp_path / "opt")]) == 0
    allocation = json.loads(capsys.readouterr().out)["allocation"]
    assert 1e7 < allocation["N"]["median"] < 1e11 and allocation["chinchilla_N"]["median"] is None

    candidates = tmp_path / "candidates.csv"
    pd.DataFrame({"n_params": [1e9, 3e9, 1e10], "n_tokens": [2e10, 6e10, 2e11]}).to_csv(
        candidates, index=False)
    assert cli.main(["design", str(runs_csv), "--law", str(law_file), "--k", "2", "--candidates",
                     str(candidates), "--json", "--out", str(tmp_path / "des")] + quick) == 0
    assert len(json.loads(capsys.readouterr().out)["chosen"]) == 2
    scores = pd.read_csv(tmp_path / "des" / "scores.csv")
    assert np.allclose(scores["cost"], 8 * scores["n_params"] * scores["n_tokens"])   # cost(x)

    assert cli.main(["compare", str(runs_csv), "--laws", str(law_file), "--split", "N",
                     "--no-loo", "--json", "--out", str(tmp_path / "cmp")] + quick) == 0
    rows = json.loads(capsys.readouterr().out)["held_out"]
    assert {r["law"] for r in rows} == {str(law_file)}
    assert all(r["r2"] > 0.9 for r in rows if r["language"] == "all")

    assert cli.main(["loop", str(runs_csv), "--law", str(law_file), "--budget", "1e17",
                     "--shapes", "t0,t1", "--tokens", "1e7", "--external", "--no-progress",
                     "--json", "--out", str(tmp_path / "loop")] + quick) == 0
    assert (tmp_path / "loop" / "round-1" / "plan.jsonl").is_file()


@pytest.mark.unit
def test_scalebench_tasks_keep_their_columns_costs_and_groups(shared_data):
    """The generalised ScaleBench tasks: each pool costed by the task's own formula, its input
    columns kept for user laws (revealed runs too), groups kept, V-optimal's least squares on
    a user law (benchmarks/scalebench_laws)."""
    from atlas_bayes.design import voptimal as vopt
    from atlas_bayes.design.scalebench import load_task, reveal
    root = shared_data / "scalebench"
    pool, target = load_task(root, "moe")
    assert np.allclose(pool["cost"], pool["n_params"] * pool["num_experts"])
    assert "num_experts" in reveal(pool, pool["candidate"][:2])
    pool, _ = load_task(root, "sparsity")
    assert np.allclose(pool["cost"], 6 * pool["N_dense"] * pool["D1"] + 6 * pool["n_params"] * pool["D2"])
    assert pool["group"].nunique() == 3
    pool, target = load_task(root, "parallel")
    law = vopt.ls_law(str(REPO / "benchmarks" / "scalebench_laws" / "parallel.py") + ":SL2")
    assert law.inputs == ("n_params", "parallel_size") and len(law.params) == 5
    theta = np.array([1.36, 117.8, 0.261, 0.121, 0.399])      # the authors' all-data fit (pile)
    pile = target[target["group"] == "pile"]
    predicted = vopt.predict(law, theta, law.matrix(pile))
    assert np.allclose(predicted, pile["loss"], rtol=0.02)


@pytest.mark.unit
def test_the_variance_utility_is_the_expected_drop_in_summed_variance():
    """`utility="variance"`: a run that measures the target almost exactly takes away nearly all
    of its variance, a run unrelated to it none (ScaleBench's var_runs scores with it)."""
    from atlas_bayes.design.eig import eig_scores
    rng = np.random.default_rng(0)
    q = rng.normal(0.0, 0.2, 256)
    mu = np.column_stack([q, rng.normal(0.0, 0.2, 256)])       # run 0 sees q, run 1 does not
    q2 = np.column_stack([q, 2 * q])                           # two target quantities
    gain, _ = eig_scores(mu, np.full(256, 0.01), q2, utility="variance")
    total = q2.var(axis=0).sum()
    assert gain[0] == pytest.approx(total, rel=0.1) and abs(gain[1]) < 0.1 * total
    info, _ = eig_scores(mu, np.full(256, 0.01), q2)
    assert info[0] > 1.0 > abs(info[1])                        # the default: information (nats)
    with pytest.raises(ValueError, match="utility must be"):
        eig_scores(mu, np.full(256, 0.01), q2, utility="nats")


# The authors' all-data least-squares fits (their baseline_full_train.py's fit, seed 42), in
# each law file's parameters, with the target R² the authors' baseline reports for them.
LR_BSZ_FIT = [4.601477441300701, 0.04344779582518031, 0.1621110227575522, -0.22719966473968925,
              -0.02735690586427219, 0.011466613210918002, 0.009680666142552868,
              0.00862126031575414, 0.007013564963715482, -0.006287307732018894,
              -0.0014256831887663047, 0.008988533208824666, -0.009504843931105723,
              -0.004104787445543, -0.009392674269160314]     # the authors' signed coefficients
DOMAIN_FIT = {  # the authors' theta per group: per domain i, A_i, eps_i, alpha_i, w_ij (j != i)
    "160M": [
    2.179976693, 0.001228040604, 0.0385837376, 0.1116686203, 0.1321767039, 0.07860282843,
    0.07379038959, 4.167695183, 0.1999994267, 0.2363095084, -0.5262554172, -0.5489972026,
    -0.5188278059, -0.5789587861, 2.698491931, 0.002330513829, 0.0415807492, -0.01187748079,
    -0.06629324105, -0.02178030568, -0.07356401299, 1.533508686, 0.01433770799, 0.1617442478,
    -0.4350702086, -0.3882777222, -0.4514842588, -0.4474145387, 3.152694979, 0.1257327372,
    0.1074359405, -0.09276789995, -0.09448506129, -0.1123497096, -0.09484414968],
    "305M": [
    2.089797737, 0.002475063828, 0.04908026264, 0.05391663491, 0.09724798375, 0.02589282569,
    0.02700728655, 4.070442414, 0.2, 0.249887922, -0.5734029688, -0.5882867686, -0.5636505363,
    -0.6256802991, 4.855054754, 0.01056228596, 0.1063764845, -0.8745404956, -0.9131828712,
    -0.8721679364, -0.9357125073, 1.849737959, 0.02835165222, 0.2648072964, -0.9407027733,
    -0.9362920567, -0.9918533803, -0.9542401567, 2.960518116, 0.07739853947, 0.08427271655,
    -0.06492814717, -0.06829561409, -0.08225832926, -0.07197616006],
    "410M": [
    2.007995499, 0.00152229081, 0.043544324, 0.1039594867, 0.1000284848, 0.06556605699,
    0.05240666502, 3.720395396, 0.2, 0.213309803, -0.4460671646, -0.4864112025, -0.4281948971,
    -0.5029179425, 4.483563287, 0.008592366237, 0.09770897931, -0.7897371731, -0.8300153338,
    -0.7935326336, -0.8565494519, 2.401005836, 0.05356509921, 0.4392376364, -1.588132554,
    -1.520231959, -1.656026347, -1.592499904, 2.834554754, 0.01585078952, 0.0368903997,
    0.0219053446, 0.02705194374, -0.00436023092, 0.02332644149],
    "70M": [
    2.484766386, 0.002433197452, 0.04348688343, 0.07307552689, 0.1054708905, 0.0504356381,
    0.05216836405, 4.038327506, 0.2, 0.1673895066, -0.2955333423, -0.332977661, -0.2870008731,
    -0.3387347931, 5.100167539, 0.01347507178, 0.1040459225, -0.7522734644, -0.8097278304,
    -0.773707559, -0.8129983599, 1.887938051, 0.0175780706, 0.1764776651, -0.5269345838,
    -0.4859751144, -0.58179417, -0.5350158377, 3.443140659, 0.03246499619, 0.04014064029,
    0.0002995405538, -0.01372580363, 0.002608083597, -0.008893247485],
}


def _domain_theta(theta) -> list:
    """The authors' domain_mixture sl_2 vector in domain_mixture.py:SL2's order and shifts."""
    per = np.reshape(theta, (5, 7))
    return list(per[:, :3].ravel()) + list(per[:, 3:].ravel() + 5.0)


SCALEBENCH_FITS = {
    "vocab": ("vocab.py:SL2", [0.36973, 9998.99, 0.540462, 0.383854, 0.00832829, 5.45427,
                               1.65734], 0.988413),
    "lr_bsz": ("lr_bsz.py:SL1", list(np.array(LR_BSZ_FIT) + np.array([15.0] + [0.35] * 4 + [0.025] * 10)),
               0.605091),
    "domain_mixture": ("domain_mixture.py:SL2",
                       {group: _domain_theta(theta) for group, theta in DOMAIN_FIT.items()},
                       0.998972),
}


@pytest.mark.unit
@pytest.mark.parametrize("task", sorted(SCALEBENCH_FITS))
def test_scalebench_law_files_load_and_predict_their_pools(shared_data, task):
    """Each law file of benchmarks/scalebench_laws passes the user-law checker and, at the
    authors' all-data fit, predicts finite positive losses on its whole pool and the target
    region to the authors' R² (per group where the task has groups)."""
    from atlas_bayes.design.scalebench import load_task, target_r2
    from atlas_bayes.fitting.user_fit import check_prediction, feature_matrix
    name, theta, r2 = SCALEBENCH_FITS[task]
    law = load_user_law(REPO / "benchmarks" / "scalebench_laws" / name)
    pool, target = load_task(shared_data / "scalebench", task)
    thetas = theta if isinstance(theta, dict) else {None: theta}
    predicted, observed = [], []
    for group, values in thetas.items():
        mine = (pool, target) if group is None else (pool[pool["group"] == group],
                                                     target[target["group"] == group])
        for table in mine:
            loss = check_prediction(law, feature_matrix(law, table), np.asarray(values))
            assert np.all(np.isfinite(loss) & (loss > 0))
        predicted.append(loss)
        observed.append(mine[1]["loss"].to_numpy())
    assert target_r2(np.concatenate(predicted), np.concatenate(observed)) == \
        pytest.approx(r2, abs=1e-5)


@pytest.mark.unit
def test_domain_mixture_is_read_one_row_per_output_and_a_bad_file_is_refused(shared_data,
                                                                             tmp_path):
    """domain_mixture's five losses per run: one row each (bought together as one run of cost
    1, split evenly), the run's proportions on every row; a file with a bad proportion, a
    non-positive loss or proportions not summing to 1 is refused naming file, row and column."""
    from atlas_bayes.design.scalebench import TASKS, _runs, initial_design, load_task
    root = shared_data / "scalebench"
    pool, target = load_task(root, "domain_mixture")
    assert len(pool) == 5 * 80 and len(target) == 5 * 24
    assert pool.groupby("group")["cost"].sum().round(9).eq(20.0).all()
    runs = _runs(pool)
    assert len(runs) == 80 and runs["cost"].round(9).eq(1.0).all()
    first = pool[pool["run"] == pool["run"].iloc[0]]
    assert sorted(first["output"]) == [1, 2, 3, 4, 5] and first["proportion_domain_1"].nunique() == 1
    raw = pd.read_parquet(root / TASKS["domain_mixture"].folder / "train-00000-of-00001.parquet")
    assert np.allclose(first["loss"], raw.filter(like="loss_domain_").iloc[0])
    assert len(initial_design(pool[pool["group"] == "70M"], 15)) == 5     # one run, 5 rows
    folder = tmp_path / TASKS["domain_mixture"].folder
    folder.mkdir()
    for problem, (row, column, value) in {
            "expected a proportion in \\[0, 1\\], got -0.1": (3, "proportion_domain_2", -0.1),
            "expected a positive finite loss, got nan": (7, "loss_domain_4", np.nan),
            "the proportions sum to 1.5, not 1": (2, "proportion_domain_1", None)}.items():
        bad = raw.copy()
        bad.loc[row, column] = bad.loc[row, column] + 0.5 if value is None else value
        bad.to_parquet(folder / "train-00000-of-00001.parquet")
        with pytest.raises(ValueError, match=f"train-00000-of-00001.parquet: row {row + 1}, "
                                             f"column.? '?{column}.*{problem}"):
            load_task(tmp_path, "domain_mixture")


@pytest.mark.unit
def test_a_multi_output_run_is_scored_on_all_its_rows_at_once():
    """`_greedy_runs`: run 0's second row measures the target, run 1's rows do not; run 0 is
    picked first although its first row alone tells nothing, then run 1 within the budget."""
    from atlas_bayes.design.scalebench import _greedy_runs
    rng = np.random.default_rng(0)
    q = rng.normal(0.0, 0.2, 256)
    noise = lambda: rng.normal(0.0, 0.2, 256)                       # noqa: E731
    mu = np.column_stack([noise(), q, noise(), noise()])            # run 0: rows 0-1, run 1: 2-3
    runs = [np.array([0, 1]), np.array([2, 3])]
    picks = _greedy_runs(mu, np.full(256, 0.01), q, runs, np.array([1.0, 1.0]), nu=4.0, k=2,
                         budget=2.0, cost_power=0.4, seed=0, utility="variance")
    assert picks == [0, 1]
    assert _greedy_runs(mu, np.full(256, 0.01), q, runs[::-1], np.array([1.0, 1.0]), nu=4.0, k=1,
                        budget=2.0, cost_power=0.4, seed=0, utility="variance") == [1]
