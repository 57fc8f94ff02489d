"""Experiment design: the EIG estimators against the exact linear-Gaussian answer, batches that
complement each other, a simulated Chinchilla study, the CLI and its trainer plan, bad input."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from atlas_bayes import design
from atlas_bayes.cli import main
from atlas_bayes.fitting.inference import fit, save
from atlas_bayes.fitting.draws import LawDraws, predicted_loss
from atlas_bayes.simulation.simulate import PAPER_MODEL_SIZES, monolingual_design, simulate
from conftest import QUICK, SHORT

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31}
TARGET = (2e9, 4e10)           # far beyond the fitted runs (largest 2.9e8 params)


# --- linear-Gaussian: theta ~ N(0, S), y = x . theta + sigma eps ---------------------------------

def linear_gaussian(n_draws=512, seed=0):
    """Prior draws, noise, covariance and candidate rows x (a few directions and lengths)."""
    rng = np.random.default_rng(seed)
    S = np.array([[1.0, 0.3, 0.0], [0.3, 0.8, 0.2], [0.0, 0.2, 0.5]])
    theta = rng.multivariate_normal(np.zeros(3), S, size=n_draws)
    X = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.3, -0.5, 1.0],
                  [2, 0, 0], [0.2, 0.2, 0.2]], dtype=float)
    return theta, 0.5, S, X


def exact_params_eig(S, X, sigma):
    """0.5 log det(I + X S X^T / sigma^2): the information y_X carries about theta."""
    X = np.atleast_2d(X)
    return 0.5 * np.linalg.slogdet(np.eye(len(X)) + X @ S @ X.T / sigma ** 2)[1]


def exact_scalar_eig(S, X, sigma, a):
    """0.5 log(a S a / a S_post a) for q = a . theta after observing y_X."""
    X = np.atleast_2d(X)
    post = np.linalg.inv(np.linalg.inv(S) + X.T @ X / sigma ** 2)
    return 0.5 * np.log(a @ S @ a / (a @ post @ a))


@pytest.mark.unit
def test_parameter_eig_matches_the_exact_linear_gaussian_answer():
    theta, sigma, S, X = linear_gaussian()
    exact = np.array([exact_params_eig(S, x, sigma) for x in X])
    runs = np.array([design.eig_scores(theta @ X.T, sigma, nu=np.inf, seed=s)[0] for s in range(8)])
    bias = runs.mean(axis=0) - exact
    assert np.all(np.abs(bias) < 0.08), (exact, runs.mean(axis=0))
    assert np.all(runs.std(axis=0) < 0.1)
    # PCE is a lower bound: on average it does not exceed the exact value
    assert bias.mean() < 0.02


@pytest.mark.unit
def test_scalar_eig_matches_the_exact_linear_gaussian_answer():
    theta, sigma, S, X = linear_gaussian()
    a = np.array([1.0, 0.5, -0.5])
    exact = np.array([exact_scalar_eig(S, x, sigma, a) for x in X])
    q = theta @ a
    runs = np.array([design.eig_scores(theta @ X.T, sigma, q, nu=np.inf, seed=s)[0]
                     for s in range(8)])
    assert np.all(np.abs(runs.mean(axis=0) - exact) < 0.1), (exact, runs.mean(axis=0))
    linear = design.eig_scores(theta @ X.T, sigma, q, nu=np.inf, method="linear")[0]
    assert np.all(np.abs(linear - exact) < 0.08), (exact, linear)
    # the ranking of candidates is what a design uses: it must agree with the exact one
    assert np.argmax(runs.mean(axis=0)) == np.argmax(exact)



@pytest.mark.unit
def test_a_vector_target_scores_the_mean_of_its_quantities_gains():
    theta, sigma, S, X = linear_gaussian()
    A = np.array([[1.0, 0.5, -0.5], [0.0, 0.0, 1.0]])          # two quantities, two directions
    exact = np.array([[exact_scalar_eig(S, x, sigma, a) for a in A] for x in X]).mean(axis=1)
    runs = np.array([design.eig_scores(theta @ X.T, sigma, theta @ A.T, nu=np.inf, seed=s)[0]
                     for s in range(8)])
    assert np.all(np.abs(runs.mean(axis=0) - exact) < 0.1), (exact, runs.mean(axis=0))
    # exactly the mean of the scalar estimates on the same simulated outcomes
    y = design.simulate_outcomes(theta @ X.T, np.full(len(theta), sigma), np.inf, seed=3)
    each = [design.eig_scores(theta @ X.T, sigma, theta @ a, nu=np.inf, y=y)[0] for a in A]
    both = design.eig_scores(theta @ X.T, sigma, theta @ A.T, nu=np.inf, y=y)[0]
    np.testing.assert_allclose(both, np.mean(each, axis=0), rtol=1e-4, atol=1e-5)
    assert np.argmax(runs.mean(axis=0)) == np.argmax(exact)

@pytest.mark.unit
def test_greedy_batch_conditions_each_pick_on_the_earlier_ones():
    """Candidates: e1, a near copy of e1, and e3 (less informative alone). After e1 the copy is
    worth little and e3 is picked; every conditional gain matches the exact one."""
    theta, sigma, S, _ = linear_gaussian(n_draws=1024)
    X = np.array([[1, 0, 0], [0.99, -0.14, 0], [0, 0, 1.0]])
    alone = [exact_params_eig(S, x, sigma) for x in X]
    assert alone[0] > alone[1] > alone[2]
    picks, (first, _), _ = design.greedy_batch(theta @ X.T, sigma, None, np.ones(3), nu=np.inf,
                                               k=2, seed=1)
    assert [p["index"] for p in picks] == [0, 2]
    second_exact = exact_params_eig(S, X[[0, 2]], sigma) - alone[0]
    assert abs(picks[1]["gain"] - second_exact) < 0.1
    assert picks[1]["gain"] < first[2] + 0.05       # no more than e3 alone: overlap counted
    # the near copy's gain given e1's fantasised outcomes is far below its gain alone
    mu = theta @ X.T
    y = design.simulate_outcomes(mu, np.full(1024, sigma), np.inf, seed=1)
    base = design.loglik_matrix(y[:, 0], mu[:, 0], np.full(1024, sigma), np.inf)
    both, _ = design.eig_scores(mu, sigma, nu=np.inf, y=y, chosen=base)
    copy_given_e1 = both[1] - picks[0]["cumulative_gain"]
    exact = exact_params_eig(S, X[:2], sigma) - alone[0]
    assert abs(copy_given_e1 - exact) < 0.1 and exact < 0.5 * alone[1]


# --- a simulated Chinchilla study ---------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def study():
    """A fitted small-scale study: 8 model sizes up to 2.9e8 params, 3 token ratios."""
    plan = monolingual_design("en", n_params=PAPER_MODEL_SIZES[:8], tokens_per_param=(5, 20, 80),
                              checkpoints=(1.0,))
    runs = simulate(plan, "chinchilla", TRUTH, sigma=0.01, seed=3)
    tree = fit(runs, "chinchilla", sampler=SHORT, warn=False)
    return runs, tree


def grid():
    return design.candidate_grid(n_params=np.geomspace(1e7, 2e9, 8),
                                 tokens_per_param=(5, 10, 20, 40), language="en")


def log_distance(candidates, point):
    return np.hypot(np.log(candidates["n_params"] / point[0]),
                    np.log(candidates["n_tokens"] / point[1]))


@pytest.mark.statistical
def test_the_most_informative_run_for_a_large_target_lies_near_it():
    _, tree = study()
    posterior = design.posterior_from_tree(tree, max_draws=400)
    candidates = grid()
    result = design.choose_batch(posterior, candidates, design.loss_target(*TARGET), k=1,
                                 cost_power=0.0)
    distance = log_distance(candidates, TARGET)
    best = log_distance(result.chosen, TARGET).iloc[0]
    assert best < np.median(distance)
    # information grows towards the target: the gain correlates negatively with distance
    assert np.corrcoef(result.scores["gain"], distance)[0, 1] < -0.3
    assert (result.scores["gain"] > -0.05).all()


@pytest.mark.statistical
def test_reweighting_after_an_outcome_narrows_the_targets_interval():
    _, tree = study()
    posterior = design.posterior_from_tree(tree, max_draws=400)
    target = design.loss_target(*TARGET)
    q = target.values(posterior)
    n, d = 1e9, 2e10
    true_law = LawDraws("chinchilla", {k: np.array([v]) for k, v in TRUTH.items()})
    observed = float(predicted_loss(true_law, np.array([n]), np.array([d]))[0])
    w = design.reweight(posterior, n, d, observed)
    before = np.subtract(*design.weighted_interval(q)[::-1])
    after = np.subtract(*design.weighted_interval(q, w)[::-1])
    assert after < 0.75 * before          # measured 0.58-0.60 over three simulated studies
    truth = np.log(predicted_loss(true_law, np.array([TARGET[0]]), np.array([TARGET[1]]))[0])
    lo, hi = design.weighted_interval(q, w, 0.98)
    assert lo <= truth <= hi


@pytest.mark.statistical
def test_a_batch_is_complementary_and_respects_the_budget():
    _, tree = study()
    posterior = design.posterior_from_tree(tree, max_draws=300)
    candidates = grid()
    budget = 3e19
    result = design.choose_batch(posterior, candidates, design.parameters_target(), k=4,
                                 budget=budget)
    chosen = result.chosen
    assert chosen["candidate"].is_unique and len(chosen) >= 2
    assert chosen["cost"].sum() <= budget
    alone = result.scores.set_index("candidate")["gain"]
    later = chosen.iloc[1:]
    # later picks are valued given the earlier ones: together below what they would bring
    # alone (scored without conditioning they would equal it). Per pick the Monte Carlo
    # estimates can cross: one was 0.068 given the earlier picks vs 0.066 alone.
    given, by_itself = later["gain"].to_numpy(), alone[later["candidate"]].to_numpy()
    assert given.sum() < 0.95 * by_itself.sum()
    assert (given < 1.1 * by_itself).all()
    assert np.isclose(result.total_gain, chosen["gain"].sum(), atol=1e-4)


# --- candidates, targets and bad input ----------------------------------------------------------

@pytest.mark.unit
def test_candidate_grid_costs_and_file_round_trip(tmp_path):
    g = design.candidate_grid(n_params=[1e8, 1e9], tokens=[1e9], eval_tokens=1e6, language="fr")
    assert np.allclose(g["cost"], 6 * g["n_params"] * 1e9 + 2 * g["n_params"] * 1e6)
    g.to_csv(tmp_path / "c.csv", index=False)
    back = design.read_candidates(tmp_path / "c.csv")
    assert list(back["candidate"]) == list(g["candidate"])
    (tmp_path / "c.jsonl").write_text('{"n_params": 1e8, "n_tokens": 2e9}\n'
                                      '{"n_params": 3e8, "n_tokens": 6e9, "model": "s4"}\n')
    back = design.read_candidates(tmp_path / "c.jsonl")
    assert np.allclose(back["cost"], 6 * back["n_params"] * back["n_tokens"])


@pytest.mark.parametrize("rows, message", [
    ([{"n_params": 1e8}], "missing column"),
    ([{"n_params": 1e8, "n_tokens": -5}], "row 1, column 'n_tokens'"),
    ([{"n_params": "big", "n_tokens": 1e9}], "row 1, column 'n_params'"),
])
@pytest.mark.unit
def test_bad_candidates_name_row_and_column(rows, message):
    with pytest.raises(ValueError, match=message):
        design.validate_candidates(pd.DataFrame(rows))


@pytest.mark.parametrize("text, message", [
    ("loss@N=1e9", "unknown target"), ("loss@N=big,D=1", "expected NAME=NUMBER"),
    ("crossover:sw", "unknown target"), ("nstar@C=-1", "positive")])
@pytest.mark.unit
def test_bad_targets(text, message):
    with pytest.raises(ValueError, match=message):
        design.parse_target(text)


@pytest.mark.unit
def test_grid_needs_sizes_and_budgets():
    with pytest.raises(ValueError, match="either shapes"):
        design.candidate_grid(tokens=[1e9])
    with pytest.raises(ValueError, match="tokens or tokens_per_param"):
        design.candidate_grid(n_params=[1e8])
    with pytest.raises(ValueError, match="unknown trainer shape"):
        design.candidate_grid(shapes=["s999"], tokens=[1e9])


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.e2e
def test_cli_design_json_and_a_plan_the_trainer_accepts(tmp_path, capsys):
    _, tree = study()
    save(tree, tmp_path / "posterior.nc")
    code = main(["design", str(tmp_path / "posterior.nc"), "--target", "loss@N=2e9,D=4e10",
                 "--shapes", "s0,s1,s2,s4,s6,s8", "--tokens-per-param", "10,20,40",
                 "--budget", "1e19", "--k", "3", "--max-draws", "256", "--json",
                 "--out", str(tmp_path / "design"), "--plan", str(tmp_path / "plan.jsonl")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["target"] == "loss@N=2e+09,D=4e+10"
    assert 1 <= len(summary["chosen"]) <= 3 and summary["total_cost"] <= 1e19
    for name in ("design.json", "scores.csv", "design.png"):
        assert (tmp_path / "design" / name).is_file()
    configs = [json.loads(line) for line in (tmp_path / "plan.jsonl").read_text().splitlines()]
    assert [c["model"] for c in configs] == [c["model"] for c in summary["chosen"]]
    train = pytest.importorskip("atlas_bayes.trainers.train")
    for config in configs:
        train.RunConfig.from_dict(config)


@pytest.mark.e2e
def test_cli_design_bad_input(tmp_path, capsys):
    _, tree = study()
    save(tree, tmp_path / "posterior.nc")
    code = main(["design", str(tmp_path / "posterior.nc"), "--target", "loss@N=1e9",
                 "--n-params", "1e8,1e9", "--out", str(tmp_path / "d")])
    assert code == 2 and "unknown target" in capsys.readouterr().err
    code = main(["design", str(tmp_path / "posterior.nc"), "--n-params", "1e8,1e9",
                 "--plan", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "d")])
    assert code == 2 and "need trainer shapes: give --shapes" in capsys.readouterr().err
    code = main(["design", str(tmp_path / "missing.nc")])
    assert code == 2 and "file not found" in capsys.readouterr().err


@pytest.mark.statistical
def test_compute_optimal_size_plugs_in_as_a_target():
    _, tree = study()
    posterior = design.posterior_from_tree(tree, max_draws=200)
    target = design.parse_target("nstar@C=1e21")
    q = target.values(posterior)
    assert q.shape == (200,) and np.var(q) > 0
    result = design.choose_batch(posterior, grid(), target, k=2, cost_power=0.0)
    assert np.isfinite(result.scores["gain"]).all() and result.total_gain > 0


@pytest.mark.unit
def test_scalebench_pools_load_and_reveal_recorded_runs(shared_data):
    from atlas_bayes.design.scalebench import budget, load_task, reveal, target_r2
    pool, target = load_task(shared_data / "scalebench", "chinchilla")
    assert (len(pool), len(target)) == (196, 49)
    assert np.allclose(pool["cost"], 6 * pool["n_params"] * pool["n_tokens"])
    assert target["cost"].min() > pool["cost"].max() * 0.99      # the high-cost target region
    runs = reveal(pool, pool["candidate"][:3])
    assert list(runs["loss"]) == list(pool["loss"][:3])
    assert budget(pool, 0.05) == pytest.approx(0.05 * pool["cost"].sum())
    assert target_r2(target["loss"], target["loss"]) == 1.0
    pool, _ = load_task(shared_data / "scalebench", "data_constrained")
    assert "unique_tokens" in reveal(pool, pool["candidate"][:2])
    with pytest.raises(ValueError, match="unknown ScaleBench task"):
        load_task(shared_data / "scalebench", "sae")
    # the region as one quantity (its mean log loss) or one per target run
    from atlas_bayes.design.scalebench import log_mean, region_target
    draws = {k: np.array([v, v * 1.05]) for k, v in TRUTH.items()}
    post = design.Posterior(LawDraws("chinchilla", draws), np.full(2, 0.01))
    runs = region_target(target, per_run=True).values(post)
    assert runs.shape == (2, 49) and np.allclose(runs, log_mean(post, target))
    assert np.allclose(region_target(target).values(post), runs.mean(axis=1))
    with pytest.raises(ValueError, match="49 quantities per draw"):
        design.target_summary(post, region_target(target, per_run=True))


@pytest.mark.statistical
def test_a_retrospective_episode_stays_within_each_budget(shared_data):
    from atlas_bayes.design.scalebench import load_task, run_episode
    pool, target = load_task(shared_data / "scalebench", "chinchilla")
    table = run_episode(pool, target, method="eig_runs", fractions=(0.01,), k=8, max_draws=100,
                        sampler=QUICK)
    row = table.iloc[0]
    assert row["n_runs"] >= 13 and row["spent"] <= 0.01 and -1 <= row["r2"] <= 1


@pytest.mark.unit
def test_voptimal_scores_are_the_exact_drop_in_target_variance_and_favour_runs_near_it():
    from atlas_bayes.design import voptimal as vopt
    law = vopt.ls_law("chinchilla")
    theta = np.array([TRUTH[k] for k in law.params])
    N = np.array([5e7, 8e7, 1.2e8, 2e8, 5e7, 1.2e8, 2e8])
    D = np.array([1e9, 2e9, 3e9, 5e9, 5e9, 1e9, 2e9])
    X_obs = np.column_stack([N, D])
    X_cand = np.array([[6e7, 1.5e9], [1e9, 2e10], [3e8, 6e9]])    # tiny, near target, between
    X_target = np.array([[2e9, 4e10], [3e9, 6e10]])
    noise = 1e-4
    scores = vopt.voptimal_scores(law, theta, X_obs, X_cand, X_target, noise)
    cov = vopt.laplace_cov(law, theta, X_obs, noise)
    Jt = vopt._scaled_jacobian(law, theta, X_target)
    for c, jc in enumerate(vopt._scaled_jacobian(law, theta, X_cand)):
        post = cov - np.outer(cov @ jc, jc @ cov) / (noise + jc @ cov @ jc)
        drop = np.trace(Jt @ cov @ Jt.T) - np.trace(Jt @ post @ Jt.T)
        assert scores[c] == pytest.approx(drop, rel=1e-6)
    assert np.argmax(scores) == 1 and np.argmin(scores) == 0
    assert vopt.pick(scores, [1.0, 1e6, 1.0], 1e6, cost_power=1.0) != 1   # cost can overrule
    y = vopt.predict(law, theta, X_obs)
    fitted, mse = vopt.fit_least_squares(law, X_obs, y, rng=np.random.default_rng(0), n_starts=8,
                                         warm=[theta * 1.1])
    assert mse < 1e-6 < np.mean((vopt.predict(law, theta * 1.1, X_obs) - y) ** 2)
    with pytest.raises(ValueError, match="V-optimal supports"):
        vopt.ls_law("atlas")


@pytest.mark.statistical
def test_voptimal_episode_and_the_shape_trust_region(shared_data):
    from atlas_bayes.design.posterior import Posterior
    from atlas_bayes.design.scalebench import load_task, log_mean, run_episode, shape_trust_region
    pool, target = load_task(shared_data / "scalebench", "chinchilla")
    keep = shape_trust_region(pool, target, 2.0)
    shape = pool["n_tokens"] / pool["n_params"]
    assert not keep[shape.to_numpy() < 0.3].any() and keep.mean() > 0.8
    assert shape_trust_region(pool, target, None).all()
    table = run_episode(pool, target, method="voptimal", fractions=(0.003, 0.005), ls_starts=4)
    assert list(table["method"]) == ["voptimal"] * 2 and list(table["fraction"]) == [0.003, 0.005]
    assert (table["spent"] <= table["fraction"]).all() and table["n_runs"].is_monotonic_increasing
    assert table["r2"].between(-1, 1).all()
    # data-constrained candidates are predicted at their own unique tokens
    pool, _ = load_task(shared_data / "scalebench", "data_constrained")
    rows = pool.iloc[:6]
    p = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28, "R_D_star": 15.0,
         "R_N_star": 5.0}
    post = Posterior(LawDraws("dcsl", {k: np.full(2, v) for k, v in p.items()}), np.full(2, 0.01))
    expected = [np.log(predicted_loss(post.draws, np.array([r.n_params]), np.array([r.n_tokens]),
                                      unique_tokens=r.unique_tokens))[0] for r in rows.itertuples()]
    assert np.allclose(log_mean(post, rows)[0], expected)
