"""Held-out splits: each rule on small hand-made tables and on the paper-shaped design."""

import numpy as np
import pandas as pd
import pytest

from atlas_bayes.simulation.paper_design import paper_design
from atlas_bayes.tables.runs import validate_runs
from atlas_bayes.simulation.simulate import PAPER_MODEL_SIZES
from atlas_bayes.tables.splits import SPLITS, describe, held_out, split_runs

pytestmark = pytest.mark.unit

SIZES = (1e7, 3e7, 1e8, 3e8, 1e9, 3e9)


def table(rows, **columns) -> pd.DataFrame:
    """A validated run table from dicts (loss 1.0 unless given)."""
    frame = pd.DataFrame(rows).assign(**columns)
    if "loss" not in frame:
        frame["loss"] = 1.0
    return validate_runs(frame, source="test table")


def grid(sizes=SIZES, langs=("en",), checkpoints=(1e9, 2e9)) -> pd.DataFrame:
    """Monolingual runs: every size and language, two checkpoints each."""
    return table([{"run_id": f"{lang}-{n:g}", "language": lang, "n_params": n, "n_tokens": d}
                  for lang in langs for n in sizes for d in checkpoints])


@pytest.fixture(scope="module")
def design():
    return paper_design()


def test_unknown_split_lists_the_splits():
    with pytest.raises(ValueError, match="unknown split 'X'; expected one of random, N, D, C, M"):
        held_out(grid(), "X")


def test_fraction_must_be_inside_0_1():
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        held_out(grid(), "D", fraction=1.0)


def test_random_holds_out_the_rounded_fraction_and_is_seeded():
    runs = grid(langs=("en", "fr"), checkpoints=(1e9, 2e9, 3e9, 4e9))   # 48 rows
    mask = held_out(runs, "random")
    assert mask.sum() == 10   # round(0.2 x 48)
    assert (held_out(runs, "random", seed=0) == mask).all()
    assert not (held_out(runs, "random", seed=1) == mask).all()
    assert held_out(runs, "random", fraction=0.5).sum() == 24


def test_random_on_the_paper_design(design):
    assert held_out(design, "random").sum() == round(0.2 * len(design))


def test_D_holds_out_the_top_fraction_within_each_language():
    en = [{"run_id": f"en{i}", "language": "en", "n_params": 1e8, "n_tokens": i * 1e9}
          for i in range(1, 11)]
    fr = [{"run_id": f"fr{i}", "language": "fr", "n_params": 1e8, "n_tokens": i * 1e8}
          for i in range(1, 6)]
    runs = table(en + fr)
    mask = held_out(runs, "D")
    assert sorted(runs.loc[mask, "run_id"]) == ["en10", "en9", "fr5"]


def test_D_keeps_ties_together():
    runs = table([{"run_id": f"r{i}", "language": "en", "n_params": 1e8, "n_tokens": d}
                  for i, d in enumerate([1e9, 2e9, 3e9, 3e9, 3e9])])
    assert list(held_out(runs, "D")) == [False, False, True, True, True]


def test_C_ranks_by_compute_not_tokens():
    rows = [(1e9, 1e10), (1e8, 2e10), (1e8, 1e10), (1e8, 5e9), (1e8, 1e9)]
    runs = table([{"run_id": f"r{i}", "language": "en", "n_params": n, "n_tokens": d}
                  for i, (n, d) in enumerate(rows)])
    assert list(held_out(runs, "D")) == [False, True, False, False, False]
    assert list(held_out(runs, "C")) == [True, False, False, False, False]


@pytest.mark.parametrize("split", ["D", "C"])
def test_D_and_C_on_the_paper_design_follow_the_rule(design, split):
    mask = held_out(design, split)
    value = design["n_tokens"] * (6 * design["n_params"] if split == "C" else 1)
    for lang, rows in design.groupby("language"):
        held = mask[rows.index]
        threshold = value[rows.index][held].min()
        k = max(1, int(np.floor(0.2 * len(rows) + 0.5)))
        assert (held == (value[rows.index] >= threshold)).all(), lang
        assert (value[rows.index] > threshold).sum() < k <= held.sum(), lang


