"""Law comparison: held-out scores (the paper's protocol with intervals), PSIS-LOO, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from atlas_bayes import cli
from atlas_bayes.decisions.comparison import HELD_OUT_COLUMNS, HeldOut, coverage, held_out_table, law_names, loo_table, pooled_scores, r2_score, relative_width, scores, split_names
from atlas_bayes.fitting.inference import Approximation
from atlas_bayes.simulation.simulate import monolingual_design, simulate
from conftest import QUICK, cli_args

TRUTH = {"E": 1.4, "A": 420.0, "B": 1600.0, "alpha": 0.34, "beta": 0.31, "lambda": 0.1}
TINY = QUICK
TINY_ARGS = cli_args(QUICK)


@pytest.fixture(scope="module")
def runs():
    """Two monolingual targets that repeat their data (up to 17 and 5 epochs), from ATLAS (D_t)."""
    design = pd.concat([monolingual_design("sw", unique_tokens=3e9, tokens_per_param=(10, 40)),
                        monolingual_design("hi", unique_tokens=1e10, tokens_per_param=(10, 40))])
    return simulate(design, "atlas-dt", TRUTH, seed=1)


@pytest.fixture(scope="module")
def table(runs):
    return held_out_table(runs, ["atlas-dt"], ["D", "M"], sampler=TINY)


# --- scores against hand-computed values ----------------------------------------------------

@pytest.mark.unit
def test_r2_by_hand():
    assert r2_score([1, 2, 3], [1, 2, 4]) == pytest.approx(0.5)       # 1 - 1 / 2
    np.testing.assert_allclose(r2_score([1, 2, 3], [[1, 2, 3], [2, 2, 2]]), [1.0, 0.0])
    assert np.isnan(r2_score([2, 2], [1, 3]))


@pytest.mark.unit
def test_coverage_and_width_by_hand():
    draws = np.repeat(np.arange(101.0)[:, None], 3, axis=1)   # 0..100 for each of 3 rows
    # central 90%: [5, 95]; central 50%: [25, 75]
    assert coverage([0.0, 5.0, 10.0], draws, 0.9) == pytest.approx(2 / 3)
    assert coverage([0.0, 5.0, 10.0], draws, 0.5) == 0.0
    assert relative_width(draws, 0.9) == pytest.approx(90 / 50)


@pytest.mark.unit
def test_overall_r2_is_the_mean_over_languages_and_pooled_r2_is_over_rows():
    one = HeldOut(np.array([1.0, 2.0, 3.0]), np.array([[1.0, 2.0, 4.0]] * 2),
                  np.array([[1.0, 2.0, 4.0]] * 2))
    two = HeldOut(np.array([4.0, 6.0]), np.array([[5.0, 6.0]] * 2), np.array([[5.0, 6.0]] * 2))
    assert scores(one)["r2"] == pytest.approx(0.5) and scores(two)["r2"] == pytest.approx(0.5)
    overall = pooled_scores([one, two])
    assert overall["r2"] == pytest.approx(0.5) and overall["n_test"] == 5
    observed = np.array([1, 2, 3, 4, 6.0])
    by_hand = 1 - 2.0 / np.sum((observed - observed.mean()) ** 2)
    assert overall["r2_pooled"] == pytest.approx(by_hand)
    assert overall["r2_q05"] == pytest.approx(0.5) and overall["r2_q95"] == pytest.approx(0.5)


@pytest.mark.unit
def test_names_are_checked():
    assert law_names("csl, atlas-dt,chinchilla") == ["csl", "atlas-dt"]   # csl is chinchilla
    with pytest.raises(ValueError, match="unknown law 'nope'"):
        law_names(["nope"])
    with pytest.raises(ValueError, match="unknown split 'X'"):
        split_names("D,X")


# --- held-out table -------------------------------------------------------------------------

@pytest.mark.statistical
def test_true_law_predicts_held_out_tokens_with_calibrated_intervals(table):
    assert list(table.columns) == HELD_OUT_COLUMNS
    rows = table[table["split"] == "D"].set_index("language")
    assert list(rows.index) == ["sw", "hi", "all"]
    overall = rows.loc["all"]
    assert overall["r2"] > 0.9 and overall["r2_q05"] <= overall["r2_q95"]
    assert 0.7 <= overall["coverage_90"] <= 1.0
    assert overall["coverage_50"] <= overall["coverage_90"]
    assert 0 < overall["width_90"] < 0.3
    assert overall["r2"] == pytest.approx(rows.loc[["sw", "hi"], "r2"].mean())
    assert overall["n_test"] == rows.loc[["sw", "hi"], "n_test"].sum() == 12
    assert overall["n_train"] == 48 and pd.isna(overall["error"])
    assert rows.loc["sw", "r2_pooled"] == rows.loc["sw", "r2"]


@pytest.mark.statistical
def test_impossible_split_is_an_error_row_not_an_exception(table):
    row = table[table["split"] == "M"].iloc[0]
    assert len(table[table["split"] == "M"]) == 1 and row["language"] == "all"
    assert "holds out nothing" in row["error"] and np.isnan(row["r2"])


@pytest.mark.statistical
def test_joint_law_is_fitted_once_to_every_training_row(runs):
    fast = Approximation(method="svi", steps=1500, draws=300)
    table = held_out_table(runs, ["chinchilla-h"], ["D"], sampler=fast, languages=["sw"])
    assert list(table["language"]) == ["sw", "all"]
    sw, overall = table.iloc[0], table.iloc[1]
    assert sw["n_train"] == overall["n_train"] == 48     # both languages' training rows
    assert sw["n_test"] == overall["n_test"] == 6        # scored on the chosen target only
    assert np.isfinite(overall["r2"]) and pd.isna(overall["error"])


@pytest.mark.unit
def test_unknown_target_language_is_refused(runs):
    with pytest.raises(ValueError, match="no rows evaluate language"):
        held_out_table(runs, ["atlas-dt"], ["D"], sampler=TINY, languages=["xx"])


# --- LOO ------------------------------------------------------------------------------------

@pytest.mark.statistical
def test_loo_ranks_the_true_law_above_chinchilla_on_repeated_data(runs):
    table = loo_table(runs, ["chinchilla", "atlas-dt"], sampler=TINY)
    assert list(table.index) == ["atlas-dt", "chinchilla"]
    assert table.loc["chinchilla", "elpd_diff"] < -2 * table.loc["chinchilla", "dse"]
    assert (table["n_obs"] == len(runs)).all()     # per-language fits joined: every row scored
    assert table["weight"].sum() == pytest.approx(1.0)
    assert (table["n_bad_k"] >= 0).all() and table["error"].isna().all()


# --- CLI ------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_cli_prints_one_json_object_and_writes_tables_and_plots(runs, tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    out = tmp_path / "cmp"
    status = cli.main(["compare", str(path), "--laws", "atlas-dt", "--split", "D,M", "--lang", "sw",
                       "--out", str(out), "--json", *TINY_ARGS])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    result = json.loads(captured.out)
    assert set(result) == {"laws", "splits", "held_out", "loo", "seconds", "warnings"}
    assert result["laws"] == ["atlas-dt"] and result["splits"] == ["D", "M"]
    assert isinstance(result["seconds"], float)
    keys = {"law", "split", "language", "n_train", "n_test", "r2", "r2_log", "r2_q05", "r2_q95",
            "r2_pooled", "coverage_50", "coverage_90", "width_90", "converged", "error"}
    d_sw, d_all, m_all = result["held_out"]
    assert all(set(row) == keys for row in result["held_out"])
    assert (d_sw["language"], d_all["language"]) == ("sw", "all")
    assert isinstance(d_sw["n_test"], int) and isinstance(d_sw["r2"], float)
    assert isinstance(d_sw["converged"], bool) and d_sw["error"] is None
    assert m_all["r2"] is None and "holds out nothing" in m_all["error"]   # NaN -> null
    loo, = result["loo"]
    assert set(loo) == {"law", "rank", "elpd", "se", "elpd_diff", "dse", "weight", "p_loo",
                        "n_bad_k"}
    assert loo["law"] == "atlas-dt" and loo["rank"] == 0 and isinstance(loo["n_bad_k"], int)
    assert "D atlas-dt sw:" in captured.err        # one progress line per fit, on stderr
    for name in ("held_out.csv", "loo.csv", "held_out.png", "loo.png"):
        assert (out / name).stat().st_size > 0
    assert len(pd.read_csv(out / "held_out.csv")) == 3


@pytest.mark.parametrize("option, message", [(["--laws", "csl,nope"], "unknown law 'nope'"),
                                             (["--split", "D,Q"], "unknown split 'Q'")])
@pytest.mark.e2e
def test_cli_refuses_unknown_names_with_status_2(runs, tmp_path, capsys, option, message):
    path = tmp_path / "runs.csv"
    runs.head(3).to_csv(path, index=False)
    assert cli.main(["compare", str(path), *option]) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