def test_N_holds_out_the_largest_and_the_paper_ratio_size():
    runs = grid()
    mask = held_out(runs, "N")
    # 3e9 / (8.45e9 / 6.6e8) = 2.3e8: 3e8 is nearest in log.
    assert sorted(runs.loc[mask, "n_params"].unique()) == [3e8, 3e9]
    assert describe(runs, "N") == "N: held out model sizes 3e8, 3e9 (4 of 12 rows)"


def test_N_on_the_paper_sizes_holds_out_660M_and_8B():
    runs = grid(sizes=PAPER_MODEL_SIZES + (4_335_303_168, 8_452_190_208))
    mask = held_out(runs, "N")
    assert sorted(runs.loc[mask, "n_params"].unique()) == [661_807_872, 8_452_190_208]
    assert describe(runs, "N") == "N: held out model sizes 6.6e8, 8.5e9 (4 of 32 rows)"


def test_N_on_the_paper_design(design):
    mask = held_out(design, "N")
    held = {2_034_422_912.0, 146_155_520.0}   # the largest, and 2.03e9 / 12.8 = 1.6e8
    assert (mask == design["n_params"].isin(held)).all()


@pytest.mark.parametrize("sizes", [(1e8, 3e8), (1e6, 2e6, 1e9)])
def test_N_holds_out_only_the_largest_with_two_sizes_or_when_the_ratio_picks_it(sizes):
    # (1e6, 2e6, 1e9): 1e9 / 12.8 = 7.8e7 is nearer 1e9 than 2e6 in log.
    runs = grid(sizes=sizes)
    assert (held_out(runs, "N") == (runs["n_params"] == max(sizes))).all()


def test_N_sizes_override():
    runs = grid()
    mask = held_out(runs, "N", sizes=[1e7, 1e9])
    assert sorted(runs.loc[mask, "n_params"].unique()) == [1e7, 1e9]


def test_N_sizes_not_in_the_table():
    present = r"1e\+07, 3e\+07, 1e\+08, 3e\+08, 1e\+09, 3e\+09"
    with pytest.raises(ValueError, match=r"model sizes 5e\+08 are not in the table; sizes "
                                         r"present: " + present):
        held_out(grid(), "N", sizes=[1e9, 5e8])


def test_sizes_only_apply_to_N():
    with pytest.raises(ValueError, match="sizes= only applies to split 'N'"):
        held_out(grid(), "D", sizes=[1e9])


def mixtures() -> pd.DataFrame:
    """Mono, bilingual, a 3-language mixture and a 3-language Unimax run; 2 checkpoints each."""
    specs = [("mono", "mono-en", {"en": 1.0}), ("mono", "mono-de", {"de": 1.0}),
             ("en-fr", "bi", {"en": 0.5, "fr": 0.5}),
             ("cap3", "cap", {"en": 0.4, "fr": 0.3, "de": 0.3}),
             ("UniMax-3", "umx", {"en": 0.2, "fr": 0.4, "de": 0.4})]
    rows = [{"run_id": run, "language": lang, "n_params": 1e8, "n_tokens": d, "mixture": name,
             **{f"mix_{l}": s for l, s in mix.items()}}
            for name, run, mix in specs for lang in mix for d in (1e9, 2e9)]
    return table(rows)


def test_M_holds_out_every_row_of_3_language_runs_except_unimax():
    runs = mixtures()
    mask = held_out(runs, "M")
    assert (mask == (runs["run_id"] == "cap")).all() and mask.sum() == 6
    assert describe(runs, "M") == ("M: held out 1 run on mixtures of 3+ languages other than "
                                   "Unimax: cap3 (6 of 20 rows)")


def test_M_without_a_mixture_column_treats_no_run_as_unimax():
    runs = mixtures().drop(columns="mixture")
    assert (held_out(runs, "M") == runs["run_id"].isin(["cap", "umx"])).all()


def test_M_on_the_paper_design_holds_out_the_capacity_runs(design):
    mask = held_out(design, "M")
    assert (mask == (design["mixture"] == "capacity")).all()
    n_languages = (design.filter(like="mix_") > 0).sum(axis=1)
    kept = design.loc[~mask & (n_languages >= 3), "mixture"]
    assert set(kept) == {"unimax", "unimax-finetune"}


@pytest.mark.parametrize("runs", [grid(), mixtures().query("run_id != 'cap'")])
def test_M_with_nothing_to_hold_out(runs):
    with pytest.raises(ValueError, match="split 'M' holds out nothing: no run trains on 3 or "
                                         "more languages outside Unimax"):
        held_out(runs, "M")


def test_error_when_nothing_is_held_out():
    with pytest.raises(ValueError, match="split 'random' holds out nothing"):
        held_out(grid(sizes=(1e8,)), "random")   # round(0.2 x 2 rows) = 0


def test_error_when_everything_is_held_out():
    with pytest.raises(ValueError, match="split 'N' holds out every row, leaving no training"):
        held_out(grid(sizes=(1e8, 3e8)), "N", sizes=[1e8, 3e8])


def test_error_names_languages_left_without_training_rows():
    runs = pd.concat([grid(langs=("en",)), grid(sizes=(3e9,), langs=("fr", "de"))],
                     ignore_index=True)
    with pytest.raises(ValueError, match=r"holds out every row of language\(s\) fr, de, leaving"):
        held_out(runs, "N")
    d = table([{"run_id": f"r{i}", "language": "sw", "n_params": 1e8, "n_tokens": 1e9}
               for i in range(3)])
    with pytest.raises(ValueError, match="split 'D' holds out every row of language"):
        held_out(pd.concat([grid(), d], ignore_index=True), "D")


def test_languages_restricts_which_languages_must_keep_training_rows():
    # issue 8, the bundled study: de and ru are evaluated only in an 8-language mixture, so
    # M left them no training rows and `compare --lang es` lost the M split for es as well
    runs = mixtures()
    runs = runs[~((runs["run_id"] == "cap") & (runs["language"] == "en"))]   # cap: fr, de only
    runs = runs[runs["language"] != "de"].pipe(
        lambda r: pd.concat([r, mixtures().query("run_id == 'cap' and language == 'de'")]))
    runs = validate_runs(runs.reset_index(drop=True), source="test table")
    with pytest.raises(ValueError, match=r"holds out every row of language\(s\) de"):
        held_out(runs, "M")
    mask = held_out(runs, "M", languages=["en", "fr"])
    assert (mask == (runs["run_id"] == "cap")).all()
    train, _ = split_runs(runs, "M", languages=["fr"])
    assert "de" not in set(train["language"])
    with pytest.raises(ValueError, match=r"language\(s\) de"):
        held_out(runs, "M", languages=["fr", "de"])


def test_compare_restricted_to_a_language_builds_splits_for_it_only(monkeypatch):
    from atlas_bayes.decisions import comparison
    runs = mixtures()
    runs = validate_runs(runs[~((runs["language"] == "de") & (runs["run_id"] != "cap"))]
                         .reset_index(drop=True), source="test table")
    calls = []
    monkeypatch.setattr(comparison, "_fit_split",
                        lambda train, test, law, targets, *a: calls.append(targets)
                        or [comparison._Fit(languages=targets, error="not fitted")])
    table = comparison.held_out_table(runs, laws=["chinchilla"], splits=["M"], languages=["fr"])
    assert calls == [["fr"]] and set(table["error"]) == {"not fitted", "fr: not fitted"}
    table = comparison.held_out_table(runs, laws=["chinchilla"], splits=["M"])
    assert "de" in table["error"].iloc[0]


def test_split_runs_returns_train_and_test(design):
    design.attrs["source"] = "paper design"
    train, test = split_runs(design, "N")
    mask = held_out(design, "N")
    assert len(train) == (~mask).sum() and len(test) == mask.sum()
    assert list(train.index) == list(range(len(train)))
    assert train.attrs["source"] == test.attrs["source"] == "paper design"
    assert set(test["n_params"]) == {2_034_422_912.0, 146_155_520.0}


@pytest.mark.parametrize("split", SPLITS)
def test_describe_is_one_line(design, split):
    text = describe(design, split)
    assert text.startswith(f"{split}: held out") and "\n" not in text
    assert f"({held_out(design, split).sum()} of {len(design)} rows)" in text
